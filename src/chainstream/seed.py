"""The demo catalog: a few artists with collaborators, a label and a platform fee, and real audio made by code.

Audio is synthesised at set-up (nothing binary is committed): each track is a short WAV melody, and its track
id is the keccak256 of the file's bytes, so the id is a content hash anyone can check against what they heard.
The audio reaches a relay like any artist's: uploaded and signed by the track's owner (`publish_catalog_audio`),
and so do the artists' names: each signs its profile (`publish_artist_names`), so the player shows names.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chainstream.chain.contracts import RegistryClient
from chainstream.chain.transactions import TxSender
from chainstream.pricing import Model, Split, Terms
from chainstream.protocol import PrivateKey
from chainstream.protocol.hashing import keccak
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from chainstream.sdk.artist import set_artist_name, upload_audio
from chainstream.sdk.client import RelayClient

SAMPLE_RATE = 22_050
GWEI = 10**9
USD = 10**6  # the mock stablecoin has 6 decimals


@dataclass(frozen=True)
class TrackSpec:
    title: str
    artist: str  # actor name of the owner
    notes: tuple[float, ...]  # melody, in Hz
    seconds: float
    eth: Terms
    usd: Terms
    collaborators: tuple[tuple[str, int], ...] = ()  # (actor, bps) besides the owner
    fee_bps: int = 0


CATALOG: tuple[TrackSpec, ...] = (
    TrackSpec(
        "Morning Modem",
        "ada",
        (261.6, 329.6, 392.0, 523.3),
        8.0,
        eth=Terms(per_play=20_000 * GWEI, per_second=1_000 * GWEI),
        usd=Terms(per_play=2_000, per_second=100),
        collaborators=(("ben", 3_000),),
        fee_bps=500,
    ),
    TrackSpec(
        "Gas Price Blues",
        "ben",
        (196.0, 233.1, 261.6, 311.1, 349.2),
        10.0,
        eth=Terms(per_play=15_000 * GWEI, download=2_000_000 * GWEI),
        usd=Terms(per_play=1_500, download=99 * USD // 100),
        collaborators=(("label", 2_000),),
        fee_bps=500,
    ),
    TrackSpec(
        "Stream to Own",
        "cleo",
        (440.0, 493.9, 554.4, 659.3),
        6.0,
        eth=Terms(per_play=2_000 * GWEI, model=Model.STREAM_TO_OWN, own_after=9),
        usd=Terms(per_play=200, model=Model.STREAM_TO_OWN, own_after=9),
        fee_bps=300,
    ),
    TrackSpec(
        "Per-Second Drift",
        "cleo",
        (174.6, 220.0, 261.6, 220.0),
        12.0,
        eth=Terms(per_second=2_000 * GWEI),
        usd=Terms(per_second=200),
        collaborators=(("ada", 2_500), ("label", 2_500)),
        fee_bps=500,
    ),
)


def synthesize(notes: tuple[float, ...], seconds: float) -> bytes:
    """A mono 16-bit WAV: the notes in turn, each with a soft attack and decay."""
    total = int(SAMPLE_RATE * seconds)
    per_note = total // len(notes)
    frames = bytearray()
    for i in range(total):
        note = notes[min(i // per_note, len(notes) - 1)]
        t = (i % per_note) / SAMPLE_RATE
        envelope = min(1.0, t * 20) * math.exp(-2.5 * t)
        sample = 0.35 * envelope * (math.sin(2 * math.pi * note * t) + 0.3 * math.sin(4 * math.pi * note * t))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, sample)) * 32_000))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def track_audio(spec: TrackSpec) -> tuple[bytes, bytes]:
    """(track id = keccak256 of the WAV, WAV bytes)."""
    data = synthesize(spec.notes, spec.seconds)
    return keccak(data), data


def catalog_audio() -> dict[str, tuple[bytes, bytes]]:
    """{title: (track id, WAV bytes)} of every catalog track."""
    return {spec.title: track_audio(spec) for spec in CATALOG}


def split_for(spec: TrackSpec, address_of: Mapping[str, Address], platform: str) -> Split:
    others = sum(bps for _, bps in spec.collaborators)
    recipients = (address_of[spec.artist], *(address_of[name] for name, _ in spec.collaborators))
    bps = (10_000 - others, *(bps for _, bps in spec.collaborators))
    return Split(recipients, bps, to_address(platform) if spec.fee_bps else ZERO_ADDRESS, spec.fee_bps)


def register_catalog(
    registry: RegistryClient,
    artists: dict[str, PrivateKey],
    platform: str,
    stablecoin: str | None,
) -> dict[str, bytes]:
    """Register every catalog track (ETH terms, plus stablecoin terms if deployed); returns {title: track id}.
    Its audio is published separately, through a relay like any artist's (`publish_catalog_audio`)."""
    ids = {title: track_id for title, (track_id, _) in catalog_audio().items()}
    address_of = {name: key.address for name, key in artists.items()}
    for spec in CATALOG:
        owner = TxSender(registry.w3, artists[spec.artist])
        track_id = ids[spec.title]
        registry.register_track(
            owner, track_id, spec.title, ZERO_ADDRESS, spec.eth, split_for(spec, address_of, platform)
        )
        if stablecoin:
            registry.set_terms(owner, track_id, stablecoin, spec.usd)
    return ids


def publish_catalog_audio(relay: RelayClient, artists: dict[str, PrivateKey]) -> dict[str, dict[str, Any]]:
    """Upload every catalog track's audio to a relay, each signed by its artist (the one path audio enters by);
    returns {title: the relay's manifest}. Idempotent: a track already published is left as it is."""
    out: dict[str, dict[str, Any]] = {}
    for spec in CATALOG:
        _, data = track_audio(spec)
        out[spec.title] = upload_audio(relay, artists[spec.artist], data)
    publish_artist_names(relay, artists)
    return out


#: the demo artists' names, each signed by its artist at start-up
ARTIST_NAMES = {"ada": "Ada Modem", "ben": "Ben & the Baud Rates", "cleo": "Cléo Checksum", "label": "Nonce Records"}


def publish_artist_names(relay: RelayClient, artists: Mapping[str, PrivateKey]) -> None:
    """Each artist signs its profile (ARTIST_NAMES) unless the relay already holds that very name."""
    for who, key in artists.items():
        name = ARTIST_NAMES.get(who)
        if name is None:
            continue
        current = relay.artist_profile(key.address)
        if current is None or current.profile.name != name:
            set_artist_name(relay, key, name)


ARTISTS = ("ada", "ben", "cleo", "label")
