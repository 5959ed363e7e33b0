"""Whether the relay can reach its chain's node, and how it behaves when it cannot (docs/OPERATIONS.md, Outages).

- `ChainStatus` holds one fact, "the node answers" or "the node is lost since ...", learnt from the watcher's
  polls and from any request that needed the node. A change of that fact is logged once (one line: "node lost",
  "node back"); the failures in between are counted, not logged, so an outage does not write a traceback per
  poll.
- `follow_chain` runs the watcher's polls with exponential backoff while the node is lost (poll_interval,
  doubled per failure, up to `chain_backoff_max`), and records the chain's head, so readiness can say how far
  behind the watcher is.
- `OutageLogFilter` drops the tracebacks that the relay's loops (settler, watcher) log for a failed round when
  the cause is the node being unreachable: the status has already said so, once.
- `DatabaseStatus` does the same for the database in one loop (the watcher's, the settler's): a failed round
  whose cause is the database taking no write (`is_database_unavailable`: full, read-only, I/O error, a lost
  PostgreSQL server) logs "database lost" once and "database back" once, not a traceback per round.
- `is_chain_unreachable` says which exceptions mean "the node did not answer" (web3's HTTP provider raises
  requests' connection errors and timeouts; the provider's timeout is `Settings.rpc_timeout`, which bounds how
  long any request that needs the node waits before it is answered `chain_unavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.relay.metrics import CHAIN_RPC_ERRORS, DATABASE_ERRORS
from chainstream.store.errors import UNAVAILABLE_ERRORS, public_reason

log = logging.getLogger("chainstream.relay.outage")

#: exceptions that mean the chain's node did not answer (web3's HTTP provider is built on requests, which wraps
#: socket errors in these). Not the builtin ConnectionError: a client hanging up raises that too, and must not
#: be taken for the node being lost.
UNREACHABLE: tuple[type[Exception], ...] = (requests.ConnectionError, requests.Timeout)


def is_chain_unreachable(exc: BaseException | None) -> bool:
    """Whether `exc` (or what it was raised from) means the node did not answer."""
    seen = 0
    while exc is not None and seen < 8:  # a short chain of causes; never loops on a cycle
        if isinstance(exc, UNREACHABLE):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def is_database_unavailable(exc: BaseException | None) -> bool:
    """Whether `exc` (or what it was raised from) means the database takes no write: a driver's operational error
    or the store's `database_unavailable`."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, UNAVAILABLE_ERRORS) or getattr(exc, "code", None) == Code.DATABASE_UNAVAILABLE:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class DatabaseStatus:
    """One loop's view of the database: a failed round caused by the database is logged once when the database
    is lost and once when a round succeeds again, with the count in between (and `DATABASE_ERRORS`)."""

    def __init__(self, loop: str, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = loop
        self.log = logger
        self.clock = clock
        self.available = True
        self.failures = 0
        self.lost_since: float | None = None
        self.last_error: str | None = None

    def failed(self, exc: BaseException) -> None:
        """A round failed because the database takes no write; logged on the first failure only."""
        self.failures += 1
        DATABASE_ERRORS.inc()
        self.last_error = public_reason(exc)
        if self.available:
            self.available = False
            self.lost_since = self.clock()
            self.log.error("%s: database unavailable (%s); retrying every round", self.loop, self.last_error)

    def succeeded(self) -> None:
        """A round went through: if the database was lost, say it is back (once)."""
        if self.available:
            return
        down = 0.0 if self.lost_since is None else self.clock() - self.lost_since
        self.log.warning("%s: database back after %.1f s (%d failed rounds)", self.loop, down, self.failures)
        self.available = True
        self.failures = 0
        self.lost_since = None
        self.last_error = None


class _Watcher(Protocol):
    processed_block: int | None

    async def poll(self) -> int: ...


class ChainStatus:
    """The relay's view of its node: reachable or lost (since when, how many failures), and the chain's head."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.poll_interval = settings.poll_interval
        self.backoff_max = max(settings.chain_backoff_max, settings.poll_interval)
        self.clock = clock
        self.reachable = True
        #: failures since the node was lost (0 while it answers)
        self.failures = 0
        self.lost_since: float | None = None
        self.last_error: str | None = None
        #: the newest block number the node reported (None before the first poll)
        self.head: int | None = None
        #: how many times the node was lost, and came back, since start (for metrics and tests)
        self.outages = 0

    def answered(self, head: int | None = None) -> None:
        """The node answered (a poll, or any request)."""
        if head is not None:
            self.head = head
        if not self.reachable:
            down = 0.0 if self.lost_since is None else self.clock() - self.lost_since
            log.warning("chain node back after %.1f s (%d failed attempts)", down, self.failures)
        self.reachable = True
        self.failures = 0
        self.lost_since = None
        self.last_error = None

    def failed(self, exc: BaseException) -> None:
        """The node did not answer; logged once per outage (the first failure), counted after that."""
        self.failures += 1
        CHAIN_RPC_ERRORS.inc()
        self.last_error = _describe(exc)
        if self.reachable:
            self.reachable = False
            self.lost_since = self.clock()
            self.outages += 1
            log.error(
                "chain node lost: %s; payments within known deposits go on, the rest is answered "
                "chain_unavailable until it is back",
                self.last_error,
            )

    def delay(self) -> float:
        """Seconds until the next poll: the poll interval, or exponential backoff while the node is lost."""
        if self.reachable:
            return self.poll_interval
        return float(min(self.backoff_max, self.poll_interval * 2 ** min(self.failures - 1, 30)))

    def retry_after(self) -> int:
        """The Retry-After a client gets with `chain_unavailable` (whole seconds, at least 1)."""
        return max(1, math.ceil(self.delay()))

    def reason(self) -> str | None:
        """Why the node is considered lost (None while it answers)."""
        if self.reachable:
            return None
        down = 0.0 if self.lost_since is None else self.clock() - self.lost_since
        return f"chain node unreachable for {down:.0f} s: {self.last_error}"


def _describe(exc: BaseException) -> str:
    """A short line for an exception, fit for the public /health: its type and what happened, without the node's
    URL path (a provider's URL often carries an API key: `https://host/v3/<key>`)."""
    if isinstance(exc, requests.Timeout):
        return f"{type(exc).__name__}: no answer within the RPC timeout"
    text = (str(exc).splitlines() or [""])[0]
    text = re.sub(r"url: \S+", "url: [hidden]", text)
    text = re.sub(r"(https?|wss?)://[^\s'\"]+", r"\1://[hidden]", text)
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


async def follow_chain(
    watcher: _Watcher, w3: Any, status: ChainStatus, stop: asyncio.Event, database: DatabaseStatus | None = None
) -> None:
    """The watcher's loop: read the head, poll; on an unreachable node back off exponentially (one log line per
    change of state, through `status`); a database that takes no write is logged once lost and once back
    (`database`); any other failure is logged with its traceback and retried."""
    database = database or DatabaseStatus("watcher", logging.getLogger("chainstream.watcher"))
    while not stop.is_set():
        try:
            head = int(await asyncio.to_thread(lambda: w3.eth.block_number))
            status.answered(head)
            await watcher.poll()
            database.succeeded()
        except Exception as exc:  # keep watching through anything; the cursor makes it resume exactly
            if is_chain_unreachable(exc):
                status.failed(exc)
            elif is_database_unavailable(exc):
                database.failed(exc)
            else:
                log.exception("watcher poll failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=status.delay())


class OutageLogFilter(logging.Filter):
    """Drops a log record whose exception is an unreachable node, after telling `status` of the failure (which
    logs the outage once): the settler's and the watcher's loops log a traceback per failed round otherwise."""

    def __init__(self, status: ChainStatus) -> None:
        super().__init__()
        self.status = status

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_chain_unreachable(exc):
            self.status.failed(exc)
            return False
        return True


#: the loggers whose failed rounds the filter reads
LOOP_LOGGERS = ("chainstream.settler", "chainstream.watcher", "chainstream.payouts", "chainstream.relay")


def install_log_filter(status: ChainStatus) -> Callable[[], None]:
    """Attach an `OutageLogFilter` for `status` to the relay's loop loggers; returns the function removing it."""
    filt = OutageLogFilter(status)
    loggers = [logging.getLogger(name) for name in LOOP_LOGGERS]
    for logger in loggers:
        logger.addFilter(filt)

    def remove() -> None:
        for logger in loggers:
            logger.removeFilter(filt)

    return remove
