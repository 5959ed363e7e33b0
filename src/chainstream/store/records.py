"""What the store keeps, as frozen records, and how a record maps to and from a table row (both backends).

Rows are encoded the same way for SQLite and PostgreSQL: ids and hashes as bytes, payee lists and per-payee
amounts as JSON text, amounts as decimal strings (SQLite keeps them as text; PostgreSQL casts them into
NUMERIC(78,0) columns). Decoding accepts either backend's row (sqlite3.Row or a dict) and whatever numeric
type it returns (str, int or Decimal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from chainstream.protocol import Voucher
from chainstream.protocol.types import Address

SCHEMA_VERSION = 4  # the tables' layout; both backends keep it (SQLite in PRAGMA user_version)


@dataclass(frozen=True)
class ProfileRecord:
    """The newest profile an artist signed (protocol/profile.py): its name, issuedAt and 65-byte signature."""

    artist: Address
    name: str
    issued_at: int
    signature: bytes


PAYMENT_COLUMNS = (
    "channel_id",
    "seq",
    "digest",
    "total",
    "payees",
    "amounts",
    "play_hash",
    "signature",
    "signer",
    "kind",
    "target",
    "units",
    "amount",
    "split_hash",
    "memo",
    "accepted_at",
    "credits",
)
#: delivery outcomes (Store.record_delivery)
SERVED, REPEAT, EXHAUSTED = "served", "repeat", "exhausted"

EARNING_COLUMNS = ("payee", "accepted_at", "channel_id", "seq", "target", "kind", "units", "amount")


class Row(Protocol):
    """A result row addressed by column name: sqlite3.Row, or the dict a psycopg dict_row cursor returns."""

    def __getitem__(self, column: str, /) -> Any: ...


#: a channel's phase as the relay records it (the contract's NONE is never stored)
ChannelPhase = Literal["open", "closing", "closed"]


#: the coop_close_digest column's bytes for a close the relay is still co-signing (a digest is 32 bytes)
_PENDING_COLUMN = b"pending"


@dataclass(frozen=True)
class CoopClose:
    """The relay's consent to a cooperative close of a channel; no payment of the channel is accepted once it has
    one. Pending (`voucher_digest` None) while the relay co-signs, then co-signed at the digest of the channel's
    latest voucher (the zero hash for a channel with none). Stored in the channels table's coop_close_digest
    column as that digest, or as the bytes b"pending" (`to_column`, `from_column`)."""

    voucher_digest: bytes | None = None

    def __post_init__(self) -> None:
        if self.voucher_digest is not None and len(self.voucher_digest) != 32:
            raise ValueError(f"a co-signed close names a 32-byte voucher digest, not {len(self.voucher_digest)} bytes")

    @property
    def pending(self) -> bool:
        """Whether the relay is still co-signing (the digest is not known yet)."""
        return self.voucher_digest is None

    def to_column(self) -> bytes:
        return _PENDING_COLUMN if self.voucher_digest is None else self.voucher_digest

    @classmethod
    def from_column(cls, value: bytes | memoryview | None) -> CoopClose | None:
        if value is None:
            return None
        raw = bytes(value)
        return CLOSE_PENDING if raw == _PENDING_COLUMN else cls(raw)


#: a close the relay is co-signing
CLOSE_PENDING = CoopClose()


@dataclass(frozen=True)
class ChannelRecord:
    channel_id: bytes
    payer: Address
    token: Address
    deposit: int
    session_key: Address
    session_expiry: int
    status: ChannelPhase = "open"
    closes_at: int = 0
    #: the relay's consent to a cooperative close (relay/closing.py), None before any
    coop_close: CoopClose | None = None
    daily_cap: int | None = None
    session_cap: int | None = None
    opened_block: int = 0
    caps_issued_at: int = 0


@dataclass(frozen=True)
class PaymentRecord:
    """An accepted payment: the voucher, its signature, the receipt fields, and who got what."""

    channel_id: bytes
    seq: int
    digest: bytes
    voucher: Voucher
    signature: bytes
    signer: Address
    kind: int
    target: bytes
    units: int
    amount: int
    split_hash: bytes
    memo: str
    payments: dict[Address, int]
    accepted_at: float
    #: What the relay instance verified the payment against, checked by a shared store when it commits (not
    #: stored): the digest of the channel's previous payment (None for the first) and the caps in force.
    prev_digest: bytes | None = field(default=None, compare=False)
    caps_basis: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SettledRecord:
    channel_id: bytes
    total: int
    payees: tuple[Address, ...]
    credited: tuple[int, ...]
    block: int


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    kind: str
    status: str
    nonce: int
    tx_hash: bytes
    raw_tx: bytes
    payload: dict[str, Any]
    created_at: float
    block: int | None
    error: str | None


class EarningRow(TypedDict):
    """What one payment credited one payee (`earnings_rows`)."""

    channel_id: bytes
    seq: int
    target: bytes
    kind: int
    units: int
    amount: int
    accepted_at: float


class ClaimRow(TypedDict):
    """A payee's on-chain claim (`claims_of`)."""

    tx_hash: bytes
    log_index: int
    payee: str
    token: str
    amount: int
    block: int


