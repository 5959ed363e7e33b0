"""The relay's gas-free routes (issue 13): it submits what a listener or payee signed, and pays the gas.

    GET  /api/v1/onboard/quote      the gasless contract, its EIP-712 domain, the relay's fee: shown before signing
    POST /api/v1/onboard/open       {auth: OpenChannel, signature, permit?}: open a channel for a listener
    POST /api/v1/onboard/topup      {auth: TopUpChannel, signature, permit?}: top it up
    POST /api/v1/onboard/close      {auth: CloseChannel, signature}: close it cooperatively at the voucher the relay
                                    co-signed (POST /channels/{id}/close first); the fee comes out of the refund
    POST /api/v1/payouts/schedule   {auth: PayoutSchedule, signature}: a payee's payout schedule (or opt-out)
    GET  /api/v1/artists/{address}/payouts   per token: the schedule, the next payout, every payout with its
                                    transaction (the payee's own read token, like its earnings)

Bodies are validated strictly here (amounts as decimal strings, 0x-hex bytes); refusals use the relay's error
format and codes (docs/API.md). The relay keeps `gasless_fee` from each open, top-up and close (≤ the signed
maxFee) and nothing for a schedule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictBool, StrictInt

from chainstream.chain.gasless import NO_PERMIT, PermitSig
from chainstream.protocol import Signature
from chainstream.protocol.gasless import CloseAuth, OpenAuth, ScheduleAuth, TopUpAuth
from chainstream.protocol.types import to_address, to_bytes32
from chainstream.relay.api.models import (
    ChannelClosed,
    ChannelOpened,
    ChannelToppedUp,
    OnboardQuote,
    Payouts,
    ScheduleSet,
)
from chainstream.relay.openapi import COMMON, READ, WITH_BODY, ErrorResponse
from chainstream.relay.payouts import PayoutPusher, payout_view
from chainstream.relay.read_auth import ReadAuth
from chainstream.relay.schemas import AddressStr, Amount, Hex32, Strict

if TYPE_CHECKING:
    from chainstream.relay.onboarding import Onboarding
    from chainstream.relay.service import RelayService

SignatureHex = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$")]
Uint32 = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]
Uint256 = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,77})$", description="decimal string")]

#: refusals of the gas-free routes, beyond the relay's common ones (docs/API.md)
_REFUSALS: dict[int, str] = {
    400: "`bad_authorization`: a field out of its type's range; `request_refused`: the body is not JSON",
    402: "`insufficient_allowance`: the permit is missing or for too little",
    403: "`wrong_relay`, `wrong_submitter`, `unauthorized_signer`",
    404: "`unknown_channel`",
    409: "`authorization_used`, `channel_exists`, `close_state_mismatch`",
    422: "`bad_authorization`, `bad_amount`, `max_fee_too_low`, `authorization_expired`, `chain_refused`",
}


def _responses(*tables: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` in the relay's format (relay/openapi.py), from its common tables and these."""
    statuses: dict[int, list[str]] = {}
    for table in tables:
        for status, meaning in table.items():
            if meaning not in statuses.setdefault(status, []):
                statuses[status].append(meaning)
    return {status: {"model": ErrorResponse, "description": "; ".join(statuses[status])} for status in sorted(statuses)}


QUOTE_RESPONSES = _responses(COMMON)
PAYOUTS_RESPONSES = _responses(COMMON, {400: "`bad_address`"}, READ)
BODY_RESPONSES = _responses(COMMON, WITH_BODY, _REFUSALS)


class PermitIn(Strict):
    value: Uint256
    deadline: Uint256
    v: Annotated[StrictInt, Field(ge=27, le=28)]
    r: Hex32
    s: Hex32

    def to_permit(self) -> PermitSig:
        return PermitSig(int(self.value), int(self.deadline), self.v, to_bytes32(self.r, "r"), to_bytes32(self.s, "s"))


class OpenAuthIn(Strict):
    payer: AddressStr
    token: AddressStr
    relay: AddressStr
    sessionKey: AddressStr
    sessionExpiry: Uint32
    salt: Hex32
    amount: Amount
    maxFee: Amount
    submitter: AddressStr
    nonce: Uint256
    deadline: Uint256


class TopUpAuthIn(Strict):
    payer: AddressStr
    channelId: Hex32
    amount: Amount
    maxFee: Amount
    submitter: AddressStr
    nonce: Uint256
    deadline: Uint256


class CloseAuthIn(Strict):
    payer: AddressStr
    channelId: Hex32
    voucherDigest: Hex32
    maxFee: Amount
    submitter: AddressStr
    nonce: Uint256
    deadline: Uint256


class ScheduleAuthIn(Strict):
    payee: AddressStr
    token: AddressStr
    enabled: StrictBool
    recipient: AddressStr
    threshold: Amount
    period: Uint32
    maxFee: Amount
    nonce: Uint256
    deadline: Uint256


class OpenIn(Strict):
    auth: OpenAuthIn
    signature: SignatureHex
    permit: PermitIn | None = None


class TopUpIn(Strict):
    auth: TopUpAuthIn
    signature: SignatureHex
    permit: PermitIn | None = None


