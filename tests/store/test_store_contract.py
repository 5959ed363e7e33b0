"""The store's contract, held by both backends: a SQLite file and a database on a real PostgreSQL server.

What the relay relies on: an acknowledged group survives a restart, a cancelled waiter loses nothing and stops
nothing, payments and per-payee earnings read back exactly (amounts beyond 64 bits), the chain's view of a
channel never overwrites what the relay owns (caps, a co-signed close), the outbox and cursors persist, a
channel's ledger is rebuilt from its payments, and a colliding writer fails only its own group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from chainstream.errors import ConfigurationError, UnrecoverableError
from chainstream.ledger import LedgerState, Listing, charge_download, charge_play, charge_seconds, charge_tip
from chainstream.pricing import Split, Terms
from chainstream.protocol import Kind
from chainstream.protocol.types import to_address
from chainstream.store import CLOSE_PENDING, ChannelRecord, CoopClose, PaymentRecord, SettledRecord, open_store
from chainstream.store.base import SqlStore
from chainstream.store.records import ProfileRecord
from tests.integration.relay_fixtures import wait_until
from tests.unit.test_group_commit import ARTIST, record_for, records
from tests.unit.test_store_schema import COLLAB, FEE, SPLIT_LISTING

BIG = 10**25  # an amount beyond 64 bits (amounts go up to 2**96 - 1)
BIG_LISTING = Listing(
    b"\x44" * 32,
    "big",
    ARTIST,
    Terms(per_play=BIG, download=3 * BIG),
    Split((ARTIST, COLLAB), (5_000, 5_000), FEE, 100),
    1,
)
METERED_LISTING = Listing(b"\x55" * 32, "metered", ARTIST, Terms(per_second=7), Split.solo(ARTIST), 1)
PAYER = to_address("0x" + "c3" * 20)


def cid(n: int) -> bytes:
    return n.to_bytes(32, "big")


@dataclass
class Backend:
    """Where a store lives (a SQLite file or a PostgreSQL URL), so that tests can open it again."""

    name: str
    database: str

    def open(self) -> SqlStore:
        store = open_store(self.database)
        assert isinstance(store, SqlStore)
        return store

    @contextlib.contextmanager
    def writer_blocked(self) -> Iterator[None]:
        """Hold a lock that makes the group-commit writer wait with whatever it dequeued."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
                conn.close()
            return
        with psycopg.connect(self.database) as pg:  # a transaction until the block ends
            pg.execute("LOCK TABLE payments IN EXCLUSIVE MODE")
            yield
            pg.rollback()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "relay.db"))
    return Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(backend: Backend) -> Iterator[SqlStore]:
    opened = backend.open()
    opened.start()
    try:
        yield opened
    finally:
        opened.close()


# ------------------------------------------------------------------------------------------------ group commit


def test_acknowledged_groups_read_back_exactly_after_a_restart(backend: Backend, store: SqlStore) -> None:
    groups = [records(1, 4), records(2, 3, SPLIT_LISTING), records(3, 2, BIG_LISTING)]
    futures = [store.submit_payments(group) for group in groups]
    for future in futures:
        future.result(timeout=30)
    store.close()

    reopened = backend.open()
    try:
        assert reopened.payment_count() == 9
        for record in (r for group in groups for r in group):
            assert reopened.payment_at(record.channel_id, record.seq) == record
    finally:
        reopened.close()


def test_a_cancelled_waiter_neither_loses_its_payments_nor_stops_the_writer(backend: Backend, store: SqlStore) -> None:
    with backend.writer_blocked():
        first = store.submit_payments(records(1, 3))
        second = store.submit_payments(records(2, 3))
        second.cancel()  # its caller went away (succeeds only if the writer has not taken it yet)
    first.result(timeout=30)
    third = store.submit_payments(records(3, 2))
    third.result(timeout=30)  # the writer survived whatever happened to `second`
    assert second.cancelled() or second.result(timeout=30) == frozenset()
    assert store.payment_count() == 8  # the cancelled caller's payments were written all the same
    assert len(store.earnings_rows(ARTIST)) == 8


