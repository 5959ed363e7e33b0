"""Serving the relay app over HTTP (uvicorn), with a shutdown that does not wait for long-lived clients.

A live-event (SSE) response never ends by itself, so uvicorn's graceful shutdown would wait for every browser
that has the page open; the relay's database lock is held meanwhile and an operator's restart fails. On SIGTERM or
SIGINT the relay ends its event streams at once (uvicorn closes WebSockets with 1012 "service restart"), the
server drains the other requests for at most GRACE seconds, then the relay's own shutdown runs.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

#: seconds in-flight requests get to finish after SIGTERM before they are cancelled
GRACE = 3.0


class RelayServer(uvicorn.Server):
    """uvicorn's server, calling `on_exit` (on the event loop) as soon as a shutdown is asked for."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._exit_requested = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if not self._exit_requested:
            self._exit_requested = True
            self._on_exit()


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(app: Any, *, host: str, port: int, log_level: str, on_exit: Callable[[], None]) -> None:
    """Run `app` until SIGTERM/SIGINT, then exit with status 0 once the relay has shut down.

    uvicorn re-raises the signal it caught once it is done, to the handler that was in place before it started:
    a shutdown that was asked for is a clean exit, not a death by signal (supervisors read the status)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACE)
    RelayServer(config, on_exit).run()
