"""The relay's durable state in PostgreSQL (psycopg 3), with group commit (store/group_commit.py).

The same tables and keys as the SQLite store's schema 2; amounts are NUMERIC(78,0) (they exceed 64 bits).
The writer thread has its own connection and COPYs each group's payments and earnings rows inside one
transaction; the group is acknowledged once COMMIT returned with synchronous_commit on, i.e. once the commit
record is flushed to the server's WAL (and to synchronous standbys, if the server has them).

Reads and the small writes share one autocommit connection behind a lock: they come from the event loop and
from worker threads, a few at a time, and each is a single statement.

Several relay instances may share one database (docs/OPERATIONS.md, "Several relay instances"). Each claims
its instance name (an advisory lock); one of them leads (another advisory lock) and is the only one to send
settlements. Payments stay consistent without any per-payment round trip: each group transaction locks the
rows of its channels and writes a channel's payments only if they extend what the database holds (the previous
payment's seq and digest, the caps, no co-signed close) as the instance believed when it verified them; the
channels it leaves out are returned to the instance, which reloads them and decides again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from chainstream.errors import ConfigurationError, UnrecoverableError
from chainstream.store.base import Query, SqlStore, conflict_message
from chainstream.store.errors import database_unavailable
from chainstream.store.records import EARNING_COLUMNS, PAYMENT_COLUMNS, SCHEMA_VERSION, PaymentRecord

log = logging.getLogger("chainstream.store")

Connection = psycopg.Connection[dict[str, Any]]

AMOUNT = "NUMERIC(78,0)"  # up to 2**256 - 1
DELIVERIES = """
CREATE TABLE IF NOT EXISTS deliveries (
    channel_id BYTEA NOT NULL,
    target BYTEA NOT NULL,
    play_seq BIGINT NOT NULL,
    segment INTEGER NOT NULL,
    millis BIGINT NOT NULL,
    metered SMALLINT NOT NULL,
    served_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel_id, target, play_seq, segment)
);
"""
PROFILES = """
CREATE TABLE IF NOT EXISTS profiles (
    artist TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    signature BYTEA NOT NULL
);
"""
SCHEMA = (
    f"""
CREATE TABLE IF NOT EXISTS channels (
    channel_id BYTEA PRIMARY KEY,
    payer TEXT NOT NULL,
    token TEXT NOT NULL,
    deposit {AMOUNT} NOT NULL,
    session_key TEXT NOT NULL,
    session_expiry BIGINT NOT NULL,
    status TEXT NOT NULL,
    closes_at BIGINT NOT NULL DEFAULT 0,
    coop_close_digest BYTEA,
    daily_cap {AMOUNT},
    session_cap {AMOUNT},
    opened_block BIGINT NOT NULL DEFAULT 0,
    caps_issued_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS payments (
    channel_id BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    digest BYTEA NOT NULL,
    total {AMOUNT} NOT NULL,
    payees TEXT NOT NULL,
    amounts TEXT NOT NULL,
    play_hash BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    signer TEXT NOT NULL,
    kind SMALLINT NOT NULL,
    target BYTEA NOT NULL,
    units BIGINT NOT NULL,
    amount {AMOUNT} NOT NULL,
    split_hash BYTEA NOT NULL,
    memo TEXT NOT NULL,
    accepted_at DOUBLE PRECISION NOT NULL,
    credits TEXT NOT NULL,
    PRIMARY KEY (channel_id, seq)
);
CREATE TABLE IF NOT EXISTS earnings (
    payee TEXT NOT NULL,
    accepted_at DOUBLE PRECISION NOT NULL,
    channel_id BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    target BYTEA NOT NULL,
    kind SMALLINT NOT NULL,
    units BIGINT NOT NULL,
    amount {AMOUNT} NOT NULL,
    PRIMARY KEY (payee, accepted_at, channel_id, seq)
);
CREATE TABLE IF NOT EXISTS settled (
    channel_id BYTEA PRIMARY KEY,
    total {AMOUNT} NOT NULL,
    payees TEXT NOT NULL,
    credited TEXT NOT NULL,
    block BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    tx_hash BYTEA NOT NULL,
    raw_tx BYTEA NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    block BIGINT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    tx_hash BYTEA NOT NULL,
    log_index INTEGER NOT NULL,
    payee TEXT NOT NULL,
    token TEXT NOT NULL,
    amount {AMOUNT} NOT NULL,
    block BIGINT NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, block BIGINT NOT NULL);
"""
    + DELIVERIES
    + PROFILES
    + """CREATE INDEX IF NOT EXISTS claims_by_payee ON claims (payee);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status);
