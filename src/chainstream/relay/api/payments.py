"""Payments: one (POST /channels/{id}/payments), many (POST /payments/batch), or a stream (WS /payments/stream).

Each payment is verified, stored durably and only then acknowledged; a refusal the client can resynchronise
from (RESYNC_CODES) carries the channel's state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from chainstream.codes import Code
from chainstream.errors import ChainStreamError, RecoverableError
from chainstream.relay.api.deps import RelayDep, ServiceDep, relay_of
from chainstream.relay.api.errors import error_body, error_response, rejection_status
from chainstream.relay.api.models import BatchReply, PaymentReply
from chainstream.relay.limits import Refusal, check_message, describe
from chainstream.relay.openapi import responses
from chainstream.relay.outage import is_chain_unreachable, unavailable_item
from chainstream.relay.process import Relay
from chainstream.relay.read_auth import resync_state
from chainstream.relay.schemas import BatchIn, PaymentIn, StreamedPaymentIn, to_payment
from chainstream.relay.service import PaymentAck
from chainstream.store.errors import RETRY_AFTER as DATABASE_RETRY_AFTER
from chainstream.store.errors import UNAVAILABLE_ERRORS, database_unavailable
from chainstream.verify import Rejection

log = logging.getLogger("chainstream.relay")
router = APIRouter(prefix="/api/v1")

#: refusals that mean the client's view of the channel drifted: answered with the channel's state to resync from
RESYNC_CODES = frozenset({Code.VOUCHER_MISMATCH, Code.STALE_VOUCHER, Code.SEQ_GAP})

#: the answer to a binary WebSocket frame (payments are JSON text frames)
BINARY_FRAME = Refusal(400, Code.BINARY_FRAME, "send each payment as a JSON text frame; binary frames are not read")

#: messages a WebSocket payment stream may have in flight (unanswered) before the relay stops reading from it
STREAM_WINDOW = 4_096


def ack_json(ack: PaymentAck) -> dict[str, Any]:
    """A payment's acknowledgement as the API shows it (amounts as decimal strings)."""
    return {
        "status": ack.status,
        "channelId": "0x" + ack.channel_id.hex(),
        "seq": ack.seq,
        "total": str(ack.total),
        "amount": str(ack.amount),
        "digest": "0x" + ack.digest.hex(),
        "remaining": str(ack.remaining),
        "spentToday": str(ack.spent_today),
        "dailyCap": None if ack.daily_cap is None else str(ack.daily_cap),
        **({"grant": ack.grant} if ack.grant is not None else {}),
    }


@router.post(
    "/channels/{channel_id}/payments",
    response_model=PaymentReply,
    response_model_exclude_unset=True,
    responses=responses("pay"),
)
async def pay(channel_id: str, body: PaymentIn, s: ServiceDep) -> Any:
    payment = to_payment(channel_id, body)
    try:
        ack = await s.submit(payment)
    except Rejection as exc:
        extra: dict[str, Any] = {}
        if exc.code in RESYNC_CODES and (state := await resync_state(s, payment)) is not None:
            extra["state"] = state
        return error_response(rejection_status(exc), exc.code, str(exc), error_details=exc.details, **extra)
    return ack_json(ack)


