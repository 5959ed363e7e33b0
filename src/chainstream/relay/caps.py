"""Spending caps: the EIP-712 message a payer or its session key signs to set them and the rule that only the
payer may loosen them (pure), and `ChannelCaps`, which sets them on a channel (stored, then in force)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chainstream.codes import Code
from chainstream.protocol import Domain, Signature
from chainstream.protocol.eip712 import caps_struct_hash, typed_data
from chainstream.relay.channel_cache import ChannelCache, ChannelRuntime, authorised_signer
from chainstream.verify import Rejection

__all__ = ["ChannelCaps", "caps_digest", "caps_typed_data", "loosens"]


def loosens(current: int | None, requested: int) -> bool:
    """Whether `requested` (0 = no cap) allows more than `current` (None = no cap)."""
    if current is None:
        return False
    return requested == 0 or requested > current


def caps_digest(domain: Domain, channel_id: bytes, daily_cap: int, session_cap: int, issued_at: int) -> bytes:
    """EIP-712 digest of the listener's spending caps (0 = no cap). Signed by the payer or its session key."""
    return domain.digest(caps_struct_hash(channel_id, daily_cap, session_cap, issued_at))


def caps_typed_data(
    domain: Domain, channel_id: bytes, daily_cap: int, session_cap: int, issued_at: int
) -> dict[str, Any]:
    return typed_data(
        domain,
        "Caps",
        {"channelId": "0x" + channel_id.hex(), "dailyCap": daily_cap, "sessionCap": session_cap, "issuedAt": issued_at},
    )


class ChannelCaps:
    """Sets a channel's spending caps at the request of its payer or session key (PUT /channels/{id}/caps)."""

    def __init__(
        self, *, cache: ChannelCache, caps_clock_skew: int, clock: Callable[[], float], chain_now: Callable[[], float]
    ) -> None:
        self.cache = cache
        self.store = cache.store
        self.domain = cache.domain
        self.caps_clock_skew = caps_clock_skew
        self.clock = clock
        self.chain_now = chain_now

    async def set(
        self, channel_id: bytes, daily_cap: int, session_cap: int, issued_at: int, signature: Signature
    ) -> ChannelRuntime:
        """Put the signed caps (0 = no cap) in force, if newer than the ones in force and, where they loosen a
        cap, signed by the payer itself; returns the channel."""
        ahead = issued_at - int(self.clock())
        if ahead > self.caps_clock_skew:
            # Caps must increase: caps dated far ahead would be the last ones the channel could ever set.
            raise Rejection(
                Code.CAPS_FROM_FUTURE,
                f"issuedAt is {ahead}s ahead of the relay's clock (at most {self.caps_clock_skew}s)",
            )
        rt = await self.cache.current(channel_id)
        digest = caps_digest(self.domain, channel_id, daily_cap, session_cap, issued_at)
        signer = authorised_signer(rt.record, digest, signature, "caps", self.chain_now())
        stale = Rejection(Code.STALE_CAPS, "these caps are older than the ones in force")
        if issued_at <= rt.caps_issued_at:  # first: a replayed message is stale, whatever it says
            raise stale
        if signer != rt.record.payer and loosens(rt.record.daily_cap, daily_cap) | loosens(
            rt.record.session_cap, session_cap
        ):
            # The session cap is the limit on what the session key may spend: the key itself may only tighten.
            raise Rejection(
                Code.CAPS_NEED_PAYER,
                "a session key may only lower caps or set new ones; raising or lifting "
                "a cap takes the payer's own signature",
            )
        # Stored first (conditionally: another instance may have stored newer caps), then in force here.
        if not self.store.set_caps(channel_id, daily_cap or None, session_cap or None, issued_at):
            raise stale
        rt.caps_issued_at = issued_at
        rt.record = replace(
            rt.record, daily_cap=daily_cap or None, session_cap=session_cap or None, caps_issued_at=issued_at
        )
        return rt
