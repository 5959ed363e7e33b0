"""The relay's live channels: each channel's runtime (its record and the head its accepted payments made of it)
kept in memory, loaded on first use from the database or else from the chain (a channel just opened), reloaded
when another instance sharing the database changed it, and updated by what the chain says of it (watcher).

Other components change a channel through the named calls here (`mark_settled`, `apply_chain_state`, ...); the
payment pipeline (relay/service.py) swaps a runtime's head, the cooperative close (relay/closing.py) its record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from chainstream.chain.contracts import ChannelsClient, ChannelState, ChannelStatus
from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.errors import ChainStreamError
from chainstream.ledger import LedgerState
from chainstream.protocol import Domain, Signature, recover
from chainstream.protocol.types import ZERO_ADDRESS, Address
from chainstream.store import ChannelRecord, Store
from chainstream.store.records import ChannelPhase
from chainstream.verify import ChannelTerms, Rejection

DAY = 86_400
_STATUS_NAMES: dict[ChannelStatus, ChannelPhase] = {ChannelStatus.OPEN: "open", ChannelStatus.CLOSING: "closing"}
#: at most this many re-reads of a channel from the chain within REFRESH_WINDOW seconds: enough for "refused, top
#: up, retry", too few for refused payments (anyone can sign one) to turn into a flood of calls to the node
REFRESH_BURST, REFRESH_WINDOW = 3, 5.0
#: a channel id the chain did not know (or that is another relay's) is answered from memory for this long, so
#: that requests for made-up ids do not each cost a call to the node; at most NOT_OURS_MAX ids are kept
NOT_OURS_TTL, NOT_OURS_MAX = 2.0, 10_000


def status_name(status: ChannelStatus) -> ChannelPhase:
    """The store's name for a contract channel status (None and Closed are both "closed" to the relay)."""
    return _STATUS_NAMES.get(status, "closed")


@dataclass(frozen=True)
class ChannelHead:
    """What the channel's accepted payments have made of it, swapped as one value when a payment is accepted (and
    swapped back if its commit fails): the ledger after the latest voucher, today's spending, and that voucher's
    digest and signature (None before the first)."""

    ledger: LedgerState
    spent_today: int
    day: int
    digest: bytes | None = None
    signature: bytes | None = None

    def on_day(self, day: int) -> ChannelHead:
        """The head as of UTC day `day` (a new day starts with nothing spent)."""
        return self if day == self.day else replace(self, day=day, spent_today=0)


@dataclass
class ChannelRuntime:
    record: ChannelRecord
    head: ChannelHead
    caps_issued_at: int = 0
    unsettled_since: float | None = None
    #: the commit of the newest accepted-but-not-yet-durable payment; awaited before anything is said about it
    in_flight: asyncio.Future[frozenset[bytes]] | None = field(default=None)
    #: when the channel was last re-read from the chain after refusals (clock seconds, newest last)
    refreshes: tuple[float, ...] = ()
    #: ChannelTerms derived from `record`, rebuilt when `record` is replaced (see RelayService._terms)
    terms: tuple[ChannelRecord, ChannelTerms] | None = field(default=None, repr=False)
    #: set while a refused payment re-reads the channel from the chain; later payments of the channel wait for it,
    #: so a batch or stream is decided in order (seq 2 is not judged against the head seq 1 has not reached yet)
    refreshing: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def ledger(self) -> LedgerState:
        return self.head.ledger

    @property
    def spent_today(self) -> int:
        return self.head.spent_today

    @property
    def head_digest(self) -> bytes | None:
        """The digest of the latest accepted voucher (None before the first): what the next payment extends."""
        return self.head.digest

    @property
    def head_signature(self) -> bytes | None:
        """The listener's signature over that voucher (shown in the summary, so a client can check the state)."""
        return self.head.signature

    async def durable(self) -> None:
        """Wait until every payment accepted so far on this channel is committed (commits are FIFO)."""
        if self.in_flight is not None and not self.in_flight.done():
            await asyncio.shield(self.in_flight)


def authorised_signer(
    record: ChannelRecord, digest: bytes, signature: Signature, what: str, chain_now: float
) -> Address:
    """Who signed `digest`, if it is the channel's payer or its session key while the key is valid (chain time);
    else bad_signature (422), unauthorized_signer or session_key_expired (403). An expired key has no powers
    left: no caps, no close request, no resync state. (Payments: verify_payment, with the margin.)"""
    try:
        signer = recover(digest, signature)
    except ChainStreamError as exc:
        raise Rejection(Code.BAD_SIGNATURE, str(exc)) from exc
    if signer == ZERO_ADDRESS or signer not in (record.payer, record.session_key):
        raise Rejection(Code.UNAUTHORIZED_SIGNER, f"{what} must be signed by the payer or its session key")
    if signer != record.payer and record.session_expiry < chain_now:
        raise Rejection(Code.SESSION_KEY_EXPIRED, f"the session key that signed {what} has expired")
    return signer


