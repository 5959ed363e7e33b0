"""A channel's state, history, spending caps and cooperative close; the channels of a listener.

Reads need the payer's read token (relay/read_auth.py); caps and close are signed by the payer or its session key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from chainstream.codes import Code
from chainstream.protocol import Kind, Signature
from chainstream.protocol.types import to_bytes32
from chainstream.relay.api.deps import ReadsDep, ServiceDep
from chainstream.relay.api.errors import error_response, rejection_status
from chainstream.relay.api.models import (
    ChannelSummary,
    CloseReply,
    History,
    ListenerChannels,
    OnChainView,
    TypedDataDoc,
)
from chainstream.relay.caps import caps_typed_data
from chainstream.relay.openapi import responses
from chainstream.relay.read_auth import on_chain_view
from chainstream.relay.read_models import voucher_json
from chainstream.relay.schemas import CapsIn, CloseIn
from chainstream.relay.service import RelayService
from chainstream.store import PaymentRecord
from chainstream.verify import Rejection

router = APIRouter(prefix="/api/v1")


@router.get("/channels/{channel_id}", response_model=ChannelSummary, responses=responses("channel"))
async def channel(channel_id: str, request: Request, s: ServiceDep, reads: ReadsDep) -> ChannelSummary:
    """The channel's state (payer's read token)."""
    return s.channel_summary(await reads.channel(request, to_bytes32(channel_id, "channelId")))


@router.get("/channels/{channel_id}/history", response_model=History, responses=responses("history"))
async def history(
    channel_id: str,
    request: Request,
    s: ServiceDep,
    reads: ReadsDep,
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, ge=0, lt=2**63),
) -> dict[str, Any]:
    """The channel's payments, newest first (payer's read token)."""
    cid = to_bytes32(channel_id, "channelId")
    await reads.channel(request, cid)
    items = [_history_item(s, p) for p in s.store.history(cid, limit=limit, before_seq=before)]
    return {"channelId": channel_id, "items": items, "delivered": s.media.delivery_summary(cid)}


def _history_item(s: RelayService, p: PaymentRecord) -> dict[str, Any]:
    entry = s.catalog.entries.get(p.target)
    return {
        "seq": p.seq,
        "kind": Kind(p.kind).wire,
        "target": "0x" + p.target.hex(),
        "title": entry.title if entry else None,
        "units": p.units,
        "amount": str(p.amount),
        "total": str(p.voucher.total),
        "memo": p.memo,
        "payments": {k: str(v) for k, v in p.payments.items()},
        "at": p.accepted_at,
        "digest": "0x" + p.digest.hex(),
    }


@router.get("/channels/{channel_id}/caps/typed-data", response_model=TypedDataDoc, responses=responses("caps_doc"))
async def caps_doc(
    channel_id: str,
    s: ServiceDep,
    dailyCap: int = Query(0, ge=0, lt=2**96),
    sessionCap: int = Query(0, ge=0, lt=2**96),
    issuedAt: int | None = Query(None, ge=0, lt=2**63),
) -> dict[str, Any]:
    """The EIP-712 document a wallet or session key signs to set spending caps."""
    cid = to_bytes32(channel_id, "channelId")
    return caps_typed_data(s.domain, cid, dailyCap, sessionCap, issuedAt or int(s.clock()))


@router.put("/channels/{channel_id}/caps", response_model=ChannelSummary, responses=responses("caps"))
async def caps(channel_id: str, body: CapsIn, s: ServiceDep) -> ChannelSummary:
    rt = await s.caps.set(
        to_bytes32(channel_id, "channelId"),
        int(body.dailyCap),
        int(body.sessionCap),
        body.issuedAt,
        Signature.from_hex(body.signature),
    )
    return s.channel_summary(rt)


@router.post("/channels/{channel_id}/close", response_model=CloseReply, responses=responses("close"))
async def close(channel_id: str, body: CloseIn, s: ServiceDep) -> Any:
    """The relay's consent to a cooperative close at the latest voucher (no payments are accepted after),
    asked for by the payer or its session key over that voucher."""
    cid = to_bytes32(channel_id, "channelId")
    try:
        consent = await s.closes.cosign(
            cid, to_bytes32(body.voucherDigest, "voucherDigest"), Signature.from_hex(body.signature)
        )
    except Rejection as exc:
        if exc.code != Code.CLOSE_STATE_MISMATCH:
            raise
        return error_response(
            rejection_status(exc),
            exc.code,
            str(exc),
            error_details=exc.details,
            state=s.channel_summary(await s.cache.runtime(cid)).model_dump(),
        )
    return CloseReply(
        channelId=channel_id,
        voucher=None if consent.latest is None else voucher_json(consent.latest.voucher, consent.latest.signature),
        prevAmounts=[str(a) for a in consent.prev_amounts],
        relaySignature=consent.relay_signature.to_hex(),
    )


@router.get("/listeners/{address}/channels", response_model=ListenerChannels, responses=responses("listener_channels"))
async def listener_channels(address: str, request: Request, s: ServiceDep, reads: ReadsDep) -> ListenerChannels:
    """The listener's channels on this relay (its all-channels read token)."""
    out: list[ChannelSummary | OnChainView] = []
    for record, full in reads.listener(request, address):
        out.append(s.channel_summary(await s.cache.current(record.channel_id)) if full else on_chain_view(s, record))
    return ListenerChannels(channels=out)