def test_a_colliding_writer_fails_only_its_group_and_keeps_writing(backend: Backend, store: SqlStore) -> None:
    """A second store on the same database writes a (channel_id, seq) the first one already stored, outside the
    relay's coordination (payments of channels the database does not know, so no instance checked them): that
    whole group fails with UnrecoverableError, and both writers go on."""
    store.submit_payments(records(1, 3)).result(timeout=30)
    other = backend.open()
    other.start()
    try:
        collision = other.submit_payments(records(1, 3) + records(2, 1))
        with pytest.raises(UnrecoverableError, match="already stored, written outside the relay's coordination"):
            collision.result(timeout=30)
        assert other.payment_at(cid(2), 1) is None  # the group was all or nothing
        other.submit_payments(records(3, 2)).result(timeout=30)
        store.submit_payments(records(4, 1)).result(timeout=30)
    finally:
        other.close()
    assert store.payment_count() == 6
    assert store.groups_committed == 2


# ------------------------------------------------------------------------------------------------ payments


def test_payments_read_back_with_each_payees_credit(store: SqlStore) -> None:
    written = records(7, 2, SPLIT_LISTING) + records(8, 3, BIG_LISTING)
    store.submit_payments(written).result(timeout=30)
    for record in written:
        read = store.payment_at(record.channel_id, record.seq)
        assert read is not None and read.payments == record.payments and read.voucher == record.voucher
        assert sum(read.payments.values()) == read.amount
    big = store.latest_payment(cid(8))
    assert big is not None and big.voucher.total == 3 * BIG and big.payments[ARTIST] > 2**64


def test_latest_payment_history_and_payment_at_page_through_a_channel(store: SqlStore) -> None:
    store.submit_payments(records(5, 7) + records(6, 1)).result(timeout=30)
    latest = store.latest_payment(cid(5))
    assert latest is not None and latest.seq == 7
    assert [p.seq for p in store.history(cid(5), limit=3)] == [7, 6, 5]
    assert [p.seq for p in store.history(cid(5), limit=10, before_seq=5)] == [4, 3, 2, 1]
    assert store.payment_at(cid(5), 8) is None
    assert store.latest_payment(cid(9)) is None and store.history(cid(9)) == []
    assert store.payment_count() == 8


def test_earnings_rows_are_a_payees_credits_in_time_order(store: SqlStore) -> None:
    t0 = 1_700_000_000.25
    a, b = records(1, 2, SPLIT_LISTING), records(2, 2, SPLIT_LISTING)
    interleaved = [dataclasses.replace(r, accepted_at=t0 + i) for i, r in enumerate((a[0], b[0], a[1], b[1]))]
    store.submit_payments(interleaved[2:]).result(timeout=30)  # commit order is not time order
    store.submit_payments(interleaved[:2]).result(timeout=30)
    expected = [
        {
            "channel_id": r.channel_id,
            "seq": r.seq,
            "target": r.target,
            "kind": Kind.PLAY,
            "units": 1,
            "amount": r.payments[COLLAB],
            "accepted_at": r.accepted_at,
        }
        for r in interleaved
    ]
    assert store.earnings_rows(COLLAB) == expected
    assert store.earnings_rows(COLLAB, since=t0 + 2) == expected[2:]
    assert [row["amount"] for row in store.earnings_rows(FEE)] == [r.payments[FEE] for r in interleaved]
    assert store.earnings_rows(PAYER) == []


def test_a_channels_ledger_is_rebuilt_from_its_payments(store: SqlStore) -> None:
    day_start = 1_700_006_400.0
    state = LedgerState.opened(cid(3))
    written: list[PaymentRecord] = []
    charges = [
        lambda s: charge_play(s, SPLIT_LISTING),
        lambda s: charge_play(s, BIG_LISTING),
        lambda s: charge_play(s, SPLIT_LISTING),
        lambda s: charge_seconds(METERED_LISTING, 7),
        lambda s: charge_download(s, BIG_LISTING),
        lambda s: charge_tip(1_234, artist=COLLAB),
        lambda s: charge_seconds(METERED_LISTING, 5),
    ]
    for i, make in enumerate(charges):
        state, record = record_for(state, make(state), accepted_at=day_start - 50 + 20 * i)
        written.append(record)
    store.submit_payments(written).result(timeout=30)

    ledger, spent_today = store.load_ledger(cid(3), day_start)
    assert ledger == state
    assert dict(ledger.plays) == {SPLIT_LISTING.track_id: 2, BIG_LISTING.track_id: 1}
    assert ledger.owned == frozenset({BIG_LISTING.track_id})
    assert dict(ledger.seconds) == {METERED_LISTING.track_id: 12}  # what a metered stream of it may deliver
    assert spent_today == sum(r.amount for r in written[3:])  # the first three came before day_start
    assert store.load_ledger(cid(4), day_start) == (LedgerState.opened(cid(4)), 0)