def _with_chain_state(record: ChannelRecord, state: ChannelState) -> ChannelRecord:
    """`record` with what the contract says of the channel; the relay's own fields (caps, co-signed close) kept.
    The key's validity is the contract's (sessionKeyValidUntil), not its stored expiry alone: a key revoked and
    set again with a short expiry still settles through its grace, so the relay settles it then."""
    return replace(
        record,
        deposit=state.deposit,
        session_key=state.session_key,
        session_expiry=state.session_valid_until,
        status=status_name(state.status),
        closes_at=state.closes_at,
    )


class ChannelCache:
    """The channels this relay instance holds in memory, by id."""

    def __init__(
        self,
        *,
        settings: Settings,
        channels: ChannelsClient,
        store: Store,
        address: Address,
        clock: Callable[[], float],
    ) -> None:
        """`clock` is the relay's wall clock: it decides which UTC day a loaded channel's spending counts."""
        self.settings = settings
        self.channels = channels
        self.store = store
        self.address = address
        self.domain: Domain = channels.domain
        self.clock = clock
        self._runtime: dict[bytes, ChannelRuntime] = {}
        self._loading: dict[bytes, asyncio.Task[ChannelRuntime]] = {}
        self._load_waiters: dict[bytes, int] = {}  # requests waiting for a channel's load, not yet resumed
        self._not_ours: dict[bytes, tuple[float, Rejection]] = {}

    # ----------------------------------------------------------------- lookups
    async def runtime(self, channel_id: bytes) -> ChannelRuntime:
        """The channel's live state: from memory, else the database, else the chain (a channel just opened)."""
        rt = self._runtime.get(channel_id)
        if rt is not None:
            # Requests that queued on this channel's load are resumed one by one once it is done: go after them,
            # or a pipelined payment could overtake earlier ones (and be refused with seq_gap).
            while channel_id in self._load_waiters:
                await asyncio.sleep(0)
            return rt
        task = self._loading.get(channel_id)
        if task is None:
            task = asyncio.ensure_future(self._load(channel_id))
            self._loading[channel_id] = task
        self._load_waiters[channel_id] = self._load_waiters.get(channel_id, 0) + 1
        try:
            return await task
        finally:
            self._loading.pop(channel_id, None)
            left = self._load_waiters.pop(channel_id) - 1
            if left:
                self._load_waiters[channel_id] = left

    def loaded(self, channel_id: bytes) -> ChannelRuntime | None:
        """The channel's live state if it is in memory (no I/O); None if it was not loaded."""
        return self._runtime.get(channel_id)

    def in_memory(self) -> list[ChannelRuntime]:
        """Every channel in memory (a snapshot: safe to read from another thread, such as a metrics scrape)."""
        return list(self._runtime.values())

    def forget(self, rt: ChannelRuntime) -> None:
        """Drop the channel from memory if `rt` is still its live state: the next use reloads it."""
        if self._runtime.get(rt.record.channel_id) is rt:
            del self._runtime[rt.record.channel_id]

    async def current(self, channel_id: bytes) -> ChannelRuntime:
        """The channel's live state, checked against the database when other instances may have changed it
        (its latest payment, its caps, a co-signed close): for reads and for changes other than payments."""
        rt = await self.runtime(channel_id)
        if not self.store.shared:
            return rt
        with contextlib.suppress(ChainStreamError):
            await rt.durable()
        return await self.reload(rt) if self.behind(rt) else rt

    async def reload(self, rt: ChannelRuntime) -> ChannelRuntime:
        """The channel as the database now has it (after this instance's own commits in flight). The budget
        of chain re-reads carries over, so reloads cannot be used to reset it."""
        with contextlib.suppress(ChainStreamError):  # a failed commit: its own payment's caller hears of it
            await rt.durable()
        self.forget(rt)
        fresh = await self.runtime(rt.record.channel_id)
        fresh.refreshes = rt.refreshes
        return fresh

    def behind(self, rt: ChannelRuntime) -> bool:
        """Whether the database's view of the channel differs from this instance's (a shared store)."""
        head = self.store.channel_head(rt.record.channel_id)
        return head is not None and head != (rt.ledger.seq, rt.caps_issued_at, rt.record.coop_close)

    # ----------------------------------------------------------------- loading
    async def _load(self, channel_id: bytes) -> ChannelRuntime:
        record = self.store.get_channel(channel_id)
        if record is None:
            refused = self._not_ours.get(channel_id)
            if refused is not None and self.clock() - refused[0] < NOT_OURS_TTL:
                raise refused[1]  # asked again within seconds: answered without another call to the node
            try:
                record = await asyncio.to_thread(self.fetch_channel, channel_id)
            except Rejection as exc:  # unknown_channel, wrong_relay (channel_unconfirmed: a real channel, soon ours)
                if exc.code == Code.CHANNEL_UNCONFIRMED:
                    raise
                if len(self._not_ours) >= NOT_OURS_MAX:
                    self._not_ours.clear()
                self._not_ours[channel_id] = (self.clock(), exc)
                raise
            self.store.upsert_channel(record)
        day = int(self.clock()) // DAY
        ledger, spent_today = self.store.load_ledger(channel_id, day * DAY)
        latest = self.store.latest_payment(channel_id) if ledger.seq else None
        head = ChannelHead(
            ledger, spent_today, day, latest.digest if latest else None, latest.signature if latest else None
        )
        rt = ChannelRuntime(record, head, caps_issued_at=record.caps_issued_at)
        settled = self.store.get_settled(channel_id)
        if ledger.voucher.total > (settled.total if settled else 0):
            rt.unsettled_since = self.clock()
        self._runtime[channel_id] = rt
        return rt

    def confirmed_block(self) -> int | Literal["latest"]:
        """The newest block the relay acts on: `confirmations` behind the head (a reorg shallower than that cannot
        undo what it read there), or the head itself with no confirmations."""
        depth = self.settings.confirmations
        if depth <= 0:
            return "latest"
        return max(0, int(self.channels.w3.eth.block_number) - depth)

    def fetch_channel(self, channel_id: bytes) -> ChannelRecord:
        """Read a channel from the contract (as of the confirmed block); Rejection if it does not exist or is
        served by another relay."""
        block = self.confirmed_block()
        state = self.channels.get_channel(channel_id, block)
        if state.status == ChannelStatus.NONE:
            if block != "latest" and self.channels.get_channel(channel_id).status != ChannelStatus.NONE:
                raise Rejection(
                    Code.CHANNEL_UNCONFIRMED,
                    f"the channel's opening has fewer than {self.settings.confirmations} confirmations: retry in a few"
                    " blocks",
                )
            raise Rejection(Code.UNKNOWN_CHANNEL, f"no channel 0x{channel_id.hex()} on chain {self.domain.chain_id}")
        if state.relay != self.address:
            raise Rejection(Code.WRONG_RELAY, f"the channel is served by {state.relay}, not this relay")
        return ChannelRecord(
            channel_id,
            state.payer,
            state.token,
            state.deposit,
            state.session_key,
            state.session_valid_until,  # the contract's rule: a re-added key keeps its grace
            status_name(state.status),
            state.closes_at,
        )

    async def refresh_from_chain(self, rt: ChannelRuntime) -> bool:
        """Re-read the channel from the contract, unless that was done REFRESH_BURST times in the last
        REFRESH_WINDOW seconds; True if it was."""
        now = self.clock()
        recent = tuple(t for t in rt.refreshes if now - t < REFRESH_WINDOW)
        if len(recent) >= REFRESH_BURST:
            return False
        rt.refreshes = (*recent, now)
        # as of the confirmed block: a top-up or key change a reorg could still drop must not let the relay
        # acknowledge a voucher the chain would then refuse
        block = await asyncio.to_thread(self.confirmed_block)
        self.apply_chain_state(await asyncio.to_thread(self.channels.get_channel, rt.record.channel_id, block))
        return True

    # --------------------------------------------------- what others tell it
    def add_channel(self, record: ChannelRecord) -> None:
        """A channel just opened for this relay (watcher); a channel already known is left as it is."""
        self._not_ours.pop(record.channel_id, None)
        if self.store.get_channel(record.channel_id) is None:
            self.store.upsert_channel(record)

    def apply_chain_state(self, state: ChannelState) -> None:
        """Apply what the contract now says of a known channel (top-up, session key, close) to the store and to
        the live state; the relay's own fields (caps, co-signed close) are kept."""
        existing = self.store.get_channel(state.channel_id)
        if existing is None:
            return
        self.store.upsert_channel(_with_chain_state(existing, state))
        rt = self._runtime.get(state.channel_id)
        if rt is not None:
            # The live record keeps what only memory may hold yet: a close being co-signed (CLOSE_PENDING) must
            # not be dropped by a top-up seen meanwhile, or a payment could slip in after the consent's state.
            rt.record = _with_chain_state(rt.record, state)

    def unsettled_since(self, channel_id: bytes) -> float | None:
        """Since when the channel (if in memory) holds accepted payments no settlement covers yet."""
        rt = self._runtime.get(channel_id)
        return rt.unsettled_since if rt is not None else None

    def mark_settled(self, channel_id: bytes, total: int) -> None:
        """A settlement of the channel's vouchers up to cumulative `total` is on chain (settler): if that covers
        everything accepted, nothing of the channel is waiting to be settled any more."""
        rt = self._runtime.get(channel_id)
        if rt is not None and rt.ledger.voucher.total <= total:
            rt.unsettled_since = None

    def mark_settled_at(self, channel_id: bytes, total: int) -> None:
        """The chain's settled state of the channel was re-read as cumulative `total` (settler): whatever was
        accepted beyond it waits to be settled, from now on if nothing was waiting already."""
        rt = self._runtime.get(channel_id)
        if rt is not None and rt.ledger.voucher.total > total and rt.unsettled_since is None:
            rt.unsettled_since = self.clock()
