"""The relay's error format, `{"error": {"code", "message"}}` (plus `details` or `state` where documented), and
every exception handler: a refusal of the core, the framework's own (no such path, wrong method, validation),
the chain's node out of reach, and anything unexpected (500, logged)."""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from chainstream.errors import ChainStreamError, RecoverableError
from chainstream.verify import Rejection

log = logging.getLogger("chainstream.relay")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may quote the request, and a string from a request can hold a lone
    surrogate (valid JSON, "\\ud800") that no UTF-8 encoder accepts."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An error in the relay's format; `extra` adds top-level members (`details`, `state`)."""
    return AsciiJSONResponse(
        {"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers
    )


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the input they quote (a body of megabytes would be echoed back) and with
    location parts cut short (an unknown key can be long)."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p)[:64] for p in e.get("loc", ())],
            "msg": str(e.get("msg", ""))[:200],
            "type": str(e.get("type", "")),
        }
        for e in errors[:20]
    ]


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """The methods some route takes at this request's path, for a 405's Allow header (asked of the routes
    themselves, method by method; the web player's static files, mounted at /, take GET and HEAD anywhere)."""
    static = [r for r in app.router.routes if isinstance(r, Mount) and r.path == ""]
    routes = [r for r in app.router.routes if r not in static]
    allowed = {m for m in HTTP_METHODS if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)}
    return ", ".join(sorted(allowed | {"GET", "HEAD"} if static else allowed))


async def rejection_handler(_: Request, exc: Rejection) -> JSONResponse:
    return error_response(exc.status, exc.code, str(exc))


async def recoverable_handler(_: Request, exc: RecoverableError) -> JSONResponse:
    return error_response(400, exc.code, str(exc))


async def unrecoverable_handler(_: Request, exc: ChainStreamError) -> JSONResponse:
    log.error("internal error: %s", exc)
    return error_response(503, exc.code, str(exc))


async def http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own refusals (no such path, wrong method) in the relay's error format."""
    if exc.status_code == 404:
        return error_response(404, "not_found", "no such path")
    if exc.status_code == 405:
        allow = allowed_methods(request.app, request.scope)
        return error_response(
            405, "method_not_allowed", f"this path takes {allow}, not {request.method}", headers={"Allow": allow}
        )
    return error_response(exc.status_code, "request_refused", str(exc.detail), headers=exc.headers)


async def unexpected_handler(_: Request, exc: Exception) -> JSONResponse:
    """Anything else: the chain's node unreachable (503, retry later), or a bug (500, logged)."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):  # web3's HTTP provider
        log.warning("the chain's node is unreachable: %s", exc)
        return error_response(503, "chain_unavailable", "the relay cannot reach its chain's node; retry later")
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", f"unexpected {type(exc).__name__}; the relay's log has the details")


async def validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = validation_details(exc.errors()) or [{"loc": [], "msg": "invalid request", "type": ""}]
    first = details[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return error_response(
        422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"], details=details
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception in the relay's error format."""
    app.add_exception_handler(Rejection, rejection_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RecoverableError, recoverable_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ChainStreamError, unrecoverable_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)  # type: ignore[arg-type]
