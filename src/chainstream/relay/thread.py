"""A real relay (FastAPI on uvicorn, with its settler and watchtower) serving HTTP from a background thread of
the calling process: what `chainstream demo` and `chainstream dev` run, and what tests use for a relay they can
reach into (its event loop runs coroutines on the relay's own objects)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import uvicorn
from web3 import Web3

from chainstream.chain.deploy import Deployment
from chainstream.chain.node import free_port
from chainstream.config import Settings
from chainstream.errors import ConfigurationError
from chainstream.relay.app import Relay, create_app
from chainstream.relay.server import uvicorn_options

T = TypeVar("T")


class RelayThread:
    """`RelayThread(settings, w3=..., deployment=...).start()` returns once the relay answers /health;
    `stop()` shuts it down (graceful, bounded by `graceful_timeout`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        w3: Web3,
        deployment: Deployment,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful_timeout: int | None = None,
    ) -> None:
        self.relay = Relay(settings, w3=w3, deployment=deployment)
        self.app = create_app(settings, relay=self.relay)
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=self.port,
                log_level="warning",
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=graceful_timeout,
                **uvicorn_options(settings),  # the same bounds on connections as `chainstream relay`
            )
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="chainstream-relay", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc

    def start(self, timeout: float = 60.0) -> RelayThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise ConfigurationError(
                    f"the relay did not start on {self.url}: {self.error or 'server exited (is the port free?)'}"
                )
            if self.server.started:
                try:
                    if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"the relay did not answer on {self.url} within {timeout:.0f}s")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run a coroutine on the relay's event loop (where its service, settler and watcher live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def settle_now(self) -> int:
        """One settlement round of every channel with unsettled vouchers; returns how many were settled."""
        return self.call(self.relay.settler.settle_round(force=True))

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=60)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()
