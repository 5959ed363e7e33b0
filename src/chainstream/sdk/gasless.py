"""Gas-free paths of the SDK: a listener with only the token opens, tops up and closes through the relay; a payee
signs its payout schedule. Nothing here sends a transaction: the wallet signs, the relay submits and keeps its fee.

The gasless contract's address comes from the chain (ChainStreamChannels.gasless()), never from the relay, and the
relay's quoted fee is checked against the caller's `max_fee` before anything is signed: a relay cannot make a
listener sign for a larger fee than it agreed to.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chainstream.chain.contracts import ChannelsClient, TokenClient
from chainstream.chain.gasless import GaslessClient, PermitSig, sign_permit
from chainstream.errors import ProtocolError
from chainstream.protocol import PrivateKey, Signature, Voucher
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.protocol.gasless import CloseAuth, OpenAuth, ScheduleAuth, TopUpAuth
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, to_address
from chainstream.sdk.client import RelayClient

if TYPE_CHECKING:
    from chainstream.sdk.listener import Listener

AUTH_TTL = 600  # seconds an authorisation (and its permit) stays valid


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _permit_json(p: PermitSig) -> dict[str, Any]:
    return {"value": str(p.value), "deadline": str(p.deadline), "v": p.v, "r": _hex(p.r), "s": _hex(p.s)}


def _sig_hex(s: Signature) -> str:
    return s.to_hex()


def quoted_fee(relay: RelayClient, max_fee: int | None) -> tuple[int, dict[str, Any]]:
    """The relay's fee, refused (fee_above_max) if it exceeds what the caller accepts; returns (max_fee, quote)."""
    quote = relay.get("/onboard/quote")
    fee = int(quote["fee"])
    if max_fee is None:
        max_fee = fee
    if fee > max_fee:
        raise ProtocolError(f"the relay asks a fee of {fee}, more than the {max_fee} accepted", code="fee_above_max")
    return max_fee, quote


def open_request(
    listener: Listener, amount: int, token: str, *, max_fee: int | None, session_ttl: int, salt: bytes | None
) -> tuple[OpenAuth, dict[str, Any]]:
    """The signed open authorisation and permit, as POST /onboard/open takes them (nothing is sent)."""
    relay = listener._client()
    max_fee, quote = quoted_fee(relay, max_fee)
    # The channel's relay is the one this client talks to (GET /info, as open_channel takes it), whatever the
    # quote says: a relay cannot have a listener sign a channel for another address.
    relay_address = to_address(relay.info()["relay"])
    gasless = GaslessClient.of(listener.channels)
    now = int(listener.w3.eth.get_block("latest")["timestamp"])
    token = to_address(token)
    auth = OpenAuth(
        payer=listener.address,
        token=token,
        relay=relay_address,
        session_key=listener.session_key.address,
        session_expiry=now + session_ttl,
        salt=salt or os.urandom(32),
        amount=amount,
        max_fee=max_fee,
        submitter=to_address(quote["submitter"]),
        nonce=int.from_bytes(os.urandom(32), "big"),
        deadline=now + AUTH_TTL,
    )
    permit = sign_permit(listener.w3, token, listener.wallet, gasless.address, amount, now + AUTH_TTL)
    body = {
        "auth": _auth_json(auth.message()),
        "signature": _sig_hex(auth.sign(listener.wallet, gasless.domain)),
        "permit": _permit_json(permit),
    }
    return auth, body


def open_gasless(
    listener: Listener, amount: int, token: str, *, max_fee: int | None, session_ttl: int, salt: bytes | None
) -> bytes:
    auth, body = open_request(listener, amount, token, max_fee=max_fee, session_ttl=session_ttl, salt=salt)
    reply = listener._client().post("/onboard/open", body)
    cid = listener.channels.channel_id_for(listener.address, auth.token, auth.relay, auth.salt)
    if bytes.fromhex(reply["channelId"][2:]) != cid:
        raise ProtocolError("the relay answered for another channel", code="untrusted_state")
    return cid


