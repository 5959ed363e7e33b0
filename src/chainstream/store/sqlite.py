"""The relay's durable state in SQLite (WAL, synchronous=FULL), with group commit.

Accepted payments are written by one writer thread that takes everything queued since its last commit and
writes it in one transaction: each payment and its effects (per-payee earnings rows) commit together or not
at all, and one fsync covers the whole group. A payment is acknowledged only after its group committed.
Amounts are stored as decimal text: they exceed SQLite's 64-bit integers.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chainstream.errors import UnrecoverableError
from chainstream.ledger import LedgerState
from chainstream.protocol import Kind, Voucher
from chainstream.protocol.types import Address

SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    channel_id BLOB PRIMARY KEY,
    payer TEXT NOT NULL,
    token TEXT NOT NULL,
    deposit TEXT NOT NULL,
    session_key TEXT NOT NULL,
    session_expiry INTEGER NOT NULL,
    status TEXT NOT NULL,            -- open | closing | closed
    closes_at INTEGER NOT NULL DEFAULT 0,
    coop_close_digest BLOB,          -- set once the relay co-signed a close: no payments after it
    daily_cap TEXT,
    session_cap TEXT,
    opened_block INTEGER NOT NULL DEFAULT 0,
    caps_issued_at INTEGER NOT NULL DEFAULT 0  -- issuedAt of the caps in force: older caps are refused
);
CREATE TABLE IF NOT EXISTS payments (
    channel_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL,
    total TEXT NOT NULL,
    payees TEXT NOT NULL,
    amounts TEXT NOT NULL,
    play_hash BLOB NOT NULL,
    signature BLOB NOT NULL,
    signer TEXT NOT NULL,
    kind INTEGER NOT NULL,
    target BLOB NOT NULL,
    units INTEGER NOT NULL,
    amount TEXT NOT NULL,
    split_hash BLOB NOT NULL,
    memo TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    credits TEXT NOT NULL,           -- JSON {payee: decimal amount}: what this payment adds for each payee
    PRIMARY KEY (channel_id, seq)
);  -- a rowid table: its ~500-byte rows are appended in commit order; only its key lands at random (one page)
CREATE TABLE IF NOT EXISTS earnings (
    payee TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    channel_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    target BLOB NOT NULL,
    kind INTEGER NOT NULL,
    units INTEGER NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (payee, accepted_at, channel_id, seq)
) WITHOUT ROWID;  -- keyed by time within a payee: a group commit appends to each payee's last page
CREATE TABLE IF NOT EXISTS settled (
    channel_id BLOB PRIMARY KEY,
    total TEXT NOT NULL,
    payees TEXT NOT NULL,
    credited TEXT NOT NULL,
    block INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,            -- signed | sent | confirmed | failed
    nonce INTEGER NOT NULL,
    tx_hash BLOB NOT NULL,
    raw_tx BLOB NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    block INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    tx_hash BLOB NOT NULL,
    log_index INTEGER NOT NULL,
    payee TEXT NOT NULL,
    token TEXT NOT NULL,
    amount TEXT NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, block INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS claims_by_payee ON claims (payee);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status);
"""


@dataclass(frozen=True)
class ChannelRecord:
    channel_id: bytes
    payer: Address
    token: Address
    deposit: int
    session_key: Address
    session_expiry: int
    status: str = "open"
    closes_at: int = 0
    coop_close_digest: bytes | None = None
    daily_cap: int | None = None
    session_cap: int | None = None
    opened_block: int = 0
    caps_issued_at: int = 0


@dataclass(frozen=True)
class PaymentRecord:
    """An accepted payment: the voucher, its signature, the receipt fields, and who got what."""

    channel_id: bytes
    seq: int
    digest: bytes
    voucher: Voucher
    signature: bytes
    signer: Address
    kind: int
    target: bytes
    units: int
    amount: int
    split_hash: bytes
    memo: str
    payments: dict[Address, int]
    accepted_at: float


@dataclass(frozen=True)
class SettledRecord:
    channel_id: bytes
    total: int
    payees: tuple[Address, ...]
    credited: tuple[int, ...]
    block: int


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    kind: str
    status: str
    nonce: int
    tx_hash: bytes
    raw_tx: bytes
    payload: dict[str, Any]
    created_at: float
    block: int | None
    error: str | None