# ------------------------------------------------------------------------------------------------ relay-owned rows


def channel(n: int, **changes: object) -> ChannelRecord:
    record = ChannelRecord(cid(n), PAYER, ARTIST, 10**18, COLLAB, 1_900_000_000, opened_block=12)
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def test_a_channel_update_from_the_chain_keeps_the_caps_and_the_cosigned_close(store: SqlStore) -> None:
    store.upsert_channel(channel(1))
    store.upsert_channel(channel(2, payer=COLLAB))
    store.set_caps(cid(1), 3 * BIG, None, issued_at=1_700_000_000)
    store.set_coop_close(cid(1), CoopClose(b"\x0c" * 32))
    store.upsert_channel(channel(1, deposit=5 * BIG, status="closing", closes_at=1_800_000_000, session_key=FEE))

    got = store.get_channel(cid(1))
    assert got == channel(
        1,
        deposit=5 * BIG,
        status="closing",
        closes_at=1_800_000_000,
        session_key=FEE,
        daily_cap=3 * BIG,
        coop_close=CoopClose(b"\x0c" * 32),
        caps_issued_at=1_700_000_000,
    )
    assert store.get_channel(cid(9)) is None
    assert [c.channel_id for c in store.channels("closing")] == [cid(1)]
    assert sorted(c.channel_id for c in store.channels()) == [cid(1), cid(2)]
    assert [c.channel_id for c in store.channels_of(PAYER)] == [cid(1)]


def test_a_close_being_cosigned_reads_back_as_pending_and_a_cosigned_one_as_its_digest(store: SqlStore) -> None:
    """The consent to a close is one typed value at the store boundary: pending, co-signed at a digest, or none;
    the column keeps its bytes, so a database written before (b"pending" in the digest column) reads the same."""
    store.upsert_channel(channel(1))
    assert store.get_channel(cid(1)).coop_close is None  # type: ignore[union-attr]
    store.set_coop_close(cid(1), CLOSE_PENDING)
    got = store.get_channel(cid(1))
    assert got is not None and got.coop_close == CLOSE_PENDING and got.coop_close.pending
    assert store.channel_head(cid(1)) == (0, 0, CLOSE_PENDING)
    store._execute("UPDATE channels SET coop_close_digest=? WHERE channel_id=?", (b"pending", cid(1)))
    assert store.channel_head(cid(1)) == (0, 0, CLOSE_PENDING)  # as an earlier relay wrote it
    store.set_coop_close(cid(1), CoopClose(b"\x0d" * 32))
    got = store.get_channel(cid(1))
    assert got is not None and got.coop_close == CoopClose(b"\x0d" * 32) and not got.coop_close.pending
    (row,) = store._query("SELECT coop_close_digest FROM channels WHERE channel_id=?", (cid(1),))
    assert bytes(row["coop_close_digest"]) == b"\x0d" * 32  # the column keeps its bytes
    store.set_coop_close(cid(1), None)  # a close request answered with close_state_mismatch: consent withdrawn
    assert store.channel_head(cid(1)) == (0, 0, None)
    with pytest.raises(ValueError, match="32-byte"):
        CoopClose(b"pending")  # a digest is 32 bytes: the marker cannot be taken for one


def test_a_later_settlement_replaces_the_settled_state(store: SqlStore) -> None:
    assert store.get_settled(cid(1)) is None
    store.set_settled(SettledRecord(cid(1), 100, (ARTIST,), (100,), 7))
    later = SettledRecord(cid(1), 3 * BIG, (ARTIST, COLLAB), (2 * BIG, BIG), 9)
    store.set_settled(later)
    assert store.get_settled(cid(1)) == later


