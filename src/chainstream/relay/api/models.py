"""The relay's JSON responses, one pydantic model per shape: the routes declare them (`response_model=`, so the
OpenAPI document shows every answer) and the SDK parses answers with them (sdk/client.py, listener.py).

Wire names are the API's (camelCase); amounts are decimal strings (they exceed JavaScript's safe integers),
bytes 0x-hex. Unknown fields are ignored when parsing, so a client keeps working when the relay adds one. Routes
serialise with `exclude_unset`: an optional member (`grant`, `identity`) is absent, not null, when not given.
No module here imports the web framework: the SDK depends on pydantic only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from chainstream.protocol import KindName

#: a decimal string in the token's smallest unit
Amount = str


class Out(BaseModel):
    """A response body (fields in wire order)."""


# ---------------------------------------------------------------------------------------------------- channels
class VoucherJSON(Out):
    """A voucher as the relay shows it: its payees, their cumulative amounts, the play hash, the listener's
    signature (None for a channel with no voucher yet)."""

    payees: list[str]
    amounts: list[Amount]
    playHash: str
    signature: str | None


class ChannelSummary(Out):
    """GET /channels/{id}: the channel's state as the relay holds it (its payer's read token)."""

    channelId: str
    payer: str
    token: str
    relay: str
    status: Literal["open", "closing", "closed"]
    closesAt: int
    deposit: Amount
    spent: Amount
    settled: Amount
    remaining: Amount
    spentToday: Amount
    dailyCap: Amount | None
    sessionCap: Amount | None
    capsIssuedAt: int
    sessionKey: str
    sessionExpiry: int
    seq: int
    voucher: VoucherJSON
    plays: dict[str, int] = Field(description="track id -> plays paid in the channel")
    owned: list[str] = Field(description="track ids the channel's listener owns")


class OnChainView(Out):
    """A channel as anyone can read it on chain (no spending, plays or caps): in a listener's channel list, the
    channels a session key's token does not open in full."""

    channelId: str
    payer: str
    token: str
    relay: str
    status: Literal["open", "closing", "closed"]
    closesAt: int
    deposit: Amount
    settled: Amount
    sessionKey: str
    sessionExpiry: int
    partial: Literal[True]


class ListenerChannels(Out):
    """GET /listeners/{address}/channels."""

    channels: list[ChannelSummary | OnChainView]


class Delivery(Out):
    """Per track: seconds paid for (per-second receipts) vs seconds of audio the relay served on the channel."""

    trackId: str
    secondsPaid: int
    secondsDelivered: float
    secondsDeliveredMetered: float
    segments: int


class HistoryItem(Out):
    seq: int
    kind: KindName
    target: str
    title: str | None
    units: int
    amount: Amount
    total: Amount
    memo: str
    payments: dict[str, Amount] = Field(description="payee -> what this payment credited it")
    at: int | float = Field(description="when the relay accepted it (unix seconds)")
    digest: str


class History(Out):
    """GET /channels/{id}/history: the channel's payments, newest first."""

    channelId: str
    items: list[HistoryItem]
    delivered: list[Delivery]


class Deliveries(Out):
    """GET /channels/{id}/deliveries."""

    channelId: str
    tracks: list[Delivery]


class CloseReply(Out):
    """POST /channels/{id}/close: the relay's consent to a cooperative close at the latest voucher."""

    channelId: str
    voucher: VoucherJSON | None
    prevAmounts: list[Amount] = Field(description="what earlier settlements credited each payee")
    relaySignature: str


class TypedDataDoc(Out):
    """An EIP-712 typed-data document, as wallets sign it (eth_signTypedData_v4)."""

    types: dict[str, list[dict[str, str]]]
    primaryType: str
    domain: dict[str, Any]
    message: dict[str, Any]


# ---------------------------------------------------------------------------------------------------- payments
class PaymentReply(Out):
    """POST /channels/{id}/payments: the payment is stored durably (`accepted`), or was already (`duplicate`)."""

    status: Literal["accepted", "duplicate"]
    channelId: str
    seq: int
    total: Amount
    amount: Amount
    digest: str
    remaining: Amount
    spentToday: Amount
    dailyCap: Amount | None
    grant: dict[str, Any] | None = Field(None, description="a payment for a track: the grant that opens its audio")


class ItemError(Out):
    code: str
    message: str
    details: dict[str, str] = Field(description="the numbers behind the refusal (docs/API.md, Error details)")
    status: int = Field(description="the status the single-payment endpoint would answer")
    retryAfter: int | None = Field(None, description="seconds to wait before resending (503: node or database away)")


class ItemAck(PaymentReply):
    """A batch item or stream message accepted: its acknowledgement, with the request's id."""

    id: int | str | None
    ok: Literal[True]


class ItemRefused(Out):
    """A batch item or stream message refused: its error (and, for a resync refusal, the channel's state)."""

    id: int | str | None = None
    ok: Literal[False]
    error: ItemError
    state: ChannelSummary | None = None


class BatchReply(Out):
    """POST /payments/batch: one result per payment, in order."""

    results: list[ItemAck | ItemRefused]


# ----------------------------------------------------------------------------------------------------- catalog
class TermsJSON(Out):
    perPlay: Amount
    perSecond: Amount
    download: Amount
    model: int
    ownAfter: int
    minSeconds: int


class SplitJSON(Out):
    recipients: list[str]
    bps: list[int]
    feeRecipient: str
    feeBps: int