def _opt_int(text: str | None) -> int | None:
    return None if text is None else int(text)


def _channel(row: sqlite3.Row) -> ChannelRecord:
    return ChannelRecord(
        channel_id=bytes(row["channel_id"]), payer=row["payer"], token=row["token"], deposit=int(row["deposit"]),
        session_key=row["session_key"], session_expiry=row["session_expiry"], status=row["status"],
        closes_at=row["closes_at"], coop_close_digest=row["coop_close_digest"], daily_cap=_opt_int(row["daily_cap"]),
        session_cap=_opt_int(row["session_cap"]), opened_block=row["opened_block"],
        caps_issued_at=row["caps_issued_at"],
    )


def _payment_rows(record: PaymentRecord) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    v = record.voucher
    credits = {payee: str(amount) for payee, amount in record.payments.items()}
    payment = (
        record.channel_id, record.seq, record.digest, str(v.total), json.dumps(list(v.payees)),
        json.dumps([str(a) for a in v.amounts]), v.play_hash, record.signature, record.signer, record.kind,
        record.target, record.units, str(record.amount), record.split_hash, record.memo, record.accepted_at,
        json.dumps(credits),
    )
    earnings = [
        (payee, record.accepted_at, record.channel_id, record.seq, record.target, record.kind, record.units, amount)
        for payee, amount in credits.items()
    ]
    return payment, earnings


SCHEMA_VERSION = 2  # PRAGMA user_version; 0 on a database written before versions were kept (schema 1)

# Schema 1 -> 2: per-payee credits move into the payment's row, earnings are keyed by time within a payee and
# payments lose the UNIQUE digest index (two random B-tree pages fewer per payment, and one per payee).
MIGRATE_1_TO_2 = """
BEGIN IMMEDIATE;
CREATE INDEX earnings_v1_by_payment ON earnings (channel_id, seq);
DROP INDEX IF EXISTS earnings_by_payee_time;
ALTER TABLE payments RENAME TO payments_v1;
ALTER TABLE earnings RENAME TO earnings_v1;
""" + SCHEMA + """
INSERT INTO payments SELECT p.channel_id, p.seq, p.digest, p.total, p.payees, p.amounts, p.play_hash, p.signature,
    p.signer, p.kind, p.target, p.units, p.amount, p.split_hash, p.memo, p.accepted_at,
    COALESCE((SELECT json_group_object(e.payee, e.amount) FROM earnings_v1 e
              WHERE e.channel_id = p.channel_id AND e.seq = p.seq), '{}')
    FROM payments_v1 p ORDER BY p.rowid;
INSERT INTO earnings SELECT payee, accepted_at, channel_id, seq, target, kind, units, amount FROM earnings_v1;
DROP TABLE payments_v1;
DROP TABLE earnings_v1;
PRAGMA user_version = 2;
COMMIT;
"""


