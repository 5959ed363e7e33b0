"""GET /api/v1/events: Server-Sent Events of payments and catalog changes, filtered by what the reader may see."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from chainstream.protocol.types import to_bytes32
from chainstream.relay.api.deps import ReadsDep, ServiceDep
from chainstream.relay.openapi import responses
from chainstream.relay.read_models import PUBLIC_TOPIC

router = APIRouter(prefix="/api/v1")


@router.get("/events", responses=responses("events"))
async def events(
    request: Request, s: ServiceDep, reads: ReadsDep, channel: str | None = None, payee: str | None = None
) -> StreamingResponse:
    """Server-Sent Events: payments and catalog changes as they happen. Filtered by channel (the payer's read
    token) or payee (the payee's), in the `readToken` query parameter since EventSource sends no headers; the
    unfiltered stream is public and shows only what kind of charge hit which track, when."""
    topics = {"catalog"}
    if channel:
        cid = to_bytes32(channel, "channel")
        await reads.channel(request, cid)
        topics.add("channel:0x" + cid.hex())
    if payee:
        topics.add("payee:" + reads.artist(request, payee))
    if not channel and not payee:
        topics.add(PUBLIC_TOPIC)
    # a private stream ends with its token: nothing is sent past notAfter (the client reconnects with a new one)
    ends_at = reads.token(request).not_after + s.settings.read_token_skew if channel or payee else None

    async def stream() -> AsyncIterator[str]:
        yield ": connected\n\n"
        async for event in s.bus.subscribe(topics):
            if await request.is_disconnected():
                break
            if ends_at is not None and s.clock() > ends_at and event["type"] == "payment":
                break
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
