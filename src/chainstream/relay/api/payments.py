"""Payments: one (POST /channels/{id}/payments), many (POST /payments/batch), or a stream (WS /payments/stream).

Each payment is verified, stored durably and only then acknowledged; a refusal the client can resynchronise
from (RESYNC_CODES) carries the channel's state.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from chainstream.codes import Code
from chainstream.relay.api.deps import RelayDep, ServiceDep, relay_of
from chainstream.relay.api.errors import Failure, error_response, failure_of, rejection_status
from chainstream.relay.api.models import BatchReply, PaymentReply
from chainstream.relay.limits import Refusal, check_message
from chainstream.relay.openapi import responses
from chainstream.relay.process import Relay
from chainstream.relay.read_auth import resync_state
from chainstream.relay.schemas import BatchIn, PaymentIn, StreamedPaymentIn, to_payment
from chainstream.relay.service import PaymentAck
from chainstream.verify import Rejection

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
        if exc.code not in RESYNC_CODES or (state := await resync_state(s, payment)) is None:
            raise  # answered by the exception handlers, as every error (api/errors.py `failure_of`)
        return error_response(rejection_status(exc), exc.code, str(exc), error_details=exc.details, state=state)
    return ack_json(ack)


async def submit_one(relay: Relay, body: StreamedPaymentIn) -> dict[str, Any]:
    """One batch item or stream message: its acknowledgement, or its error as `failure_of` maps it (with the
    status the single-payment endpoint would answer, and the channel's state where that one adds it); never an
    exception: an outage a client should wait out (the node, the database) fails this item only, with
    `retryAfter`, and so does a fault (500, logged)."""
    s = relay.service
    payment = None
    try:
        payment = to_payment(body.channelId, body)
        ack = await s.submit(payment)
    except Exception as exc:  # every exception is answered (failure_of logs the unexpected ones)
        out: dict[str, Any] = {"id": body.id, "ok": False, "error": failure_of(exc, lambda: relay.chain_status).item()}
        if payment is not None and isinstance(exc, Rejection) and exc.code in RESYNC_CODES:
            state = await resync_state(s, payment)
            if state is not None:
                out["state"] = state
        return out
    return {"id": body.id, "ok": True, **ack_json(ack)}


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
        await ws.send_json({"ok": False, "error": Failure.refused(refusal).item()})
        return
    except ValidationError as exc:
        invalid = Failure(422, code=Code.INVALID_REQUEST, message=str(exc.errors()[0]["msg"]))
        await ws.send_json({"ok": False, "error": invalid.item()})
        return
    await ws.send_json(await submit_one(relay, body))


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
                await ws.send_json({"ok": False, "error": Failure.refused(BINARY_FRAME).item()})
                continue
            await window.acquire()
            task = asyncio.create_task(_stream_reply(ws, relay, text, max_bytes))
            pending.add(task)
            task.add_done_callback(done)
    except WebSocketDisconnect:
        for task in pending:
            task.cancel()
