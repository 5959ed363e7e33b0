"""The relay's durable state in SQLite (WAL, synchronous=FULL), with group commit (store/group_commit.py).

The default store: one file, one relay process. Every group commit is fsynced to the WAL before its payments
are acknowledged; a background thread checkpoints the WAL into the database file, off the commit path.
Amounts are stored as decimal text: they exceed SQLite's 64-bit integers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from chainstream.errors import ConfigurationError, UnrecoverableError
from chainstream.store.base import Query, SqlStore, conflict_message
from chainstream.store.errors import database_unavailable
from chainstream.store.records import SCHEMA_VERSION, PaymentRecord

DELIVERIES = """
CREATE TABLE IF NOT EXISTS deliveries (
    channel_id BLOB NOT NULL,
    target BLOB NOT NULL,            -- the track
    play_seq INTEGER NOT NULL,       -- the receipt (payment seq) whose grant the audio was served under
    segment INTEGER NOT NULL,        -- segment index; -1 = the original file
    millis INTEGER NOT NULL,         -- milliseconds of audio served
    metered INTEGER NOT NULL,        -- 1: counted against the seconds paid (per-second tracks)
    served_at REAL NOT NULL,
    PRIMARY KEY (channel_id, target, play_seq, segment)
);
"""

PROFILES = """
CREATE TABLE IF NOT EXISTS profiles (
    artist TEXT PRIMARY KEY,         -- checksummed address
    name TEXT NOT NULL,
    issued_at INTEGER NOT NULL,      -- a newer profile replaces an older one
    signature BLOB NOT NULL          -- the artist's over ArtistProfile(artist, name, issuedAt)
);
"""

SCHEMA = (
    """
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
"""
    + DELIVERIES
    + PROFILES
    + """CREATE INDEX IF NOT EXISTS claims_by_payee ON claims (payee);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status);
"""
)


# PRAGMA user_version holds SCHEMA_VERSION; 0 on a database written before versions were kept (schema 1).

# Schema 1 -> 2: per-payee credits move into the payment's row, earnings are keyed by time within a payee and
# payments lose the UNIQUE digest index (two random B-tree pages fewer per payment, and one per payee).
MIGRATE_1_TO_2 = (
    """
BEGIN IMMEDIATE;
CREATE INDEX earnings_v1_by_payment ON earnings (channel_id, seq);
DROP INDEX IF EXISTS earnings_by_payee_time;
ALTER TABLE payments RENAME TO payments_v1;
ALTER TABLE earnings RENAME TO earnings_v1;
"""
    + SCHEMA
    + """
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
)

# Schema 2 -> 3: what the relay served of each track per channel and play (audio streaming).
MIGRATE_2_TO_3 = "BEGIN IMMEDIATE;\n" + DELIVERIES + "PRAGMA user_version = 3;\nCOMMIT;\n"

# Schema 3 -> 4: artists' signed profiles (their names).
MIGRATE_3_TO_4 = "BEGIN IMMEDIATE;\n" + PROFILES + "PRAGMA user_version = 4;\nCOMMIT;\n"


