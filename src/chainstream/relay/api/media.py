"""The relay's audio endpoints: upload (the track's owner), the public manifest, and the paid segments/original.

    PUT  /api/v1/tracks/{trackId}/media            raw audio body; X-ChainStream-Signature: the owner's signature
    GET  /api/v1/tracks/{trackId}/media            the manifest (segments, durations, MSE type): free
    GET  /api/v1/tracks/{trackId}/init             the fMP4 initialisation segment (no audio): free
    GET  /api/v1/tracks/{trackId}/segments/{k}     segment k: X-ChainStream-Grant (or ?grant=), else 402
    GET  /api/v1/tracks/{trackId}/original         the uploaded file, for a download grant, else 402
    GET  /api/v1/channels/{channelId}/deliveries   per track: seconds paid vs seconds of audio served

Refusals are MediaError (a code, an HTTP status, and for 402 the `payment` block); see docs/API.md.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Scope

from chainstream.media.errors import MediaError
from chainstream.protocol.types import to_bytes32
from chainstream.relay.api.deps import ReadsDep, ServiceDep, service_of
from chainstream.relay.api.errors import error_body
from chainstream.relay.api.models import Deliveries, Manifest, Published
from chainstream.relay.media import GRANT_HEADER, Served
from chainstream.relay.openapi import responses

UPLOAD_SIGNATURE_HEADER = "X-ChainStream-Signature"
_UPLOAD_PATH = re.compile(r"^/api/v1/tracks/[^/]+/media$")
#: the 200 of the audio routes: bytes, not JSON
AUDIO_200: dict[int | str, dict[str, Any]] = {200: {"content": {"audio/mp4": {}}, "description": "the segment (fMP4)"}}
ORIGINAL_200: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the uploaded file"}
}


def is_upload(scope: Scope) -> bool:
    """Whether a request is an audio upload (its body is streamed by the route, not read by the limits)."""
    return scope.get("method") == "PUT" and bool(_UPLOAD_PATH.match(scope.get("path", "")))


def _error(exc: MediaError) -> JSONResponse:
    return JSONResponse(
        {"error": error_body(exc.code, str(exc)), **exc.extra},
        status_code=exc.status,
        headers={"Cache-Control": "no-store"},
    )


def _send(served: Served) -> Response:
    # Paid audio must not be cached by shared caches (a proxy would hand it to the next, unpaying, client).
    headers = {"Cache-Control": "private, no-store"}
    if served.chunks is not None:
        headers["Content-Length"] = str(served.size)
        headers["Content-Disposition"] = "attachment"
        return StreamingResponse(served.chunks, media_type=served.media_type, headers=headers)
    return Response(served.body, media_type=served.media_type, headers=headers)


def _track(track_id: str) -> bytes:
    return to_bytes32(track_id, "trackId")  # bad_bytes32 (400) from the app's handler


def _grant(request: Request) -> str | None:
    return request.headers.get(GRANT_HEADER) or request.query_params.get("grant")


router = APIRouter(prefix="/api/v1")


@router.put("/tracks/{track_id}/media", response_model=Published, responses=responses("upload_media"))
async def upload(track_id: str, request: Request, s: ServiceDep) -> Any:
    """Publish a track's audio: the raw file as the body (streamed to disk, never held in memory)."""
    length = request.headers.get("content-length")
    try:
        return await s.media.upload(
            _track(track_id),
            request.headers.get(UPLOAD_SIGNATURE_HEADER),
            request.stream(),
            int(length) if length and length.isdigit() else None,
        )
    except MediaError as exc:
        return _error(exc)


@router.get("/tracks/{track_id}/media", response_model=Manifest, responses=responses("media_manifest"))
async def manifest(track_id: str, s: ServiceDep) -> Any:
    try:
        media, track = s.media, _track(track_id)
        await s.catalog.ensure(track)  # the free preview is the catalog's
        return media.manifest_json(media.manifest(track))
    except MediaError as exc:
        return _error(exc)


@router.get("/tracks/{track_id}/init", responses={**responses("media_init"), **AUDIO_200})
async def init(track_id: str, s: ServiceDep) -> Response:
    try:
        return _send(s.media.init_segment(_track(track_id)))
    except MediaError as exc:
        return _error(exc)


@router.get("/tracks/{track_id}/segments/{index}", responses={**responses("media_segment"), **AUDIO_200})
async def segment(track_id: str, index: int, request: Request) -> Response:
    # The hottest route (a request every segment of every listener): the service is read off the app directly,
    # not through a FastAPI dependency, whose resolution per request cost as much as the grant check itself.
    s = service_of(request)
    try:
        track = _track(track_id)
        await s.catalog.ensure(track)  # the free preview, and the prices in a 402, are the catalog's
        return _send(await s.media.segment(track, index, _grant(request)))
    except MediaError as exc:
        return _error(exc)


@router.get("/tracks/{track_id}/original", responses={**responses("media_original"), **ORIGINAL_200})
async def original(track_id: str, request: Request, s: ServiceDep) -> Response:
    try:
        track = _track(track_id)
        await s.catalog.ensure(track)  # the download's price in a 402 is the catalog's
        return _send(await s.media.original(track, _grant(request)))
    except MediaError as exc:
        return _error(exc)


@router.get("/channels/{channel_id}/deliveries", response_model=Deliveries, responses=responses("deliveries"))
async def deliveries(channel_id: str, request: Request, s: ServiceDep, reads: ReadsDep) -> dict[str, Any]:
    """Per track: seconds paid for (per-second receipts) and seconds of audio served on the channel (the
    payer's read token, like the channel's history)."""
    cid = to_bytes32(channel_id, "channelId")
    await reads.channel(request, cid)
    return {"channelId": "0x" + cid.hex(), "tracks": s.media.delivery_summary(cid)}
