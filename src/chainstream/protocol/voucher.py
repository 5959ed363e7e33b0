"""Cumulative vouchers: the listener's signed statement of everything a channel owes each payee.

A voucher never states a delta. After each play (or N seconds, or a tip) the client adds the charge's split
to the previous voucher's amounts — appending payees it pays for the first time, so the payee list only ever
grows at its end — chains a play receipt into ``playHash`` and signs the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.eip712 import Domain, close_struct_hash, typed_data, voucher_struct_hash
from chainstream.protocol.receipts import GENESIS, PlayReceipt
from chainstream.protocol.signing import PrivateKey, Signature, recover
from chainstream.protocol.types import ZERO_HASH, Address, check_amount, to_address


@dataclass(frozen=True)
class Voucher:
    """The unsigned voucher. ``payees[i]`` is owed ``amounts[i]`` in total since the channel opened."""

    channel_id: bytes
    payees: tuple[Address, ...] = ()
    amounts: tuple[int, ...] = ()
    play_hash: bytes = GENESIS

    def __post_init__(self) -> None:
        if len(self.channel_id) != 32 or len(self.play_hash) != 32:
            raise ProtocolError("channelId and playHash must be 32 bytes", code=Code.BAD_VOUCHER)
        if len(self.payees) != len(self.amounts):
            raise ProtocolError("payees and amounts differ in length", code=Code.BAD_VOUCHER)
        # Checksummed, so that the duplicate check and deltas_since's prefix check see one spelling per payee
        # (to_address is cached: cheap for the addresses a relay sees again and again).
        object.__setattr__(self, "payees", tuple(to_address(p) for p in self.payees))
        if len(set(self.payees)) != len(self.payees):
            raise ProtocolError("a payee appears twice", code=Code.BAD_VOUCHER)
        for amount in self.amounts:
            check_amount(amount, "voucher amount")

    @classmethod
    def empty(cls, channel_id: bytes) -> Voucher:
        """The state of a channel before its first voucher."""
        return cls(channel_id=channel_id)

    @cached_property
    def total(self) -> int:
        return sum(self.amounts)

    @classmethod
    def _unchecked(
        cls, channel_id: bytes, payees: tuple[Address, ...], amounts: tuple[int, ...], play_hash: bytes
    ) -> Voucher:
        """A voucher built from parts already validated (checksummed distinct payees, amounts in range):
        skips __post_init__'s checks, which the relay would otherwise run twice per payment."""
        voucher = cls.__new__(cls)
        voucher.__dict__.update(channel_id=channel_id, payees=payees, amounts=amounts, play_hash=play_hash)
        return voucher

    def amount_of(self, payee: str) -> int:
        try:
            return self.amounts[self.payees.index(to_address(payee))]
        except ValueError:
            return 0

    def struct_hash(self) -> bytes:
        return voucher_struct_hash(self.channel_id, self.payees, self.amounts, self.play_hash)

    def digest(self, domain: Domain) -> bytes:
        """What the listener signs."""
        return domain.digest(self.struct_hash())

    def close_digest(self, domain: Domain) -> bytes:
        """What the relay signs to consent to a cooperative close at this voucher."""
        voucher_digest = self.digest(domain) if self.payees else ZERO_HASH
        return domain.digest(close_struct_hash(self.channel_id, voucher_digest))

    def add(self, payments: Mapping[Address, int], receipt: PlayReceipt) -> Voucher:
        """The next voucher: these payments on top of this one, with the receipt chained into playHash."""
        payees = list(self.payees)
        amounts = list(self.amounts)
        for payee, amount in payments.items():
            if amount < 0:
                raise ProtocolError("a payment cannot be negative", code=Code.BAD_VOUCHER)
            if amount == 0:
                continue
            payee = to_address(payee)
            if payee in payees:
                i = payees.index(payee)
                amounts[i] = check_amount(amounts[i] + amount, "voucher amount")
            else:
                payees.append(payee)
                amounts.append(check_amount(amount, "voucher amount"))
        play_hash = receipt.chain(self.play_hash)
        if len(play_hash) != 32:
            raise ProtocolError("playHash must be 32 bytes", code=Code.BAD_VOUCHER)
        return Voucher._unchecked(self.channel_id, tuple(payees), tuple(amounts), play_hash)

    def deltas_since(self, previous: Voucher) -> dict[Address, int]:
        """What this voucher adds to `previous`; ProtocolError unless it extends it (prefix + no decrease)."""
        if previous.channel_id != self.channel_id:
            raise ProtocolError("vouchers of different channels", code=Code.WRONG_CHANNEL)
        k = len(previous.payees)
        if self.payees[:k] != previous.payees:
            raise ProtocolError("payee list must extend the previous one (append only)", code=Code.PAYEES_REORDERED)
        deltas: dict[Address, int] = {}
        for i, payee in enumerate(self.payees):
            before = previous.amounts[i] if i < k else 0
            if self.amounts[i] < before:
                raise ProtocolError(f"amount for {payee} decreased", code=Code.AMOUNT_DECREASED)
            if self.amounts[i] > before:
                deltas[payee] = self.amounts[i] - before
        return deltas

    def sign(self, domain: Domain, key: PrivateKey) -> SignedVoucher:
        return SignedVoucher(self, key.sign(self.digest(domain)))

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (hex strings for bytes32, decimal ints for amounts)."""
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "payees": list(self.payees),
            "amounts": list(self.amounts),
            "playHash": "0x" + self.play_hash.hex(),
        }

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        return typed_data(domain, "Voucher", self.message())


@dataclass(frozen=True)
class SignedVoucher:
    voucher: Voucher
    signature: Signature

    def signer(self, domain: Domain) -> Address:
        """Recover who signed; ProtocolError if the signature is malformed or high-s."""
        return recover(self.voucher.digest(domain), self.signature)
