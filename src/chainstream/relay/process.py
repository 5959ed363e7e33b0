"""The relay process: its service, settler and watchtower started and stopped together, and the interpreter
tuned for serving. The HTTP app (relay/app.py) runs a `Relay` in its lifespan; the demo and tests run one too."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

from web3 import Web3

from chainstream.chain.contracts import ChannelsClient, RegistryClient
from chainstream.chain.deploy import Deployment
from chainstream.chain.node import connect
from chainstream.chain.transactions import TxSender
from chainstream.config import Settings
from chainstream.errors import ConfigurationError
from chainstream.protocol import PrivateKey
from chainstream.relay.health import DatabaseProbe
from chainstream.relay.metrics import PrometheusObserver
from chainstream.relay.onboarding import Onboarding
from chainstream.relay.outage import ChainStatus, follow_chain, install_log_filter, is_chain_unreachable
from chainstream.relay.payouts import PayoutPusher
from chainstream.relay.service import RelayService
from chainstream.relay.settler import Settler
from chainstream.relay.watcher import Watcher
from chainstream.store import open_store

__all__ = ["Relay", "public_rpc_url", "tune_interpreter_for_serving"]

log = logging.getLogger("chainstream.relay")


class Relay:
    """Service + settler + watchtower, started and stopped together (by the app's lifespan or by the demo)."""

    def __init__(
        self,
        settings: Settings,
        *,
        w3: Web3 | None = None,
        deployment: Deployment | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.relay_key is None:
            raise ConfigurationError("no relay key: set CHAINSTREAM_RELAY_KEY")
        self.settings = settings
        self.w3 = w3 or connect(settings.rpc_url, timeout=settings.rpc_timeout)
        self.deployment = deployment or Deployment.load(settings.deployment_file)
        if self.deployment.chain_id != self.w3.eth.chain_id:
            raise ConfigurationError(
                f"{settings.deployment_file} is for chain {self.deployment.chain_id}, "
                f"the node is chain {self.w3.eth.chain_id}"
            )
        key = PrivateKey(settings.relay_key.get_secret_value())
        self.store = open_store(settings.database)
        try:
            self.store.claim_instance(settings.instance)
        except ConfigurationError:
            self.store.close()
            raise
        observer = PrometheusObserver()  # relay/metrics.py: counters and latency histograms
        self.service = RelayService(
            settings=settings,
            channels=ChannelsClient(self.w3, self.deployment.channels),
            registry=RegistryClient(self.w3, self.deployment.registry),
            deployment=self.deployment,
            relay_key=key,
            store=self.store,
            clock=clock,
            observer=observer,
        )
        self.settler = Settler(self.service, TxSender(self.w3, key), observer)
        self.watcher = Watcher(self.service, self.settler, observer)
        self.chain_status = ChainStatus(settings)  # relay/outage.py: node lost / back, backoff
        self.database_probe = DatabaseProbe(self.store, settings.instance)  # relay/health.py
        self.onboarding = Onboarding(  # gas-free submissions
            settings, self.service.channels, self.settler.sender, self.service.chain_now
        )
        self.payouts = PayoutPusher(
            settings,
            self.service.channels,
            self.settler.sender,
            [t.address for t in self.service.tokens()],
            store=self.store,
            from_block=self.deployment.deploy_block,
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._catalog_task: asyncio.Task[None] | None = None
        self._remove_log_filter: Callable[[], None] | None = None
        #: seconds `start` took before the relay could serve (logged; benchmarks/restart.py reads the log line)
        self.startup_seconds: float | None = None

    async def start(self) -> None:
        """Start before serving (the app's lifespan runs this before uvicorn opens the port) only what must be:
        the store and the defence of channels in their close window (docs/OPERATIONS.md, Start-up). The
        catalog is read after the port opened (`_load_catalog`; a payment or a segment of a track not read yet
        loads that track from the registry first), and so is the watcher's catch-up over the blocks missed
        while the relay was down (`follow_chain`'s first poll); until both are done /health/ready says so, and
        a channel the watcher has not seen yet loads from the chain on first use."""
        started = time.monotonic()
        self.store.start()
        self.chain_status.answered(await asyncio.to_thread(lambda: int(self.w3.eth.block_number)))
        # Before the port opens: closing channels cannot wait for a relay that might be killed by its first
        # request. The backlog's close requests and key changes are applied first (a filtered log query, not the
        # whole catch-up), then every closing or flagged channel is settled and its receipt awaited.
        await self.watcher.catch_up_deadlines()
        settled = await self.settler.settle_urgent_before_serving()
        self.startup_seconds = time.monotonic() - started
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(
                follow_chain(self.watcher, self.w3, self.chain_status, self._stop, self.watcher.database)
            ),
            asyncio.create_task(self.settler.run(self._stop)),
            asyncio.create_task(self.payouts.run(self._stop, lambda: self.settler.leading)),
        ]
        self._catalog_task = asyncio.create_task(self._load_catalog())
        self._remove_log_filter = install_log_filter(self.chain_status)
        log.info(
            "relay %s serving chain %s (instance %s) after %.2f s of start-up (%d closing channel(s) settled); the"
            " catalog loads and the watcher catches up from block %s",
            self.service.address,
            self.deployment.chain_id,
            self.settings.instance,
            self.startup_seconds,
            settled,
            self.watcher.processed_block,
        )
        tune_interpreter_for_serving()

    async def _load_catalog(self) -> None:
        """Read the whole catalog while serving (what is read stays read); through a node outage, try again with
        the watcher's backoff."""
        started = time.monotonic()
        catalog = self.service.catalog
        while not self._stop.is_set():
            try:
                await catalog.load()
            except Exception as exc:  # keep trying through anything: a track read on demand meanwhile is kept
                if is_chain_unreachable(exc):
                    self.chain_status.failed(exc)
                else:
                    log.exception("reading the catalog failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self.chain_status.delay())
                continue
            log.info("catalog loaded: %d tracks in %.2f s", len(catalog.entries), time.monotonic() - started)
            return

    def begin_shutdown(self) -> None:
        """A shutdown was asked for (SIGTERM): end the live-event streams now, so the server need not wait for
        their clients before the relay's own shutdown (`stop`) runs."""
        self.service.bus.close()

    async def stop(self) -> None:
        self._stop.set()
        if self._catalog_task is not None:
            self._catalog_task.cancel()  # a stopping relay need not finish reading the catalog
            with contextlib.suppress(asyncio.CancelledError):
                await self._catalog_task
        self.settler.wake()  # do not wait out the settle interval
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if self._remove_log_filter is not None:
            self._remove_log_filter()
        self.store.close()


def tune_interpreter_for_serving() -> None:
    """Set the interpreter up for a relay under payment load (called once started).

    - Garbage collector: everything alive by then (modules, contract ABIs, schemas, the catalog) lives as long
      as the process, so it is frozen out of the collector's view; and the young generation is collected every
      10,000 allocations rather than 700. Each voucher allocates dozens of short-lived containers, and with
      thousands in flight the default settings had the collector walk them over and over: ~20% of the event
      loop's CPU per voucher (benchmarks/hot_path.py). Most objects are freed by reference counting anyway.
    - GIL switch interval 1 ms (default 5 ms): the group-commit thread hands the GIL over around each SQLite
      step and must win it back from the busy event loop; every acknowledgement waits for that. With a busy
      loop, a commit of 20 payments took p50 11-12 ms with 5 ms, 7 ms with 1 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    sys.setswitchinterval(0.001)


def public_rpc_url(settings: Settings) -> str | None:
    """The chain's node URL as published to the player's wallet: CHAINSTREAM_PUBLIC_RPC_URL, else the relay's own
    node URL when it is on loopback (a provider URL may embed a key), else none."""
    rpc = settings.public_rpc_url
    if rpc is None and urlparse(settings.rpc_url).hostname in ("127.0.0.1", "localhost", "::1"):
        rpc = settings.rpc_url
    return rpc
