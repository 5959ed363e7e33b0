"""Typed ids and amounts used across ChainStream (Raiden-style NewTypes: no runtime cost, checked by mypy)."""

from __future__ import annotations

from functools import lru_cache
from typing import NewType

from eth_utils.address import is_checksum_address

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.hashing import keccak

#: A checksummed 0x-prefixed 20-byte address.
Address = NewType("Address", str)
#: A 32-byte channel id.
ChannelId = NewType("ChannelId", bytes)
#: A 32-byte track id (keccak256 of the audio content by convention).
TrackId = NewType("TrackId", bytes)
#: An amount in the token's smallest unit (wei, or 1e-6 dollars for the stablecoin).
TokenAmount = NewType("TokenAmount", int)

ZERO_ADDRESS = Address("0x0000000000000000000000000000000000000000")
ZERO_HASH = b"\x00" * 32
MAX_AMOUNT = 2**96 - 1


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@lru_cache(maxsize=1 << 16)
def _checksummed(hex40: str) -> Address:
    """EIP-55 mixed-case checksum of 40 hex digits (any case). Cached: the relay sees the same payees, payers
    and session keys over and over, and eth_utils' generic version costs ~20-35 us per call."""
    if len(hex40) != 40 or not _HEX_DIGITS.issuperset(hex40):
        raise ValueError("not a 0x-prefixed 40-hex-digit string")
    lower = hex40.lower()
    hashed = keccak(lower.encode()).hex()
    return Address("0x" + "".join(c.upper() if h >= "8" else c for c, h in zip(lower, hashed, strict=False)))


def to_address(value: str | bytes) -> Address:
    """Checksum an address given as hex or 20 raw bytes; raise ProtocolError if it is not one."""
    try:
        if isinstance(value, bytes):
            if len(value) != 20:
                raise ValueError("not 20 bytes")
            return _checksummed(value.hex())
        if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
            raise ValueError("not a 0x-prefixed 40-hex-digit string")
        return _checksummed(value[2:])
    except ValueError as exc:
        # never the input itself in the message: it may be megabytes (and an error is sent back to whoever sent it)
        raise ProtocolError(f"invalid address: {exc}", code=Code.BAD_ADDRESS) from exc


def is_address(value: object) -> bool:
    return isinstance(value, str) and is_checksum_address(value)


def to_bytes32(value: str | bytes, field: str = "value") -> bytes:
    """Parse a 32-byte value given as 0x-hex or raw bytes."""
    if isinstance(value, str):
        text = value[2:] if value.startswith("0x") else value
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise ProtocolError(f"{field} is not hex", code=Code.BAD_BYTES32) from exc
    else:
        raw = value
    if len(raw) != 32:
        raise ProtocolError(f"{field} must be 32 bytes, got {len(raw)}", code=Code.BAD_BYTES32)
    return raw


def check_amount(value: int, field: str = "amount") -> TokenAmount:
    """Amounts are integers in [0, 2^96): the contract's storage range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{field} must be an integer", code=Code.BAD_AMOUNT)
    if value < 0 or value > MAX_AMOUNT:
        raise ProtocolError(f"{field} {value} outside [0, 2^96)", code=Code.BAD_AMOUNT)
    return TokenAmount(value)
