"""Audio on a real relay for the media tests: publishing the demo catalog's audio, and tracks of a chosen length.

Everything goes through the real path: the artist's SDK uploads (signed by the track's owner), the relay checks
the owner on chain, hashes the body, runs Debian's ffmpeg and publishes atomically.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from chainstream.pricing import Split, Terms
from chainstream.protocol import PrivateKey
from chainstream.protocol.hashing import keccak
from chainstream.protocol.types import ZERO_ADDRESS
from chainstream.sdk import Artist, RelayError
from chainstream.sdk.artist import upload_audio
from chainstream.seed import CATALOG, catalog_audio, synthesize
from tests.integration.relay_fixtures import RelayChain, _RelayBase, wait_until

GRANT = "X-ChainStream-Grant"


def needs_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed: scripts/install_ffmpeg.sh (make setup) installs it")


def owner_key(rc: RelayChain, title: str) -> PrivateKey:
    spec = next(s for s in CATALOG if s.title == title)
    return rc.chain.key(spec.artist)


def publish(rc: RelayChain, relay: _RelayBase, *titles: str) -> dict[str, dict[str, Any]]:
    """Upload demo tracks' audio to `relay` as their owners (idempotent); {title: manifest}."""
    needs_ffmpeg()
    audio = catalog_audio()
    out = {}
    client = relay.client()
    for title in titles:
        track_id, data = audio[title]
        out[title] = upload_audio(client, owner_key(rc, title), data, track_id)
    return out


def audio_track(
    rc: RelayChain,
    relay: _RelayBase,
    *,
    seconds: float,
    terms: Terms,
    artist: str = "artist",
    notes: tuple[float, ...] = (220.0, 330.0),
) -> bytes:
    """Register a new track (a synthesised WAV of `seconds`) owned by `artist` and publish its audio; its id."""
    needs_ffmpeg()
    data = synthesize(notes + (seconds,), seconds)  # the length in the notes: a new file (and id) per length
    track_id = keccak(data)
    key = rc.chain.key(artist)
    owner = Artist(key, w3=rc.w3, deployment=rc.chain.deployment, relay=relay.client())
    owner.register_track(
        track_id, f"test track {seconds:g}s {track_id.hex()[:6]}", terms, Split.solo(key.address), token=ZERO_ADDRESS
    )
    client = relay.client()

    def known() -> bool:
        try:
            return bool(client.get(f"/tracks/0x{track_id.hex()}"))
        except RelayError:
            return False

    wait_until(known, what="the relay's catalog to see the track")
    owner.upload(data)
    return track_id
