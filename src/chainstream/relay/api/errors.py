"""The relay's error format, `{"error": {"code", "message", "details"}}` (plus a top-level `details` list for
`invalid_request` and `state` where documented), the HTTP status of each refusal of the core (`REJECTION_STATUS`),
and the one mapping of exceptions to the error vocabulary (`failure_of`): a refusal of the core or of a limit,
the database or the chain's node out of reach (503, retry later), and anything unexpected (500, logged). The
exception handlers answer a request with it, the batch and stream payment routes each item with it; the
framework's own refusals (no such path, wrong method, validation) have their own handlers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from chainstream.codes import Code
from chainstream.errors import ChainStreamError, RecoverableError
from chainstream.relay.limits import Refusal
from chainstream.relay.outage import UNREACHABLE, ChainStatus, is_chain_unreachable
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


@dataclass(frozen=True)
class Failure:
    """An exception as the relay answers it: status, code, message, the numbers behind it, and for the 503s a
    client should wait out, after how many seconds to retry."""

    status: int
    code: str
    message: str
    details: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = None

    @classmethod
    def refused(cls, refusal: Refusal) -> Failure:
        """A refusal by one of the request limits (relay/limits.py)."""
        return cls(refusal.status, refusal.code, str(refusal))

    def response(self) -> JSONResponse:
        """As the answer to a request (Retry-After as a header)."""
        headers = None if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return error_response(self.status, self.code, self.message, headers, error_details=self.details)

    def item(self) -> dict[str, Any]:
        """As the error of a batch item or stream message: with the status the request would have had, and
        `retryAfter` in place of the header."""
        item = {**error_body(self.code, self.message, self.details), "status": self.status}
        if self.retry_after is not None:
            item["retryAfter"] = self.retry_after
        return item


def failure_of(exc: Exception, chain_status: Callable[[], ChainStatus]) -> Failure:
    """How the relay answers `exc`, most specific first: a refusal (of the core by its code's status, else 400),
    an error of ours (503, logged: nothing was stored), the database refusing a write, the chain's node out of
    reach (told to `chain_status()`, which logs it once per outage), anything else (500, logged)."""
    if isinstance(exc, Rejection):
        return Failure(rejection_status(exc), exc.code, str(exc), exc.details)
    if isinstance(exc, RecoverableError):
        return Failure(400, exc.code, str(exc), exc.details)
    if isinstance(exc, ChainStreamError):
        log.error("internal error: %s", exc)
        return Failure(503, exc.code, str(exc), exc.details, retry_after(exc.code))
    if isinstance(exc, Refusal):
        return Failure.refused(exc)
    if isinstance(exc, UNAVAILABLE_ERRORS):  # a store write outside a payment's commit (a channel's first load)
        error = database_unavailable("the relay could not write its database", exc)
        log.error("%s", error)
        return Failure(503, error.code, str(error), retry_after=retry_after(error.code))
    if is_chain_unreachable(exc):  # the node itself, or an error raised from it
        status = chain_status()
        status.failed(exc)
        message = "the relay cannot reach its chain's node; retry later"
        return Failure(503, code=Code.CHAIN_UNAVAILABLE, message=message, retry_after=status.retry_after())
    log.exception("unexpected error", exc_info=exc)
    unexpected = f"unexpected {type(exc).__name__}; the relay's log has the details"
    return Failure(500, code=Code.INTERNAL_ERROR, message=unexpected)


def retry_after(code: str) -> int | None:
    """Seconds to wait before retrying, for the 503s a client should wait out (the database away)."""
    return DATABASE_RETRY_AFTER if code == Code.DATABASE_UNAVAILABLE else None


async def failure_handler(request: Request, exc: Exception) -> JSONResponse:
    """Any exception a route raised, answered through `failure_of`."""
    return failure_of(exc, lambda: request.app.state.relay.chain_status).response()


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


async def validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = validation_details(exc.errors()) or [{"loc": [], "msg": "invalid request", "type": ""}]
    first = details[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return error_response(
        422, Code.INVALID_REQUEST, f"{where}: {first['msg']}" if where else first["msg"], details=details
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception in the relay's error format."""
    # Registered per exception class, not only under `Exception`: Starlette re-raises what its `Exception` handler
    # answered, and the server then logs a traceback per request and drops the connection (the node out of
    # reach, the database refusing writes are answered, not faults).
    for answered in (Rejection, RecoverableError, ChainStreamError, *UNAVAILABLE_ERRORS, *UNREACHABLE, Exception):
        app.add_exception_handler(answered, failure_handler)
    # Starlette types every handler as taking `Exception`, not the class it is registered for (a stub gap: a
    # handler of a subclass is only ever called with that subclass), hence the ignores.
    app.add_exception_handler(StarletteHTTPException, http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_handler)  # type: ignore[arg-type]
