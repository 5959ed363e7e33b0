"""The relay's payment pipeline: accept payments (verify, store durably, then acknowledge), and answer what was
paid. The rest is delegated, each job to its own component: the channels in memory (relay/channel_cache.py), the
cooperative close (relay/closing.py), caps (relay/caps.py), earnings (relay/earnings_reports.py), audio
(relay/media.py); what happens is reported to a `RelayObserver` (relay/observer.py).

Concurrency: everything that reads and advances a channel's ledger runs on the event loop without awaiting in
between, so payments of one channel are serialised while many channels proceed together; the only await on
the hot path is the group commit. If a commit fails, the channel's in-memory state is dropped and reloaded
from the database, so nothing unacknowledged is ever taken as accepted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from chainstream.chain.contracts import ChannelsClient, RegistryClient
from chainstream.chain.deploy import Deployment
from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.errors import ChainStreamError
from chainstream.ledger import Listing
from chainstream.protocol import Domain, Kind, PrivateKey, Voucher
from chainstream.protocol.types import ZERO_ADDRESS
from chainstream.relay.api.models import ChannelSummary
from chainstream.relay.caps import ChannelCaps
from chainstream.relay.catalog import Catalog, CatalogEntry
from chainstream.relay.channel_cache import DAY, ChannelCache, ChannelHead, ChannelRuntime, authorised_signer
from chainstream.relay.clock import ChainClock
from chainstream.relay.closing import CooperativeClose
from chainstream.relay.earnings_reports import EarningsReports
from chainstream.relay.events import EventBus
from chainstream.relay.media import MediaService
from chainstream.relay.observer import NO_OBSERVER, RelayObserver
from chainstream.relay.read_models import channel_summary, payment_events
from chainstream.store import PaymentRecord, Store
from chainstream.tokens import TokenInfo
from chainstream.verify import Accepted, ChannelTerms, Payment, Rejection, verify_payment

#: refusals that a channel state newer than the relay's may turn into acceptances (a top-up, a new session key)
CHAIN_REFRESH_CODES = frozenset({Code.INSUFFICIENT_DEPOSIT, Code.UNAUTHORIZED_SIGNER})


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
    """One relay's payment pipeline, and the components it delegates to (`cache`, `caps`, `closes`, `media`,
    `reports`), built together on one store, chain client and clock."""

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
        observer: RelayObserver = NO_OBSERVER,
    ) -> None:
        """`clock` is the relay's wall clock (unix seconds): it stamps payments and decides which UTC day a
        daily cap counts. Rules that the contract judges by block time use `chain_now()` instead. `observer`
        hears of every payment answered, verified and committed (relay/observer.py)."""
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
        self.observer = observer
        self._commits: tuple[list[PaymentRecord], asyncio.Future[frozenset[bytes]]] | None = None
        self.accepted_count = 0
        self.clock = clock
        self.clocks = ChainClock(clock)
        # The components the service delegates to, each its own job:
        self.cache = ChannelCache(settings=settings, channels=channels, store=store, address=self.address, clock=clock)
        self.caps = ChannelCaps(
            cache=self.cache, caps_clock_skew=settings.caps_clock_skew, clock=clock, chain_now=self.chain_now
        )
        self.closes = CooperativeClose(cache=self.cache, store=store, relay_key=relay_key, chain_now=self.chain_now)
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
        self.reports = EarningsReports(store=store, catalog=self.catalog, media=self.media, tokens=self.tokens())

    # ------------------------------------------------------------------ clocks
    def observe_chain_time(self, block_timestamp: float) -> None:
        """The latest block's timestamp, as the watcher or the settler just read it."""
        self.clocks.observe(block_timestamp)

    def chain_now(self) -> float:
        """The chain's time as far as the relay knows (relay/clock.py). Session-key expiry is judged by the
        contract on block time, so the relay judges it on this."""
        return self.clocks.chain_now()

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
            open=r.status == "open" and r.coop_close is None,
            daily_cap=r.daily_cap,
            session_cap=r.session_cap,
        )
        rt.terms = (r, terms)
        return terms

    # ---------------------------------------------------------------- payments
    async def submit(self, payment: Payment) -> PaymentAck:
        """Verify, store durably, then acknowledge (with the streaming grant of a track's payment). Raises
        Rejection with a stable code. Every answer is reported to the observer, by outcome and code."""
        try:
            ack = await self._answer(payment)
        except Rejection as exc:
            self.observer.payment_answered("rejected", exc.code)
            raise
        except Exception as exc:  # reported (by its code, else its class) and raised on
            self.observer.payment_answered("failed", getattr(exc, "code", type(exc).__name__))
            raise
        self.observer.payment_answered(ack.status, "")
        return ack

    async def _answer(self, payment: Payment) -> PaymentAck:
        """The payment's acknowledgement, and its streaming grant if it pays for a track.

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
        rt = self.cache.loaded(payment.channel_id)
        owned = rt is not None and payment.charge.track_id in rt.ledger.owned
        fresh = ack.status == "accepted"
        stored = None if fresh else self.store.payment_at(payment.channel_id, ack.seq)
        accepted_at = self.clock() if stored is None else stored.accepted_at
        grant = self.media.grant_for(
            payment, ack.seq, accepted_at=accepted_at, owned=owned, fresh=fresh, paid_seconds=ack.paid_seconds
        )
        return ack if grant is None else replace(ack, grant=grant)

    async def _submit(self, payment: Payment) -> PaymentAck:
        rt = await self.cache.runtime(payment.channel_id)
        while rt.refreshing is not None and not rt.refreshing.done():
            await asyncio.shield(rt.refreshing)
        if self.store.shared and payment.seq > rt.ledger.seq + 1 and self.signed_for(rt, payment):
            rt = await self.cache.reload(rt)
        duplicate = self._duplicate(rt, payment)
        if duplicate is None and payment.seq < rt.ledger.seq and rt.in_flight is not None and not rt.in_flight.done():
            # An older voucher can be accepted and not yet in the database (pipelined or batched resubmissions):
            # look again once this channel's commits are durable, so it is a duplicate rather than "stale".
            await rt.durable()
            duplicate = self._duplicate(rt, payment)
        if duplicate is not None:
            await rt.durable()  # never acknowledge a payment whose commit is still in flight
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
            if self.store.shared and self.cache.behind(rt):
                # Another instance changed the channel (payments, caps, a co-signed close) since this one loaded
                # it: decide on the database's state instead (submit tries once more).
                await self.cache.reload(rt)
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
                if not await self.cache.refresh_from_chain(rt):
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
            self.cache.forget(rt)
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
        queued = time.perf_counter()
        try:
            durable = self.store.submit_payments(records)
        except ChainStreamError as exc:
            done.set_exception(exc)
            return
        observer = self.observer

        def committed(result: concurrent.futures.Future[frozenset[bytes]]) -> None:  # on the store's writer thread
            observer.payments_committed(time.perf_counter() - queued)
            loop.call_soon_threadsafe(_copy_outcome, result, done)

        durable.add_done_callback(committed)

    def _verify(self, rt: ChannelRuntime, payment: Payment) -> Accepted:
        """Verify against the channel's live state; the session key's expiry is judged on the chain's clock."""
        token = rt.record.token
        started = time.perf_counter()
        try:
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
        finally:
            self.observer.payment_verified(time.perf_counter() - started)

    def signed_for(self, rt: ChannelRuntime, payment: Payment) -> bool:
        """Whether the payment is signed by the channel's payer or session key: only such a payment may make an
        instance re-read the channel's history from the database (anyone can send one ahead of its view)."""
        try:
            digest = payment.voucher.digest(self.domain)
            authorised_signer(rt.record, digest, payment.signature, "a payment", self.chain_now())
        except Rejection:
            return False
        return True

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
        if not self.signed_for(rt, payment):
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

    def _publish_payment(self, rt: ChannelRuntime, record: PaymentRecord) -> None:
        """Live payment events, each audience shown only what is its own (relay/read_models.py)."""
        if not self.bus.has_subscribers:
            return
        # a tip straight to an address names a person: the public stream shows catalog tracks only
        public = record.target in self.catalog.entries
        for event, topics in payment_events(record, rt.record.deposit, rt.spent_today, public_target=public):
            self.bus.publish(event, topics)

    # ------------------------------------------------------------- the catalog
    def put_track(self, entry: CatalogEntry) -> None:
        """A track registered or changed on chain (watcher): into the catalog, and announced to live listeners."""
        self.catalog.put(entry)
        self.bus.publish({"type": "catalog", "trackId": "0x" + entry.track_id.hex()}, {"all", "catalog"})

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
