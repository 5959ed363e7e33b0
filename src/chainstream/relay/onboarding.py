"""Gas-free onboarding at the relay: it submits a listener's signed open, top-up and close, and a payee's signed
payout schedule, to the ChainStreamGasless contract, paying the gas and keeping `gasless_fee` in the token.

The relay checks off-chain what it can (its own address as the channel's relay, the submitter, the fee against
the signed maximum, the deadline, the signature) before spending gas; the contract checks everything again. The
transaction goes through the settler's TxSender so that the relay key's nonces stay in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3.types import TxReceipt

from chainstream.chain.contracts import ChannelsClient
from chainstream.chain.gasless import GaslessClient, PermitSig
from chainstream.chain.transactions import TxSender
from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.errors import ChainError
from chainstream.protocol import Signature, SignedVoucher, recover
from chainstream.protocol.gasless import CloseAuth, OpenAuth, ScheduleAuth, TopUpAuth
from chainstream.protocol.types import ZERO_ADDRESS, Address
from chainstream.verify import Rejection


@dataclass(frozen=True)
class Submitted:
    """A submitted authorisation: its transaction and the fee the relay kept."""

    tx_hash: str
    block: int
    fee: int

    def as_json(self, **extra: Any) -> dict[str, Any]:
        return {"txHash": self.tx_hash, "block": self.block, "fee": str(self.fee), **extra}


class Onboarding:
    """Submits signed gas-free authorisations for this relay."""

    def __init__(
        self, settings: Settings, channels: ChannelsClient, sender: TxSender, chain_now: Callable[[], float]
    ) -> None:
        self.settings = settings
        #: the chain's clock as the relay knows it (relay/clock.py): the deadline precheck asks no node, so a
        #: slow or hung node cannot stall the event loop the payments share
        self.chain_now = chain_now
        self.channels = channels
        self.sender = sender
        self.gasless = GaslessClient.of(channels)
        self.relay: Address = Address(sender.address)

    # ----------------------------------------------------------------- quote
    def quote(self) -> dict[str, Any]:
        """What a listener needs to sign: the domain, the relay's fee, and who submits."""
        return {
            "gasless": self.gasless.address,
            "chainId": self.gasless.domain.chain_id,
            "domain": self.gasless.domain.as_dict(),
            "relay": self.relay,
            "submitter": self.relay,
            "fee": str(self.settings.gasless_fee),
            "payoutFee": str(self.settings.payout_fee),
        }

    # --------------------------------------------------------------- submits
    async def open(self, auth: OpenAuth, signature: Signature, permit: PermitSig) -> Submitted:
        if auth.relay != self.relay:
            raise Rejection(Code.WRONG_RELAY, f"the authorisation opens a channel for {auth.relay}, not this relay")
        fee = self._fee(auth.max_fee, auth.amount)
        self._precheck(auth.payer, auth.submitter, auth.deadline, auth.digest(self.gasless.domain), signature)
        return await self._submit(lambda: self.gasless.open_for(self.sender, auth, signature, fee, permit), fee)

    async def top_up(self, auth: TopUpAuth, signature: Signature, permit: PermitSig) -> Submitted:
        state = await asyncio.to_thread(self.channels.get_channel, auth.channel_id)
        if state.payer == ZERO_ADDRESS:
            raise Rejection(Code.UNKNOWN_CHANNEL, "no channel with this id on the relay's chain")
        if state.relay != self.relay:
            raise Rejection(Code.WRONG_RELAY, "the channel was opened for another relay")
        fee = self._fee(auth.max_fee, auth.amount)
        self._precheck(auth.payer, auth.submitter, auth.deadline, auth.digest(self.gasless.domain), signature)
        return await self._submit(lambda: self.gasless.top_up_for(self.sender, auth, signature, fee, permit), fee)

    async def close(
        self,
        auth: CloseAuth,
        signature: Signature,
        final: SignedVoucher | None,
        prev_amounts: tuple[int, ...],
        relay_signature: Signature,
    ) -> Submitted:
        """Submit a close the relay already co-signed (POST /channels/{id}/close) at `auth.voucher_digest`."""
        fee = self._fee(auth.max_fee, None)
        self._precheck(auth.payer, auth.submitter, auth.deadline, auth.digest(self.gasless.domain), signature)
        return await self._submit(
            lambda: self.gasless.close_for(self.sender, auth, signature, fee, final, prev_amounts, relay_signature),
            fee,
        )

    async def schedule(self, auth: ScheduleAuth, signature: Signature) -> Submitted:
        self._precheck(auth.payee, ZERO_ADDRESS, auth.deadline, auth.digest(self.gasless.domain), signature)
        return await self._submit(lambda: self.gasless.set_schedule_for(self.sender, auth, signature), 0)

    # -------------------------------------------------------------- internal
    def _fee(self, max_fee: int, amount: int | None) -> int:
        fee = self.settings.gasless_fee
        if fee > max_fee:
            raise Rejection(
                Code.MAX_FEE_TOO_LOW,
                f"the relay's fee is {fee} (GET /onboard/quote); the authorisation allows at most {max_fee}",
            )
        if amount is not None and fee >= amount:
            raise Rejection(Code.BAD_AMOUNT, f"the amount {amount} does not cover the relay's fee {fee}")
        return fee

    def _precheck(self, signer: str, submitter: str, deadline: int, digest: bytes, signature: Signature) -> None:
        if submitter not in (ZERO_ADDRESS, self.relay):
            raise Rejection(Code.WRONG_SUBMITTER, f"the authorisation names {submitter} as its submitter")
        if signer == ZERO_ADDRESS:
            raise Rejection(Code.BAD_AUTHORIZATION, "the signer is the zero address")
        if recover(digest, signature) != signer:
            raise Rejection(Code.UNAUTHORIZED_SIGNER, "the signature is not the signer's over these terms")
        now = int(self.chain_now())
        if deadline < now:
            raise Rejection(Code.AUTHORIZATION_EXPIRED, f"the deadline {deadline} has passed (chain time {now})")

    async def _submit(self, send: Any, fee: int) -> Submitted:
        try:
            receipt: TxReceipt = await asyncio.to_thread(send)
        except ChainError as exc:
            raise _refusal(exc) from exc
        return Submitted("0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"]), fee)


def _refusal(exc: ChainError) -> Rejection:
    """The contract's refusal as the relay answers it (docs/API.md)."""
    reason, message = exc.reason or "", f"the contract refused it: {exc}"
    if reason in ("GaslessNonceUsed", "GaslessScheduleNonce"):
        return Rejection(Code.AUTHORIZATION_USED, message)
    if reason == "GaslessExpired":
        return Rejection(Code.AUTHORIZATION_EXPIRED, message)
    if reason == "GaslessInvalidSignature":
        return Rejection(Code.UNAUTHORIZED_SIGNER, message)
    if reason == "GaslessAllowanceTooLow":
        return Rejection(Code.INSUFFICIENT_ALLOWANCE, message)
    if reason == "ChannelExists":
        return Rejection(Code.CHANNEL_EXISTS, message)
    return Rejection(Code.CHAIN_REFUSED, message)


__all__ = ["Onboarding", "Submitted"]
