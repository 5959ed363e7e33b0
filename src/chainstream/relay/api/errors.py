"""The relay's error format, `{"error": {"code", "message", "details"}}` (plus a top-level `details` list for
`invalid_request` and `state` where documented), the HTTP status of each refusal of the core (`REJECTION_STATUS`),
and every exception handler: a refusal of the core, the framework's own (no such path, wrong method,
validation), the chain's node out of reach, and anything unexpected (500, logged)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from chainstream.codes import Code
from chainstream.errors import ChainStreamError, RecoverableError
from chainstream.relay.outage import UNREACHABLE, is_chain_unreachable
from chainstream.store.errors import RETRY_AFTER as DATABASE_RETRY_AFTER
from chainstream.store.errors import UNAVAILABLE_ERRORS, database_unavailable
from chainstream.verify import Rejection

log = logging.getLogger("chainstream.relay")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

#: the status of a `Rejection` (a request the acceptance rules, caps, close or read checks refuse) by its code;
#: any other is 422. Other `RecoverableError`s are 400, unrecoverable errors 503 (docs/API.md, Error codes).
REJECTION_STATUS: dict[str, int] = {
    Code.READ_TOKEN_REQUIRED: 401,
    Code.READ_TOKEN_INVALID: 401,
    Code.READ_TOKEN_EXPIRED: 401,
    Code.INSUFFICIENT_DEPOSIT: 402,
    Code.DAILY_CAP_EXCEEDED: 402,
    Code.SESSION_CAP_EXCEEDED: 402,
    Code.INSUFFICIENT_ALLOWANCE: 402,
    Code.UNAUTHORIZED_SIGNER: 403,
    Code.WRONG_SUBMITTER: 403,
    Code.SESSION_KEY_EXPIRED: 403,
    Code.WRONG_RELAY: 403,
    Code.CAPS_NEED_PAYER: 403,
    Code.READ_FORBIDDEN: 403,
    Code.UNKNOWN_CHANNEL: 404,
    Code.UNKNOWN_TRACK: 404,
    Code.NO_PROFILE: 404,
    Code.CHANNEL_NOT_OPEN: 409,
    Code.CHANNEL_EXISTS: 409,
    Code.AUTHORIZATION_USED: 409,
    Code.CHANNEL_UNCONFIRMED: 409,
    Code.CONFLICT: 409,
    Code.STALE_VOUCHER: 409,
    Code.SEQ_GAP: 409,
    Code.VOUCHER_MISMATCH: 409,
    Code.STALE_CAPS: 409,
    Code.CLOSE_STATE_MISMATCH: 409,
    Code.STALE_PROFILE: 409,
}


def rejection_status(exc: Rejection) -> int:
    """The HTTP status a refusal of the core is answered with."""
    return REJECTION_STATUS.get(exc.code, 422)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may quote the request, and a string from a request can hold a lone
    surrogate (valid JSON, "\\ud800") that no UTF-8 encoder accepts."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_body(code: str, message: str, details: dict[str, str] | None = None) -> dict[str, Any]:
    """The `error` member of every error answer: code, message and the numbers behind it (`{}` if none)."""
    return {"code": code, "message": message, "details": details or {}}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    error_details: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An error in the relay's format; `error_details` is the error's `details`, `extra` adds top-level members
    (the validation `details` list, `state`)."""
    return AsciiJSONResponse(
        {"error": error_body(code, message, error_details), **extra}, status_code=status, headers=headers
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
    return error_response(rejection_status(exc), exc.code, str(exc), error_details=exc.details)


async def recoverable_handler(_: Request, exc: RecoverableError) -> JSONResponse:
    return error_response(400, exc.code, str(exc), error_details=exc.details)


def retry_headers(code: str) -> dict[str, str] | None:
    """Retry-After for the 503s a client should wait out."""
    return {"Retry-After": str(DATABASE_RETRY_AFTER)} if code == Code.DATABASE_UNAVAILABLE else None


async def unrecoverable_handler(_: Request, exc: ChainStreamError) -> JSONResponse:
    log.error("internal error: %s", exc)
    return error_response(503, exc.code, str(exc), headers=retry_headers(exc.code), error_details=exc.details)


async def database_handler(_: Request, exc: Exception) -> JSONResponse:
    """A store write the database refused (full, read-only, I/O error) outside a payment's commit."""
    error = database_unavailable("the relay could not write its database", exc)
    log.error("%s", error)
    return error_response(503, error.code, str(error), headers=retry_headers(error.code))


async def chain_unreachable_handler(request: Request, exc: Exception) -> JSONResponse:
    """The chain's node did not answer: 503 with Retry-After; logged once per outage (relay/outage.py).
    Registered per exception class, not only under `Exception`: Starlette re-raises what its `Exception`
    handler answered, and the server then logs a traceback per request and drops the connection."""
    status = request.app.state.relay.chain_status
    status.failed(exc)
    return error_response(
        503,
        Code.CHAIN_UNAVAILABLE,
        "the relay cannot reach its chain's node; retry later",
        headers={"Retry-After": str(status.retry_after())},
    )


async def http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own refusals (no such path, wrong method) in the relay's error format."""
    if exc.status_code == 404:
        return error_response(404, Code.NOT_FOUND, "no such path")
    if exc.status_code == 405:
        allow = allowed_methods(request.app, request.scope)
        return error_response(
            405, Code.METHOD_NOT_ALLOWED, f"this path takes {allow}, not {request.method}", headers={"Allow": allow}
        )
    return error_response(exc.status_code, Code.REQUEST_REFUSED, str(exc.detail), headers=exc.headers)


async def unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: the chain's node unreachable (503, retry later), or a bug (500, logged)."""
    if is_chain_unreachable(exc):  # raised from a node error
        return await chain_unreachable_handler(request, exc)
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, Code.INTERNAL_ERROR, f"unexpected {type(exc).__name__}; the relay's log has the details")


async def validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = validation_details(exc.errors()) or [{"loc": [], "msg": "invalid request", "type": ""}]
    first = details[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return error_response(
        422, Code.INVALID_REQUEST, f"{where}: {first['msg']}" if where else first["msg"], details=details
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception in the relay's error format."""
    # Starlette types every handler as taking `Exception`, not the class it is registered for (a stub gap: a
    # handler of a subclass is only ever called with that subclass), hence the ignores.
    app.add_exception_handler(Rejection, rejection_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RecoverableError, recoverable_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ChainStreamError, unrecoverable_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_handler)  # type: ignore[arg-type]
    for driver_error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(driver_error, database_handler)
    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, chain_unreachable_handler)
    app.add_exception_handler(Exception, unexpected_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)  # type: ignore[arg-type]