def test_a_claim_is_recorded_once_and_claims_list_by_block(store: SqlStore) -> None:
    store.add_claim(b"\x02" * 32, 1, ARTIST, FEE, BIG, 20)
    store.add_claim(b"\x01" * 32, 0, ARTIST, FEE, 5, 10)
    store.add_claim(b"\x01" * 32, 0, ARTIST, FEE, 5, 10)  # the watcher replays a block range: no double count
    store.add_claim(b"\x03" * 32, 0, COLLAB, FEE, 7, 11)
    assert store.claims_of(ARTIST) == [
        {"tx_hash": b"\x01" * 32, "log_index": 0, "payee": ARTIST, "token": FEE, "amount": 5, "block": 10},
        {"tx_hash": b"\x02" * 32, "log_index": 1, "payee": ARTIST, "token": FEE, "amount": BIG, "block": 20},
    ]


def test_audio_deliveries_are_recorded_once_per_receipt_and_metered_against_a_budget(store: SqlStore) -> None:
    """A segment served twice under one receipt counts once; metered (per-second) audio stops at the budget,
    with at most one segment beyond it; unmetered (a play) is recorded without a budget."""
    track = b"\x07" * 32
    served = [store.record_delivery(cid(1), track, 3, k, 2_000, budget_ms=5_000, served_at=1.0) for k in range(5)]
    assert served == ["served", "served", "served", "exhausted", "exhausted"]  # 0-2 s, 2-4 s, 4-6 s (< 5 s before)
    assert store.record_delivery(cid(1), track, 3, 0, 2_000, budget_ms=5_000, served_at=2.0) == "repeat"
    assert store.record_delivery(cid(1), track, 4, 3, 2_000, budget_ms=9_000, served_at=3.0) == "served"
    assert store.record_delivery(cid(1), track, 5, 0, 2_000, budget_ms=None, served_at=4.0) == "served"
    assert store.record_delivery(cid(2), track, 1, 0, 2_000, budget_ms=1, served_at=5.0) == "served"  # its own
    assert store.deliveries(cid(1)) == [{"target": track, "millis": 10_000, "metered_millis": 8_000, "segments": 5}]
    assert store.seconds_paid(cid(1), track) == 0


def test_a_payees_metered_deliveries_are_those_of_the_channels_and_tracks_it_earned_on(store: SqlStore) -> None:
    """The earnings' seconds delivered: metered audio per (channel, track) where the payee has earnings; another
    track's audio on the same channel and the track's audio on a channel that never paid the payee are left out."""
    paid = records(11, 2, SPLIT_LISTING)  # COLLAB earns on channel 11 for SPLIT_LISTING's track
    store.submit_payments(paid).result(timeout=30)
    track, other = SPLIT_LISTING.track_id, b"\x09" * 32
    store.add_deliveries(
        [
            (cid(11), track, 1, 0, 2_000, 1, 1.0),
            (cid(11), track, 1, 1, 1_500, 1, 1.0),
            (cid(11), track, 2, 0, 2_000, 0, 2.0),  # a play's audio: not metered
            (cid(11), other, 1, 0, 2_000, 1, 1.0),
            (cid(12), track, 1, 0, 2_000, 1, 1.0),  # no payment to COLLAB on channel 12
        ]
    )
    assert store.metered_deliveries_of(COLLAB) == {(cid(11), track): 3_500}
    assert store.metered_deliveries_of(PAYER) == {}


def test_deliveries_decided_in_memory_are_written_in_one_batch_and_read_back(store: SqlStore) -> None:
    """The relay's delivery book writes batches of rows (a row already there is kept) and reloads from them."""
    track = b"\x08" * 32
    rows = [(cid(3), track, 7, k, 2_000, 1, 1.0) for k in range(3)] + [(cid(3), track, 8, 0, 2_000, 0, 2.0)]
    store.add_deliveries(rows)
    store.add_deliveries(rows[:1] + [(cid(3), track, 7, 3, 1_000, 1, 3.0)])
    assert sorted(store.served_segments(cid(3), track, 7)) == [0, 1, 2, 3]
    assert store.metered_millis(cid(3), track) == 7_000
    assert store.deliveries(cid(3)) == [{"target": track, "millis": 9_000, "metered_millis": 7_000, "segments": 5}]


def test_a_cursor_is_absent_until_set_and_then_moves(store: SqlStore) -> None:
    assert store.get_cursor("events") is None
    store.set_cursor("events", 41)
    store.set_cursor("events", 42)
    assert store.get_cursor("events") == 42