async def submit_one(relay: Relay, body: StreamedPaymentIn) -> dict[str, Any]:
    """One batch item or stream message: its acknowledgement, or its error with the status the single-payment
    endpoint would answer (and the channel's state where that one adds it); never an exception for the
    outages a client should wait out (the node, the database: this item only, with `retryAfter`)."""
    s = relay.service
    try:
        payment = to_payment(body.channelId, body)
        ack = await s.submit(payment)
        return {"id": body.id, "ok": True, **ack_json(ack)}
    except Rejection as exc:
        out: dict[str, Any] = {
            "id": body.id,
            "ok": False,
            "error": {**error_body(exc.code, str(exc), exc.details), "status": rejection_status(exc)},
        }
        if exc.code in RESYNC_CODES and (state := await resync_state(s, payment)) is not None:
            out["state"] = state
        return out
    except RecoverableError as exc:
        return {"id": body.id, "ok": False, "error": {**error_body(exc.code, str(exc), exc.details), "status": 400}}
    except ChainStreamError as exc:  # not stored (a failed commit): this item only, the client may resend
        log.error("payment not stored: %s", exc)
        error: dict[str, Any] = {**error_body(exc.code, str(exc), exc.details), "status": 503}
        if exc.code == Code.DATABASE_UNAVAILABLE:
            error["retryAfter"] = DATABASE_RETRY_AFTER
        return {"id": body.id, "ok": False, "error": error}
    except UNAVAILABLE_ERRORS as exc:  # another store write (a channel's first load) the database refused
        failure = database_unavailable("the relay could not write its database", exc)
        log.error("payment not stored: %s", failure)
        item = {**error_body(failure.code, str(failure)), "status": 503, "retryAfter": DATABASE_RETRY_AFTER}
        return {"id": body.id, "ok": False, "error": item}
    except Exception as exc:
        if not is_chain_unreachable(exc):
            raise
        relay.chain_status.failed(exc)  # needed the node (a channel not loaded yet): retry later
        return {"id": body.id, "ok": False, "error": {**unavailable_item(relay.chain_status), "details": {}}}


@router.post(
    "/payments/batch", response_model=BatchReply, response_model_exclude_unset=True, responses=responses("pay_batch")
)
async def pay_batch(body: BatchIn, relay: RelayDep) -> dict[str, Any]:
    """Many payments in one request (any channels); each is verified and acknowledged on its own."""
    results = await asyncio.gather(*(submit_one(relay, p) for p in body.payments))
    return {"results": results}


async def _stream_reply(ws: WebSocket, relay: Relay, text: str, max_bytes: int) -> None:
    """Answer one stream message: a refusal of its size or shape, else its payment's outcome."""
    try:
        check_message(text, max_bytes)
        body = StreamedPaymentIn.model_validate_json(text)
    except Refusal as refusal:
        await ws.send_json({"ok": False, "error": describe(refusal)})
        return
    except ValidationError as exc:
        await ws.send_json(
            {
                "ok": False,
                "error": {**error_body(Code.INVALID_REQUEST, str(exc.errors()[0]["msg"])), "status": 422},
            }
        )
        return
    try:
        reply = await submit_one(relay, body)
    except Exception as exc:  # never silence: a fault is answered too (and logged)
        log.exception("payment stream message failed", exc_info=exc)
        message = f"unexpected {type(exc).__name__}; the relay's log has the details"
        reply = {"id": body.id, "ok": False, "error": {**error_body(Code.INTERNAL_ERROR, message), "status": 500}}
    await ws.send_json(reply)


@router.websocket("/payments/stream")
async def pay_stream(ws: WebSocket) -> None:
    """One JSON payment per message (with channelId and an optional id); one reply per payment, in order
    of durability. Replies carry the id so a client can pipeline."""
    await ws.accept()
    relay = relay_of(ws)
    max_bytes: int = ws.app.state.settings.max_message_bytes
    pending: set[asyncio.Task[None]] = set()
    # At most this many messages in flight per connection: past it the relay stops reading (TCP back-pressure
    # on the client) instead of piling up tasks and replies for a client that does not read them.
    window = asyncio.Semaphore(STREAM_WINDOW)

    def done(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        window.release()

    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            text = message.get("text")
            if text is None:  # a binary frame: answered, and the stream goes on
                await ws.send_json({"ok": False, "error": describe(BINARY_FRAME)})
                continue
            await window.acquire()
            task = asyncio.create_task(_stream_reply(ws, relay, text, max_bytes))
            pending.add(task)
            task.add_done_callback(done)
    except WebSocketDisconnect:
        for task in pending:
            task.cancel()