class CloseAuthBody(Strict):
    auth: CloseAuthIn
    signature: SignatureHex


class ScheduleIn(Strict):
    auth: ScheduleAuthIn
    signature: SignatureHex


def open_auth(a: OpenAuthIn) -> OpenAuth:
    return OpenAuth(
        to_address(a.payer),
        to_address(a.token),
        to_address(a.relay),
        to_address(a.sessionKey),
        a.sessionExpiry,
        to_bytes32(a.salt, "salt"),
        int(a.amount),
        int(a.maxFee),
        to_address(a.submitter),
        int(a.nonce),
        int(a.deadline),
    )


def top_up_auth(a: TopUpAuthIn) -> TopUpAuth:
    return TopUpAuth(
        to_address(a.payer),
        to_bytes32(a.channelId, "channelId"),
        int(a.amount),
        int(a.maxFee),
        to_address(a.submitter),
        int(a.nonce),
        int(a.deadline),
    )


def close_auth(a: CloseAuthIn) -> CloseAuth:
    return CloseAuth(
        to_address(a.payer),
        to_bytes32(a.channelId, "channelId"),
        to_bytes32(a.voucherDigest, "voucherDigest"),
        int(a.maxFee),
        to_address(a.submitter),
        int(a.nonce),
        int(a.deadline),
    )


def schedule_auth(a: ScheduleAuthIn) -> ScheduleAuth:
    return ScheduleAuth(
        to_address(a.payee),
        to_address(a.token),
        a.enabled,
        to_address(a.recipient),
        int(a.threshold),
        a.period,
        int(a.maxFee),
        int(a.nonce),
        int(a.deadline),
    )


def onboarding_router(
    svc: Callable[[], RelayService], onboarding: Callable[[], Onboarding], pusher: Callable[[], PayoutPusher]
) -> APIRouter:
    """The gas-free routes, on the relay that `svc()` / `onboarding()` return once the app has started."""
    api = APIRouter(prefix="/api/v1")

    @api.get("/onboard/quote", response_model=OnboardQuote, responses=QUOTE_RESPONSES)
    async def quote() -> dict[str, Any]:
        """The gasless contract and its EIP-712 domain, this relay's address (sign it as `submitter`, or zero for
        anyone) and the fee it keeps: the listener's signed `maxFee` must be at least `fee`."""
        return onboarding().quote()

    @api.post("/onboard/open", response_model=ChannelOpened, responses=BODY_RESPONSES)
    async def open_channel(body: OpenIn) -> dict[str, Any]:
        """Open a channel for a listener who signed an OpenChannel (and a permit for the gasless contract)."""
        auth = open_auth(body.auth)
        permit = body.permit.to_permit() if body.permit else NO_PERMIT
        done = await onboarding().open(auth, Signature.from_hex(body.signature), permit)
        cid = svc().channels.channel_id_for(auth.payer, auth.token, auth.relay, auth.salt)
        return done.as_json(channelId="0x" + cid.hex(), deposit=str(auth.amount - done.fee))

    @api.post("/onboard/topup", response_model=ChannelToppedUp, responses=BODY_RESPONSES)
    async def top_up(body: TopUpIn) -> dict[str, Any]:
        """Top up a channel of this relay for a payer who signed a TopUpChannel."""
        auth = top_up_auth(body.auth)
        permit = body.permit.to_permit() if body.permit else NO_PERMIT
        done = await onboarding().top_up(auth, Signature.from_hex(body.signature), permit)
        return done.as_json(channelId=body.auth.channelId, added=str(auth.amount - done.fee))

    @api.post("/onboard/close", response_model=ChannelClosed, responses=BODY_RESPONSES)
    async def close(body: CloseAuthBody) -> dict[str, Any]:
        """Close cooperatively a channel whose close this relay co-signed, at that voucher."""
        auth = close_auth(body.auth)
        signed = svc().closes.gas_free(auth.channel_id, auth.voucher_digest)
        done = await onboarding().close(
            auth, Signature.from_hex(body.signature), signed.final, signed.prev_amounts, signed.relay_signature
        )
        return done.as_json(channelId=body.auth.channelId)

    @api.post("/payouts/schedule", response_model=ScheduleSet, responses=BODY_RESPONSES)
    async def schedule(body: ScheduleIn) -> dict[str, Any]:
        """Submit a payee's signed payout schedule (or opt-out); the relay then pushes its due balances."""
        done = await onboarding().schedule(schedule_auth(body.auth), Signature.from_hex(body.signature))
        return done.as_json(payee=body.auth.payee, token=body.auth.token, enabled=body.auth.enabled)

    @api.get("/artists/{address}/payouts", response_model=Payouts, responses=PAYOUTS_RESPONSES)
    async def payouts(address: str, request: Request) -> dict[str, Any]:
        """The payee's payout schedules (from the contract), when each next payout is due, and every payout made
        (the entries of PaidOutBatch records: amount, fee, recipient, transaction), per token."""
        payee = ReadAuth(svc()).artist(request, address)
        s = svc()
        seen = list(pusher().history.get(payee, ()))
        return {"payee": payee, "tokens": await asyncio.to_thread(payout_view, s.channels, payee, s.tokens(), seen)}

    return api