def test_a_newer_profile_replaces_an_older_one_and_never_the_reverse(backend: Backend, store: SqlStore) -> None:
    other = to_address("0x" + "d4" * 20)
    assert store.profile(ARTIST) is None
    assert store.set_profile(ProfileRecord(ARTIST, "Ada", 10, b"\x01" * 65))
    assert store.set_profile(ProfileRecord(other, "Grace Hopper \u00e9\U0001f3b5", 3, b"\x03" * 65))
    assert store.set_profile(ProfileRecord(ARTIST, "Ada Lovelace", 11, b"\x02" * 65))
    assert not store.set_profile(ProfileRecord(ARTIST, "Old", 11, b"\x04" * 65))  # as new: refused
    assert not store.set_profile(ProfileRecord(ARTIST, "Older", 2, b"\x05" * 65))
    store.close()

    reopened = backend.open()
    reopened.start()
    try:
        assert reopened.profile(ARTIST) == ProfileRecord(ARTIST, "Ada Lovelace", 11, b"\x02" * 65)
        assert reopened.profiles_of([ARTIST, other, PAYER, ARTIST]) == {
            ARTIST: ProfileRecord(ARTIST, "Ada Lovelace", 11, b"\x02" * 65),
            other: ProfileRecord(other, "Grace Hopper \u00e9\U0001f3b5", 3, b"\x03" * 65),
        }
        assert reopened.profiles_of([]) == {}
    finally:
        reopened.close()


def test_the_outbox_follows_a_transaction_from_signed_to_confirmed_or_failed(store: SqlStore) -> None:
    first = store.add_outbox("settleBatch", 7, b"\xaa" * 32, b"raw-1", {"channels": ["0x01"], "total": str(BIG)})
    second = store.add_outbox("settleBatch", 8, b"\xbb" * 32, b"raw-2", {"channels": []})
    assert second > first
    pending = store.outbox(("signed", "sent"))
    assert [(r.id, r.status, r.nonce, r.tx_hash, r.raw_tx) for r in pending] == [
        (first, "signed", 7, b"\xaa" * 32, b"raw-1"),
        (second, "signed", 8, b"\xbb" * 32, b"raw-2"),
    ]
    assert pending[0].payload == {"channels": ["0x01"], "total": str(BIG)}

    store.update_outbox(first, "sent")
    store.update_outbox(first, "confirmed", block=99)
    store.update_outbox(second, "sent")
    store.update_outbox(second, "failed", error="reverted")
    assert [r.id for r in store.outbox(("signed", "sent"))] == []
    done = {r.id: r for r in store.outbox(("confirmed", "failed"))}
    assert (done[first].status, done[first].block, done[first].error) == ("confirmed", 99, None)
    assert (done[second].status, done[second].block, done[second].error) == ("failed", None, "reverted")


def test_one_relay_instance_per_database_or_per_name(backend: Backend) -> None:
    """A second relay on a SQLite database in use, or under a name in use on a PostgreSQL database, is refused
    with a message that says so; a claim lasts until its holder closes. PostgreSQL takes instances with other
    names (they share the load)."""
    first = backend.open()
    first.claim_instance()
    first.claim_instance()  # the holder may ask again
    second = backend.open()
    with pytest.raises(ConfigurationError, match="another relay instance") as info:
        second.claim_instance()
    if backend.name == "sqlite":
        assert f"(pid {os.getpid()})" in str(info.value) and "one relay per database" in str(info.value)
        with pytest.raises(ConfigurationError, match="one relay per database"):
            second.claim_instance("other")
    else:
        assert "named 'main'" in str(info.value) and "CHAINSTREAM_INSTANCE" in str(info.value)
        second.claim_instance("other")
    second.close()
    first.close()
    third = backend.open()
    third.claim_instance()
    third.close()


CLAIM_AND_WAIT = """
import sys, time
from chainstream.store import open_store
store = open_store(sys.argv[1])
store.claim_instance()
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_killed_instance_releases_the_database(backend: Backend) -> None:
    """A relay that dies without closing (kill -9) does not keep the database from a new one."""
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_WAIT, backend.database], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
        store = backend.open()
        with pytest.raises(ConfigurationError, match="another relay instance"):
            store.claim_instance()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

        def claimed() -> bool:
            try:
                store.claim_instance()
            except ConfigurationError:
                return False
            return True

        wait_until(claimed, timeout=30, what="the dead instance's claim to be released")
        store.close()
    finally:
        child.kill()
        child.wait(timeout=30)
