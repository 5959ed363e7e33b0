"""Every status each relay endpoint can answer, for its OpenAPI schema: one table, read by the routes' `responses=`.

The error body is one pydantic model (`ErrorResponse`, the relay's error format); the codes behind each status
are named in the descriptions and explained in docs/API.md's error table. tests/integration/test_openapi_fuzz.py
fuzzes the relay against this schema: no 5xx, and every answer's status, content type and body as documented.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chainstream.relay.limits import MAX_JSON_DEPTH


class ErrorDetail(BaseModel):
    code: str = Field(description="stable and machine-readable: docs/API.md, Error codes")
    message: str = Field(description="for people; may change")
    details: dict[str, str] = Field(
        description="the numbers behind the refusal, named (integers as decimal strings; docs/API.md lists them "
        "per code); {} when there are none"
    )


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: body, query or path, then the field")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The relay's error format. `error.details` is always present; the top-level `details` list comes with
    `invalid_request`, `state` (the channel summary) with the refusals a client resynchronises from."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail
    details: list[ValidationIssue] | None = None
    state: dict[str, Any] | None = None


#: statuses every route can answer: the request's shape, the limits (relay/limits.py), the relay's own state
COMMON: dict[int, str] = {
    422: "`invalid_request`: a query, path or body value failed validation (`details` says which)",
    500: "`internal_error`: a fault the relay did not expect (logged); retry later",
    503: "`chain_unavailable` (the chain's node is unreachable; `Retry-After`), `database_unavailable` (the "
    "database takes no write: full or read-only; nothing was stored; `Retry-After`), `chainstream_error` or "
    "`configuration`; retry later",
}
#: ... and every route that takes a body
WITH_BODY: dict[int, str] = {
    400: f"`too_deeply_nested`: the JSON nests more than {MAX_JSON_DEPTH} levels",
    408: "`request_timeout`: the body did not arrive in time",
    413: "`body_too_large`: the body is over the relay's limit",
}

BAD_ID = "`bad_bytes32`: the id in the path is not 0x + 64 hex digits"
NO_CHANNEL = "`unknown_channel`: no such channel on the relay's chain"
#: private reads (docs/API.md, read tokens)
READ_401 = "`read_token_required`, `read_token_invalid`, `read_token_expired`: no valid read token of the owner"
READ_403 = "`read_forbidden`: a read token of another account or channel"
READ = {401: READ_401, 403: READ_403}
#: every route that loads a channel the relay may not have seen yet (RelayService.fetch_channel)
CHANNEL = {
    403: "`wrong_relay`: the channel is another relay's",
    404: NO_CHANNEL,
    409: "`channel_unconfirmed`: its opening has fewer than the relay's CONFIRMATIONS blocks",
}
#: ... and a request signed by the payer or its session key (RelayService._authorised_signer)
SIGNED = {403: "`unauthorized_signer`, `session_key_expired`", 422: "`bad_signature`"}


def _merge(*tables: dict[int, str]) -> dict[int, str]:
    out: dict[int, list[str]] = {}
    for table in tables:
        for status, text in table.items():
            out.setdefault(status, []).append(text)
    return {status: "; ".join(texts) for status, texts in out.items()}


#: route name -> status -> what it means there (on top of COMMON, and WITH_BODY for routes with a body)
ROUTES: dict[str, dict[int, str]] = {
    "health": {},
    "health_ready": {
        503: "`not_ready`: the node is unreachable, the watcher lags or the database takes no write "
        "(`reasons` says which; `Retry-After`)"
    },
    "info": {},
    "catalog": {400: "`bad_address`: `token` is not an address"},
    "track": {400: BAD_ID, 404: "`unknown_track`"},
    "pay": {
        400: "`bad_channel_id`, `bad_amount`, `bad_voucher`",
        402: "`insufficient_deposit`, `daily_cap_exceeded`, `session_cap_exceeded`",
        403: "`unauthorized_signer`, `session_key_expired`, `wrong_relay`",
        404: f"{NO_CHANNEL}; `unknown_track`",
        409: "`channel_not_open`, `channel_unconfirmed`, `conflict`; `stale_voucher`, `seq_gap`, `voucher_mismatch`"
        " (with `state`)",
        422: "`bad_signature`, `bad_amount`, `not_offered`, `bad_charge`, `bad_tip`, "
        "`bad_units`, `memo_too_long`, `already_owned`, `price_overflow`, `too_many_payees`",
    },
    "pay_batch": {},  # each item is answered on its own, with its status inside
    "channel": _merge({400: BAD_ID}, CHANNEL, READ),
    "history": _merge({400: BAD_ID}, CHANNEL, READ),
    "caps_doc": {400: BAD_ID},
    "caps": _merge(
        {400: BAD_ID, 403: "`caps_need_payer`", 409: "`stale_caps`", 422: "`caps_from_future`"}, CHANNEL, SIGNED
    ),
    "close": _merge({400: BAD_ID, 409: "`channel_not_open`; `close_state_mismatch` (with `state`)"}, CHANNEL, SIGNED),
    "listener_channels": {400: "`bad_address`", **READ},
    "earnings": {400: "`bad_address`", **READ},
    "profile": {400: "`bad_address`", 404: "`no_profile`: the artist has signed none"},
    "set_profile": {
        400: "`bad_address`",
        403: "`unauthorized_signer`: not signed by the address",
        409: "`stale_profile`: not newer than the stored profile",
        422: "`bad_name`, `bad_signature`, `profile_from_future`",
    },
    "events": _merge({400: "`bad_bytes32` (channel), `bad_address` (payee)"}, CHANNEL, READ),
    # audio (relay/api/media.py; docs/API.md, Audio)
    "upload_media": {
        400: BAD_ID,
        403: "`not_track_owner`",
        404: "`unknown_track`",
        413: "`upload_too_large`, `audio_too_long`",
        415: "`unsupported_media`",
        422: "`content_mismatch`, `transcode_failed`, `bad_signature`",
    },
    "media_manifest": {400: BAD_ID, 404: "`media_not_published`"},
    "media_init": {400: BAD_ID, 404: "`media_not_published`"},
    "media_segment": {
        400: BAD_ID,
        402: "`payment_required`, `grant_expired` (with `payment`: what to pay)",
        403: "`invalid_grant`, `grant_mismatch`",
        404: "`media_not_published`, `no_such_segment`",
    },
    "media_original": {
        400: BAD_ID,
        402: "`payment_required`, `grant_expired` (with `payment`: what to pay)",
        403: "`invalid_grant`, `grant_mismatch`",
        404: "`media_not_published`",
    },
    "deliveries": _merge({400: BAD_ID}, CHANNEL, READ),
}
BODY_ROUTES = frozenset({"pay", "pay_batch", "caps", "close"})


def responses(route: str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its refusals, each with the error body's schema."""
    statuses: dict[int, list[str]] = {}
    for table in (COMMON, WITH_BODY if route in BODY_ROUTES else {}, ROUTES[route]):
        for status, meaning in table.items():
            if meaning not in statuses.setdefault(status, []):
                statuses[status].append(meaning)
    return {status: {"model": ErrorResponse, "description": "; ".join(statuses[status])} for status in sorted(statuses)}
