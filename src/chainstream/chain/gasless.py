"""Typed clients for gas-free onboarding (ChainStreamGasless) and scheduled payouts (ChainStreamChannels).

The signer never sends a transaction: it signs an authorisation (chainstream.protocol.gasless) and, for a deposit,
an EIP-2612 permit; a submitter (normally the relay) sends it here and keeps its fee in the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from chainstream.chain.artifacts import error_abis
from chainstream.chain.contracts import (
    ChannelsClient,
    TokenClient,
    _Client,
    empty_entry,
    permit_typed_data,
    settle_entry,
)
from chainstream.chain.transactions import TxSender
from chainstream.protocol import Domain, SignedVoucher
from chainstream.protocol.gasless import CloseAuth, OpenAuth, ScheduleAuth, TopUpAuth, gasless_domain
from chainstream.protocol.signing import PrivateKey, Signature
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, Address, to_address


@dataclass(frozen=True)
class PermitSig:
    """An EIP-2612 permit for the gasless contract; deadline 0 = none (an allowance is already in place)."""

    value: int = 0
    deadline: int = 0
    v: int = 0
    r: bytes = ZERO_HASH
    s: bytes = ZERO_HASH

    def values(self) -> tuple[int, int, int, bytes, bytes]:
        return (self.value, self.deadline, self.v, self.r, self.s)


NO_PERMIT = PermitSig()


def sign_permit(
    w3: Web3, token: str, owner: PrivateKey, spender: str, value: int, deadline: int, nonce: int | None = None
) -> PermitSig:
    """An EIP-2612 permit signed by `owner` (reads the token's name and the owner's permit nonce)."""
    erc20 = TokenClient(w3, token)
    if nonce is None:
        nonce = int(erc20.contract.functions.nonces(owner.address).call())
    typed = permit_typed_data(erc20, owner.address, spender, value, nonce, deadline)
    signed = Account.sign_typed_data(owner.secret, full_message=typed)
    return PermitSig(value, deadline, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))


@dataclass(frozen=True)
class PayoutScheduleState:
    enabled: bool
    recipient: Address
    threshold: int
    period: int
    max_fee: int
    last_paid_at: int


@dataclass(frozen=True)
class PaidOut:
    payee: Address
    token: Address
    to: Address
    amount: int
    fee: int


class GaslessClient(_Client):
    """ChainStreamGasless: submits signed authorisations (the submitter pays gas and keeps its fee)."""

    artifact_name = "ChainStreamGasless"

    def __init__(self, w3: Web3, address: str) -> None:
        super().__init__(w3, address)
        self.domain: Domain = gasless_domain(w3.eth.chain_id, self.address)

    @classmethod
    def of(cls, channels: ChannelsClient) -> GaslessClient:
        """The gasless contract the channels contract created and trusts."""
        return cls(channels.w3, channels.contract.functions.gasless().call())

    # ------------------------------------------------------------- views
    def nonce_used(self, signer: str, nonce: int) -> bool:
        return bool(self.contract.functions.nonceUsed(signer, nonce).call())

    def schedule_nonce(self, payee: str) -> int:
        return int(self.contract.functions.scheduleNonce(payee).call())

    # ---------------------------------------------------------- submits
    def open_for(
        self, sender: TxSender, auth: OpenAuth, sig: Signature, fee: int, permit: PermitSig = NO_PERMIT
    ) -> TxReceipt:
        call = self.contract.functions.openFor(auth.values(), sig.r_bytes, sig.vs_bytes, fee, permit.values())
        return sender.transact(call, action="openFor")

    def top_up_for(
        self, sender: TxSender, auth: TopUpAuth, sig: Signature, fee: int, permit: PermitSig = NO_PERMIT
    ) -> TxReceipt:
        call = self.contract.functions.topUpFor(auth.values(), sig.r_bytes, sig.vs_bytes, fee, permit.values())
        return sender.transact(call, action="topUpFor")

    def close_for(
        self,
        sender: TxSender,
        auth: CloseAuth,
        sig: Signature,
        fee: int,
        final: SignedVoucher | None,
        prev_amounts: tuple[int, ...] | list[int],
        relay_signature: Signature,
    ) -> TxReceipt:
        entry = empty_entry(auth.channel_id) if final is None else settle_entry(final, prev_amounts)
        call = self.contract.functions.cooperativeCloseFor(
            auth.values(), sig.r_bytes, sig.vs_bytes, fee, entry, relay_signature.r_bytes, relay_signature.vs_bytes
        )
        return sender.transact(call, action="cooperativeCloseFor")

    def set_schedule_for(self, sender: TxSender, auth: ScheduleAuth, sig: Signature) -> TxReceipt:
        call = self.contract.functions.setPayoutScheduleFor(auth.values(), sig.r_bytes, sig.vs_bytes)
        return sender.transact(call, action="setPayoutScheduleFor")

    def set_schedule(
        self,
        sender: TxSender,
        token: str,
        *,
        enabled: bool,
        recipient: str = ZERO_ADDRESS,
        threshold: int = 0,
        period: int = 0,
        max_fee: int = 0,
    ) -> TxReceipt:
        """The payee sets or cancels its own schedule by transaction (voids its unsubmitted signed schedules)."""
        schedule = (enabled, to_address(recipient), threshold, period, max_fee)
        return sender.transact(self.contract.functions.setPayoutSchedule(token, schedule), action="setPayoutSchedule")


def payout_schedule(channels: ChannelsClient, payee: str, token: str) -> PayoutScheduleState:
    (enabled, recipient, threshold, period, max_fee), last = channels.contract.functions.payoutSchedule(
        payee, token
    ).call()
    return PayoutScheduleState(
        bool(enabled), to_address(recipient), int(threshold), int(period), int(max_fee), int(last)
    )


def payout_batch(channels: ChannelsClient, sender: TxSender, token: str, payees: list[str], fee: int) -> TxReceipt:
    """Push the due balances of `payees` in `token`; entries not due are skipped on-chain, not reverted."""
    call = channels.contract.functions.payoutBatch(token, payees, fee)
    return sender.transact(call, action="payoutBatch")


def payouts_in(channels: ChannelsClient, receipt: Any) -> list[PaidOut]:
    """The PaidOut events of a payoutBatch receipt."""
    out = []
    for log in channels.contract.events.PaidOut().process_receipt(receipt, errors=DISCARD):
        a = log["args"]
        out.append(PaidOut(to_address(a["payee"]), to_address(a["token"]), to_address(a["to"]), a["amount"], a["fee"]))
    return out


def payout_skips_in(channels: ChannelsClient, receipt: Any) -> list[tuple[Address, str]]:
    """(payee, reason error name) of each PayoutSkipped event of a payoutBatch receipt."""
    reasons = {selector: abi["name"] for selector, abi in error_abis().items()}
    out = []
    for log in channels.contract.events.PayoutSkipped().process_receipt(receipt, errors=DISCARD):
        reason = bytes(log["args"]["reason"])
        out.append((to_address(log["args"]["payee"]), reasons.get(reason, reason.hex())))
    return out
