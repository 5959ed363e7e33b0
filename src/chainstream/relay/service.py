"""The relay's core: accept payments (verify, store durably, then acknowledge), and answer what was paid.

Concurrency: everything that reads and advances a channel's ledger runs on the event loop without awaiting in
between, so payments of one channel are serialised while many channels proceed together; the only await on
the hot path is the group commit. If a commit fails, the channel's in-memory state is dropped and reloaded
from the database, so nothing unacknowledged is ever taken as accepted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from chainstream.chain.contracts import ChannelsClient, ChannelState, ChannelStatus, RegistryClient
from chainstream.chain.deploy import Deployment
from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.errors import ChainStreamError
from chainstream.ledger import LedgerState, Listing
from chainstream.protocol import Domain, Kind, PrivateKey, Signature, Voucher, recover
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, Address, to_address
from chainstream.relay.api.models import ChannelSummary
from chainstream.relay.caps import caps_digest, loosens
from chainstream.relay.catalog import Catalog, CatalogEntry
from chainstream.relay.clock import ChainClock
from chainstream.relay.earnings import CSV_COLUMNS, Earnings, csv_rows, earnings
from chainstream.relay.events import EventBus
from chainstream.relay.media import MediaService
from chainstream.relay.read_models import channel_summary, earnings_json, payment_events
from chainstream.store import ChannelRecord, PaymentRecord, Store
from chainstream.store.records import ChannelPhase
from chainstream.tokens import TokenInfo
from chainstream.verify import Accepted, ChannelTerms, Payment, Rejection, verify_payment

DAY = 86_400
_STATUS_NAMES: dict[ChannelStatus, ChannelPhase] = {ChannelStatus.OPEN: "open", ChannelStatus.CLOSING: "closing"}


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


#: the co-signed-close marker while the relay is co-signing (no payment is accepted from then on)
CLOSE_PENDING = b"pending"

#: refusals that a channel state newer than the relay's may turn into acceptances (a top-up, a new session key)
CHAIN_REFRESH_CODES = frozenset({Code.INSUFFICIENT_DEPOSIT, Code.UNAUTHORIZED_SIGNER})
#: at most this many such re-reads per channel within REFRESH_WINDOW seconds: enough for "refused, top up,
#: retry", too few for refused payments (anyone can sign one) to turn into a flood of calls to the node
REFRESH_BURST, REFRESH_WINDOW = 3, 5.0
#: a channel id the chain did not know (or that is another relay's) is answered from memory for this long, so
#: that requests for made-up ids do not each cost a call to the node; at most NOT_OURS_MAX ids are kept
NOT_OURS_TTL, NOT_OURS_MAX = 2.0, 10_000


@dataclass(frozen=True)
class PaymentAck:
    status: str  # accepted | duplicate
    channel_id: bytes
    seq: int
    total: int
    amount: int
    digest: bytes
    remaining: int
    spent_today: int
    daily_cap: int | None
    #: a payment for a track: the streaming grant that opens its audio (relay/media.py)
    grant: dict[str, Any] | None = None
    #: an accepted per-second payment: the seconds of its track paid up to and including it (not serialised)
    paid_seconds: int | None = None


def _copy_outcome(
    source: concurrent.futures.Future[frozenset[bytes]], target: asyncio.Future[frozenset[bytes]]
) -> None:
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _payment_record(
    payment: Payment, accepted: Accepted, signature: bytes, now: float, prev_digest: bytes | None, caps_basis: int
) -> PaymentRecord:
    """The store's row of an accepted payment."""
    return PaymentRecord(
        channel_id=payment.channel_id,
        seq=accepted.receipt.seq,
        digest=accepted.digest,
        voucher=payment.voucher,
        signature=signature,
        signer=accepted.signer,
        kind=int(accepted.charge.kind),
        target=accepted.charge.target,
        units=accepted.charge.units,
        amount=accepted.charge.amount,
        split_hash=accepted.charge.split_hash,
        memo=accepted.charge.memo,
        payments=dict(accepted.charge.payments),
        accepted_at=now,
        prev_digest=prev_digest,
        caps_basis=caps_basis,
    )


class StaleChannel(Rejection):
    """Another relay instance sharing the database stored a payment for the channel (or new caps, or a
    cooperative close) after this instance loaded it: its payment was not stored."""

    def __init__(self, message: str) -> None:
        super().__init__(code=Code.CONFLICT, message=message)


