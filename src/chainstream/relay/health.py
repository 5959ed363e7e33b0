"""Liveness and readiness (docs/API.md, Health; docs/OPERATIONS.md, Outages).

- `GET /api/v1/health/live`: the process serves requests (its event loop answers). Always 200 while it does.
- `GET /api/v1/health/ready`: the relay can do its job: its chain's node answers, the watcher is within
  `ready_max_lag_blocks` of the head (it sees closes and top-ups), the catalog is read (a track not read yet
  is read on its first payment meanwhile), and the database takes a write. 200, or
  503 `not_ready` with every reason, and `Retry-After`.
- `GET /api/v1/health`: the summary clients and tests already read (`ok`, `accepted`, `block`, `instance`,
  `leader`), always 200, with `ok` the readiness verdict and `reasons` saying why not: a blind relay no
  longer says `ok: true`.

The database probe writes one row (the cursor `health@<instance>`) at most once per `PROBE_INTERVAL`
seconds, in a worker thread: a load balancer polling readiness costs at most one small commit a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from chainstream.codes import Code
from chainstream.relay.api.errors import error_response
from chainstream.relay.api.models import Health, Live, Ready
from chainstream.relay.openapi import responses
from chainstream.store.errors import public_reason

#: seconds a database probe's verdict is reused
PROBE_INTERVAL = 1.0


@dataclass
class Readiness:
    ready: bool
    reasons: list[str]
    head: int | None
    processed: int | None
    lag: int | None
    chain_reachable: bool
    database_writable: bool


class DatabaseProbe:
    """Whether the store takes a write, asked at most once per PROBE_INTERVAL (the answer is cached)."""

    def __init__(self, store: Any, instance: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cursor = f"health@{instance}"
        self.clock = clock
        self._checked_at: float | None = None
        self._error: str | None = None
        self._lock = asyncio.Lock()

    async def error(self) -> str | None:
        """None if the database took the probe's write, else why not."""
        async with self._lock:
            now = self.clock()
            if self._checked_at is None or now - self._checked_at >= PROBE_INTERVAL:
                self._error = await asyncio.to_thread(self._probe)
                self._checked_at = self.clock()
            return self._error

    def _probe(self) -> str | None:
        try:
            self.store.set_cursor(self.cursor, int(time.time()))
        except Exception as exc:  # any driver's error: the probe reports it, it never raises
            return public_reason(exc)
        return None


async def readiness(relay: Any) -> Readiness:
    """The relay's readiness, with a reason for each failed check."""
    status = relay.chain_status
    settings = relay.settings
    reasons: list[str] = []
    if not status.reachable:
        reasons.append(status.reason() or "chain node unreachable")
    processed = relay.watcher.processed_block
    lag = None
    if status.head is not None and processed is not None:
        lag = max(0, status.head - settings.confirmations - processed)
        if lag > settings.ready_max_lag_blocks:
            reasons.append(f"watcher {lag} blocks behind the head (at most {settings.ready_max_lag_blocks})")
    elif status.head is None:
        reasons.append("the chain's head was not read yet")
    catalog = relay.service.catalog
    if not catalog.complete:
        reasons.append(f"catalog loading ({len(catalog.entries)} tracks read so far)")
    db_error = await relay.database_probe.error()
    if db_error is not None:
        reasons.append(f"database not writable: {db_error}")
    return Readiness(
        ready=not reasons,
        reasons=reasons,
        head=status.head,
        processed=processed,
        lag=lag,
        chain_reachable=status.reachable,
        database_writable=db_error is None,
    )


def _checks(r: Readiness) -> dict[str, Any]:
    return {
        "chain": {"reachable": r.chain_reachable, "head": r.head},
        "watcher": {"block": r.processed, "lag": r.lag},
        "database": {"writable": r.database_writable},
    }


def health_router(get_relay: Callable[[], Any]) -> APIRouter:
    """The health routes, for the relay `get_relay()` returns (set once the app's lifespan started it)."""
    router = APIRouter(prefix="/api/v1")

    @router.get("/health", response_model=Health, responses=responses("health"))
    async def health() -> dict[str, Any]:
        """A summary: `ok` is readiness (see /health/ready), with `reasons` when it is false."""
        relay = get_relay()
        r = await readiness(relay)
        return {
            "ok": r.ready,
            "reasons": r.reasons,
            "accepted": relay.service.accepted_count,
            "block": relay.watcher.processed_block,
            "instance": relay.settings.instance,
            "leader": relay.settler.leading,
            **_checks(r),
        }

    @router.get("/health/live", response_model=Live, responses=responses("health"))
    async def live() -> dict[str, Any]:
        """The process is up and its event loop answers."""
        return {"ok": True}

    @router.get("/health/ready", response_model=Ready, responses=responses("health_ready"))
    async def ready() -> Any:
        """Ready to take payments and watch the chain: 200, or 503 `not_ready` with the reasons."""
        relay = get_relay()
        r = await readiness(relay)
        if r.ready:
            return {"ok": True, "reasons": [], **_checks(r)}
        retry = relay.chain_status.retry_after()
        return error_response(
            503,
            Code.NOT_READY,
            "; ".join(r.reasons),
            {"Retry-After": str(retry)},
            ok=False,
            reasons=r.reasons,
            **_checks(r),
        )

    return router
