"""Typed clients for gas-free onboarding (ChainStreamGasless) and scheduled payouts (ChainStreamChannels).

The signer never sends a transaction: it signs an authorisation (chainstream.protocol.gasless) and, for a deposit,
an EIP-2612 permit; a submitter (normally the relay) sends it here and keeps its fee in the token.
"""

from __future__ import annotations

import functools
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


# PaidOutBatch entries (docs/PROTOCOL.md §14.2, IChainStreamChannels.PaidOutBatch): the first word of an entry holds
# the payee in bits 0..159, then a flag: none (paid, amount in bits 162..255), EXTENDED (paid; amount, fee and recipient
# in the next three words) or SKIPPED (the reason's error selector in bits 224..255).
_ADDRESS_MASK = (1 << 160) - 1
_EXTENDED = 1 << 160
_SKIPPED = 1 << 161
_AMOUNT_SHIFT = 162


@dataclass(frozen=True)
class PayoutEntry:
    """One listed payee of a payoutBatch, as its PaidOutBatch record states it: paid (`amount` to `to`, `fee` to the
    submitter) or skipped (`reason`: the name of the error, and `to` None)."""

    index: int  # the payee's position in the batch's list
    payee: Address
    to: Address | None
    amount: int
    fee: int
    reason: str | None = None


@functools.cache
def _error_names() -> dict[bytes, str]:
    return {selector: str(abi["name"]) for selector, abi in error_abis().items()}


def _error_name(selector: bytes) -> str:
    return _error_names().get(selector, "0x" + selector.hex())


def decode_payout_entries(fee: int, entries: list[bytes]) -> list[PayoutEntry]:
    """The entries of a PaidOutBatch(token, submitter, `fee`, `entries`) record, in the order the payees were listed.
    Raises ValueError for words no payoutBatch writes (both flags set, a four-word entry cut short)."""
    words = [int.from_bytes(bytes(w), "big") for w in entries]
    out: list[PayoutEntry] = []
    i = 0
    while i < len(words):
        head = words[i]
        payee = to_address((head & _ADDRESS_MASK).to_bytes(20, "big"))
        flags = head & (_EXTENDED | _SKIPPED)
        if flags == 0:
            out.append(PayoutEntry(len(out), payee, payee, head >> _AMOUNT_SHIFT, fee))
            i += 1
        elif flags == _EXTENDED and i + 3 < len(words):
            amount, entry_fee, recipient = words[i + 1 : i + 4]
            if recipient >> 160:
                raise ValueError(f"PaidOutBatch entry {len(out)}: recipient word {recipient:#x} is not an address")
            out.append(PayoutEntry(len(out), payee, to_address(recipient.to_bytes(20, "big")), amount, entry_fee))
            i += 4
        elif flags == _SKIPPED:
            selector = (head >> 224).to_bytes(4, "big")
            out.append(PayoutEntry(len(out), payee, None, 0, 0, _error_name(selector)))
            i += 1
        else:
            raise ValueError(f"PaidOutBatch entry {len(out)}: malformed word {head:#x}")
    return out


@dataclass(frozen=True)
class PayoutBatchLog:
    """One PaidOutBatch log: what a payoutBatch transaction did for each payee it listed."""

    token: Address
    submitter: Address
    fee: int
    entries: tuple[PayoutEntry, ...]
    tx_hash: bytes
    log_index: int
    block: int

    def paid(self) -> list[PaidOut]:
        return [PaidOut(e.payee, self.token, e.to, e.amount, e.fee) for e in self.entries if e.to is not None]


def _batch_log(log: Any) -> PayoutBatchLog:
    a = log["args"]
    return PayoutBatchLog(
        token=to_address(a["token"]),
        submitter=to_address(a["submitter"]),
        fee=int(a["fee"]),
        entries=tuple(decode_payout_entries(int(a["fee"]), list(a["entries"]))),
        tx_hash=bytes(log["transactionHash"]),
        log_index=int(log["logIndex"]),
        block=int(log["blockNumber"]),
    )


def payout_batches_in(channels: ChannelsClient, receipt: Any) -> list[PayoutBatchLog]:
    """The PaidOutBatch records of a transaction receipt."""
    return [_batch_log(log) for log in channels.contract.events.PaidOutBatch().process_receipt(receipt, errors=DISCARD)]


def payout_batches(channels: ChannelsClient, from_block: int, to_block: int) -> list[PayoutBatchLog]:
    """Every PaidOutBatch record of the channels contract in [from_block, to_block], oldest first."""
    logs = channels.contract.events.PaidOutBatch().get_logs(from_block=from_block, to_block=to_block)
    return [_batch_log(log) for log in logs]


def payouts_in(channels: ChannelsClient, receipt: Any) -> list[PaidOut]:
    """The payouts a payoutBatch receipt made, in the order the payees were listed."""
    return [p for batch in payout_batches_in(channels, receipt) for p in batch.paid()]


def payout_skips_in(channels: ChannelsClient, receipt: Any) -> list[tuple[Address, str]]:
    """(payee, reason error name) of each payee a payoutBatch receipt skipped, in list order."""
    return [
        (e.payee, e.reason)
        for batch in payout_batches_in(channels, receipt)
        for e in batch.entries
        if e.reason is not None
    ]


def payouts_to(channels: ChannelsClient, payee: str, from_block: int = 0) -> list[tuple[str, PaidOut]]:
    """(transaction hash, payout) of every payout of `payee` since `from_block`, oldest first (a log scan: for tools
    and tests; the relay keeps its own index, relay.payouts)."""
    payee = to_address(payee)
    head = int(channels.w3.eth.block_number)
    return [
        ("0x" + batch.tx_hash.hex(), p)
        for batch in payout_batches(channels, from_block, head)
        for p in batch.paid()
        if p.payee == payee
    ]