class RelayService:
    def __init__(
        self,
        *,
        settings: Settings,
        channels: ChannelsClient,
        registry: RegistryClient,
        deployment: Deployment,
        relay_key: PrivateKey,
        store: Store,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` is the relay's wall clock (unix seconds): it stamps payments and decides which UTC day a
        daily cap counts. Rules that the contract judges by block time use `chain_now()` instead."""
        self.settings = settings
        self.channels = channels
        self.registry = registry
        self.deployment = deployment
        self.relay_key = relay_key
        self.address = relay_key.address
        self.store = store
        self.domain: Domain = channels.domain
        tokens = [ZERO_ADDRESS] + ([deployment.stablecoin] if deployment.stablecoin else [])
        self.catalog = Catalog(registry, tokens)
        self.bus = EventBus()
        self._runtime: dict[bytes, ChannelRuntime] = {}
        self._loading: dict[bytes, asyncio.Task[ChannelRuntime]] = {}
        self._load_waiters: dict[bytes, int] = {}  # requests waiting for a channel's load, not yet resumed
        self._commits: tuple[list[PaymentRecord], asyncio.Future[frozenset[bytes]]] | None = None
        self.accepted_count = 0
        self.clock = clock
        self.clocks = ChainClock(clock)
        self._not_ours: dict[bytes, tuple[float, Rejection]] = {}
        self.media = MediaService(
            settings,
            relay_key=relay_key,
            store=store,
            catalog=self.catalog,
            registry=registry,
            chain_id=deployment.chain_id,
            channels_address=deployment.channels,
            clock=clock,
        )

    # ---------------------------------------------------------------- channels
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

    # ------------------------------------------------------------------ clocks
    def observe_chain_time(self, block_timestamp: float) -> None:
        """The latest block's timestamp, as the watcher or the settler just read it."""
        self.clocks.observe(block_timestamp)

    def chain_now(self) -> float:
        """The chain's time as far as the relay knows (relay/clock.py). Session-key expiry is judged by the
        contract on block time, so the relay judges it on this."""
        return self.clocks.chain_now()

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

    def put_track(self, entry: CatalogEntry) -> None:
        """A track registered or changed on chain (watcher): into the catalog, and announced to live listeners."""
        self.catalog.put(entry)
        self.bus.publish({"type": "catalog", "trackId": "0x" + entry.track_id.hex()}, {"all", "catalog"})

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
        # The key's validity as the contract judges it (sessionKeyValidUntil), not its stored expiry alone: a key
        # revoked and set again with a short expiry still settles through its grace, so the relay settles it then.
        record = replace(
            existing,
            deposit=state.deposit,
            session_key=state.session_key,
            session_expiry=state.session_valid_until,
            status=status_name(state.status),
            closes_at=state.closes_at,
        )
        self.store.upsert_channel(record)
        rt = self._runtime.get(record.channel_id)
        if rt is not None:
            # The live record keeps what only memory may hold yet: a close being co-signed (CLOSE_PENDING) must
            # not be dropped by a top-up seen meanwhile, or a payment could slip in after the consent's state.
            rt.record = replace(
                rt.record,
                deposit=state.deposit,
                session_key=state.session_key,
                session_expiry=state.session_valid_until,
                status=status_name(state.status),
                closes_at=state.closes_at,
            )

    @staticmethod
    def _terms(rt: ChannelRuntime) -> ChannelTerms:
        r = rt.record
        if rt.terms is not None and rt.terms[0] is r:
            return rt.terms[1]
        terms = ChannelTerms(
            channel_id=r.channel_id,
            payer=r.payer,
            token=r.token,
            deposit=r.deposit,
            session_key=r.session_key,
            session_expiry=r.session_expiry,
            open=r.status == "open" and r.coop_close_digest is None,
            daily_cap=r.daily_cap,
            session_cap=r.session_cap,
        )
        rt.terms = (r, terms)
        return terms

    # ---------------------------------------------------------------- payments
    async def submit(self, payment: Payment) -> PaymentAck:
        """Verify, store durably, then acknowledge. Raises Rejection with a stable code.

        With a shared store (several relay instances on one database) the channel may have moved on in another
        instance: a payment ahead of this instance's view makes it reload the channel from the database and
        decide again, and a payment the store left out at commit (the channel changed underneath) is decided
        again once, on the reloaded channel."""
        if payment.charge.track_id is not None:
            await self.catalog.ensure(payment.charge.track_id)  # priced by the catalog: read it first if need be
        try:
            ack = await self._submit(payment)
        except StaleChannel:
            ack = await self._submit(payment)
        if payment.charge.track_id is None:
            return ack  # a tip to an address: no audio
        rt = self._runtime.get(payment.channel_id)
        owned = rt is not None and payment.charge.track_id in rt.ledger.owned
        fresh = ack.status == "accepted"
        stored = None if fresh else self.store.payment_at(payment.channel_id, ack.seq)
        accepted_at = self.clock() if stored is None else stored.accepted_at
        grant = self.media.grant_for(
            payment, ack.seq, accepted_at=accepted_at, owned=owned, fresh=fresh, paid_seconds=ack.paid_seconds
        )
        return ack if grant is None else replace(ack, grant=grant)

    async def _submit(self, payment: Payment) -> PaymentAck:
        rt = await self.runtime(payment.channel_id)
        while rt.refreshing is not None and not rt.refreshing.done():
            await asyncio.shield(rt.refreshing)
        if self.store.shared and payment.seq > rt.ledger.seq + 1 and self._signed_for(rt, payment):
            rt = await self._reload(rt)
        duplicate = self._duplicate(rt, payment)
        if duplicate is None and payment.seq < rt.ledger.seq and rt.in_flight is not None and not rt.in_flight.done():
            # An older voucher can be accepted and not yet in the database (pipelined or batched resubmissions):
            # look again once this channel's commits are durable, so it is a duplicate rather than "stale".
            await self._durable(rt)
            duplicate = self._duplicate(rt, payment)
        if duplicate is not None:
            await self._durable(rt)  # never acknowledge a payment whose commit is still in flight
            return duplicate
        now = self.clock()
        rt.head = rt.head.on_day(int(now) // DAY)
        accepted = await self._decide(rt, payment)
        return await self._accept(rt, payment, accepted, now)

    async def _decide(self, rt: ChannelRuntime, payment: Payment) -> Accepted:
        """Verify the payment on the channel's live state; on a refusal a newer state may overturn (another
        instance's, or the chain's after a top-up or a new session key), decide again on that state."""
        try:
            return self._verify(rt, payment)
        except Rejection as exc:
            if self.store.shared and self._behind(rt):
                # Another instance changed the channel (payments, caps, a co-signed close) since this one loaded
                # it: decide on the database's state instead (submit tries once more).
                await self._reload(rt)
                raise StaleChannel(f"channel 0x{payment.channel_id.hex()} changed in another instance") from exc
            # A top-up or a new session key may have landed before the watcher saw it: read the channel from
            # the chain (a few times per channel at most, see REFRESH_BURST), then decide again.
            if exc.code not in CHAIN_REFRESH_CODES:
                raise
            # insufficient_deposit is judged after the signer (verify_payment), so it is the channel's own
            # payment: the channel's later payments wait for this re-read, so that a batch or stream is decided
            # in order. An unknown signer is anyone's (a garbage signature will do): its re-read blocks nobody.
            refreshing = None
            if exc.code == Code.INSUFFICIENT_DEPOSIT:
                refreshing = rt.refreshing = asyncio.get_running_loop().create_future()
            try:
                if not await self._refresh_from_chain(rt):
                    raise
                return self._verify(rt, payment)
            finally:
                # Waiters resume only after this payment is applied (no await between the return and the new
                # head in `_accept`), so they see its head; on a refusal they decide on the re-read state.
                if refreshing is not None:
                    refreshing.set_result(None)

    async def _accept(self, rt: ChannelRuntime, payment: Payment, accepted: Accepted, now: float) -> PaymentAck:
        """Apply an accepted payment to the channel's head (one swap), queue it for the group commit, and
        acknowledge it once durable; if the commit fails, swap the head back and drop the channel from memory."""
        previous = rt.head
        signature = payment.signature.to_bytes()
        rt.head = ChannelHead(
            accepted.state, previous.spent_today + accepted.charge.amount, previous.day, accepted.digest, signature
        )
        if rt.unsettled_since is None:
            rt.unsettled_since = now
        record = _payment_record(payment, accepted, signature, now, previous.digest, rt.caps_issued_at)
        commit = self._queue_commit(record)
        rt.in_flight = commit
        try:
            # shared with other payments: a caller going away must not cancel it
            left_out = await asyncio.shield(commit)
            if payment.channel_id in left_out:
                raise StaleChannel(f"another relay instance changed channel 0x{payment.channel_id.hex()} first")
        except ChainStreamError:
            # Not durable, so not accepted: forget the in-memory advance and reload from the database.
            if rt.ledger is accepted.state:
                rt.head = previous
            if self._runtime.get(payment.channel_id) is rt:
                self._runtime.pop(payment.channel_id, None)
            raise
        self.accepted_count += 1
        ack = self._ack(
            "accepted", rt, accepted.state.voucher, accepted.receipt.seq, accepted.charge.amount, accepted.digest
        )
        if accepted.charge.kind == Kind.SECONDS:
            ack = replace(ack, paid_seconds=accepted.state.seconds_of(accepted.charge.target))
        self._publish_payment(rt, record)
        return ack

    def _queue_commit(self, record: PaymentRecord) -> asyncio.Future[frozenset[bytes]]:
        """Queue an accepted payment for the store; the future resolves once it is durable.

        The payments accepted during one turn of the event loop go to the store together, with one future and
        one thread hop back for all of them: they would share a group commit anyway, and a hop per payment
        costs as much as verifying it. Commits stay in acceptance order (the store's queue is FIFO)."""
        if self._commits is None:
            loop = asyncio.get_running_loop()
            self._commits = ([], loop.create_future())
            loop.call_soon(self._flush_commits)
        self._commits[0].append(record)
        return self._commits[1]

    def _flush_commits(self) -> None:
        assert self._commits is not None
        records, done = self._commits
        self._commits = None
        loop = done.get_loop()
        try:
            durable = self.store.submit_payments(records)
        except ChainStreamError as exc:
            done.set_exception(exc)
            return
        durable.add_done_callback(lambda result: loop.call_soon_threadsafe(_copy_outcome, result, done))

    def _verify(self, rt: ChannelRuntime, payment: Payment) -> Accepted:
        """Verify against the channel's live state; the session key's expiry is judged on the chain's clock."""
        token = rt.record.token
        return verify_payment(
            payment,
            state=rt.ledger,
            channel=self._terms(rt),
            domain=self.domain,
            listing_of=lambda track_id: self.catalog.listing(track_id, token),
            now=int(self.chain_now()),
            spent_today=rt.spent_today,
            session_margin=self.settings.session_margin,
            max_payees=self.settings.max_payees,
        )

    @staticmethod
    async def _durable(rt: ChannelRuntime) -> None:
        """Wait until every payment accepted so far on this channel is committed (commits are FIFO)."""
        if rt.in_flight is not None and not rt.in_flight.done():
            await asyncio.shield(rt.in_flight)

    async def _reload(self, rt: ChannelRuntime) -> ChannelRuntime:
        """The channel as the database now has it (after this instance's own commits in flight). The budget
        of chain re-reads carries over, so reloads cannot be used to reset it."""
        with contextlib.suppress(ChainStreamError):  # a failed commit: its own payment's caller hears of it
            await self._durable(rt)
        if self._runtime.get(rt.record.channel_id) is rt:
            del self._runtime[rt.record.channel_id]
        fresh = await self.runtime(rt.record.channel_id)
        fresh.refreshes = rt.refreshes
        return fresh

    def _authorised_signer(self, rt: ChannelRuntime, digest: bytes, signature: Signature, what: str) -> Address:
        """Who signed `digest`, if it is the channel's payer or its session key while the key is valid (chain time);
        else bad_signature (422), unauthorized_signer or session_key_expired (403). An expired key has no powers
        left: no caps, no close request, no resync state. (Payments: verify_payment, with the margin.)"""
        try:
            signer = recover(digest, signature)
        except ChainStreamError as exc:
            raise Rejection(Code.BAD_SIGNATURE, str(exc)) from exc
        if signer == ZERO_ADDRESS or signer not in (rt.record.payer, rt.record.session_key):
            raise Rejection(Code.UNAUTHORIZED_SIGNER, f"{what} must be signed by the payer or its session key")
        if signer != rt.record.payer and rt.record.session_expiry < self.chain_now():
            raise Rejection(Code.SESSION_KEY_EXPIRED, f"the session key that signed {what} has expired")
        return signer

    def _signed_for(self, rt: ChannelRuntime, payment: Payment) -> bool:
        """Whether the payment is signed by the channel's payer or session key: only such a payment may make an
        instance re-read the channel's history from the database (anyone can send one ahead of its view)."""
        try:
            self._authorised_signer(rt, payment.voucher.digest(self.domain), payment.signature, "a payment")
        except Rejection:
            return False
        return True

    def _behind(self, rt: ChannelRuntime) -> bool:
        """Whether the database's view of the channel differs from this instance's (a shared store)."""
        head = self.store.channel_head(rt.record.channel_id)
        return head is not None and head != (rt.ledger.seq, rt.caps_issued_at, rt.record.coop_close_digest)

    async def current(self, channel_id: bytes) -> ChannelRuntime:
        """The channel's live state, checked against the database when other instances may have changed it
        (its latest payment, its caps, a co-signed close): for reads and for changes other than payments."""
        rt = await self.runtime(channel_id)
        if not self.store.shared:
            return rt
        with contextlib.suppress(ChainStreamError):
            await self._durable(rt)
        return await self._reload(rt) if self._behind(rt) else rt

    def _duplicate(self, rt: ChannelRuntime, payment: Payment) -> PaymentAck | None:
        """An already accepted voucher is acknowledged again (idempotent), never stored twice."""
        if payment.seq > rt.ledger.seq:
            return None
        digest = payment.voucher.digest(self.domain)
        if payment.seq != rt.ledger.seq or payment.voucher != rt.ledger.voucher:
            stored = self.store.payment_at(payment.channel_id, payment.seq)
            if stored is None or stored.digest != digest:
                return None
        # The acknowledgement shows the channel's state (remaining, today's spending, caps): only to its own
        # signers. Anyone can rebuild a channel's first voucher for a guessed track (its receipt is public data),
        # and must not learn from a "duplicate" that the listener played it.
        if not self._signed_for(rt, payment):
            return None
        return self._ack("duplicate", rt, payment.voucher, payment.seq, 0, digest)

    def _ack(
        self, status: str, rt: ChannelRuntime, voucher: Voucher, seq: int, amount: int, digest: bytes
    ) -> PaymentAck:
        return PaymentAck(
            status,
            rt.record.channel_id,
            seq,
            voucher.total,
            amount,
            digest,
            rt.record.deposit - rt.ledger.voucher.total,
            rt.spent_today,
            rt.record.daily_cap,
        )

    async def _refresh_from_chain(self, rt: ChannelRuntime) -> bool:
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

    def _publish_payment(self, rt: ChannelRuntime, record: PaymentRecord) -> None:
        """Live payment events, each audience shown only what is its own (relay/read_models.py)."""
        if not self.bus.has_subscribers:
            return
        # a tip straight to an address names a person: the public stream shows catalog tracks only
        public = record.target in self.catalog.entries
        for event, topics in payment_events(record, rt.record.deposit, rt.spent_today, public_target=public):
            self.bus.publish(event, topics)

    # ------------------------------------------------------------------- caps
    async def set_caps(
        self, channel_id: bytes, daily_cap: int, session_cap: int, issued_at: int, signature: Signature
    ) -> ChannelRuntime:
        ahead = issued_at - int(self.clock())
        if ahead > self.settings.caps_clock_skew:
            # Caps must increase: caps dated far ahead would be the last ones the channel could ever set.
            raise Rejection(
                Code.CAPS_FROM_FUTURE,
                f"issuedAt is {ahead}s ahead of the relay's clock (at most {self.settings.caps_clock_skew}s)",
            )
        rt = await self.current(channel_id)
        digest = caps_digest(self.domain, channel_id, daily_cap, session_cap, issued_at)
        signer = self._authorised_signer(rt, digest, signature, "caps")
        stale = Rejection(Code.STALE_CAPS, "these caps are older than the ones in force")
        if issued_at <= rt.caps_issued_at:  # first: a replayed message is stale, whatever it says
            raise stale
        if signer != rt.record.payer and loosens(rt.record.daily_cap, daily_cap) | loosens(
            rt.record.session_cap, session_cap
        ):
            # The session cap is the limit on what the session key may spend: the key itself may only tighten.
            raise Rejection(
                Code.CAPS_NEED_PAYER,
                "a session key may only lower caps or set new ones; raising or lifting "
                "a cap takes the payer's own signature",
            )
        # Stored first (conditionally: another instance may have stored newer caps), then in force here.
        if not self.store.set_caps(channel_id, daily_cap or None, session_cap or None, issued_at):
            raise stale
        rt.caps_issued_at = issued_at
        rt.record = replace(
            rt.record, daily_cap=daily_cap or None, session_cap=session_cap or None, caps_issued_at=issued_at
        )
        return rt

    # --------------------------------------------------------------- closing
    async def cosign_close(
        self, channel_id: bytes, voucher_digest_seen: bytes, signature: Signature
    ) -> tuple[PaymentRecord | None, Signature, tuple[int, ...]]:
        """Consent to a cooperative close at the latest accepted voucher; no payment is accepted after it.

        The request is the listener's own Close(channelId, voucherDigest) signed by the payer or its session key
        (anyone could otherwise stop a channel's payments), over the latest voucher the listener knows: it must
        be the relay's latest, or the answer is 409 close_state_mismatch with the relay's state."""
        rt = await self.current(channel_id)
        if rt.record.status == "closed":
            raise Rejection(Code.CHANNEL_NOT_OPEN, "the channel is already closed")
        self._authorised_signer(
            rt, self.domain.digest(close_struct_hash(channel_id, voucher_digest_seen)), signature, "a close request"
        )
        previous = rt.record.coop_close_digest
        rt.record = replace(rt.record, coop_close_digest=CLOSE_PENDING)  # refuse new payments
        await self._durable(rt)
        if self.store.shared:
            # Other instances' groups store no payment for the channel from now on (they check this column under
            # the channel's row lock), so the latest payment read next is the last one.
            self.store.set_coop_close(channel_id, CLOSE_PENDING)
        latest = self.store.latest_payment(channel_id)
        voucher_digest = latest.digest if latest else ZERO_HASH
        if voucher_digest != voucher_digest_seen:
            rt.record = replace(rt.record, coop_close_digest=previous)
            if self.store.shared:
                self.store.set_coop_close(channel_id, previous)
            raise Rejection(
                Code.CLOSE_STATE_MISMATCH,
                "the relay's latest voucher is not the one the close request "
                "names: sync with the channel's state, then ask again",
            )
        self.store.set_coop_close(channel_id, voucher_digest)
        rt.record = replace(rt.record, coop_close_digest=voucher_digest)
        close_digest = (latest.voucher if latest else Voucher.empty(channel_id)).close_digest(self.domain)
        settled = self.store.get_settled(channel_id)
        return latest, self.relay_key.sign(close_digest), settled.credited if settled else ()

    # --------------------------------------------------------------- queries
    def listing(self, track_id: bytes, token: str) -> Listing | None:
        return self.catalog.listing(track_id, token)

    def channel_summary(self, rt: ChannelRuntime) -> ChannelSummary:
        settled = self.store.get_settled(rt.record.channel_id)
        return channel_summary(rt, self.address, settled.total if settled else 0)

    def tokens(self) -> list[TokenInfo]:
        """The tokens channels of this deployment take: ETH, and the stablecoin if deployed."""
        tokens = [TokenInfo(ZERO_ADDRESS, "ETH", 18)]
        if self.deployment.stablecoin:
            tokens.append(TokenInfo(self.deployment.stablecoin, "mUSD", 6))
        return tokens

    def earnings(self, payee: str) -> dict[str, Any]:
        """A payee's earnings per token and per track, each payment marked pending, settled or claimed (see
        relay/earnings.py for the attribution rules)."""
        payee = to_address(payee)
        titles = {track_id: e.title for track_id, e in self.catalog.entries.items()}
        return earnings_json(payee, self._earnings(payee), titles)

    def earnings_csv(self, payee: str) -> str:
        """One CSV row per payment that credited `payee` (relay/earnings.py `csv_rows`)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        titles = {track_id: e.title for track_id, e in self.catalog.entries.items()}
        tokens = {t.address: t for t in self.tokens()}
        writer.writerows(csv_rows(self._earnings(to_address(payee)), titles=titles, tokens=tokens))
        return out.getvalue()

    def _earnings(self, payee: Address) -> Earnings:
        rows = self.store.earnings_rows(payee)
        credited: dict[bytes, int] = {}
        for channel_id in {bytes(r["channel_id"]) for r in rows}:
            settled = self.store.get_settled(channel_id)
            if settled and payee in settled.payees:
                credited[channel_id] = settled.credited[settled.payees.index(payee)]
        claimed: dict[str, int] = {}
        for claim in self.store.claims_of(payee):
            claimed[claim["token"]] = claimed.get(claim["token"], 0) + int(claim["amount"])
        if self.media.book is not None:
            self.media.book.flush()  # deliveries still buffered in memory: read them back from the store
        delivered = self.store.metered_deliveries_of(payee)
        return earnings(
            rows,
            token_of={c.channel_id: c.token for c in self.store.channels()},
            credited=credited,
            claimed=claimed,
            default_token=ZERO_ADDRESS,
            delivered=delivered,
        )
