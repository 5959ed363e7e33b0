"""The settler's selection policy (review issue 8, finding 4): never spend more gas on a channel than a fraction
of what it settles, except to beat a deadline."""

from __future__ import annotations

import pytest

from chainstream.config import Settings
from chainstream.protocol.types import ZERO_ADDRESS, to_address
from chainstream.relay.settle_policy import Decision, SettlePolicy, entry_gas

GWEI = 10**9
STABLE = to_address("0x" + "5" * 40)
UNPRICED = to_address("0x" + "6" * 40)
POLICY = SettlePolicy(min_value=1, max_age=300, max_gas_fraction=0.1, token_prices={STABLE: 3e8})


def decide(policy: SettlePolicy = POLICY, **kw: object) -> Decision:
    args: dict[str, object] = {
        "token": ZERO_ADDRESS,
        "unsettled": 1,
        "payees": 1,
        "age": 0.0,
        "deadline": False,
        "gas_price": GWEI,
    }
    args.update(kw)
    return policy.decide(**args)  # type: ignore[arg-type]


def test_dust_that_is_due_is_held_for_economics() -> None:
    assert decide(unsettled=1) is Decision.HOLD_ECONOMICS
    assert decide(unsettled=1, age=10**6) is Decision.HOLD_ECONOMICS  # age makes it due, not worth its gas


def test_a_deadline_settles_dust_whatever_the_gas() -> None:
    assert decide(unsettled=1, deadline=True) is Decision.SETTLE_DEADLINE
    assert decide(token=UNPRICED, unsettled=1, deadline=True, gas_price=None) is Decision.SETTLE_DEADLINE


def test_the_threshold_is_the_gas_cost_over_the_fraction() -> None:
    cost = entry_gas(3) * GWEI
    threshold = int(cost / 0.1)
    assert decide(unsettled=threshold - 1, payees=3) is Decision.HOLD_ECONOMICS
    assert decide(unsettled=threshold, payees=3) is Decision.SETTLE
    # each payee costs gas at settlement: the same value with more payees is held
    assert decide(unsettled=threshold, payees=4) is Decision.HOLD_ECONOMICS
    # and gas prices move the threshold
    assert decide(unsettled=threshold, payees=3, gas_price=2 * GWEI) is Decision.HOLD_ECONOMICS


def test_a_channel_growing_by_one_wei_settles_once_worth_it_and_not_before() -> None:
    threshold = int(entry_gas(1) * GWEI / 0.1)
    decisions = [decide(unsettled=v) for v in range(threshold - 3, threshold + 2)]
    assert decisions == [Decision.HOLD_ECONOMICS] * 3 + [Decision.SETTLE] * 2


def test_not_due_waits_whatever_its_value() -> None:
    lazy = SettlePolicy(min_value=10**18, max_age=300, max_gas_fraction=0.1)
    assert decide(lazy, unsettled=10**17, age=10) is Decision.WAIT
    assert decide(lazy, unsettled=10**17, age=300) is Decision.SETTLE  # old enough, and worth it


def test_erc20_is_valued_at_the_operators_price_and_unpriced_tokens_wait_for_a_deadline() -> None:
    threshold_units = entry_gas(1) * GWEI / 0.1 / 3e8  # about 1.8 dollars of a 6-decimal stablecoin
    assert decide(token=STABLE, unsettled=int(threshold_units) + 1) is Decision.SETTLE
    assert decide(token=STABLE, unsettled=int(threshold_units) - 1) is Decision.HOLD_ECONOMICS
    assert decide(token=UNPRICED, unsettled=10**24, age=10**6) is Decision.HOLD_ECONOMICS


def test_an_unknown_gas_price_settles_nothing_for_economics() -> None:
    assert decide(unsettled=10**20, gas_price=None) is Decision.HOLD_ECONOMICS


def test_policy_from_settings_checksums_token_prices() -> None:
    settings = Settings(settle_token_prices={STABLE.lower(): 3e8}, settle_max_gas_fraction=0.05)
    policy = SettlePolicy.from_settings(settings)
    assert policy.token_prices == {STABLE: 3e8} and policy.max_gas_fraction == 0.05
    with pytest.raises(ValueError):
        Settings(settle_max_gas_fraction=0)
