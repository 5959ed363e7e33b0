"""GET /api/v1/catalog and /api/v1/tracks/{trackId}: the registered tracks, their splits and terms."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chainstream.codes import Code
from chainstream.protocol.types import to_address, to_bytes32
from chainstream.relay.api.deps import ServiceDep
from chainstream.relay.api.errors import error_response
from chainstream.relay.api.models import CatalogReply, Track
from chainstream.relay.catalog import CatalogEntry
from chainstream.relay.openapi import responses

#: seconds GET /catalog waits for a relay that just started to finish reading its catalog; after that it lists
#: the tracks read so far (/health/ready says when the catalog is complete)
CATALOG_WAIT = 5.0

router = APIRouter(prefix="/api/v1")


def track_json(entry: CatalogEntry, token: str | None, artist_name: str | None = None) -> dict[str, Any]:
    """A catalog entry as the API shows it: its terms in every token it is offered in (or in `token` only), and
    its owner's signed name if any."""
    terms = {
        t: {
            "perPlay": str(x.per_play),
            "perSecond": str(x.per_second),
            "download": str(x.download),
            "model": x.model,
            "ownAfter": x.own_after,
            "minSeconds": x.min_seconds,
        }
        for t, x in entry.terms.items()
        if x.enabled and (token is None or t == token)
    }
    return {
        "trackId": "0x" + entry.track_id.hex(),
        "title": entry.title,
        "owner": entry.owner,
        "splitVersion": entry.split_version,
        "splitHash": "0x" + entry.split.hash.hex(),
        "split": {
            "recipients": list(entry.split.recipients),
            "bps": list(entry.split.bps),
            "feeRecipient": entry.split.fee_recipient,
            "feeBps": entry.split.fee_bps,
        },
        "terms": terms,
        "registeredAt": entry.registered_at,
        "media": f"/api/v1/tracks/0x{entry.track_id.hex()}/media",
        "artistName": artist_name,
    }


@router.get("/catalog", response_model=CatalogReply, responses=responses("catalog"))
async def catalog(s: ServiceDep, token: str | None = None) -> dict[str, Any]:
    token = to_address(token) if token else None
    await s.catalog.wait_loaded(CATALOG_WAIT)  # a relay just started: the whole catalog, unless it takes long
    entries = sorted(s.catalog.entries.values(), key=lambda e: e.registered_at)
    names = {a: p.name for a, p in s.store.profiles_of([e.owner for e in entries]).items()}
    tracks = [track_json(e, token, names.get(e.owner)) for e in entries]
    return {"tracks": [t for t in tracks if t["terms"]]}


@router.get("/tracks/{track_id}", response_model=Track, responses=responses("track"))
async def track(track_id: str, s: ServiceDep) -> Any:
    track_id_bytes = to_bytes32(track_id, "trackId")
    await s.catalog.ensure(track_id_bytes)  # a track not read yet while the catalog loads
    entry = s.catalog.entries.get(track_id_bytes)
    if entry is None:
        return error_response(404, Code.UNKNOWN_TRACK, f"no track {track_id}")
    profile = s.store.profile(entry.owner)
    return track_json(entry, None, profile.name if profile else None)
