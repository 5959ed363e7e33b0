"""Track prices and revenue splits: what a play, N seconds, a download or a tip costs, and who gets what.

Pure functions mirroring the on-chain TrackRegistry's rules. The rounding rule is part of the protocol (the
relay and every client must compute identical amounts):

1. fee = floor(amount * feeBps / 10_000) goes to the fee recipient, off the top;
2. the rest R is split: recipient i >= 1 gets floor(R * bps_i / 10_000);
3. recipient 0 (the primary artist) gets R minus all of that, i.e. its own share plus the rounding dust,
   which is always below the number of recipients.

Shares are computed per charge, so the sum of every payee's amounts equals exactly what the listener paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from chainstream.codes import Code
from chainstream.errors import PricingError, ProtocolError
from chainstream.protocol.hashing import address_word, keccak, word
from chainstream.protocol.types import ZERO_ADDRESS, Address, check_amount, to_address

TOTAL_BPS = 10_000
MAX_FEE_BPS = 5_000
MAX_RECIPIENTS = 16
MAX_OWN_AFTER = 32


class Model:
    FLAT = 0
    STREAM_TO_OWN = 1


@dataclass(frozen=True)
class Terms:
    """A track's prices in one token (mirrors ITrackRegistry.Terms)."""

    per_play: int = 0
    per_second: int = 0
    download: int = 0
    model: int = Model.FLAT
    own_after: int = 0
    min_seconds: int = 0
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("per_play", "per_second", "download"):
            _amount(getattr(self, name), name, Code.BAD_TERMS)
        if self.model not in (Model.FLAT, Model.STREAM_TO_OWN):
            raise PricingError(f"unknown price model {self.model}", code=Code.BAD_TERMS)
        if self.model == Model.STREAM_TO_OWN and not 1 <= self.own_after <= MAX_OWN_AFTER:
            raise PricingError(f"stream-to-own needs own_after in 1..{MAX_OWN_AFTER}", code=Code.BAD_TERMS)
        if not 0 <= self.min_seconds < 2**16:
            raise PricingError("min_seconds out of range", code=Code.BAD_TERMS)

    def as_tuple(self) -> tuple[int, int, int, int, int, int, bool]:
        """The ABI tuple (perPlay, perSecond, download, model, ownAfter, minSeconds, enabled)."""
        return (
            self.per_play,
            self.per_second,
            self.download,
            self.model,
            self.own_after,
            self.min_seconds,
            self.enabled,
        )

    @classmethod
    def from_tuple(cls, values: tuple[int, int, int, int, int, int, bool]) -> Terms:
        return cls(*values)


