"""The store's group committer: everything acknowledged is in the file, and a caller that stops waiting
(cancels its future) can neither lose its payments nor stop the writer."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from chainstream.ledger import Charge, LedgerState, Listing, apply, charge_play
from chainstream.pricing import Split, Terms
from chainstream.protocol.types import to_address
from chainstream.store import PaymentRecord, SqliteStore

ARTIST = to_address("0x" + "a1" * 20)
LISTING = Listing(b"\x22" * 32, "t", ARTIST, Terms(per_play=10**13), Split.solo(ARTIST), 1)


def record_for(
    state: LedgerState, charge: Charge, accepted_at: float | None = None
) -> tuple[LedgerState, PaymentRecord]:
    """The channel's next state and the payment record the relay would store for `charge`."""
    state, receipt = apply(state, charge)
    record = PaymentRecord(
        channel_id=state.voucher.channel_id,
        seq=receipt.seq,
        digest=state.voucher.struct_hash(),
        voucher=state.voucher,
        signature=b"\x01" * 65,
        signer=ARTIST,
        kind=int(charge.kind),
        target=charge.target,
        units=charge.units,
        amount=charge.amount,
        split_hash=charge.split_hash,
        memo="",
        payments=dict(charge.payments),
        accepted_at=time.time() if accepted_at is None else accepted_at,
    )
    return state, record


def records(channel: int, count: int, listing: Listing = LISTING) -> list[PaymentRecord]:
    state = LedgerState.opened(channel.to_bytes(32, "big"))
    out = []
    for _ in range(count):
        state, record = record_for(state, charge_play(state, listing))
        out.append(record)
    return out


def test_groups_are_durable_and_a_cancelled_waiter_does_not_stop_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SqliteStore(path)
    store.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: the writer waits with what it dequeued
    first = store.submit_payments(records(1, 3))
    second = store.submit_payments(records(2, 3))
    second.cancel()  # its caller went away (succeeds only if the writer has not taken it yet)
    blocker.execute("ROLLBACK")
    blocker.close()
    first.result(timeout=30)
    third = store.submit_payments(records(3, 2))
    third.result(timeout=30)  # the writer survived whatever happened to `second`
    assert second.cancelled() or second.result(timeout=30) == frozenset()
    assert store.payment_count() == 8  # the cancelled caller's payments were written all the same
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM earnings").fetchone()[0] == 8


def test_a_stored_payment_reads_back_with_its_payees(tmp_path: Path) -> None:
    collab, fee = to_address("0x" + "b2" * 20), to_address("0x" + "fe" * 20)
    split = Split((ARTIST, collab), (7_000, 3_000), fee, 500)
    written = records(7, 3) + records(8, 2, Listing(b"\x33" * 32, "t", ARTIST, Terms(per_play=10**13), split, 1))
    store = SqliteStore(tmp_path / "relay.db")
    store.start()
    store.submit_payments(written).result(timeout=30)
    for record in written:
        read = store.payment_at(record.channel_id, record.seq)
        assert read is not None and (read.voucher, read.payments) == (record.voucher, record.payments)
    latest = store.latest_payment((8).to_bytes(32, "big"))
    assert latest is not None and latest.seq == 2 and len(latest.payments) == 3
    store.close()
