"""GET /api/v1/artists/{address}/earnings: what a payee earned, per token and track (the artist's read token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from chainstream.relay.api.deps import ReadsDep, ServiceDep
from chainstream.relay.api.models import EarningsReply
from chainstream.relay.openapi import responses

router = APIRouter(prefix="/api/v1")


@router.get(
    "/artists/{address}/earnings",
    response_model=EarningsReply,
    responses={**responses("earnings"), 200: {"content": {"text/csv": {}}, "description": "JSON, or CSV (format=csv)"}},
)
async def earnings(
    address: str,
    request: Request,
    s: ServiceDep,
    reads: ReadsDep,
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Any:
    """The artist's earnings (the artist's own read token)."""
    address = reads.artist(request, address)
    if format == "json":
        return s.earnings(address)
    return PlainTextResponse(
        s.earnings_csv(address),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="earnings-{address}.csv"'},
    )
