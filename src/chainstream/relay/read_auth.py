"""Who may read what: the relay's private reads need a read token (protocol/read_token.py).

Listening history is personal data. A channel's summary, history and live payments, and the list of a listener's
channels, are shown only to the channel's payer or its session key; an artist's earnings and live payments only
to the artist. The token comes in ``Authorization: ChainStream-Read <token>`` or, where a client cannot set
headers (EventSource, a download link), in the ``readToken`` query parameter.

Refusals, in this order (no oracle on whose the data is before the token checks out):

- ``read_token_required`` (401): no token;
- ``read_token_invalid`` (401): malformed; valid for longer than ``read_token_max_ttl``; or not signed by its
  account or a live session key of it (earnings: by the payee itself); a token signed for another relay or chain
  lands here too;
- ``read_token_expired`` (401): ``notAfter`` passed (allowing ``read_token_skew`` seconds);
- ``read_forbidden`` (403): a token that does not open this read (another account, another channel, or a
  one-channel token for an all-channels read).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.read_token import AUTH_SCHEME, QUERY_PARAMETER, ReadToken
from chainstream.protocol.types import Address, to_address
from chainstream.relay.api.models import OnChainView
from chainstream.relay.channel_cache import ChannelRuntime
from chainstream.relay.service import RelayService
from chainstream.store import ChannelRecord
from chainstream.verify import Payment, Rejection

__all__ = ["ReadAuth", "on_chain_view", "resync_state"]


def _token_text(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != AUTH_SCHEME.lower() or not value.strip():
            raise Rejection(Code.READ_TOKEN_INVALID, f"the Authorization header must be '{AUTH_SCHEME} <token>'")
        return value.strip()
    return request.query_params.get(QUERY_PARAMETER)


class ReadAuth:
    """The relay's read rules over its live channel state (one per app, around the running service)."""

    def __init__(self, service: RelayService) -> None:
        self.service = service

    def token(self, request: Request) -> ReadToken:
        """The request's token, well-formed and within its validity window (its signer is checked per read)."""
        text = _token_text(request)
        if text is None:
            raise Rejection(
                Code.READ_TOKEN_REQUIRED,
                f"this read shows a listener's or an artist's own data: send 'Authorization: {AUTH_SCHEME} <token>' "
                "signed by the owner (docs/API.md, read tokens)",
            )
        try:
            token = ReadToken.parse(text)
        except ProtocolError as exc:
            raise Rejection(Code.READ_TOKEN_INVALID, str(exc)) from exc
        settings = self.service.settings
        now = int(self.service.clock())
        if token.not_after + settings.read_token_skew < now:
            raise Rejection(Code.READ_TOKEN_EXPIRED, f"the read token expired at {token.not_after}")
        if token.not_after > now + settings.read_token_max_ttl + settings.read_token_skew:
            raise Rejection(
                Code.READ_TOKEN_INVALID,
                f"the read token is valid for longer than {settings.read_token_max_ttl} s: sign a shorter one",
            )
        return token

    def _signer(self, token: ReadToken) -> Address:
        try:
            return token.signer(self.service.domain, self.service.address)
        except ProtocolError as exc:
            raise Rejection(Code.READ_TOKEN_INVALID, str(exc)) from exc

    def _live_session_key(self, record: ChannelRecord, signer: Address) -> bool:
        """Whether `signer` is the channel's session key and it has not expired (by chain time)."""
        return signer == record.session_key and record.session_expiry > self.service.chain_now()

    @staticmethod
    def _forbidden(what: str) -> Rejection:
        return Rejection(Code.READ_FORBIDDEN, f"this read token does not open {what}")

    async def channel(self, request: Request, channel_id: bytes) -> ChannelRuntime:
        """A channel's summary, history or live payments: its payer's token (for it, or for all its channels),
        signed by the payer or the channel's live session key."""
        token = self.token(request)
        rt = await self.service.cache.current(channel_id)  # unknown_channel (404) for an id the chain does not know
        record = rt.record
        if token.account != record.payer or not (token.all_channels or token.channel_id == channel_id):
            raise self._forbidden(f"channel 0x{channel_id.hex()}")
        signer = self._signer(token)
        if signer != record.payer and not self._live_session_key(record, signer):
            raise Rejection(
                Code.READ_TOKEN_INVALID,
                "the read token is not signed by the channel's payer or its live session key (for this relay)",
            )
        return rt

    def listener(self, request: Request, address: str) -> list[tuple[ChannelRecord, bool]]:
        """A listener's channels: its all-channels token, signed by it or a live session key of one of them.
        Each channel comes with whether the signer may read all of it: a session key reads only its own channel
        in full, and the others as the chain shows them (see `on_chain_view`)."""
        account = to_address(address)
        token = self.token(request)
        if token.account != account or not token.all_channels:
            raise self._forbidden(f"the channels of {account}")
        records = self.service.store.channels_of(account)
        signer = self._signer(token)
        if signer != account and not any(self._live_session_key(r, signer) for r in records):
            raise Rejection(
                Code.READ_TOKEN_INVALID,
                "the read token is not signed by the listener or a live session key of its channels (for this relay)",
            )
        return [(r, signer == account or self._live_session_key(r, signer)) for r in records]

    def artist(self, request: Request, address: str) -> Address:
        """A payee's earnings and live payments: its all-channels token, signed by the payee's own key."""
        payee = to_address(address)
        token = self.token(request)
        if token.account != payee or not token.all_channels:
            raise self._forbidden(f"the earnings of {payee}")
        signer = self._signer(token)
        if signer != payee:
            raise Rejection(
                Code.READ_TOKEN_INVALID,
                "earnings are shown to the payee itself: the read token must be signed by its own key (for this relay)",
            )
        return payee


def on_chain_view(service: RelayService, record: ChannelRecord) -> OnChainView:
    """What anyone can read about a channel from the chain (no spending, plays or caps): the listing of a payer's
    other channels for a session key, which may read only its own channel in full."""
    settled = service.store.get_settled(record.channel_id)
    return OnChainView(
        channelId="0x" + record.channel_id.hex(),
        payer=record.payer,
        token=record.token,
        relay=service.address,
        status=record.status,
        closesAt=record.closes_at,
        deposit=str(record.deposit),
        settled=str(settled.total if settled else 0),
        sessionKey=record.session_key,
        sessionExpiry=record.session_expiry,
        partial=True,
    )


async def resync_state(service: RelayService, payment: Payment) -> dict[str, Any] | None:
    """The channel's state for a refused payment's resync, only if the payment is signed by the channel's payer or
    session key: a made-up payment with a stale seq must not read someone's channel."""
    rt = await service.cache.current(payment.channel_id)
    return service.channel_summary(rt).model_dump() if service.signed_for(rt, payment) else None
