"""Spending caps, pure: the EIP-712 message a payer or its session key signs to set them, and the rule that only
the payer may loosen them (RelayService.set_caps applies them)."""

from __future__ import annotations

from typing import Any

from chainstream.protocol import Domain
from chainstream.protocol.eip712 import caps_struct_hash, typed_data

__all__ = ["caps_digest", "caps_typed_data", "loosens"]


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
