"""Prices and splits: validation, the rounding rule of Split.apply, the split hash and the price functions."""

from __future__ import annotations

import pytest
from eth_abi import encode
from hypothesis import given, settings
from hypothesis import strategies as st

from chainstream.errors import PricingError, ProtocolError
from chainstream.pricing import (
    MAX_FEE_BPS,
    MAX_RECIPIENTS,
    TOTAL_BPS,
    Model,
    Split,
    Terms,
    download_price,
    owned_after,
    play_price,
    seconds_price,
)
from chainstream.protocol.hashing import keccak
from chainstream.protocol.types import MAX_AMOUNT, ZERO_ADDRESS, to_address

A, B, C, FEE = (to_address("0x" + f"{i:02x}" * 20) for i in (0xA1, 0xB2, 0xC3, 0xFE))


@st.composite
def splits(draw: st.DrawFn) -> Split:
    n = draw(st.integers(min_value=1, max_value=MAX_RECIPIENTS))
    recipients = draw(st.lists(st.binary(min_size=20, max_size=20).filter(any), min_size=n, max_size=n, unique=True))
    # n positive shares summing to 10,000: n - 1 distinct cut points in 1..9999.
    cuts = sorted(
        draw(st.lists(st.integers(min_value=1, max_value=TOTAL_BPS - 1), min_size=n - 1, max_size=n - 1, unique=True))
    )
    bps = [b - a for a, b in zip([0, *cuts], [*cuts, TOTAL_BPS], strict=True)]
    fee_bps = draw(st.one_of(st.just(0), st.integers(min_value=0, max_value=MAX_FEE_BPS)))
    fee_recipient = draw(st.binary(min_size=20, max_size=20).filter(any)) if fee_bps else ZERO_ADDRESS
    return Split(tuple(recipients), tuple(bps), fee_recipient, fee_bps)  # type: ignore[arg-type]


amounts = st.one_of(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=MAX_AMOUNT))


# ------------------------------------------------------------------------------------------------ splits


@pytest.mark.parametrize(
    ("recipients", "bps", "fee_recipient", "fee_bps"),
    [
        ((), (), ZERO_ADDRESS, 0),  # no recipients
        (tuple(to_address(f"0x{i + 1:040x}") for i in range(17)), (1,) * 16 + (TOTAL_BPS - 16,), ZERO_ADDRESS, 0),
        ((A, B), (TOTAL_BPS,), ZERO_ADDRESS, 0),  # length mismatch
        ((A, A), (5000, 5000), ZERO_ADDRESS, 0),  # duplicate
        ((A, ZERO_ADDRESS), (5000, 5000), ZERO_ADDRESS, 0),  # zero recipient
        ((A, B), (TOTAL_BPS, 0), ZERO_ADDRESS, 0),  # zero share
        ((A, B), (5000, 4999), ZERO_ADDRESS, 0),  # sum != 10,000
        ((A, B), (6000, 4001), ZERO_ADDRESS, 0),
        ((A,), (TOTAL_BPS,), FEE, MAX_FEE_BPS + 1),  # fee too high
        ((A,), (TOTAL_BPS,), ZERO_ADDRESS, 100),  # fee without recipient
        ((A,), (TOTAL_BPS,), FEE, 0),  # recipient without fee
        ((A,), (TOTAL_BPS,), FEE, -1),
    ],
)
def test_split_validation(recipients: tuple, bps: tuple, fee_recipient: str, fee_bps: int) -> None:
    with pytest.raises(PricingError) as info:
        Split(recipients, bps, fee_recipient, fee_bps)
    assert info.value.code == "bad_split"


def test_split_rejects_malformed_addresses() -> None:
    with pytest.raises(ProtocolError):
        Split(("0x1234",), (TOTAL_BPS,))