def top_up_gasless(listener: Listener, amount: int, *, max_fee: int | None) -> int:
    relay = listener._client()
    max_fee, _ = quoted_fee(relay, max_fee)
    gasless = GaslessClient.of(listener.channels)
    now = int(listener.w3.eth.get_block("latest")["timestamp"])
    auth = TopUpAuth(
        listener.address,
        listener._cid(),
        amount,
        max_fee,
        ZERO_ADDRESS,
        int.from_bytes(os.urandom(32), "big"),
        now + AUTH_TTL,
    )
    permit = sign_permit(listener.w3, listener.token, listener.wallet, gasless.address, amount, now + AUTH_TTL)
    body = {
        "auth": _auth_json(auth.message()),
        "signature": _sig_hex(auth.sign(listener.wallet, gasless.domain)),
        "permit": _permit_json(permit),
    }
    reply = relay.post("/onboard/topup", body)
    return int(reply["added"])


def close_gasless(listener: Listener, *, max_fee: int | None) -> int:
    """Ask the relay to co-sign the close at our latest voucher, then sign CloseChannel; returns the refund."""
    relay = listener._client()
    max_fee, _ = quoted_fee(relay, max_fee)
    cid = listener._cid()
    domain = listener.channels.domain
    voucher = listener.state.voucher if listener.state is not None else Voucher.empty(cid)
    voucher_digest = voucher.digest(domain) if voucher.payees else ZERO_HASH
    request_sig = listener.session_key.sign(domain.digest(close_struct_hash(cid, voucher_digest)))
    relay.post(
        f"/channels/{_hex(cid)}/close", {"voucherDigest": _hex(voucher_digest), "signature": request_sig.to_hex()}
    )
    gasless = GaslessClient.of(listener.channels)
    now = int(listener.w3.eth.get_block("latest")["timestamp"])
    auth = CloseAuth(
        listener.address,
        cid,
        voucher_digest,
        max_fee,
        ZERO_ADDRESS,
        int.from_bytes(os.urandom(32), "big"),
        now + AUTH_TTL,
    )
    erc20 = TokenClient(listener.w3, listener.token)
    before = erc20.balance_of(listener.address)
    relay.post(
        "/onboard/close",
        {"auth": _auth_json(auth.message()), "signature": _sig_hex(auth.sign(listener.wallet, gasless.domain))},
    )
    return erc20.balance_of(listener.address) - before


def schedule_payouts(
    key: PrivateKey,
    channels: ChannelsClient,
    relay: RelayClient,
    token: str,
    *,
    threshold: int = 0,
    period: int = 0,
    max_fee: int | None = None,
    recipient: str = ZERO_ADDRESS,
    enabled: bool = True,
) -> dict[str, Any]:
    """Sign a payout schedule (or, enabled False, an opt-out) and have the relay submit it."""
    quote = relay.get("/onboard/quote")
    if max_fee is None:
        max_fee = int(quote["payoutFee"])
    gasless = GaslessClient.of(channels)
    now = int(channels.w3.eth.get_block("latest")["timestamp"])
    auth = ScheduleAuth(
        key.address,
        to_address(token),
        enabled,
        to_address(recipient),
        threshold,
        period,
        max_fee,
        gasless.schedule_nonce(key.address),
        now + AUTH_TTL,
    )
    body = {"auth": _auth_json(auth.message()), "signature": _sig_hex(auth.sign(key, gasless.domain))}
    reply: dict[str, Any] = relay.post("/payouts/schedule", body)
    return reply


#: fields the relay takes as numbers; the other integers travel as decimal strings
_NUMBERS = {"sessionExpiry", "period"}


def _auth_json(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in message.items():
        if isinstance(value, bool) or key in _NUMBERS or not isinstance(value, int):
            out[key] = value
        else:
            out[key] = str(value)
    return out


__all__ = ["close_gasless", "open_gasless", "open_request", "schedule_payouts", "top_up_gasless"]