class Track(Out):
    """GET /tracks/{id}: a registered track, its split and its terms per token."""

    trackId: str
    title: str
    owner: str
    splitVersion: int
    splitHash: str
    split: SplitJSON
    terms: dict[str, TermsJSON] = Field(description="token address -> terms")
    registeredAt: int
    media: str
    artistName: str | None = Field(
        None, description="the owner's name from the profile it signed (GET /artists/{owner}/profile to verify)"
    )


class CatalogReply(Out):
    """GET /catalog."""

    tracks: list[Track]


# ------------------------------------------------------------------------------------------------------- audio
class SegmentJSON(Out):
    index: int
    start: float
    duration: float
    url: str


class OriginalJSON(Out):
    url: str
    bytes: int
    format: str


class Manifest(Out):
    """GET /tracks/{id}/media: the published audio's segments (free to read; segments are paid)."""

    trackId: str
    duration: float
    mime: str
    init: str
    segments: list[SegmentJSON]
    original: OriginalJSON
    previewSeconds: float
    grantHeader: str


class Published(Manifest):
    """PUT /tracks/{id}/media: the manifest of the audio now published (or published before)."""

    status: Literal["published", "already_published"]


# ----------------------------------------------------------------------------------------------------- artists
class ArtistProfileReply(Out):
    """GET/PUT /artists/{address}/profile: the newest profile the artist signed, with the signature, so a client
    verifies it (EIP-712 ArtistProfile under the relay's domain, GET /info) instead of trusting the relay."""

    artist: str
    name: str
    issuedAt: int
    signature: str


class TokenEarnings(Out):
    pending: Amount
    settled: Amount
    claimed: Amount
    total: Amount


class TrackEarnings(Out):
    token: str
    target: str
    plays: int
    seconds: int = Field(description="seconds paid for (per-second receipts)")
    secondsDelivered: float = Field(
        description="seconds of audio the relay served of this track, metered (per-second plays), on the channels "
        "that paid this payee for it"
    )
    tips: Amount
    downloads: int
    earned: Amount
    pending: Amount
    settled: Amount
    claimed: Amount
    title: str | None


class EarningsPoint(Out):
    token: str
    hour: int
    amount: Amount


class EarningsReply(Out):
    """GET /artists/{address}/earnings (JSON)."""

    payee: str
    tokens: dict[str, TokenEarnings]
    tracks: list[TrackEarnings]
    timeline: list[EarningsPoint]


# -------------------------------------------------------------------------------------------------------- relay
class ChainCheck(Out):
    reachable: bool
    head: int | None


class WatcherCheck(Out):
    block: int | None
    lag: int | None


class DatabaseCheck(Out):
    writable: bool


class Health(Out):
    """GET /health: `ok` is readiness (GET /health/ready), with `reasons` when it is false."""

    ok: bool
    reasons: list[str]
    accepted: int
    block: int | None
    instance: str
    leader: bool
    chain: ChainCheck
    watcher: WatcherCheck
    database: DatabaseCheck


class Live(Out):
    """GET /health/live: the process is up."""

    ok: bool


class Ready(Out):
    """GET /health/ready when ready (else 503 `not_ready`, with the same checks)."""

    ok: bool
    reasons: list[str]
    chain: ChainCheck
    watcher: WatcherCheck
    database: DatabaseCheck


class TokenJSON(Out):
    address: str
    symbol: str
    decimals: int


class Identity(Out):
    challenge: str
    signature: str = Field(description="the relay key's over RelayIdentity(challenge)")


class Info(Out):
    """GET /info: what a client needs to talk to this relay."""

    chainId: int
    channels: str
    registry: str
    stablecoin: str | None
    relay: str
    challengePeriod: int
    keyRotationGrace: int
    sessionMargin: int
    domain: dict[str, Any]
    tokens: list[TokenJSON]
    time: int = Field(description="the relay's clock (unix seconds), which judges read tokens' notAfter")
    readTokenMaxTtl: int
    identity: Identity | None = None


# -------------------------------------------------------------------------------------------- gas-free, payouts
class OnboardQuote(Out):
    """GET /onboard/quote: what a listener signs against (docs/API.md, Gas-free onboarding)."""

    gasless: str
    chainId: int
    domain: dict[str, Any]
    relay: str
    submitter: str
    fee: str
    payoutFee: str


class Submitted(Out):
    """A gas-free authorisation the relay submitted: its transaction and the fee it kept (each route's answer
    below adds what it did)."""

    txHash: str
    block: int
    fee: Amount


class ChannelOpened(Submitted):
    """POST /onboard/open: the channel opened, and its deposit (the signed amount less the fee)."""

    channelId: str
    deposit: Amount


class ChannelToppedUp(Submitted):
    """POST /onboard/topup: what the top-up added to the channel's deposit (the signed amount less the fee)."""

    channelId: str
    added: Amount


class ChannelClosed(Submitted):
    """POST /onboard/close: the channel closed cooperatively (the fee came out of the payer's refund)."""

    channelId: str


class ScheduleSet(Submitted):
    """POST /payouts/schedule: the payee's payout schedule for a token, on or off (the relay keeps no fee)."""

    payee: str
    token: str
    enabled: bool


class Payouts(Out):
    """GET /artists/{address}/payouts: per token, the schedule, the next payout and every payout."""

    payee: str
    tokens: dict[str, dict[str, Any]]