def test_split_checksums_addresses_and_solo() -> None:
    split = Split((A.lower(),), (TOTAL_BPS,))
    assert split.recipients == (A,) and split == Split.solo(A)
    assert split.as_tuple() == ([A], [TOTAL_BPS], ZERO_ADDRESS, 0)


@settings(max_examples=300, deadline=None)
@given(split=splits(), amount=amounts)
def test_apply_rounding_rule(split: Split, amount: int) -> None:
    shares = split.apply(amount)
    assert sum(shares.values()) == amount
    assert all(v > 0 for v in shares.values())
    fee = amount * split.fee_bps // TOTAL_BPS
    rest = amount - fee
    # The fee off the top, then each other recipient floor(rest * bps / 10000), the primary the rest; an address
    # that is both the fee recipient and a recipient (allowed) gets both parts.
    expected: dict[str, int] = {}
    if split.fee_bps:
        expected[split.fee_recipient] = fee
    for recipient, bps in zip(split.recipients[1:], split.bps[1:], strict=True):
        expected[recipient] = expected.get(recipient, 0) + rest * bps // TOTAL_BPS
    others = sum(rest * bps // TOTAL_BPS for bps in split.bps[1:])
    primary = split.recipients[0]
    expected[primary] = expected.get(primary, 0) + rest - others
    assert shares == {a: v for a, v in expected.items() if v}
    dust = (rest - others) - rest * split.bps[0] // TOTAL_BPS
    assert 0 <= dust < len(split.recipients)
    # Order: fee recipient (if the fee is not 0), recipients 1.., recipient 0 (zero shares dropped; an address in
    # two roles keeps the place of its first entry).
    fee_first = (split.fee_recipient,) if fee else ()
    expected_order = list(dict.fromkeys(p for p in (*fee_first, *split.recipients[1:], primary) if p in shares))
    assert list(shares) == expected_order


def test_apply_examples() -> None:
    split = Split((A, B), (7000, 3000), FEE, 250)
    assert split.apply(1001) == {FEE: 25, B: 292, A: 684}
    assert list(split.apply(1001)) == [FEE, B, A]
    assert split.apply(0) == {}
    assert Split((A, B, C), (3334, 3333, 3333)).apply(10) == {B: 3, C: 3, A: 4}
    assert Split((A, B, C), (9998, 1, 1), FEE, 5000).apply(7) == {FEE: 3, A: 4}


def test_apply_when_the_fee_recipient_is_also_a_recipient() -> None:
    split = Split((A, FEE), (5000, 5000), FEE, 1000)
    assert split.apply(100) == {FEE: 10 + 45, A: 45}


def test_apply_rejects_bad_amounts() -> None:
    with pytest.raises(ProtocolError):
        Split.solo(A).apply(-1)
    with pytest.raises(ProtocolError):
        Split.solo(A).apply(MAX_AMOUNT + 1)


@settings(max_examples=100, deadline=None)
@given(split=splits())
def test_split_hash_is_the_abi_encoding(split: Split) -> None:
    encoded = encode(
        ["address[]", "uint16[]", "address", "uint16"],
        [list(split.recipients), list(split.bps), split.fee_recipient, split.fee_bps],
    )
    assert split.hash == keccak(encoded)


def test_split_hash_depends_on_every_field() -> None:
    base = Split((A, B), (7000, 3000), FEE, 250)
    variants = [
        Split((B, A), (7000, 3000), FEE, 250),
        Split((A, B), (3000, 7000), FEE, 250),
        Split((A, B), (7000, 3000), C, 250),
        Split((A, B), (7000, 3000), FEE, 251),
        Split((A, B), (7000, 3000)),
    ]
    assert len({base.hash, *(v.hash for v in variants)}) == 1 + len(variants)


# ------------------------------------------------------------------------------------------------ prices


def test_flat_play_price() -> None:
    terms = Terms(per_play=1000)
    assert [play_price(terms, n) for n in (1, 2, 100)] == [1000, 1000, 1000]
    assert owned_after(terms) is None


def test_stream_to_own_doubles_then_is_free() -> None:
    terms = Terms(per_play=1000, model=Model.STREAM_TO_OWN, own_after=3)
    assert [play_price(terms, n) for n in range(1, 7)] == [1000, 2000, 4000, 0, 0, 0]
    assert owned_after(terms) == 7000 == sum(play_price(terms, n) for n in range(1, 4))


@pytest.mark.parametrize("own_after", [1, 2, 17, 32])
def test_stream_to_own_total(own_after: int) -> None:
    terms = Terms(per_play=3, model=Model.STREAM_TO_OWN, own_after=own_after)
    assert owned_after(terms) == sum(play_price(terms, n) for n in range(1, own_after + 1))
    assert play_price(terms, own_after) == 3 * 2 ** (own_after - 1)
    assert play_price(terms, own_after + 1) == 0


def test_prices_beyond_the_contracts_range_are_pricing_errors() -> None:
    terms = Terms(per_play=2**90, per_second=2**90, model=Model.STREAM_TO_OWN, own_after=32)
    assert play_price(terms, 6) == 2**95
    with pytest.raises(PricingError) as info:
        play_price(terms, 7)
    assert info.value.code == "price_overflow"
    assert seconds_price(terms, 63) == 63 * 2**90
    with pytest.raises(PricingError) as info:
        seconds_price(terms, 64)
    assert info.value.code == "price_overflow"
    for field in ("per_play", "per_second", "download"):
        with pytest.raises(PricingError) as info:
            Terms(**{field: 2**96})
        assert info.value.code == "bad_terms" and field in str(info.value)


@pytest.mark.parametrize("play_number", [0, -1])
def test_play_numbers_start_at_one(play_number: int) -> None:
    with pytest.raises(PricingError) as info:
        play_price(Terms(per_play=1), play_number)
    assert info.value.code == "bad_play_number"


def test_disabled_terms_are_not_offered() -> None:
    terms = Terms(per_play=1, per_second=1, download=1, enabled=False)
    for call in (lambda: play_price(terms, 1), lambda: seconds_price(terms, 1), lambda: download_price(terms)):
        with pytest.raises(PricingError) as info:
            call()
        assert info.value.code == "not_offered"


def test_seconds_price() -> None:
    terms = Terms(per_second=7)
    assert seconds_price(terms, 1) == 7
    assert seconds_price(terms, 30) == 210
    with pytest.raises(PricingError) as info:
        seconds_price(terms, 0)
    assert info.value.code == "bad_units"
    with pytest.raises(PricingError) as info:
        seconds_price(Terms(per_play=5), 10)
    assert info.value.code == "not_offered"
    with pytest.raises(PricingError) as info:
        seconds_price(Terms(per_second=MAX_AMOUNT), 2)
    assert info.value.code == "price_overflow"


def test_download_price() -> None:
    assert download_price(Terms(download=50_000)) == 50_000
    with pytest.raises(PricingError) as info:
        download_price(Terms(per_play=1))
    assert info.value.code == "not_offered"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": 2},
        {"model": Model.STREAM_TO_OWN, "own_after": 0},
        {"model": Model.STREAM_TO_OWN, "own_after": 33},
        {"min_seconds": 2**16},
        {"min_seconds": -1},
    ],
)
def test_invalid_terms(kwargs: dict) -> None:
    with pytest.raises(PricingError) as info:
        Terms(per_play=1, **kwargs)
    assert info.value.code == "bad_terms"


def test_terms_amounts_are_range_checked_and_round_trip() -> None:
    with pytest.raises(PricingError):
        Terms(per_play=MAX_AMOUNT + 1)
    terms = Terms(per_play=1, per_second=2, download=3, model=Model.STREAM_TO_OWN, own_after=4, min_seconds=30)
    assert Terms.from_tuple(terms.as_tuple()) == terms
    assert terms.as_tuple() == (1, 2, 3, 1, 4, 30, True)
