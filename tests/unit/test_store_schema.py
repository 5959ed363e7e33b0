"""The store's schema: a database from an older relay is migrated in place, one from a newer relay is refused,
and the background checkpointer (not the commits) copies the WAL into the database file."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from chainstream.errors import UnrecoverableError
from chainstream.ledger import Listing
from chainstream.pricing import Split, Terms
from chainstream.protocol.types import Address, to_address
from chainstream.store import SqliteStore
from chainstream.store import sqlite as sqlite_schema
from chainstream.store.records import ProfileRecord
from chainstream.store.sqlite import SCHEMA_VERSION
from tests.unit.test_group_commit import ARTIST, records

SCHEMA_V1 = (Path(__file__).parent / "data" / "schema_v1.sql").read_text()
COLLAB, FEE = to_address("0x" + "b2" * 20), to_address("0x" + "fe" * 20)
SPLIT_LISTING = Listing(
    b"\x33" * 32, "t", ARTIST, Terms(per_play=10**13), Split((ARTIST, COLLAB), (7_000, 3_000), FEE, 500), 1
)


def write_v1(path: Path) -> list:
    """A schema-1 database with 5 payments over two channels, rows as the schema-1 relay wrote them."""
    written = records(1, 3) + records(2, 2, SPLIT_LISTING)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SCHEMA_V1)
    conn.execute(
        "INSERT INTO channels (channel_id, payer, token, deposit, session_key, session_expiry, status)"
        " VALUES (?,?,?,?,?,?,?)",
        ((1).to_bytes(32, "big"), ARTIST, ARTIST, "10", ARTIST, 0, "open"),
    )
    for r in written:
        v = r.voucher
        conn.execute(
            "INSERT INTO payments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                r.channel_id,
                r.seq,
                r.digest,
                str(v.total),
                json.dumps(list(v.payees)),
                json.dumps([str(a) for a in v.amounts]),
                v.play_hash,
                r.signature,
                r.signer,
                r.kind,
                r.target,
                r.units,
                str(r.amount),
                r.split_hash,
                r.memo,
                r.accepted_at,
            ),
        )
        for payee, amount in r.payments.items():
            conn.execute(
                "INSERT INTO earnings VALUES (?,?,?,?,?,?,?,?)",
                (payee, r.channel_id, r.seq, r.target, r.kind, r.units, str(amount), r.accepted_at),
            )
    conn.close()
    return written


def test_a_schema_1_database_is_migrated_with_every_payment_and_earning(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    written = write_v1(path)
    store = SqliteStore(path)
    for r in written:
        read = store.payment_at(r.channel_id, r.seq)
        assert read is not None
        assert (read.digest, read.voucher, read.payments, read.signature) == (
            r.digest,
            r.voucher,
            r.payments,
            r.signature,
        )
    assert [(bytes(e["channel_id"]), e["seq"], e["amount"]) for e in store.earnings_rows(COLLAB)] == [
        (r.channel_id, r.seq, r.payments[COLLAB]) for r in written if COLLAB in r.payments
    ]
    assert len(store.earnings_rows(ARTIST)) == 5
    channel = store.get_channel((1).to_bytes(32, "big"))
    assert channel is not None and channel.caps_issued_at == 0
    # and it takes new payments as a new database would
    store.start()
    store.submit_payments(records(9, 2)).result(timeout=30)
    assert store.payment_count() == 7
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not {"payments_v1", "earnings_v1"} & tables


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    write_v1(path)
    with sqlite3.connect(path) as conn:  # a leftover that makes the migration's rename fail half-way
        conn.execute("CREATE TABLE payments_v1 (x)")
    with pytest.raises(UnrecoverableError, match="could not migrate"):
        SqliteStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0] == 5
        assert conn.execute("SELECT COUNT(*) FROM earnings").fetchone()[0] == 9


def test_a_database_from_a_newer_relay_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UnrecoverableError, match="newer|upgrade"):
        SqliteStore(path)


def test_the_checkpointer_copies_committed_payments_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SqliteStore(path, checkpoint_interval=0.05)
    store.start()
    store.submit_payments(records(1, 50)).result(timeout=30)
    before = store.checkpoints
    deadline = time.monotonic() + 30
    while store.checkpoints < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The main file alone, without its WAL, holds the payments: a checkpoint copied them (no commit did:
    # commits do not checkpoint while the store runs, and 50 payments are far below SQLite's own threshold).
    alone = tmp_path / "copy.db"
    shutil.copyfile(path, alone)
    with sqlite3.connect(alone) as conn:
        assert conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0] == 50
    store.close()


def test_a_schema_2_database_gains_the_deliveries_table_and_keeps_its_payments(tmp_path: Path) -> None:
    """Schema 2 -> 3: the audio deliveries table is added; nothing else changes."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.executescript(sqlite_schema.SCHEMA.replace(sqlite_schema.DELIVERIES, "").replace(sqlite_schema.PROFILES, ""))
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO cursors VALUES ('events', 5)")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        assert store.get_cursor("events") == 5
        assert store.record_delivery(b"\x01" * 32, b"\x02" * 32, 1, 0, 2_000, budget_ms=None, served_at=1.0) == "served"
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


def test_a_schema_3_database_gains_the_profiles_table_and_keeps_its_data(tmp_path: Path) -> None:
    """Schema 3 -> 4: the artists' profiles table is added; nothing else changes."""
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    conn.executescript(sqlite_schema.SCHEMA.replace(sqlite_schema.PROFILES, ""))
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO cursors VALUES ('events', 7)")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    artist = Address("0x1111111111111111111111111111111111111111")
    try:
        assert store.get_cursor("events") == 7
        assert store.set_profile(ProfileRecord(artist, "Ada", 10, b"\x01" * 65))
        assert store.profile(artist) == ProfileRecord(artist, "Ada", 10, b"\x01" * 65)
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
