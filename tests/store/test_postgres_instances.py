"""Several relay instances on one PostgreSQL database, at the store: a group writes a channel's payments only if
they extend what the database holds as the instance believed when it verified them (the previous payment, the
caps, no co-signed close), leaves that channel out otherwise (and only that channel), and one instance leads."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from chainstream.ledger import LedgerState, charge_play, charge_tip
from chainstream.store import ChannelRecord, CoopClose, PaymentRecord
from chainstream.store.postgres import PostgresStore
from chainstream.store.records import EXHAUSTED, SERVED
from tests.unit.test_group_commit import ARTIST, LISTING, record_for

pytestmark = pytest.mark.postgres

PAYER = "0x" + "c3" * 20


def cid(n: int) -> bytes:
    return n.to_bytes(32, "big")


@pytest.fixture
def pair(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two instances ("a" and "b") on one database, with channels 1-3 known to it."""
    a, b = PostgresStore(postgres_url), PostgresStore(postgres_url)
    a.claim_instance("a")
    b.claim_instance("b")
    for store in (a, b):
        store.start()
    for n in (1, 2, 3):
        a.upsert_channel(ChannelRecord(cid(n), PAYER, ARTIST, 10**18, ARTIST, 1_900_000_000))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def chain(
    n: int, count: int, state: LedgerState | None = None, prev: bytes | None = None, caps: int = 0
) -> list[PaymentRecord]:
    """`count` plays on channel n after `state`, each naming the previous one's digest, as an instance would."""
    state = state or LedgerState.opened(cid(n))
    out = []
    for _ in range(count):
        state, record = record_for(state, charge_play(state, LISTING))
        out.append(dataclasses.replace(record, prev_digest=prev, caps_basis=caps))
        prev = record.digest
    return out


def stored(store: PostgresStore, n: int) -> list[tuple[int, bytes]]:
    return [(p.seq, p.digest) for p in reversed(store.history(cid(n), limit=500))]


def test_a_payment_that_does_not_extend_the_stored_channel_is_left_out_alone(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pair
    mine = chain(1, 2)
    assert a.submit_payments(mine).result(timeout=30) == frozenset()

    # b verified its payments against an older view of channel 1 (nothing paid yet): its seq 1 and 2 are
    # another branch. They are left out, its channel 2 payments in the same group are written.
    theirs = [dataclasses.replace(r, digest=b"\x99" * 32) for r in chain(1, 2)]
    others = chain(2, 3)
    assert b.submit_payments(theirs + others).result(timeout=30) == frozenset({cid(1)})
    assert stored(a, 1) == [(r.seq, r.digest) for r in mine]
    assert stored(a, 2) == [(r.seq, r.digest) for r in others]

    # Right seq, wrong previous payment (a fork one step later): left out too.
    state = LedgerState.opened(cid(1))
    for _r in mine:
        state, _ = record_for(state, charge_play(state, LISTING))
    fork = chain(1, 1, state, prev=b"\x77" * 32)
    assert b.submit_payments(fork).result(timeout=30) == frozenset({cid(1)})
    # The same payment on the real previous one is written, by either instance.
    good = chain(1, 1, state, prev=mine[-1].digest)
    assert b.submit_payments(good).result(timeout=30) == frozenset()
    assert [seq for seq, _ in stored(a, 1)] == [1, 2, 3]


def test_later_groups_of_a_left_out_channel_stay_out(pair: tuple[PostgresStore, PostgresStore]) -> None:
    """An instance pipelines payments 1..4 of a channel in two groups; another instance wrote seq 1 first. Both
    groups are left out: the second group's seq 3 follows the first group's seq 2, which is not in the database."""
    a, b = pair
    assert a.submit_payments(chain(3, 1)).result(timeout=30) == frozenset()
    pipelined = [
        dataclasses.replace(r, digest=bytes([r.seq]) * 32, prev_digest=bytes([r.seq - 1]) * 32 if r.seq > 1 else None)
        for r in chain(3, 4)
    ]
    first, second = b.submit_payments(pipelined[:2]), b.submit_payments(pipelined[2:])
    assert first.result(timeout=30) == frozenset({cid(3)})
    assert second.result(timeout=30) == frozenset({cid(3)})
    assert [seq for seq, _ in stored(a, 3)] == [1]


def test_payments_verified_under_old_caps_or_after_a_cosigned_close_are_left_out(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pair
    assert a.set_caps(cid(1), 5, None, 100)
    assert not b.set_caps(cid(1), 9, None, 100)  # not newer than the stored caps: refused by the database
    assert b.submit_payments(chain(1, 1, caps=0)).result(timeout=30) == frozenset({cid(1)})
    assert b.submit_payments(chain(1, 1, caps=100)).result(timeout=30) == frozenset()

    state, tip = record_for(LedgerState.opened(cid(2)), charge_tip(1_000, artist=ARTIST))
    assert a.submit_payments([dataclasses.replace(tip, caps_basis=0)]).result(timeout=30) == frozenset()
    a.set_coop_close(cid(2), CoopClose(tip.digest))
    late = chain(2, 1, state, prev=tip.digest)
    assert b.submit_payments(late).result(timeout=30) == frozenset({cid(2)})
    assert b.channel_head(cid(2)) == (1, 0, CoopClose(tip.digest))


def test_one_instance_leads_and_another_takes_over_when_it_goes(postgres_url: str) -> None:
    a, b = PostgresStore(postgres_url), PostgresStore(postgres_url)
    a.claim_instance("a")
    b.claim_instance("b")
    try:
        assert a.try_lead() and a.try_lead()  # holds it, and keeps it
        assert not b.try_lead()
        a.close()
        assert b.try_lead()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------------- per-second metering


SEGMENT_MS = 2_000
BUDGET_MS = 10_000  # paid: 10 s; served while under it: five 2 s segments, and no more


def race(stores: list[PostgresStore], channel: bytes, track: bytes, requests: int) -> list[str]:
    """`requests` different segments of one per-second receipt, asked of the instances in turn, all at once
    (threads released together by a barrier, each with its own store connection's turn)."""
    barrier = threading.Barrier(requests)

    def fetch(k: int) -> str:
        barrier.wait()
        store = stores[k % len(stores)]
        return store.record_delivery(channel, track, 1, k, SEGMENT_MS, budget_ms=BUDGET_MS, served_at=float(k))

    with ThreadPoolExecutor(requests) as pool:
        return list(pool.map(fetch, range(requests)))


def test_many_segment_requests_racing_across_instances_never_serve_past_the_paid_budget(postgres_url: str) -> None:
    """Several instances serve one channel's per-second track at the same instant, many requests each: together
    they serve no more than the budget allows (five segments for 10 s), however the requests interleave."""
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    try:
        for n, store in enumerate(stores):
            store.claim_instance(f"m{n}")
        for round_ in range(12):  # a fresh channel each round: twelve races on an empty budget
            channel, track = cid(100 + round_), b"\x07" * 32
            outcomes = race(stores, channel, track, 32)
            assert outcomes.count(SERVED) == BUDGET_MS // SEGMENT_MS, (round_, outcomes)
            assert outcomes.count(EXHAUSTED) == 32 - BUDGET_MS // SEGMENT_MS
            assert stores[0].metered_millis(channel, track) == BUDGET_MS
    finally:
        for store in stores:
            store.close()
