"""How the relay process serves HTTP: uvicorn's options, a connection protocol with a header deadline, and the
interpreter's recursion limit. Used by `chainstream relay` and the demo; the app itself (app.py) bounds bodies
and messages (limits.py) whatever server runs it.

- Headers: a connection must deliver a complete request head within `Settings.header_timeout` of connecting
  (or of the first byte of its next request), in at most `MAX_HEADER_BYTES`; otherwise it gets 408 or 431
  and is closed. uvicorn has no such deadline, so a client that trickles a header line now and then (slowloris)
  would hold a descriptor for ever.
- Bodies: limits.RequestLimits (size and `body_timeout`). Idle keep-alive connections: uvicorn's
  `timeout_keep_alive`. WebSocket messages: `ws_max_size` = `Settings.max_message_bytes` (larger frames are
  closed with 1009 before they are buffered).
- Shutdown: a live-event (SSE) response never ends by itself, so uvicorn's graceful shutdown would wait for every
  browser that has the page open, holding the database lock, and an operator's restart would fail. On SIGTERM or
  SIGINT the relay ends its event streams at once (uvicorn closes WebSockets with 1012 "service restart"), the
  server gives other requests at most GRACE seconds, then the relay's own shutdown runs; the exit status is 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chainstream.config import Settings
from chainstream.relay.app import Relay, create_app

#: CPython's default; web3's dependencies (py_ecc) raise it to 100,000 on import
DEFAULT_RECURSION_LIMIT = 1_000
#: request line and headers of one request
MAX_HEADER_BYTES = 64 * 1024
#: seconds in-flight requests get to finish after SIGTERM before they are cancelled
GRACE = 3


def restore_recursion_limit() -> None:
    """Put the recursion limit back to CPython's default. With 100,000 (set by py_ecc when web3 is imported), a
    deeply nested input overflows the C stack and kills the process instead of raising RecursionError. Called
    by `chainstream relay` once everything is imported (the embedded chain, which may need the raised limit,
    is never used there)."""
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)


def build_served_app(settings: Settings) -> FastAPI:
    """The app `chainstream relay` serves (its Relay in `app.state.relay`), with the interpreter set up for it.

    Built before serving, so that a wrong chain or deployment, a database in use by another relay, ... is a
    one-line error and not a traceback from the server. Everything is imported by then (web3's import raised
    the recursion limit to 100,000), so the limit goes back to the default here."""
    relay = Relay(settings)
    app = create_app(settings, relay=relay)
    app.state.relay = relay
    restore_recursion_limit()
    return app


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline and a size bound on each request's head."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = False

    # uvicorn's HttpToolsProtocol narrows asyncio's BaseTransport to Transport (with the same ignore); so must we
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES:  # still no end of headers after this much
            self._refuse(431, "request headers too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_deadline = self.loop.call_later(self.header_timeout, self._refuse, 408, "request headers too slow")

    def _disarm(self) -> None:
        self._in_head = False
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _refuse(self, status: int, reason: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        body = b'{"error": {"code": "request_refused", "message": "' + reason.encode() + b'", "details": {}}}'
        phrase = b"Request Timeout" if status == 408 else b"Request Header Fields Too Large"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, phrase, len(body), body)
        )
        self.transport.close()


def protocol_for(settings: Settings) -> type[DeadlineHttpProtocol]:
    """The HTTP protocol class with this relay's header deadline (uvicorn builds one instance per connection)."""
    return type("RelayHttpProtocol", (DeadlineHttpProtocol,), {"header_timeout": settings.header_timeout})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config that bound what a connection can hold."""
    return {
        "http": protocol_for(settings),
        "ws_max_size": settings.max_message_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }


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


def serve(app: FastAPI, settings: Settings, *, host: str, port: int, log_level: str) -> None:
    """Run the app built by `build_served_app` until SIGTERM/SIGINT, then exit with status 0 once the relay has
    shut down. (uvicorn re-raises the signal it caught once it is done, to the handler that was in place before it
    started: a shutdown that was asked for is a clean exit, not a death by signal — supervisors read the status.)"""
    relay: Relay = app.state.relay
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=GRACE,
        **uvicorn_options(settings),
    )
    RelayServer(config, relay.begin_shutdown).run()
