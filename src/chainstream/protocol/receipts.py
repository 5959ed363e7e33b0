"""Play receipts: what each voucher increment paid for, chained into the voucher's ``playHash``.

Each voucher commits to the head of a hash chain over receipts, so the sequence of listener-signed vouchers
doubles as proof of listening that an artist can audit (replay the receipts, recompute the head, compare with
the signed ``playHash``) without any of it being stored on-chain.

    head_0 = 0x00..00
    head_n = keccak256(RECEIPT_TYPEHASH || head_{n-1} || seq || target || kind || units || amount || splitHash || memoHash)

with every field a 32-byte word (EIP-712 hashStruct layout of
``PlayReceipt(bytes32 prev,uint64 seq,bytes32 target,uint8 kind,uint32 units,uint256 amount,bytes32 splitHash,bytes32 memoHash)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, cast

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.hashing import keccak, type_hash, word
from chainstream.protocol.types import ZERO_HASH, check_amount

RECEIPT_TYPE = (
    "PlayReceipt(bytes32 prev,uint64 seq,bytes32 target,uint8 kind,uint32 units,uint256 amount,"
    "bytes32 splitHash,bytes32 memoHash)"
)
RECEIPT_TYPEHASH = type_hash(RECEIPT_TYPE)
GENESIS = ZERO_HASH
MAX_MEMO_BYTES = 280


#: a charge kind as JSON names it (the HTTP API, grants, the SDK); for pydantic models, which need a Literal
KindName = Literal["play", "seconds", "tip", "download"]


class Kind(IntEnum):
    """What a receipt paid for: the one charge-kind type. Its int value is the receipt's ``uint8 kind`` (EIP-712
    and the database); its ``wire`` name is how JSON spells it (``Kind.parse`` reads it back)."""

    PLAY = 0  # one play of a track (units = 1)
    SECONDS = 1  # `units` seconds of listening to a track
    TIP = 2  # a tip to a track's split, or to one artist (target = the address, splitHash = 0)
    DOWNLOAD = 3  # a one-time purchase of a track (units = 1)

    @property
    def wire(self) -> KindName:
        """The JSON name: ``"play"``, ``"seconds"``, ``"tip"`` or ``"download"``."""
        return cast(KindName, self.name.lower())

    @classmethod
    def parse(cls, name: str) -> Kind:
        """The kind whose wire name is exactly `name`; ValueError for anything else (``"PLAY"`` included)."""
        kind = _BY_WIRE.get(name)
        if kind is None:
            raise ValueError(f"unknown charge kind {name!r}")
        return kind


_BY_WIRE: dict[str, Kind] = {kind.wire: kind for kind in Kind}


@dataclass(frozen=True)
class PlayReceipt:
    """One charge. ``target`` is the track id, or for a direct tip the artist's address left-padded."""

    seq: int
    target: bytes
    kind: Kind
    units: int
    amount: int
    split_hash: bytes
    memo: str = ""

    def __post_init__(self) -> None:
        if self.seq < 1 or self.seq >= 2**64:
            raise ProtocolError(f"receipt seq {self.seq} out of range", code=Code.BAD_RECEIPT)
        if len(self.target) != 32 or len(self.split_hash) != 32:
            raise ProtocolError("receipt target and splitHash must be 32 bytes", code=Code.BAD_RECEIPT)
        if not 0 <= self.units < 2**32:
            raise ProtocolError(f"receipt units {self.units} out of range", code=Code.BAD_RECEIPT)
        check_amount(self.amount, "receipt amount")
        if len(self.memo.encode()) > MAX_MEMO_BYTES:
            raise ProtocolError(f"tip message longer than {MAX_MEMO_BYTES} bytes", code=Code.MEMO_TOO_LONG)

    @property
    def memo_hash(self) -> bytes:
        return keccak(self.memo.encode()) if self.memo else ZERO_HASH

    def chain(self, prev: bytes) -> bytes:
        """The new chain head after this receipt."""
        return keccak(
            RECEIPT_TYPEHASH
            + prev
            + word(self.seq)
            + self.target
            + word(int(self.kind))
            + word(self.units)
            + word(self.amount)
            + self.split_hash
            + self.memo_hash
        )


def chain_head(receipts: list[PlayReceipt], start: bytes = GENESIS) -> bytes:
    """Fold receipts into the chain head (what an auditor recomputes)."""
    head = start
    for receipt in receipts:
        head = receipt.chain(head)
    return head
