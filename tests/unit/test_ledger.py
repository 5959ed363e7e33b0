"""The pure ledger: from a channel's state and a charge, the exact next voucher, its receipt and the counters that
price later charges (plays per track, owned tracks). No chain, no server."""

from __future__ import annotations

import pytest

from chainstream.errors import PricingError, ProtocolError
from chainstream.ledger import (
    MAX_SECONDS_PER_CHARGE,
    LedgerState,
    Listing,
    apply,
    charge_download,
    charge_play,
    charge_seconds,
    charge_tip,
    require_within,
)
from chainstream.pricing import Model, Split, Terms
from chainstream.protocol import Kind
from chainstream.protocol.hashing import address_word
from chainstream.protocol.receipts import chain_head
from chainstream.protocol.types import ZERO_HASH
from tests.conftest import test_key

ARTIST = test_key("ledger-artist").address
COLLAB = test_key("ledger-collab").address
PLATFORM = test_key("ledger-platform").address
FAN = test_key("ledger-fan").address
CHANNEL = b"\x07" * 32
FLAT = Listing(
    b"\x01" * 32,
    "Flat",
    ARTIST,
    Terms(per_play=1_000, per_second=3, download=40_000),
    Split((ARTIST, COLLAB), (7_500, 2_500), PLATFORM, 1_000),
    2,
)
OWN = Listing(
    b"\x02" * 32, "Own", ARTIST, Terms(per_play=100, model=Model.STREAM_TO_OWN, own_after=3), Split.solo(COLLAB), 1
)


def run(*charges: object) -> tuple[LedgerState, list[object]]:
    """Apply charge builders (functions of the state) in order; returns the final state and the receipts."""
    state = LedgerState.opened(CHANNEL)
    receipts = []
    for build in charges:
        state, receipt = apply(state, build(state))  # type: ignore[operator]
        receipts.append(receipt)
    return state, receipts


def test_a_flat_play_pays_the_fee_off_the_top_then_the_split() -> None:
    state, (receipt,) = run(lambda s: charge_play(s, FLAT))
    # 1,000: fee 10% = 100 to the platform, then 75/25 of 900 (rounding rule: pricing.Split.apply)
    assert dict(zip(state.voucher.payees, state.voucher.amounts, strict=True)) == {
        PLATFORM: 100,
        ARTIST: 675,
        COLLAB: 225,
    }
    assert state.voucher.total == 1_000 and state.seq == 1 and state.plays_of(FLAT.track_id) == 1
    assert (receipt.kind, receipt.units, receipt.amount, receipt.split_hash) == (Kind.PLAY, 1, 1_000, FLAT.split.hash)


def test_stream_to_own_doubles_each_play_then_is_free_but_still_a_receipt() -> None:
    state, receipts = run(*(lambda s: charge_play(s, OWN) for _ in range(5)))
    assert [r.amount for r in receipts] == [100, 200, 400, 0, 0]
    assert state.voucher.total == 700 and state.plays_of(OWN.track_id) == 5
    assert all(r.split_hash == OWN.split.hash for r in receipts), "a free play carries the track's split hash"
    assert state.voucher.play_hash == chain_head(receipts), "every receipt, free ones too, is chained"  # type: ignore[arg-type]


def test_after_a_download_plays_are_free_and_a_second_download_is_refused() -> None:
    state, receipts = run(lambda s: charge_download(s, FLAT), lambda s: charge_play(s, FLAT))
    assert [r.amount for r in receipts] == [40_000, 0]
    assert FLAT.track_id in state.owned
    with pytest.raises(PricingError) as refused:
        charge_download(state, FLAT)
    assert refused.value.code == "already_owned"


def test_seconds_are_priced_per_second_up_to_an_hour_per_charge() -> None:
    assert charge_seconds(FLAT, 10).amount == 30
    assert charge_seconds(FLAT, MAX_SECONDS_PER_CHARGE).units == MAX_SECONDS_PER_CHARGE
    with pytest.raises(PricingError) as refused:
        charge_seconds(FLAT, MAX_SECONDS_PER_CHARGE + 1)
    assert refused.value.code == "bad_units"


def test_the_ledger_counts_the_seconds_paid_per_track() -> None:
    other = Listing(b"\x03" * 32, "Other", ARTIST, Terms(per_second=5), Split.solo(ARTIST), 1)
    state = LedgerState.opened(b"\x01" * 32)
    for charge in (
        charge_seconds(FLAT, 4),
        charge_play(state, FLAT),
        charge_seconds(FLAT, 6),
        charge_seconds(other, 2),
    ):
        state, _ = apply(state, charge)
    assert state.seconds_of(FLAT.track_id) == 10
    assert state.seconds_of(other.track_id) == 2
    assert state.plays_of(FLAT.track_id) == 1  # a play is not seconds


def test_a_direct_tip_pays_one_address_with_no_split_and_a_track_tip_follows_the_split() -> None:
    direct = charge_tip(77, artist=FAN, memo="thanks")
    assert dict(direct.payments) == {FAN: 77}
    assert direct.target == address_word(FAN) and direct.split_hash == ZERO_HASH
    via_track = charge_tip(1_000, listing=FLAT)
    assert dict(via_track.payments) == {PLATFORM: 100, ARTIST: 675, COLLAB: 225}
    assert via_track.split_hash == FLAT.split.hash


@pytest.mark.parametrize(
    ("amount", "artist", "listing", "memo", "code"),
    [
        (0, FAN, None, "", "bad_amount"),
        (5, FAN, FLAT, "", "bad_tip"),
        (5, None, None, "", "bad_tip"),
        (5, FAN, None, "x" * 281, "memo_too_long"),
    ],
)
def test_bad_tips_are_refused_with_their_code(
    amount: int, artist: str | None, listing: Listing | None, memo: str, code: str
) -> None:
    with pytest.raises(PricingError) as refused:
        charge_tip(amount, artist=artist, listing=listing, memo=memo)
    assert refused.value.code == code


def test_new_payees_are_appended_so_every_voucher_extends_the_last() -> None:
    state, _ = run(lambda s: charge_tip(5, artist=FAN), lambda s: charge_play(s, FLAT), lambda s: charge_play(s, OWN))
    # split order (pricing.Split.apply): the fee, then the other recipients, the primary last (it takes the rest)
    assert state.voucher.payees == (FAN, PLATFORM, COLLAB, ARTIST)
    assert state.voucher.amounts == (5, 100, 225 + 100, 675)
    earlier, _ = run(lambda s: charge_tip(5, artist=FAN))
    assert state.voucher.payees[: len(earlier.voucher.payees)] == earlier.voucher.payees


def test_the_same_charges_give_the_same_voucher_digest_on_both_sides() -> None:
    """Client and relay run this code: the same history gives byte-identical vouchers."""
    charges = (lambda s: charge_play(s, FLAT), lambda s: charge_seconds(FLAT, 4), lambda s: charge_play(s, OWN))
    assert run(*charges)[0].voucher == run(*charges)[0].voucher


def test_a_voucher_past_the_deposit_is_refused() -> None:
    state, _ = run(lambda s: charge_play(s, FLAT))
    require_within(state, 1_000)
    with pytest.raises(ProtocolError) as refused:
        require_within(state, 999)
    assert refused.value.code == "insufficient_deposit"