def _prepare_schema(conn: sqlite3.Connection) -> None:
    """Create the tables of a new database, or bring an older one to SCHEMA_VERSION (in one transaction)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UnrecoverableError(f"the database has schema version {version}; this relay knows up to "
                                 f"{SCHEMA_VERSION}: upgrade chainstream")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version == 0 and "channels" in tables:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(channels)")}
        if "caps_issued_at" not in columns:  # a database from before caps' issuedAt was kept
            conn.execute("ALTER TABLE channels ADD COLUMN caps_issued_at INTEGER NOT NULL DEFAULT 0")
    if version == 0 and "payments" in tables:
        try:
            conn.executescript(MIGRATE_1_TO_2)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise UnrecoverableError(f"could not migrate the database to schema {SCHEMA_VERSION}: {exc}") from exc
        return
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


ROWS_PER_INSERT = 500


def _insert_rows(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """INSERT rows with multi-row VALUES statements, up to ROWS_PER_INSERT at a time.

    sqlite3's executemany steps the statement once per row and releases the GIL around each step; the writer
    thread must then win the GIL back from the busy event loop once per row (up to the 5 ms switch interval
    each time), which stretched a group commit of a few hundred rows over tens to hundreds of milliseconds.
    One statement per chunk is one hand-off per chunk."""
    if not rows:
        return
    columns = len(rows[0])
    per = max(1, min(ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // columns))
    row_marks = "(" + ",".join("?" * columns) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        conn.execute(f"INSERT INTO {table} VALUES " + ",".join([row_marks] * len(chunk)),
                     [value for row in chunk for value in row])


class SqliteStore:
    """All relay state. Reads run on the caller's connection; payment writes go through the group committer."""

    def __init__(self, path: str | Path, *, max_group: int = 2_000, checkpoint_interval: float = 0.2,
                 wal_limit_pages: int = 65_536) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._read = self._connect(check_same_thread=False)
        _prepare_schema(self._read)
        self._lock = threading.RLock()
        self._queue: queue.Queue[tuple[list[PaymentRecord], Future[None]] | None] = queue.Queue()
        self._max_group = max_group
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._checkpoint_interval = checkpoint_interval
        self._wal_limit_pages = wal_limit_pages
        self.groups_committed = 0
        self.checkpoints = 0

    def _connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=check_same_thread, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # A group commit touches a page per channel in the payments key: keep the hot pages cached (64 MiB).
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    # ------------------------------------------------------------ group commit
    def start(self) -> None:
        """Start the group-commit writer and the WAL checkpointer.

        While they run, no commit checkpoints the WAL itself (wal_autocheckpoint=0): SQLite would otherwise
        copy the WAL into the database inside whichever commit crosses 1,000 pages, and the acknowledgements
        waiting on that commit would wait for the copy and its fsync too (the p99 at 2,000 vouchers/s).
        Durability is unchanged: every commit is fsynced to the WAL (synchronous=FULL)."""
        if self._writer is None:
            self._stopping.clear()
            with self._lock:
                self._read.execute("PRAGMA wal_autocheckpoint=0")
            self._writer = threading.Thread(target=self._write_loop, name="chainstream-group-commit", daemon=True)
            self._writer.start()
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="chainstream-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        if self._checkpointer is not None:
            self._stopping.set()
            self._checkpointer.join(timeout=30)
            self._checkpointer = None
            with self._lock, contextlib.suppress(sqlite3.OperationalError):  # busy: another process reads
                self._read.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._read.close()

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database every `checkpoint_interval` s, off the commit path.

        PASSIVE checkpoints never block the writer. The WAL starts over from its beginning at the first commit
        after a checkpoint that copied all of it; should continuous writes keep it from ever being caught up,
        a checkpoint that waits for the writer (RESTART) bounds it at `wal_limit_pages`."""
        conn = self._connect()
        try:
            while not self._stopping.wait(self._checkpoint_interval):
                try:
                    _busy, log, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log > self._wal_limit_pages:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                    self.checkpoints += 1
                except sqlite3.OperationalError:
                    continue  # locked by a concurrent RESTART/TRUNCATE: try again next round
        finally:
            conn.close()

    def submit_payments(self, records: list[PaymentRecord]) -> Future[None]:
        """Queue payments for the next group commit; the future resolves once they are durable."""
        future: Future[None] = Future()
        if self._writer is None:
            raise UnrecoverableError("the store's writer is not running")
        self._queue.put((records, future))
        return future

    def _write_loop(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it (see start)
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            group = [item]
            count = len(item[0])
            while count < self._max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
                count += len(more[0])
            self._commit_group(conn, group)
        conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[tuple[list[PaymentRecord], Future[None]]]) -> None:
        payments: list[tuple[Any, ...]] = []
        earnings: list[tuple[Any, ...]] = []
        for records, _ in group:
            for record in records:
                payment, effects = _payment_rows(record)
                payments.append(payment)
                earnings.extend(effects)
        # Payments whose caller stopped waiting (cancelled its future) are written all the same: they were
        # accepted in memory. Only the futures still wanted are resolved (a cancelled one cannot be).
        futures = [future for _, future in group if future.set_running_or_notify_cancel()]
        try:
            conn.execute("BEGIN IMMEDIATE")
            _insert_rows(conn, "payments", payments)
            _insert_rows(conn, "earnings", earnings)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for future in futures:
                future.set_exception(UnrecoverableError(f"could not store payments: {exc}"))
            return
        self.groups_committed += 1
        for future in futures:
            future.set_result(None)

    # ----------------------------------------------------------------- writes
    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._lock:
            self._read.execute(sql, tuple(params))

    def upsert_channel(self, c: ChannelRecord) -> None:
        self._write(
            """INSERT INTO channels (channel_id, payer, token, deposit, session_key, session_expiry, status, closes_at,
               coop_close_digest, daily_cap, session_cap, opened_block) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(channel_id) DO UPDATE SET deposit=excluded.deposit, session_key=excluded.session_key,
               session_expiry=excluded.session_expiry, status=excluded.status, closes_at=excluded.closes_at""",
            (c.channel_id, c.payer, c.token, str(c.deposit), c.session_key, c.session_expiry, c.status, c.closes_at,
             c.coop_close_digest, None if c.daily_cap is None else str(c.daily_cap),
             None if c.session_cap is None else str(c.session_cap), c.opened_block),
        )

    def set_caps(self, channel_id: bytes, daily_cap: int | None, session_cap: int | None, issued_at: int = 0) -> None:
        self._write("UPDATE channels SET daily_cap=?, session_cap=?, caps_issued_at=? WHERE channel_id=?",
                    (None if daily_cap is None else str(daily_cap), None if session_cap is None else str(session_cap),
                     issued_at, channel_id))

    def set_coop_close(self, channel_id: bytes, voucher_digest: bytes) -> None:
        self._write("UPDATE channels SET coop_close_digest=? WHERE channel_id=?", (voucher_digest, channel_id))

    def set_settled(self, s: SettledRecord) -> None:
        self._write(
            """INSERT INTO settled VALUES (?,?,?,?,?) ON CONFLICT(channel_id) DO UPDATE SET total=excluded.total,
               payees=excluded.payees, credited=excluded.credited, block=excluded.block""",
            (s.channel_id, str(s.total), json.dumps(list(s.payees)), json.dumps([str(c) for c in s.credited]), s.block),
        )

    def add_claim(self, tx_hash: bytes, log_index: int, payee: str, token: str, amount: int, block: int) -> None:
        self._write("INSERT OR IGNORE INTO claims VALUES (?,?,?,?,?,?)",
                    (tx_hash, log_index, payee, token, str(amount), block))

    def set_cursor(self, name: str, block: int) -> None:
        self._write("INSERT INTO cursors VALUES (?,?) ON CONFLICT(name) DO UPDATE SET block=excluded.block",
                    (name, block))

    def add_outbox(self, kind: str, nonce: int, tx_hash: bytes, raw_tx: bytes, payload: dict[str, Any]) -> int:
        now = time.time()
        with self._lock:
            cursor = self._read.execute(
                "INSERT INTO outbox (kind, status, nonce, tx_hash, raw_tx, payload, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)", (kind, "signed", nonce, tx_hash, raw_tx, json.dumps(payload), now, now))
            return int(cursor.lastrowid or 0)

    def update_outbox(self, outbox_id: int, status: str, *, block: int | None = None, error: str | None = None) -> None:
        self._write("UPDATE outbox SET status=?, block=COALESCE(?, block), error=?, updated_at=? WHERE id=?",
                    (status, block, error, time.time(), outbox_id))

    # ------------------------------------------------------------------ reads
    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._read.execute(sql, tuple(params)).fetchall()

    def get_channel(self, channel_id: bytes) -> ChannelRecord | None:
        rows = self._query("SELECT * FROM channels WHERE channel_id=?", (channel_id,))
        return _channel(rows[0]) if rows else None

    def channels(self, status: str | None = None) -> list[ChannelRecord]:
        if status is None:
            return [_channel(r) for r in self._query("SELECT * FROM channels")]
        return [_channel(r) for r in self._query("SELECT * FROM channels WHERE status=?", (status,))]

    def channels_of(self, payer: str) -> list[ChannelRecord]:
        return [_channel(r) for r in self._query("SELECT * FROM channels WHERE payer=?", (payer,))]

    def load_ledger(self, channel_id: bytes, day_start: float) -> tuple[LedgerState, int]:
        """Rebuild the channel's ledger from its accepted payments; also what it spent since `day_start`."""
        rows = self._query(
            "SELECT seq, kind, target, amount, accepted_at, payees, amounts, play_hash FROM payments"
            " WHERE channel_id=? ORDER BY seq", (channel_id,))
        if not rows:
            return LedgerState.opened(channel_id), 0
        plays: dict[bytes, int] = {}
        owned: set[bytes] = set()
        spent_today = 0
        for row in rows:
            target = bytes(row["target"])
            if row["kind"] == Kind.PLAY:
                plays[target] = plays.get(target, 0) + 1
            elif row["kind"] == Kind.DOWNLOAD:
                owned.add(target)
            if row["accepted_at"] >= day_start:
                spent_today += int(row["amount"])
        last = rows[-1]
        voucher = Voucher(channel_id, tuple(json.loads(last["payees"])), tuple(int(a) for a in json.loads(last["amounts"])),
                          bytes(last["play_hash"]))
        state = LedgerState(voucher=voucher, seq=last["seq"], plays=MappingProxyType(plays), owned=frozenset(owned))
        return state, spent_today

    def payment_at(self, channel_id: bytes, seq: int) -> PaymentRecord | None:
        rows = self._query("SELECT * FROM payments WHERE channel_id=? AND seq=?", (channel_id, seq))
        return self._payment(rows[0]) if rows else None

    def latest_payment(self, channel_id: bytes) -> PaymentRecord | None:
        rows = self._query("SELECT * FROM payments WHERE channel_id=? ORDER BY seq DESC LIMIT 1", (channel_id,))
        return self._payment(rows[0]) if rows else None

    def history(self, channel_id: bytes, *, limit: int = 50, before_seq: int | None = None) -> list[PaymentRecord]:
        if before_seq is None:
            rows = self._query("SELECT * FROM payments WHERE channel_id=? ORDER BY seq DESC LIMIT ?", (channel_id, limit))
        else:
            rows = self._query("SELECT * FROM payments WHERE channel_id=? AND seq<? ORDER BY seq DESC LIMIT ?",
                               (channel_id, before_seq, limit))
        return [self._payment(r) for r in rows]

    def payment_count(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM payments")[0]["n"])

    @staticmethod
    def _payment(row: sqlite3.Row) -> PaymentRecord:
        voucher = Voucher(bytes(row["channel_id"]), tuple(json.loads(row["payees"])),
                          tuple(int(a) for a in json.loads(row["amounts"])), bytes(row["play_hash"]))
        return PaymentRecord(
            channel_id=bytes(row["channel_id"]), seq=row["seq"], digest=bytes(row["digest"]), voucher=voucher,
            signature=bytes(row["signature"]), signer=row["signer"], kind=row["kind"], target=bytes(row["target"]),
            units=row["units"], amount=int(row["amount"]), split_hash=bytes(row["split_hash"]), memo=row["memo"],
            payments={payee: int(amount) for payee, amount in json.loads(row["credits"]).items()},
            accepted_at=row["accepted_at"],
        )

    def earnings_rows(self, payee: str, since: float = 0.0) -> list[sqlite3.Row]:
        return self._query(
            "SELECT channel_id, seq, target, kind, units, amount, accepted_at FROM earnings"
            " WHERE payee=? AND accepted_at>=? ORDER BY accepted_at", (payee, since))

    def get_settled(self, channel_id: bytes) -> SettledRecord | None:
        rows = self._query("SELECT * FROM settled WHERE channel_id=?", (channel_id,))
        if not rows:
            return None
        r = rows[0]
        return SettledRecord(bytes(r["channel_id"]), int(r["total"]), tuple(json.loads(r["payees"])),
                             tuple(int(c) for c in json.loads(r["credited"])), r["block"])

    def claims_of(self, payee: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM claims WHERE payee=? ORDER BY block", (payee,))

    def get_cursor(self, name: str) -> int | None:
        rows = self._query("SELECT block FROM cursors WHERE name=?", (name,))
        return int(rows[0]["block"]) if rows else None

    def outbox(self, statuses: tuple[str, ...]) -> list[OutboxRecord]:
        marks = ",".join("?" * len(statuses))
        rows = self._query(f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY id", statuses)
        return [OutboxRecord(r["id"], r["kind"], r["status"], r["nonce"], bytes(r["tx_hash"]), bytes(r["raw_tx"]),
                             json.loads(r["payload"]), r["created_at"], r["block"], r["error"]) for r in rows]

    def run_in_transaction(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Several writes that must land together (used by the watcher for a block range and its cursor)."""
        with self._lock:
            self._read.execute("BEGIN IMMEDIATE")
            try:
                fn(self._read)
            except BaseException:
                self._read.execute("ROLLBACK")
                raise
            self._read.execute("COMMIT")