"""
)
VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS chainstream_schema (
    one_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one_row),
    version INTEGER NOT NULL
)"""
# Relays opening the same new database at once must not both create it (CREATE ... IF NOT EXISTS can still
# collide in the catalog): they take this transaction-scoped advisory lock first.
SCHEMA_LOCK = 0x63686169  # "chai"
# A relay instance holds the session-level advisory lock (INSTANCE_LOCK, hashtext(its name)) for as long as it
# runs (see claim_instance); the leading instance holds (LEADER_LOCK, 0) too (see try_lead).
INSTANCE_LOCK = 0x72656C61  # "rela"
LEADER_LOCK = 0x6C656164  # "lead"
# Metering a channel's track (record_delivery) holds the transaction-scoped advisory lock (METER_LOCK,
# hashtext(channel id + track id in hex)); two pairs whose hashes collide merely wait for each other.
METER_LOCK = 0x6D657465  # "mete"
_CHANNEL = PAYMENT_COLUMNS.index("channel_id")
_EARNING_CHANNEL = EARNING_COLUMNS.index("channel_id")


@functools.lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    """The shared SQL's `?` marks as psycopg's `%s` (the shared statements contain no literal ? or %)."""
    return sql.replace("?", "%s")


def _prepare_schema(conn: Connection) -> None:
    """Create the tables of a new database; refuse one written by a newer relay."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(VERSION_TABLE)
        row = conn.execute("SELECT version FROM chainstream_schema").fetchone()
        if row is None:
            conn.execute(SCHEMA)
            conn.execute("INSERT INTO chainstream_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif row["version"] > SCHEMA_VERSION:
            raise UnrecoverableError(
                f"the database has schema version {row['version']}; this relay knows up to "
                f"{SCHEMA_VERSION}: upgrade chainstream"
            )
        elif row["version"] < 2:  # PostgreSQL databases start at schema 2: no relay wrote this
            raise UnrecoverableError(
                f"the database has schema version {row['version']}, older than any relay that used PostgreSQL"
            )
        elif row["version"] < SCHEMA_VERSION:
            if row["version"] == 2:  # schema 2 -> 3: the deliveries table (audio streaming)
                conn.execute(DELIVERIES)
            conn.execute(PROFILES)  # schema 3 -> 4: artists' signed profiles
            conn.execute("UPDATE chainstream_schema SET version = %s", (SCHEMA_VERSION,))


def _copy_rows(
    cursor: psycopg.Cursor[dict[str, Any]], table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _stale_channels(cursor: psycopg.Cursor[dict[str, Any]], records: list[PaymentRecord]) -> frozenset[bytes]:
    """The channels of `records` whose first payment here does not extend what the database holds.

    Locks the channels' rows first (in one order, so two instances' groups cannot deadlock), then reads each
    one's latest payment in a new statement: at READ COMMITTED that sees whatever a group holding the lock
    before committed. A channel passes if its first payment in this group follows the stored latest one (seq
    and digest), the caps it was verified under are the stored ones, and no cooperative close was co-signed.
    Records without a basis (`prev_digest` and `caps_basis` None, e.g. written by tools) are checked on seq only."""
    first: dict[bytes, PaymentRecord] = {}
    for record in records:
        first.setdefault(record.channel_id, record)
    ids = sorted(first)
    cursor.execute("SELECT channel_id FROM channels WHERE channel_id = ANY(%s) ORDER BY channel_id FOR UPDATE", (ids,))
    cursor.execute(
        "SELECT c.channel_id, c.caps_issued_at, c.coop_close_digest, p.seq, p.digest FROM channels c"
        " LEFT JOIN LATERAL (SELECT seq, digest FROM payments WHERE channel_id = c.channel_id"
        " ORDER BY seq DESC LIMIT 1) p ON true WHERE c.channel_id = ANY(%s)",
        (ids,),
    )
    heads = {bytes(row["channel_id"]): row for row in cursor.fetchall()}
    stale: set[bytes] = set()
    for channel_id, record in first.items():
        head = heads.get(channel_id)
        if head is None:
            continue  # a channel the database does not know (rows written by tools): the (channel_id, seq) key guards it
        seq = int(head["seq"] or 0)
        if (
            record.seq != seq + 1
            or head["coop_close_digest"] is not None
            or (
                record.prev_digest is not None
                and (head["digest"] is None or bytes(head["digest"]) != record.prev_digest)
            )
            or (record.caps_basis is not None and int(head["caps_issued_at"]) != record.caps_basis)
        ):
            stale.add(channel_id)
    return frozenset(stale)


class PostgresStore(SqlStore):
    """All relay state in a PostgreSQL database, given by a libpq URL (postgresql://user:pass@host:port/db)."""

    def __init__(self, url: str, *, max_group: int = 2_000) -> None:
        super().__init__(max_group=max_group)
        self.url = url
        self._conn = self._connect()
        try:
            _prepare_schema(self._conn)
        except psycopg.Error as exc:
            self._conn.close()
            raise UnrecoverableError(f"could not create the store's tables: {exc}") from exc
        except UnrecoverableError:
            self._conn.close()
            raise
        self._write_conn: Connection | None = None
        self._instance_conn: Connection | None = None
        # Metering transactions have a connection of their own: one waiting for another instance's lock does not
        # hold up this instance's reads on the shared connection.
        self._meter_conn: Connection | None = None
        self._meter_lock = threading.Lock()
        self.instance = "main"

    @property
    def shared(self) -> bool:
        return True

    def claim_instance(self, name: str = "main") -> None:
        """A session-level advisory lock on the instance's name, on a connection of its own, held until close;
        the server releases it when that connection ends, also when the relay's process dies. Instances with
        different names may share the database; two with one name would share the watcher's cursor."""
        if self._instance_conn is not None:
            return
        conn = self._connect()
        row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS ok", (INSTANCE_LOCK, name)).fetchone()
        assert row is not None  # a SELECT of one expression: always one row
        if row["ok"]:
            self._instance_conn = conn
            self.instance = name
            return
        holder = conn.execute(
            "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = hashtext(%s)::oid"
            " AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (INSTANCE_LOCK, name),
        ).fetchone()
        conn.close()
        who = (
            (
                f"server pid {holder['pid']}, {holder['application_name'] or 'no application name'}"
                f" from {holder['client_addr'] or 'a local socket'}"
            )
            if holder
            else "it just went away"
        )
        raise ConfigurationError(
            f"another relay instance named {name!r} is using this PostgreSQL database ({who}): "
            "give each instance its own name (CHAINSTREAM_INSTANCE), or stop that one first"
        )

    def try_lead(self) -> bool:
        """Take the lead if no instance holds it (an advisory lock on the instance's connection, released with
        it); True while this instance holds it. A lost connection loses the lead: the next call reconnects and
        tries again."""
        conn = self._instance_conn
        if conn is None:
            raise UnrecoverableError("claim_instance first: only a claimed instance can lead")
        try:
            if conn.broken or conn.closed:
                raise psycopg.OperationalError("the instance's connection was lost")
            held = conn.execute(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND classid = %s AND objid = 0 AND objsubid = 2 AND granted",
                (LEADER_LOCK,),
            ).fetchone()
            if held and held["n"]:
                return True
            row = conn.execute("SELECT pg_try_advisory_lock(%s, 0) AS ok", (LEADER_LOCK,)).fetchone()
            return bool(row and row["ok"])
        except psycopg.OperationalError:
            # The server dropped the connection, and with it this instance's claim and any lead: claim again.
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self._instance_conn = None
            self.claim_instance(self.instance)
            return False

    def _connect(self) -> Connection:
        try:
            return psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row, application_name="chainstream-relay"
            )
        except psycopg.OperationalError as exc:
            raise UnrecoverableError(f"could not connect to the PostgreSQL database: {exc}") from exc

    def _connect_writer(self) -> Connection:
        """The writer's connection: a commit returns only once durable (synchronous_commit not off)."""
        conn = self._connect()
        if conn.execute("SHOW synchronous_commit").fetchone() == {"synchronous_commit": "off"}:
            conn.execute("SET synchronous_commit = on")  # any other level flushes the local WAL at least
        if conn.execute("SHOW fsync").fetchone() == {"fsync": "off"}:
            log.warning("the PostgreSQL server runs with fsync=off: acknowledged payments can be lost in a crash")
        return conn

    # ------------------------------------------------------------ group commit
    def start(self) -> None:
        """Open the writer's connection and start the group-commit writer."""
        if self._writer is None:
            self._write_conn = self._connect_writer()
            self._committer.start()

    def close(self) -> None:
        self._committer.stop()
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        with self._lock:
            self._conn.close()
        with self._meter_lock:
            if self._meter_conn is not None:
                self._meter_conn.close()
                self._meter_conn = None
        if self._instance_conn is not None:
            # Unlock before closing: the server would release the lock only once the backend has exited, a
            # moment after the close, and a relay restarted at once on this database would find it still held.
            with contextlib.suppress(psycopg.Error):
                self._instance_conn.execute("SELECT pg_advisory_unlock_all()")
            self._instance_conn.close()
            self._instance_conn = None

    def _write_group(
        self, records: list[PaymentRecord], payments: list[tuple[Any, ...]], earnings: list[tuple[Any, ...]]
    ) -> frozenset[bytes]:
        """COPY the group's rows in one transaction, leaving out the channels another instance wrote to since
        this one verified their payments (see `_stale_channels`). Should the connection fail during COMMIT, the
        group may have been stored although its callers are told it was not: a client's retry of such a voucher
        is then acknowledged as a duplicate (the relay reloads the channel from the database after a failed
        commit)."""
        try:
            conn = self._writer_connection()
            with conn.transaction(), conn.cursor() as cursor:
                stale = _stale_channels(cursor, records)
                if stale:
                    payments = [row for row in payments if row[_CHANNEL] not in stale]
                    earnings = [row for row in earnings if row[_EARNING_CHANNEL] not in stale]
                _copy_rows(cursor, "payments", PAYMENT_COLUMNS, payments)
                _copy_rows(cursor, "earnings", EARNING_COLUMNS, earnings)
        except psycopg.errors.UniqueViolation as exc:
            raise UnrecoverableError(conflict_message(exc.diag.message_detail or str(exc))) from exc
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as exc:
            # the server is gone, out of disk (DiskFull is an OperationalError) or read-only (a standby)
            raise database_unavailable("could not store payments", exc) from exc
        except psycopg.Error as exc:
            raise UnrecoverableError(f"could not store payments: {exc}") from exc
        return stale

    def _writer_connection(self) -> Connection:
        """The writer's connection, opened again if the last one broke (a server restart, a network cut)."""
        if self._write_conn is None or self._write_conn.broken or self._write_conn.closed:
            if self._write_conn is not None:
                self._write_conn.close()
            self._write_conn = None  # if connecting fails, the next group tries again
            self._write_conn = self._connect_writer()
        return self._write_conn

    # ------------------------------------------------------------ connection
    def _connection(self) -> Connection:
        """The shared connection (call with the lock held), opened again if it broke."""
        if self._conn.broken or self._conn.closed:
            self._conn.close()
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _metering(self, channel_id: bytes, target: bytes) -> Iterator[Query]:
        """A transaction on the metering connection that first takes the channel's track's advisory lock (released
        by the commit or rollback, or by the server if the connection dies)."""
        with self._meter_lock:
            if self._meter_conn is None or self._meter_conn.broken or self._meter_conn.closed:
                if self._meter_conn is not None:
                    self._meter_conn.close()
                self._meter_conn = None  # if connecting fails, the next call tries again
                self._meter_conn = self._connect()
            conn = self._meter_conn
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (METER_LOCK, (channel_id + target).hex())
                )
                yield lambda sql, params: conn.execute(_psycopg_sql(sql), tuple(params)).fetchall()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._connection().execute(_psycopg_sql(sql), tuple(params)).fetchall()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._connection().execute(_psycopg_sql(sql), tuple(params))
