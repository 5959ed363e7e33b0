"""An artist's resources: GET /api/v1/artists/{address}/earnings, what a payee earned, per token and track (the
artist's read token); GET/PUT /api/v1/artists/{address}/profile, the name the artist signed (public)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from chainstream.protocol import Signature
from chainstream.protocol.types import to_address
from chainstream.relay.api.deps import ReadsDep, ServiceDep
from chainstream.relay.api.models import ArtistProfileReply, EarningsReply
from chainstream.relay.openapi import responses
from chainstream.relay.profiles import accept_profile, profile_json, stored_profile
from chainstream.relay.schemas import ProfileIn

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
        return s.reports.earnings(address)
    return PlainTextResponse(
        s.reports.earnings_csv(address),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="earnings-{address}.csv"'},
    )


@router.get("/artists/{address}/profile", response_model=ArtistProfileReply, responses=responses("profile"))
async def profile(address: str, s: ServiceDep) -> dict[str, Any]:
    """The newest profile the artist signed, with its signature (verify it: the relay is not trusted with it)."""
    return profile_json(stored_profile(s.store, to_address(address)))


@router.put("/artists/{address}/profile", response_model=ArtistProfileReply, responses=responses("set_profile"))
async def set_profile(address: str, body: ProfileIn, s: ServiceDep) -> dict[str, Any]:
    """Store a profile the artist signed: ArtistProfile(artist, name, issuedAt) under the relay's domain."""
    record = accept_profile(
        s.store,
        s.domain,
        now=int(s.clock()),
        clock_skew=s.settings.caps_clock_skew,
        artist=to_address(address),
        name=body.name,
        issued_at=body.issuedAt,
        signature=Signature.from_hex(body.signature),
    )
    return profile_json(record)
