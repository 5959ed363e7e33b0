"""Which channels to settle in a round: the settler's selection policy, pure (no chain, no store, no clock).

A channel's latest unsettled voucher is settled when

- a **deadline** forces it: the channel is closing (its window runs), the session key that signed the voucher
  is within `session_margin` of its expiry (the relay takes no more of its vouchers) or was rotated out, the
  watchtower or a key change that shortened a key asked for it (`Settler.request`), or the operator forces a
  round. Past a deadline the voucher can never be
  settled, so the relay settles whatever the gas costs;
- otherwise, when it is **due** (unsettled value >= `settle_min_value`, or its oldest unsettled payment is
  `settle_max_age` old) **and worth its gas**: the estimated gas of its batch entry (`entry_gas`), valued at
  the chain's current gas price, is at most `settle_max_gas_fraction` of the value it settles. A due channel
  that is not worth it is *held for economics* until it is (its value grows) or a deadline nears.

Value: ETH amounts are wei; an ERC-20 amount is valued with the operator's price (`settle_token_prices`, wei
per smallest token unit). A token without a price cannot be valued, so its channels are held until a deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address

if TYPE_CHECKING:
    from chainstream.config import Settings

#: a conservative gas figure for one batch entry: its checks and event, plus a fresh storage slot per payee
ENTRY_GAS, PAYEE_GAS = 30_000, 25_000


def entry_gas(payees: int) -> int:
    """The gas one settleBatch entry with `payees` payees is budgeted at (an over-estimate: every payee's
    balance slot is taken as fresh)."""
    return ENTRY_GAS + PAYEE_GAS * payees


class Decision(Enum):
    """What a round does with one channel's unsettled voucher."""

    WAIT = "wait"  # neither due nor near a deadline
    SETTLE = "settle"  # due, and worth its gas
    SETTLE_DEADLINE = "settle_deadline"  # a deadline forces it, whatever the gas
    HOLD_ECONOMICS = "hold_economics"  # due, but its gas would cost more than the allowed fraction of its value


@dataclass(frozen=True)
class SettlePolicy:
    """The settlement policy's parameters (from Settings: `SettlePolicy.from_settings`)."""

    min_value: int
    max_age: float
    max_gas_fraction: float
    #: wei per smallest unit of each ERC-20 (checksummed address); ETH (the zero address) is always 1
    token_prices: Mapping[Address, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> SettlePolicy:
        return cls(
            settings.settle_min_value,
            settings.settle_max_age,
            settings.settle_max_gas_fraction,
            {to_address(token): price for token, price in settings.settle_token_prices.items()},
        )

    def value_in_wei(self, token: Address, amount: int) -> float | None:
        """What `amount` of `token` is worth in wei, or None for an ERC-20 the operator gave no price."""
        if token == ZERO_ADDRESS:
            return float(amount)
        price = self.token_prices.get(token)
        return None if price is None else amount * price

    def worth_its_gas(self, token: Address, unsettled: int, payees: int, gas_price: int | None) -> bool:
        """Whether settling `unsettled` in one batch entry with `payees` payees costs at most the allowed
        fraction of its value (gas valued at `gas_price` wei; None, not known yet: never)."""
        value = self.value_in_wei(token, unsettled)
        if value is None or gas_price is None:
            return False
        return entry_gas(payees) * gas_price <= self.max_gas_fraction * value

    def decide(
        self, *, token: Address, unsettled: int, payees: int, age: float, deadline: bool, gas_price: int | None
    ) -> Decision:
        """The decision for one channel whose latest voucher leaves `unsettled` (> 0) unsettled, its oldest
        unsettled payment `age` seconds old; `deadline` when something forces settlement (see the module)."""
        if deadline:
            return Decision.SETTLE_DEADLINE
        if unsettled < self.min_value and age < self.max_age:
            return Decision.WAIT
        if self.worth_its_gas(token, unsettled, payees, gas_price):
            return Decision.SETTLE
        return Decision.HOLD_ECONOMICS