@dataclass(frozen=True)
class Split:
    """Who gets what share of a payment (mirrors ITrackRegistry.Split)."""

    recipients: tuple[Address, ...]
    bps: tuple[int, ...]
    fee_recipient: Address = ZERO_ADDRESS
    fee_bps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipients", tuple(to_address(r) for r in self.recipients))
        object.__setattr__(self, "fee_recipient", to_address(self.fee_recipient))
        count = len(self.recipients)
        if not 1 <= count <= MAX_RECIPIENTS:
            raise PricingError(f"a split needs 1..{MAX_RECIPIENTS} recipients, got {count}", code=Code.BAD_SPLIT)
        if len(self.bps) != count:
            raise PricingError("recipients and shares differ in length", code=Code.BAD_SPLIT)
        if len(set(self.recipients)) != count or ZERO_ADDRESS in self.recipients:
            raise PricingError("recipients must be distinct non-zero addresses", code=Code.BAD_SPLIT)
        if any(b <= 0 for b in self.bps) or sum(self.bps) != TOTAL_BPS:
            raise PricingError(
                f"shares must be positive and sum to {TOTAL_BPS} bps, got {sum(self.bps)}", code=Code.BAD_SPLIT
            )
        if not 0 <= self.fee_bps <= MAX_FEE_BPS or (self.fee_bps != 0) != (self.fee_recipient != ZERO_ADDRESS):
            raise PricingError(f"fee must be 0..{MAX_FEE_BPS} bps with a recipient iff non-zero", code=Code.BAD_SPLIT)

    @classmethod
    def solo(cls, artist: str) -> Split:
        return cls((to_address(artist),), (TOTAL_BPS,))

    @cached_property  # a split never changes; every priced charge carries its hash
    def hash(self) -> bytes:
        """keccak256(abi.encode(address[] recipients, uint16[] bps, address feeRecipient, uint16 feeBps))."""
        n = len(self.recipients)
        # Head: two offsets then the two static fields; tail: the two arrays (length + words).
        head_size = 4 * 32
        recipients_tail = word(n) + b"".join(address_word(r) for r in self.recipients)
        encoded = (
            word(head_size)
            + word(head_size + len(recipients_tail))
            + address_word(self.fee_recipient)
            + word(self.fee_bps)
            + recipients_tail
            + word(n)
            + b"".join(word(b) for b in self.bps)
        )
        return keccak(encoded)

    def as_tuple(self) -> tuple[list[str], list[int], str, int]:
        return (list(self.recipients), list(self.bps), self.fee_recipient, self.fee_bps)

    def apply(self, amount: int) -> dict[Address, int]:
        """Split `amount` by the rounding rule above; the result sums to exactly `amount`."""
        check_amount(amount)
        shares: dict[Address, int] = {}
        fee = amount * self.fee_bps // TOTAL_BPS
        rest = amount - fee
        if fee:
            shares[self.fee_recipient] = fee
        others = 0
        for recipient, bps in zip(self.recipients[1:], self.bps[1:], strict=True):
            share = rest * bps // TOTAL_BPS
            others += share
            shares[recipient] = shares.get(recipient, 0) + share
        primary = self.recipients[0]
        shares[primary] = shares.get(primary, 0) + rest - others
        return {payee: value for payee, value in shares.items() if value}


def _amount(value: int, what: str, code: str) -> int:
    """`value` if it is an amount the contract can hold; else a PricingError with `code`."""
    try:
        return check_amount(value, what)
    except ProtocolError as exc:
        raise PricingError(str(exc), code=code) from None


def play_price(terms: Terms, play_number: int) -> int:
    """The price of the listener's `play_number`-th play (1-based) of a track under `terms`."""
    if not terms.enabled:
        raise PricingError("the track is not offered in this token", code=Code.NOT_OFFERED)
    if play_number < 1:
        raise PricingError("play numbers start at 1", code=Code.BAD_PLAY_NUMBER)
    if terms.model == Model.STREAM_TO_OWN:
        if play_number > terms.own_after:
            return 0  # owned: further plays are free
        return _amount(terms.per_play * 2 ** (play_number - 1), "stream-to-own price", Code.PRICE_OVERFLOW)
    return terms.per_play


def seconds_price(terms: Terms, seconds: int) -> int:
    """The price of `seconds` seconds of listening."""
    if not terms.enabled or terms.per_second == 0:
        raise PricingError("the track is not offered per second in this token", code=Code.NOT_OFFERED)
    if seconds <= 0:
        raise PricingError("seconds must be positive", code=Code.BAD_UNITS)
    return _amount(terms.per_second * seconds, "seconds price", Code.PRICE_OVERFLOW)


def download_price(terms: Terms) -> int:
    if not terms.enabled or terms.download == 0:
        raise PricingError("the track is not for sale in this token", code=Code.NOT_OFFERED)
    return terms.download


def owned_after(terms: Terms) -> int | None:
    """Stream-to-own: the total paid once the track is owned (None for flat pricing)."""
    if terms.model != Model.STREAM_TO_OWN:
        return None
    return terms.per_play * ((1 << terms.own_after) - 1)  # 2**n - 1 (own_after >= 1 here), as an int
