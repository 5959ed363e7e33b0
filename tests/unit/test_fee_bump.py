"""Replacing a stuck transaction (EIP-1559): the bumped fees, within the operator's ceiling, and the re-signed fields."""

from __future__ import annotations

from eth_account import Account

from chainstream.chain.transactions import PRIORITY_FEE, bumped_fees, unsigned_from_raw

GWEI = 10**9


def test_a_replacement_raises_tip_and_fee_cap_by_at_least_an_eighth_and_covers_twice_the_base_fee() -> None:
    """A node refuses a replacement raising either fee by less than 12.5 %; one below the base fee waits again."""
    max_fee, tip = bumped_fees(3 * GWEI, GWEI, base_fee=100 * GWEI, ceiling=500 * GWEI)  # type: ignore[misc]
    assert tip * 8 >= GWEI * 9
    assert max_fee >= 2 * 100 * GWEI + tip
    low_max, low_tip = bumped_fees(80 * GWEI, 8 * GWEI, base_fee=0, ceiling=500 * GWEI)  # type: ignore[misc]
    assert (low_max, low_tip) == (90 * GWEI, 9 * GWEI)


def test_an_odd_fee_is_rounded_up_so_the_raise_is_never_short() -> None:
    """1.125 times an amount not divisible by 8 rounds up (rounding down would fall short of 12.5 %)."""
    max_fee, tip = bumped_fees(9, 7, base_fee=0, ceiling=10**6, min_tip=0)  # type: ignore[misc]
    assert (max_fee, tip) == (11, 8)


def test_no_replacement_beyond_the_ceiling() -> None:
    """At the ceiling no valid replacement exists: None (the transaction waits), never a fee above the ceiling."""
    assert bumped_fees(450 * GWEI, GWEI, base_fee=100 * GWEI, ceiling=500 * GWEI) is None
    capped = bumped_fees(100 * GWEI, GWEI, base_fee=300 * GWEI, ceiling=500 * GWEI)
    assert capped is not None and capped[0] == 500 * GWEI  # 2 x base fee would be 600: capped, still +12.5 %
    assert bumped_fees(PRIORITY_FEE, PRIORITY_FEE, base_fee=0, ceiling=PRIORITY_FEE) is None


def test_the_unsigned_fields_of_a_signed_transaction_re_sign_to_the_same_transaction() -> None:
    """The replacement is built from the outbox's raw bytes: same nonce, recipient, data, gas and chain."""
    account = Account.create()
    fields = {
        "to": "0x" + "11" * 20,
        "value": 0,
        "gas": 90_000,
        "maxFeePerGas": 3 * GWEI,
        "maxPriorityFeePerGas": GWEI,
        "nonce": 7,
        "chainId": 31337,
        "data": b"\x12\x34",
    }
    signed = Account.sign_transaction(fields, account.key)
    back = unsigned_from_raw(bytes(signed.raw_transaction))
    assert back["nonce"] == 7 and back["data"] == b"\x12\x34" and back["gas"] == 90_000
    assert Account.sign_transaction(back, account.key).hash == signed.hash
