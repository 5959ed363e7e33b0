"""A channel's pure payment ledger: from its state and a charge, the exact next voucher.

Listener clients and the relay run the same code. The client prices a play (or N seconds, a tip, a download)
from the public catalog, derives the next voucher and signs it; the relay recomputes the same next voucher
from its own last accepted state and accepts only an identical one. There is nothing to negotiate: any
difference is a rejection, answered with the relay's state so that a drifted client can resynchronise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from chainstream.codes import Code
from chainstream.errors import PricingError, ProtocolError
from chainstream.pricing import Split, Terms, download_price, play_price, seconds_price
from chainstream.protocol import Domain, Kind, PlayReceipt, Voucher
from chainstream.protocol.hashing import address_word
from chainstream.protocol.receipts import MAX_MEMO_BYTES
from chainstream.protocol.types import ZERO_HASH, Address, check_amount, to_address

MAX_SECONDS_PER_CHARGE = 3_600


@dataclass(frozen=True)
class Listing:
    """A track as priced in one token: its terms and current split (from the TrackRegistry)."""

    track_id: bytes
    title: str
    owner: Address
    terms: Terms
    split: Split
    split_version: int

    @property
    def split_hash(self) -> bytes:
        return self.split.hash


@dataclass(frozen=True)
class Charge:
    """One thing the listener pays for: what receipt it produces and who gets how much."""

    kind: Kind
    target: bytes
    units: int
    amount: int
    split_hash: bytes
    payments: Mapping[Address, int]
    memo: str = ""

    def receipt(self, seq: int) -> PlayReceipt:
        return PlayReceipt(
            seq=seq,
            target=self.target,
            kind=self.kind,
            units=self.units,
            amount=self.amount,
            split_hash=self.split_hash,
            memo=self.memo,
        )


@dataclass(frozen=True)
class LedgerState:
    """Everything needed to price and build the channel's next voucher."""

    voucher: Voucher
    seq: int = 0
    plays: Mapping[bytes, int] = field(default_factory=lambda: MappingProxyType({}))
    owned: frozenset[bytes] = frozenset()
    #: seconds paid per track (per-second charges): what a metered stream of the track may deliver
    seconds: Mapping[bytes, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def opened(cls, channel_id: bytes) -> LedgerState:
        return cls(voucher=Voucher.empty(channel_id))

    @property
    def spent(self) -> int:
        return self.voucher.total

    def plays_of(self, track_id: bytes) -> int:
        return self.plays.get(track_id, 0)

    def seconds_of(self, track_id: bytes) -> int:
        return self.seconds.get(track_id, 0)


def _split_payments(split: Split, amount: int) -> Mapping[Address, int]:
    return MappingProxyType(split.apply(amount)) if amount else MappingProxyType({})


def charge_play(state: LedgerState, listing: Listing) -> Charge:
    """A play: flat price, the stream-to-own curve's next step, or free once owned or downloaded."""
    amount = 0 if listing.track_id in state.owned else play_price(listing.terms, state.plays_of(listing.track_id) + 1)
    return Charge(Kind.PLAY, listing.track_id, 1, amount, listing.split_hash, _split_payments(listing.split, amount))


def charge_seconds(listing: Listing, seconds: int) -> Charge:
    """`seconds` seconds of listening at the track's per-second price."""
    if seconds > MAX_SECONDS_PER_CHARGE:
        raise PricingError(f"charge at most {MAX_SECONDS_PER_CHARGE} seconds at a time", code=Code.BAD_UNITS)
    amount = seconds_price(listing.terms, seconds)
    return Charge(
        Kind.SECONDS, listing.track_id, seconds, amount, listing.split_hash, _split_payments(listing.split, amount)
    )


def charge_download(state: LedgerState, listing: Listing) -> Charge:
    """A one-time purchase; later plays of the track are free."""
    if listing.track_id in state.owned:
        raise PricingError("the track is already owned", code=Code.ALREADY_OWNED)
    amount = download_price(listing.terms)
    return Charge(
        Kind.DOWNLOAD, listing.track_id, 1, amount, listing.split_hash, _split_payments(listing.split, amount)
    )


def charge_tip(amount: int, *, listing: Listing | None = None, artist: str | None = None, memo: str = "") -> Charge:
    """A tip to a track (its split applies, platform fee included) or straight to one artist's address."""
    check_amount(amount, "tip")
    if amount <= 0:
        raise PricingError("a tip must be positive", code=Code.BAD_AMOUNT)
    if len(memo.encode()) > MAX_MEMO_BYTES:
        raise PricingError(f"tip message longer than {MAX_MEMO_BYTES} bytes", code=Code.MEMO_TOO_LONG)
    if (listing is None) == (artist is None):
        raise PricingError("tip either a track or an artist", code=Code.BAD_TIP)
    if listing is not None:
        return Charge(
            Kind.TIP, listing.track_id, 0, amount, listing.split_hash, _split_payments(listing.split, amount), memo
        )
    payee = to_address(artist or "")
    return Charge(Kind.TIP, address_word(payee), 0, amount, ZERO_HASH, MappingProxyType({payee: amount}), memo)


def apply(state: LedgerState, charge: Charge) -> tuple[LedgerState, PlayReceipt]:
    """The state after `charge`, and the receipt chained into its voucher."""
    receipt = charge.receipt(state.seq + 1)
    voucher = state.voucher.add(charge.payments, receipt)
    plays, owned, seconds = state.plays, state.owned, state.seconds
    if charge.kind == Kind.PLAY:
        plays = MappingProxyType({**plays, charge.target: plays.get(charge.target, 0) + 1})
    elif charge.kind == Kind.DOWNLOAD:
        owned = owned | {charge.target}
    elif charge.kind == Kind.SECONDS:
        seconds = MappingProxyType({**seconds, charge.target: seconds.get(charge.target, 0) + charge.units})
    return LedgerState(voucher, receipt.seq, plays, owned, seconds), receipt


def require_within(state: LedgerState, deposit: int) -> None:
    """The cumulative total may never exceed what the channel holds."""
    if state.voucher.total > deposit:
        raise ProtocolError(
            f"voucher total {state.voucher.total} exceeds the deposit {deposit}", code=Code.INSUFFICIENT_DEPOSIT
        )


# ------------------------------------------------------------------------------------------------ replay
@dataclass(frozen=True)
class AcceptedPayment:
    """One accepted payment as a relay reports it (``GET /channels/{id}/history``): the receipt's fields except
    its splitHash, and the digest of the voucher it led to. Untrusted until `replay` shows that it chains into
    a voucher the listener signed."""

    seq: int
    kind: Kind
    target: bytes
    units: int
    amount: int
    memo: str
    digest: bytes


#: a track's splits over all its versions (from the TrackRegistry), any of which an old receipt may name
SplitsOf = Callable[[bytes], Sequence[Split]]


def _candidate_charges(payment: AcceptedPayment, splits_of: SplitsOf) -> Iterator[Charge]:
    """Every charge that could have produced `payment`: the target's splits (any version), and for a tip whose
    target is an address word, the tip straight to that address."""
    for split in splits_of(payment.target):
        try:
            payments = _split_payments(split, payment.amount)
        except (ProtocolError, PricingError):  # an amount past 2^96: not what anybody signed
            continue
        yield Charge(payment.kind, payment.target, payment.units, payment.amount, split.hash, payments, payment.memo)
    if payment.kind == Kind.TIP and payment.target[:12] == bytes(12) and payment.amount > 0:
        payee = to_address("0x" + payment.target[12:].hex())
        payments = MappingProxyType({payee: payment.amount})
        yield Charge(Kind.TIP, payment.target, 0, payment.amount, ZERO_HASH, payments, payment.memo)


def replay(start: LedgerState, payments: Sequence[AcceptedPayment], splits_of: SplitsOf, domain: Domain) -> LedgerState:
    """The ledger state after `payments` (consecutive, from `start.seq + 1`), recomputed here: each payment's
    receipt is rebuilt, chained and applied with the same code that signs, and must lead to the voucher digest
    reported for it. Every pricing counter (plays per track, tracks owned) then comes from receipts, never from
    a relay's say-so. The caller compares the result with a voucher its own key signed: that voucher's
    playHash commits to the whole receipt chain, so only the receipts actually signed can reach it.

    Raises ProtocolError(untrusted_state) at the first payment that does not fit."""
    state = start
    for payment in payments:
        if payment.seq != state.seq + 1:
            raise ProtocolError(
                f"the relay's history jumps from seq {state.seq} to {payment.seq}", code=Code.UNTRUSTED_STATE
            )
        for charge in _candidate_charges(payment, splits_of):
            try:
                candidate, _ = apply(state, charge)
            except (ProtocolError, PricingError):  # a field out of range: not what anybody signed
                continue
            if candidate.voucher.digest(domain) == payment.digest:
                state = candidate
                break
        else:
            raise ProtocolError(
                f"the relay's payment {payment.seq} does not chain into the voucher it reports: no split of its "
                "track, nor a tip to an address, gives that voucher",
                code=Code.UNTRUSTED_STATE,
            )
    return state
