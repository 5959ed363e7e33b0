"""Bounds on what one request can cost the relay: body size, JSON nesting depth, time to send the body.

A request is refused before any JSON parser sees it when its body is larger than `Settings.max_body_bytes`
(413 `body_too_large`, from the Content-Length header without reading a byte, or while reading a chunked body),
when the body does not arrive within `Settings.body_timeout` (408 `request_timeout`), or when its JSON nests
deeper than `MAX_JSON_DEPTH` (400 `too_deeply_nested`). The depth check matters because web3's dependencies
raise the interpreter's recursion limit to 100,000 on import: the json module's C parser then recurses on a
body of 200,000 `[` until the C stack overflows and the process dies (no exception to catch). WebSocket
messages go through the same checks (`check_message`).

The checks are on the hot path (every payment), so the common case costs two `bytes.count` calls: a body can
nest no deeper than its number of opening brackets, and a payment has five.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainstream.codes import Code

#: deepest JSON nesting accepted; the relay's deepest body (a batch: object > list > payment > voucher > list) is 5
MAX_JSON_DEPTH = 32

# A string, unrolled so that matching is linear; an unclosed string runs to the end of the body (the JSON parser
# stops there, before any bracket after it). The plain `"(?:[^"\\]|\\.)*"` restarted at every unclosed quote:
# quadratic, hours of event-loop time for a 2 MB body of `"\"` pairs.
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_RUNS = re.compile(rb"\[+|\]+")
_OPEN = ord("[")
_PAIR_PASSES = 6


class Refusal(Exception):
    """A request refused by a limit: HTTP status, stable code, reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def check_json_depth(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON that nests deeper than `limit` (400 too_deeply_nested) before anything parses it, JSON whose
    brackets do not balance, and bodies that are not UTF-8 (422 invalid_request: no parser should accept
    them). Never recursive."""
    # Fast path: nesting needs an opening bracket per level, and a payment body has five in all.
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= limit:
            return
        data = data.encode("utf-8", "surrogatepass")
    else:
        # json.loads also reads UTF-16 and UTF-32 bodies, where a string's escaped quote is \x00-padded and the
        # byte scan below would misplace strings' ends (nesting could hide "inside" them): UTF-8 only, which
        # never holds a NUL byte (RFC 8259 requires UTF-8 between systems anyway).
        if b"\x00" in data:
            raise Refusal(422, Code.INVALID_REQUEST, "a JSON body must be UTF-8 text")
        if data.count(b"[") + data.count(b"{") <= limit:
            return
    # The brackets outside strings, as [ and ]. A few C-speed passes remove innermost pairs (each pass lowers the
    # depth by one, and a payment batch is empty after five); what is left is walked run by run, not byte by byte.
    brackets = _STRING_BYTES.sub(b"", data).translate(_BRACKETS_ONLY, _NOT_BRACKETS)
    passes = 0
    while brackets and passes < _PAIR_PASSES:
        reduced = brackets.replace(b"[]", b"")
        if len(reduced) == len(brackets):
            break
        brackets, passes = reduced, passes + 1
    depth = 0
    for run in _RUNS.findall(brackets):
        if run[0] == _OPEN:
            depth += len(run)
            if depth + passes > limit:
                raise Refusal(400, Code.TOO_DEEPLY_NESTED, f"the JSON body nests deeper than {limit} levels")
        else:
            depth -= len(run)
            if depth < 0:
                break
    if depth:
        raise Refusal(422, Code.INVALID_REQUEST, "the body is not JSON: its brackets do not balance")


def check_message(text: str, max_bytes: int) -> None:
    """The same bounds for one WebSocket message (uvicorn's `ws_max_size` refuses larger frames before this)."""
    if len(text) > max_bytes:  # characters: a lower bound of the UTF-8 size, and all the relay needs
        raise Refusal(413, Code.BODY_TOO_LARGE, f"a message may be at most {max_bytes} bytes")
    check_json_depth(text)


def refusal_body(refusal: Refusal) -> bytes:
    return json.dumps({"error": {"code": refusal.code, "message": str(refusal), "details": {}}}).encode()


class RequestLimits:
    """ASGI middleware: reads each HTTP request's body under the size and time limits and checks its nesting,
    then hands the app the body in one piece. Refusals are answered here, and close the connection (the rest
    of an oversized or stalled body is never read)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout: float,
        streamed: Callable[[Scope], bool] | None = None,
    ) -> None:
        """`streamed`: requests whose body the route itself reads as a stream, under its own limits (audio
        uploads: large, binary, not JSON); they pass through untouched."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.streamed is not None and self.streamed(scope)):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
            if body is None:  # the client went away
                return
            if body:
                check_json_depth(body)
        except Refusal as refusal:
            await _refuse(send, refusal)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices (Server-Sent Events use them)

        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        limit = self.max_body_bytes
        too_large = Refusal(413, Code.BODY_TOO_LARGE, f"a request body may be at most {limit} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:  # the HTTP parser refuses these first; kept for other servers
                    raise Refusal(400, Code.REQUEST_REFUSED, "invalid Content-Length") from None
                if declared > limit:
                    raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):  # one deadline for the whole body (no task per read)
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > limit:
                            raise too_large
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            raise Refusal(
                408, Code.REQUEST_TIMEOUT, f"the request body did not arrive within {self.body_timeout:g}s"
            ) from None


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = refusal_body(refusal)
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