def _prepare_schema(conn: sqlite3.Connection) -> None:
    """Create the tables of a new database, or bring an older one to SCHEMA_VERSION (in one transaction)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UnrecoverableError(
            f"the database has schema version {version}; this relay knows up to {SCHEMA_VERSION}: upgrade chainstream"
        )
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version == 0 and "channels" in tables:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(channels)")}
        if "caps_issued_at" not in columns:  # a database from before caps' issuedAt was kept
            conn.execute("ALTER TABLE channels ADD COLUMN caps_issued_at INTEGER NOT NULL DEFAULT 0")
    steps = []
    if version == 0 and "payments" in tables:
        steps = [MIGRATE_1_TO_2, MIGRATE_2_TO_3, MIGRATE_3_TO_4]
    elif version == 2:
        steps = [MIGRATE_2_TO_3, MIGRATE_3_TO_4]
    elif version == 3:
        steps = [MIGRATE_3_TO_4]
    if steps:
        for step in steps:
            try:
                conn.executescript(step)
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
        chunk = rows[start : start + per]
        conn.execute(
            f"INSERT INTO {table} VALUES " + ",".join([row_marks] * len(chunk)),
            [value for row in chunk for value in row],
        )


class SqliteStore(SqlStore):
    """All relay state in one SQLite file. Reads and small writes share one connection (under a lock); payment
    writes go through the group committer's own connection."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_group: int = 2_000,
        checkpoint_interval: float = 0.2,
        wal_limit_pages: int = 65_536,
    ) -> None:
        super().__init__(max_group=max_group)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._read = self._connect(check_same_thread=False)
        _prepare_schema(self._read)
        self._write_conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._checkpoint_interval = checkpoint_interval
        self._wal_limit_pages = wal_limit_pages
        self.checkpoints = 0
        self._instance_lock: int | None = None  # file descriptor of `<database>.lock`, flock-ed

    def claim_instance(self, name: str = "main") -> None:
        """An exclusive flock on `<database>.lock`, held until close (the kernel drops it if the process dies):
        one instance per SQLite database, whatever its name. The file records the holder's pid, for the message
        a second instance gets."""
        if self.path == ":memory:" or self._instance_lock is not None:
            return
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigurationError(
                f"another relay instance (pid {holder}) is using {self.path}: one relay per "
                "database; stop that one first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._instance_lock = fd

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
        if self._writer is not None:
            return
        self._stopping.clear()
        with self._lock:
            self._read.execute("PRAGMA wal_autocheckpoint=0")
        # Used by the writer thread only (created here so that start fails loudly if the file cannot be opened).
        self._write_conn = self._connect(check_same_thread=False)
        self._write_conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        self._committer.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="chainstream-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        self._committer.stop()
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        if self._checkpointer is not None:
            self._stopping.set()
            self._checkpointer.join(timeout=30)
            self._checkpointer = None
            with self._lock, contextlib.suppress(sqlite3.OperationalError):  # busy: another process reads
                self._read.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._read.close()
        if self._instance_lock is not None:
            os.close(self._instance_lock)  # releases the flock
            self._instance_lock = None

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

    def _write_group(
        self, records: list[PaymentRecord], payments: list[tuple[Any, ...]], earnings: list[tuple[Any, ...]]
    ) -> frozenset[bytes]:
        """One instance writes a SQLite database (claim_instance): every row of the group is written."""
        conn = self._write_conn
        if conn is None:
            raise UnrecoverableError("the store's writer is not running")
        try:
            conn.execute("BEGIN IMMEDIATE")
            _insert_rows(conn, "payments", payments)
            _insert_rows(conn, "earnings", earnings)
            conn.execute("COMMIT")
            return frozenset()
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a failed disk can fail the rollback too
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError) and "payments.channel_id, payments.seq" in str(exc):
                raise UnrecoverableError(conflict_message(str(exc))) from exc
            if isinstance(exc, sqlite3.OperationalError):
                # A full or read-only disk, an I/O error: the next group gets a fresh connection, so writing
                # resumes by itself once space or permission is back (no restart).
                self._reopen_writer()
                raise database_unavailable("could not store payments", exc) from exc
            raise UnrecoverableError(f"could not store payments: {exc}") from exc

    def _reopen_writer(self) -> None:
        """Replace the writer thread's connection (after a failed write); keep the old one if none opens yet."""
        try:
            fresh = self._connect(check_same_thread=False)
            fresh.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error:
            return  # still unavailable: the next group tries again with the connection it has
        old, self._write_conn = self._write_conn, fresh
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                old.close()

    # ------------------------------------------------------------ connection
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._read.execute(sql, tuple(params)).fetchall()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._read.execute(sql, tuple(params))

    @contextlib.contextmanager
    def _metering(self, channel_id: bytes, target: bytes) -> Iterator[Query]:
        """BEGIN IMMEDIATE: SQLite's one write lock is every channel's track's lock (one relay per file)."""
        with self._lock:
            self._read.execute("BEGIN IMMEDIATE")
            try:
                yield lambda sql, params: self._read.execute(sql, tuple(params)).fetchall()
            except BaseException:
                self._read.execute("ROLLBACK")
                raise
            self._read.execute("COMMIT")

    def run_in_transaction(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Several writes that must land together, on the store's connection (SQLite only)."""
        with self._lock:
            self._read.execute("BEGIN IMMEDIATE")
            try:
                fn(self._read)
            except BaseException:
                self._read.execute("ROLLBACK")
                raise
            self._read.execute("COMMIT")
