"""The artist's SDK: publish tracks with prices and splits, follow earnings, claim on-chain."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from web3 import Web3

from chainstream.chain.contracts import ChannelsClient, RegistryClient, TrackInfo
from chainstream.chain.deploy import Deployment
from chainstream.chain.transactions import TxSender
from chainstream.errors import ProtocolError
from chainstream.media.upload import upload_digest
from chainstream.pricing import Split, Terms
from chainstream.protocol import Domain, PrivateKey
from chainstream.protocol.hashing import keccak
from chainstream.protocol.profile import ArtistProfile, check_name
from chainstream.protocol.types import ZERO_ADDRESS, Address
from chainstream.sdk import gasless as _gasless
from chainstream.sdk.client import ReadIdentity, RelayClient


class Artist:
    def __init__(self, key: PrivateKey, *, w3: Web3, deployment: Deployment, relay: RelayClient | None = None) -> None:
        self.key = key
        self.address: Address = key.address
        self.tx = TxSender(w3, key)
        self.registry = RegistryClient(w3, deployment.registry)
        self.channels = ChannelsClient(w3, deployment.channels)
        self.relay = relay
        if relay is not None:  # earnings are read with this key's read tokens
            relay.add_reader(lambda: [ReadIdentity(self.key, self.address)])
            relay.pin_domain(self.channels.domain)

    def register_track(
        self, track_id: bytes, title: str, terms: Terms, split: Split, *, token: str = ZERO_ADDRESS
    ) -> None:
        self.registry.register_track(self.tx, track_id, title, token, terms, split)

    def set_terms(self, track_id: bytes, terms: Terms, *, token: str = ZERO_ADDRESS) -> None:
        """New prices apply to plays priced from now on."""
        self.registry.set_terms(self.tx, track_id, token, terms)

    def set_split(self, track_id: bytes, split: Split) -> None:
        """A new split version; plays already signed keep paying the old one."""
        self.registry.set_split(self.tx, track_id, split)

    def track(self, track_id: bytes) -> TrackInfo:
        return self.registry.get_track(track_id)

    def claimable(self, token: str = ZERO_ADDRESS) -> int:
        return self.channels.claimable(self.address, token)

    def claim(self, token: str = ZERO_ADDRESS, to: str | None = None) -> int:
        """Withdraw everything settled to this artist in `token`; returns the amount."""
        amount = self.claimable(token)
        if amount == 0:
            return 0
        self.channels.claim(self.tx, token, to)
        return amount

    def schedule_payouts(
        self,
        token: str,
        *,
        threshold: int = 0,
        period: int = 0,
        max_fee: int | None = None,
        recipient: str = ZERO_ADDRESS,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Opt in (or out, enabled False) to payouts of `token` by signature alone: the relay submits it and then
        pushes each due balance (≥ threshold, once per period) to this artist or `recipient`, keeping at most
        `max_fee` (default: the relay's quoted payout fee) per payout. Pull claims keep working."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        return _gasless.schedule_payouts(
            self.key,
            self.channels,
            self.relay,
            token,
            threshold=threshold,
            period=period,
            max_fee=max_fee,
            recipient=recipient,
            enabled=enabled,
        )

    def payouts(self) -> dict[str, Any]:
        """Per token: the payout schedule, the next payout, and every payout with its transaction (from the relay,
        with this artist's read token)."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        payouts: dict[str, Any] = self.relay.get(f"/artists/{self.address}/payouts")
        return payouts

    def earnings(self) -> dict[str, Any]:
        """Per token and per track: plays, seconds, tips, and pending / settled / claimed (from the relay)."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        earnings: dict[str, Any] = self.relay.get(f"/artists/{self.address}/earnings")
        return earnings

    def set_name(self, name: str) -> dict[str, Any]:
        """Sign and publish this artist's profile: the name players show for its address (normalised to Unicode
        NFC first; ProtocolError bad_name if it is not 1..64 printable characters). Dated by the relay's clock, and
        after the profile the relay holds, so a second change within the same second still replaces the first."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        return set_artist_name(self.relay, self.key, name, self.channels.domain)

    def upload(self, audio: str | Path | bytes, track_id: bytes | None = None) -> dict[str, Any]:
        """Publish a track's audio on the relay (the file whose keccak256 is the track id), signed by this
        artist (the track's owner). Returns the relay's manifest: segments, duration, status."""
        if self.relay is None:
            raise ProtocolError("no relay", code="no_relay")
        return upload_audio(self.relay, self.key, audio, track_id)


def set_artist_name(relay: RelayClient, key: PrivateKey, name: str, domain: Domain | None = None) -> dict[str, Any]:
    """PUT /artists/{address}/profile: `name` (NFC) signed by `key` in `domain` (default: the relay client's);
    returns the relay's answer."""
    name = check_name(unicodedata.normalize("NFC", name))
    domain = domain or relay.domain()
    current = relay.artist_profile(key.address)
    issued_at = max(int(relay.now()), current.profile.issued_at + 1 if current else 0)
    signed = ArtistProfile(key.address, name, issued_at).sign(domain, key)
    reply: dict[str, Any] = relay.put(
        f"/artists/{key.address}/profile",
        {"name": name, "issuedAt": issued_at, "signature": signed.signature.to_hex()},
    )
    return reply


def upload_audio(
    relay: RelayClient, key: PrivateKey, audio: str | Path | bytes, track_id: bytes | None = None
) -> dict[str, Any]:
    """PUT /tracks/{id}/media: the file (streamed from disk) with `key`'s upload signature (docs/API.md)."""
    if isinstance(audio, bytes):
        expected = keccak(audio)
        body: Any = audio
    else:
        path = Path(audio)
        expected = file_keccak(path)
        body = _chunks(path)
    track_id = track_id or expected
    if track_id != expected:
        raise ProtocolError(
            f"the file's keccak256 is 0x{expected.hex()}, not the track id 0x{track_id.hex()}",
            code="content_mismatch",
        )
    info = relay.info()
    signature = key.sign(upload_digest(int(info["chainId"]), info["relay"], track_id))
    manifest: dict[str, Any] = relay.upload(
        f"/tracks/0x{track_id.hex()}/media",
        body,
        {"X-ChainStream-Signature": signature.to_hex(), "Content-Type": "application/octet-stream"},
    )
    return manifest


def file_keccak(path: Path) -> bytes:
    """keccak256 of a file, read in chunks (the track id of its audio)."""
    from sha3 import keccak_256

    digest = keccak_256()
    for chunk in _chunks(path):
        digest.update(chunk)
    return bytes(digest.digest())


def _chunks(path: Path, size: int = 256 * 1024) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk
