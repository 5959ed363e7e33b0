"""The relay's acceptance rules for a payment: Accepted, or a Rejection with a stable code. Pure: no I/O.

A payment is a charge (what was played / tipped / bought) plus the voucher the listener signed for it. The
relay recomputes the next voucher from its last accepted state with the shared ledger code and accepts
only an identical one, so it never has to trust a client's arithmetic. Checks run cheapest first; the
signature recovery (the only expensive step) runs last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chainstream.codes import Code
from chainstream.errors import ChainStreamError, PricingError, RecoverableError
from chainstream.ledger import (
    Charge,
    LedgerState,
    Listing,
    apply,
    charge_download,
    charge_play,
    charge_seconds,
    charge_tip,
)
from chainstream.protocol import Domain, Kind, PlayReceipt, Signature, Voucher, recover
from chainstream.protocol.types import ZERO_ADDRESS, Address


class Rejection(RecoverableError):
    """A request the relay refuses (a payment, caps, a close, a read): ``code`` says why, ``details`` the numbers
    behind it. How it is answered over HTTP (its status) is the HTTP edge's business (relay/api/errors.py)."""

    def __init__(self, code: Code, message: str, *, details: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, details=details)


@dataclass(frozen=True)
class ChargeSpec:
    """What the listener says it pays for (before pricing)."""

    kind: Kind
    track_id: bytes | None = None
    artist: Address | None = None
    seconds: int = 0
    amount: int = 0
    memo: str = ""


@dataclass(frozen=True)
class Payment:
    """A payment as submitted: the charge, its sequence number, the signed voucher."""

    channel_id: bytes
    seq: int
    charge: ChargeSpec
    voucher: Voucher
    signature: Signature


@dataclass(frozen=True)
class ChannelTerms:
    """What the relay knows of a channel from the chain, plus the listener's own limits."""

    channel_id: bytes
    payer: Address
    token: Address
    deposit: int
    session_key: Address
    session_expiry: int
    open: bool
    daily_cap: int | None = None
    session_cap: int | None = None


@dataclass(frozen=True)
class Accepted:
    state: LedgerState
    receipt: PlayReceipt
    charge: Charge
    digest: bytes
    signer: Address


def price(spec: ChargeSpec, state: LedgerState, listing_of: Callable[[bytes], Listing | None]) -> Charge:
    """Turn the listener's charge spec into a priced Charge using the relay's catalog."""
    listing = None
    if spec.track_id is not None:
        listing = listing_of(spec.track_id)
        if listing is None:
            raise Rejection(Code.UNKNOWN_TRACK, f"no track 0x{spec.track_id.hex()} is offered in this channel's token")
    try:
        if spec.kind == Kind.TIP:
            return charge_tip(spec.amount, listing=listing, artist=spec.artist, memo=spec.memo)
        if listing is None:
            raise Rejection(Code.BAD_CHARGE, f"a {spec.kind.wire} charge needs a trackId")
        if spec.kind == Kind.PLAY:
            return charge_play(state, listing)
        if spec.kind == Kind.SECONDS:
            return charge_seconds(listing, spec.seconds)
        return charge_download(state, listing)
    except PricingError as exc:
        raise Rejection(exc.code, str(exc)) from exc


def verify_payment(
    payment: Payment,
    *,
    state: LedgerState,
    channel: ChannelTerms,
    domain: Domain,
    listing_of: Callable[[bytes], Listing | None],
    now: int,
    spent_today: int,
    session_margin: int,
    max_payees: int = 256,
) -> Accepted:
    """Check a payment against the channel's last accepted state; raise Rejection if anything is off.

    `max_payees` bounds the voucher's payee list below the contract's 256: every new payee costs a fresh
    storage slot (~20,000 gas) at each settlement, so dust tips to many fresh addresses would make a channel's
    settlement cost far more than it pays, and a batch of such channels would not fit in a block."""
    if not channel.open:
        raise Rejection(Code.CHANNEL_NOT_OPEN, "the channel is closing or closed; no new payments")
    if payment.voucher.channel_id != payment.channel_id:
        raise Rejection(Code.WRONG_CHANNEL, "the voucher is for another channel")
    # Who signed comes first: every later refusal tells something of the channel's state (its seq, whether a
    # guessed voucher is the next one, today's spending), which only the channel's own signers may learn.
    digest, signer = _signed_by_channel(payment, channel, domain)
    if payment.seq != state.seq + 1:
        code = Code.STALE_VOUCHER if payment.seq <= state.seq else Code.SEQ_GAP
        raise Rejection(
            code,
            f"expected seq {state.seq + 1}, got {payment.seq}",
            details={"expected": str(state.seq + 1), "got": str(payment.seq)},
        )

    charge = price(payment.charge, state, listing_of)
    next_state, receipt = apply(state, charge)
    expected = next_state.voucher
    if payment.voucher != expected:
        raise Rejection(Code.VOUCHER_MISMATCH, "the voucher is not the channel's next voucher for this charge")
    _check_limits(expected, state, channel, charge, spent_today, max_payees)
    if signer != channel.payer:  # the channel's session key (checked above)
        _check_session_key(expected, channel, now, session_margin)
    return Accepted(next_state, receipt, charge, digest, signer)


def _signed_by_channel(payment: Payment, channel: ChannelTerms, domain: Domain) -> tuple[bytes, Address]:
    """The voucher's digest and its signer, who must be the channel's payer or its session key."""
    digest = payment.voucher.digest(domain)
    try:
        signer = recover(digest, payment.signature)
    except ChainStreamError as exc:
        raise Rejection(Code.BAD_SIGNATURE, str(exc)) from exc
    if signer != channel.payer and (channel.session_key == ZERO_ADDRESS or signer != channel.session_key):
        raise Rejection(Code.UNAUTHORIZED_SIGNER, f"{signer} is neither the payer nor the channel's session key")
    return digest, signer


def _check_limits(
    expected: Voucher, state: LedgerState, channel: ChannelTerms, charge: Charge, spent_today: int, max_payees: int
) -> None:
    """The next voucher within the relay's payee bound, the deposit and the daily cap (any signer)."""
    if len(expected.payees) > max_payees and len(expected.payees) > len(state.voucher.payees):
        raise Rejection(
            Code.TOO_MANY_PAYEES,
            f"this payment would make the channel pay {len(expected.payees)} "
            f"addresses; this relay settles at most {max_payees} per channel: open a new channel",
            details={"payees": str(len(expected.payees)), "maxPayees": str(max_payees)},
        )
    if expected.total > channel.deposit:
        raise Rejection(
            Code.INSUFFICIENT_DEPOSIT,
            f"cumulative {expected.total} would exceed the deposit {channel.deposit}; top up first",
            details={"total": str(expected.total), "deposit": str(channel.deposit)},
        )
    if channel.daily_cap is not None and spent_today + charge.amount > channel.daily_cap:
        raise Rejection(
            Code.DAILY_CAP_EXCEEDED,
            f"today's spending {spent_today} + {charge.amount} would pass your daily cap {channel.daily_cap}",
            details={"spentToday": str(spent_today), "amount": str(charge.amount), "dailyCap": str(channel.daily_cap)},
        )


def _check_session_key(expected: Voucher, channel: ChannelTerms, now: int, session_margin: int) -> None:
    """What a session key (not the payer) may sign: before its expiry less the margin, up to its session cap."""
    if now > channel.session_expiry - session_margin:
        raise Rejection(Code.SESSION_KEY_EXPIRED, "the session key has expired (or expires too soon to settle)")
    if channel.session_cap is not None and expected.total > channel.session_cap:
        raise Rejection(
            Code.SESSION_CAP_EXCEEDED,
            f"the session key may sign up to {channel.session_cap} in total",
            details={"total": str(expected.total), "sessionCap": str(channel.session_cap)},
        )


__all__ = [
    "Accepted",
    "ChannelTerms",
    "ChargeSpec",
    "Payment",
    "Rejection",
    "price",
    "verify_payment",
]