# ------------------------------------------------------------------------------------------------ encoding


def opt_text(amount: int | None) -> str | None:
    return None if amount is None else str(amount)


def channel_params(c: ChannelRecord) -> tuple[Any, ...]:
    """The values of an INSERT into channels (without caps_issued_at, which only set_caps writes)."""
    return (
        c.channel_id,
        c.payer,
        c.token,
        str(c.deposit),
        c.session_key,
        c.session_expiry,
        c.status,
        c.closes_at,
        None if c.coop_close is None else c.coop_close.to_column(),
        opt_text(c.daily_cap),
        opt_text(c.session_cap),
        c.opened_block,
    )


def settled_params(s: SettledRecord) -> tuple[Any, ...]:
    return (s.channel_id, str(s.total), json.dumps(list(s.payees)), json.dumps([str(c) for c in s.credited]), s.block)


def payment_rows(record: PaymentRecord) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The payment's row (PAYMENT_COLUMNS) and one earnings row per credited payee (EARNING_COLUMNS)."""
    v = record.voucher
    credits = {payee: str(amount) for payee, amount in record.payments.items()}
    payment = (
        record.channel_id,
        record.seq,
        record.digest,
        str(v.total),
        json.dumps(list(v.payees)),
        json.dumps([str(a) for a in v.amounts]),
        v.play_hash,
        record.signature,
        record.signer,
        record.kind,
        record.target,
        record.units,
        str(record.amount),
        record.split_hash,
        record.memo,
        record.accepted_at,
        json.dumps(credits),
    )
    earnings = [
        (payee, record.accepted_at, record.channel_id, record.seq, record.target, record.kind, record.units, amount)
        for payee, amount in credits.items()
    ]
    return payment, earnings


# ------------------------------------------------------------------------------------------------ decoding


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def channel_from_row(row: Row) -> ChannelRecord:
    return ChannelRecord(
        channel_id=bytes(row["channel_id"]),
        payer=row["payer"],
        token=row["token"],
        deposit=int(row["deposit"]),
        session_key=row["session_key"],
        session_expiry=int(row["session_expiry"]),
        status=row["status"],
        closes_at=int(row["closes_at"]),
        coop_close=CoopClose.from_column(row["coop_close_digest"]),
        daily_cap=_opt_int(row["daily_cap"]),
        session_cap=_opt_int(row["session_cap"]),
        opened_block=int(row["opened_block"]),
        caps_issued_at=int(row["caps_issued_at"]),
    )


def voucher_from_row(row: Row) -> Voucher:
    return Voucher(
        bytes(row["channel_id"]),
        tuple(json.loads(row["payees"])),
        tuple(int(a) for a in json.loads(row["amounts"])),
        bytes(row["play_hash"]),
    )


def payment_from_row(row: Row) -> PaymentRecord:
    return PaymentRecord(
        channel_id=bytes(row["channel_id"]),
        seq=int(row["seq"]),
        digest=bytes(row["digest"]),
        voucher=voucher_from_row(row),
        signature=bytes(row["signature"]),
        signer=row["signer"],
        kind=int(row["kind"]),
        target=bytes(row["target"]),
        units=int(row["units"]),
        amount=int(row["amount"]),
        split_hash=bytes(row["split_hash"]),
        memo=row["memo"],
        payments={payee: int(amount) for payee, amount in json.loads(row["credits"]).items()},
        accepted_at=float(row["accepted_at"]),
    )


def settled_from_row(row: Row) -> SettledRecord:
    return SettledRecord(
        bytes(row["channel_id"]),
        int(row["total"]),
        tuple(json.loads(row["payees"])),
        tuple(int(c) for c in json.loads(row["credited"])),
        int(row["block"]),
    )


def outbox_from_row(row: Row) -> OutboxRecord:
    return OutboxRecord(
        int(row["id"]),
        row["kind"],
        row["status"],
        int(row["nonce"]),
        bytes(row["tx_hash"]),
        bytes(row["raw_tx"]),
        json.loads(row["payload"]),
        float(row["created_at"]),
        _opt_int(row["block"]),
        row["error"],
    )


def earning_from_row(row: Row) -> EarningRow:
    return EarningRow(
        channel_id=bytes(row["channel_id"]),
        seq=int(row["seq"]),
        target=bytes(row["target"]),
        kind=int(row["kind"]),
        units=int(row["units"]),
        amount=int(row["amount"]),
        accepted_at=float(row["accepted_at"]),
    )


def claim_from_row(row: Row) -> ClaimRow:
    return ClaimRow(
        tx_hash=bytes(row["tx_hash"]),
        log_index=int(row["log_index"]),
        payee=row["payee"],
        token=row["token"],
        amount=int(row["amount"]),
        block=int(row["block"]),
    )
