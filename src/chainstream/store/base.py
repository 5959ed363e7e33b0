"""The store interface the relay uses (`Store`), and its implementation in SQL common to both backends.

`SqlStore` holds every read and small write, written once in the SQL that SQLite and PostgreSQL both run, with
`?` parameter marks (the PostgreSQL backend turns them into psycopg's `%s`). A backend supplies its
connections (`_query`, `_execute`), its schema, and the group-commit transaction (`_write_group`).
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Any, Protocol

from chainstream.ledger import LedgerState
from chainstream.protocol import Kind
from chainstream.protocol.types import Address
from chainstream.store.group_commit import GroupCommitter
from chainstream.store.records import (
    EXHAUSTED,
    REPEAT,
    SERVED,
    ChannelRecord,
    ClaimRow,
    CoopClose,
    EarningRow,
    OutboxRecord,
    PaymentRecord,
    ProfileRecord,
    Row,
    SettledRecord,
    channel_from_row,
    channel_params,
    claim_from_row,
    earning_from_row,
    opt_text,
    outbox_from_row,
    payment_from_row,
    settled_from_row,
    settled_params,
    voucher_from_row,
)

#: runs one statement in a transaction and returns its rows (see SqlStore._metering)
Query = Callable[[str, Sequence[Any]], Sequence[Row]]


class Store(Protocol):
    """Durable relay state: the voucher log (payments and per-payee earnings), channels, settlements, claims,
    the settlement outbox and the watcher's cursors."""

    def start(self) -> None:
        """Start the group-commit writer (and any background upkeep)."""

    def close(self) -> None:
        """Commit what is queued, stop the writer, release the connections (and the instance claim)."""

    def claim_instance(self, name: str = "main") -> None:
        """Work on this database as the relay instance `name` until `close()`; ConfigurationError if another
        instance holds that claim. A SQLite database takes one instance, whatever the name; a shared store
        (PostgreSQL) one per name."""

    def submit_payments(self, records: list[PaymentRecord]) -> Future[frozenset[bytes]]:
        """Queue payments for the next group commit; the future resolves once they are durable, with the channels
        whose payments a shared store left out (another instance wrote to them first): those are not stored."""

    @property
    def shared(self) -> bool:
        """True if several relay instances may write to this store at once (PostgreSQL)."""

    def try_lead(self) -> bool:
        """Whether this instance leads (settles on chain): it takes the lead if nobody holds it; always True for
        a store with one instance."""

    def channel_head(self, channel_id: bytes) -> tuple[int, int, CoopClose | None] | None:
        """(latest payment's seq, caps issued-at, the relay's consent to a close) of a channel; None if unknown."""

    def upsert_channel(self, c: ChannelRecord) -> None:
        """Insert a channel, or update what the chain says of it; caps and the co-signed close are kept."""

    def set_caps(self, channel_id: bytes, daily_cap: int | None, session_cap: int | None, issued_at: int = 0) -> bool:
        """Store caps unless the ones stored were issued at or after `issued_at`; True if stored."""

    def set_profile(self, p: ProfileRecord) -> bool:
        """Store `p` unless the artist's stored profile is as new or newer; whether `p` is now the one in force."""
        ...

    def profile(self, artist: str) -> ProfileRecord | None: ...
    def profiles_of(self, artists: Sequence[str]) -> dict[str, ProfileRecord]: ...
    def set_coop_close(self, channel_id: bytes, consent: CoopClose | None) -> None: ...
    def set_settled(self, s: SettledRecord) -> None: ...
    def add_claim(self, tx_hash: bytes, log_index: int, payee: str, token: str, amount: int, block: int) -> None: ...
    def set_cursor(self, name: str, block: int) -> None: ...
    def add_outbox(self, kind: str, nonce: int, tx_hash: bytes, raw_tx: bytes, payload: dict[str, Any]) -> int: ...
    def update_outbox(
        self, outbox_id: int, status: str, *, block: int | None = None, error: str | None = None
    ) -> None: ...
    def get_channel(self, channel_id: bytes) -> ChannelRecord | None: ...
    def channels(self, status: str | None = None) -> list[ChannelRecord]: ...
    def channels_of(self, payer: str) -> list[ChannelRecord]: ...
    def load_ledger(self, channel_id: bytes, day_start: float) -> tuple[LedgerState, int]: ...
    def payment_at(self, channel_id: bytes, seq: int) -> PaymentRecord | None: ...
    def latest_payment(self, channel_id: bytes) -> PaymentRecord | None: ...
    def history(self, channel_id: bytes, *, limit: int = 50, before_seq: int | None = None) -> list[PaymentRecord]: ...
    def payment_count(self) -> int: ...
    def earnings_rows(self, payee: str, since: float = 0.0) -> list[EarningRow]: ...
    def get_settled(self, channel_id: bytes) -> SettledRecord | None: ...
    def claims_of(self, payee: str) -> list[ClaimRow]: ...
    def get_cursor(self, name: str) -> int | None: ...
    def outbox(self, statuses: tuple[str, ...]) -> list[OutboxRecord]: ...
    def record_delivery(
        self,
        channel_id: bytes,
        target: bytes,
        play_seq: int,
        segment: int,
        millis: int,
        *,
        budget_ms: int | None,
        served_at: float,
    ) -> str:
        """Record that audio was served under the grant of receipt `play_seq`: SERVED (recorded now), REPEAT (this
        segment was already served under that receipt: not counted again) or EXHAUSTED (metered: what this channel
        was served of the track, per-second, already reached `budget_ms`; nothing recorded). `budget_ms` None:
        not metered (a play or a download). Atomic across every relay instance sharing the store: however many
        instances record the same channel's track at once, a segment is served only while what all of them
        served is below the budget."""

    def deliveries(self, channel_id: bytes) -> list[dict[str, Any]]:
        """Per track: {target, millis (all served), metered_millis, segments} for a channel."""

    def seconds_paid(self, channel_id: bytes, target: bytes, up_to_seq: int | None = None) -> int:
        """Seconds the channel paid for a track (per-second receipts), up to a seq."""

    def metered_deliveries_of(self, payee: str) -> dict[tuple[bytes, bytes], int]:
        """Metered milliseconds served per (channel, track), for the pairs on which `payee` has earnings."""

    def add_deliveries(self, rows: list[tuple[bytes, bytes, int, int, int, int, float]]) -> None:
        """Record deliveries decided elsewhere (channel, target, play_seq, segment, millis, metered, served_at) in
        one statement; rows already there are left as they are."""

    def served_segments(self, channel_id: bytes, target: bytes, play_seq: int) -> list[int]:
        """The segments recorded as served under one receipt."""

    def metered_millis(self, channel_id: bytes, target: bytes) -> int:
        """Milliseconds of a track served on a channel under per-second grants."""


def conflict_message(detail: str) -> str:
    """The error of a group that collided with payments already in the database (same channel and seq)."""
    return (
        f"could not store payments: {detail}: a payment with this channel id and sequence number is already "
        "stored, written outside the relay's coordination (another program, or a relay without its claim on "
        "the database?)"
    )


class SqlStore(ABC):
    """Every read and small write of the store, over a backend's connection; payments go through group commit."""

    def __init__(self, *, max_group: int = 2_000) -> None:
        self._lock = threading.RLock()  # the one connection for reads and small writes serves several threads
        self._committer = GroupCommitter(self._write_group, max_group=max_group)

    # ------------------------------------------------------------ backend
    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        """Run one statement (its own transaction) and return its rows."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one write statement in its own transaction."""

    @abstractmethod
    def _metering(self, channel_id: bytes, target: bytes) -> AbstractContextManager[Query]:
        """A transaction holding the lock of one channel's track, taken before its first statement and held until
        it ends, across every instance sharing the database; yields a function that runs a statement in it and
        returns its rows. Commits on a normal exit, rolls back on an exception."""

    @abstractmethod
    def _write_group(
        self, records: list[PaymentRecord], payments: list[tuple[Any, ...]], earnings: list[tuple[Any, ...]]
    ) -> frozenset[bytes]:
        """Insert a group's rows in one durable transaction (see group_commit.WriteGroup)."""

    # ------------------------------------------------------------ group commit
    def submit_payments(self, records: list[PaymentRecord]) -> Future[frozenset[bytes]]:
        """Queue payments for the next group commit; the future resolves once they are durable."""
        return self._committer.submit(records)

    # ------------------------------------------------------------ instances
    @property
    def shared(self) -> bool:
        return False

    def try_lead(self) -> bool:
        return True

    def channel_head(self, channel_id: bytes) -> tuple[int, int, CoopClose | None] | None:
        rows = self._query(
            "SELECT caps_issued_at, coop_close_digest, (SELECT MAX(seq) FROM payments WHERE channel_id=?) AS seq"
            " FROM channels WHERE channel_id=?",
            (channel_id, channel_id),
        )
        if not rows:
            return None
        row = rows[0]
        return int(row["seq"] or 0), int(row["caps_issued_at"] or 0), CoopClose.from_column(row["coop_close_digest"])

    @property
    def groups_committed(self) -> int:
        return self._committer.groups_committed

    @property
    def _writer(self) -> threading.Thread | None:
        """The writer thread while it runs (benchmarks/hot_path.py measures its CPU time)."""
        return self._committer.thread

    # ----------------------------------------------------------------- writes
    def upsert_channel(self, c: ChannelRecord) -> None:
        self._execute(
            """INSERT INTO channels (channel_id, payer, token, deposit, session_key, session_expiry, status, closes_at,
               coop_close_digest, daily_cap, session_cap, opened_block) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(channel_id) DO UPDATE SET deposit=excluded.deposit, session_key=excluded.session_key,
               session_expiry=excluded.session_expiry, status=excluded.status, closes_at=excluded.closes_at""",
            channel_params(c),
        )

    def set_caps(self, channel_id: bytes, daily_cap: int | None, session_cap: int | None, issued_at: int = 0) -> bool:
        # Conditional in the database itself: with several instances, another may have stored newer caps.
        return bool(
            self._query(
                "UPDATE channels SET daily_cap=?, session_cap=?, caps_issued_at=? WHERE channel_id=? AND caps_issued_at<?"
                " RETURNING channel_id",
                (opt_text(daily_cap), opt_text(session_cap), issued_at, channel_id, issued_at),
            )
        )

    def set_profile(self, p: ProfileRecord) -> bool:
        # Conditional in the database itself: with several instances, another may have stored a newer profile.
        return bool(
            self._query(
                """INSERT INTO profiles (artist, name, issued_at, signature) VALUES (?,?,?,?)
                   ON CONFLICT(artist) DO UPDATE SET name=excluded.name, issued_at=excluded.issued_at,
                   signature=excluded.signature WHERE profiles.issued_at < excluded.issued_at RETURNING artist""",
                (p.artist, p.name, p.issued_at, p.signature),
            )
        )

    def profile(self, artist: str) -> ProfileRecord | None:
        return self.profiles_of([artist]).get(artist)

    def profiles_of(self, artists: Sequence[str]) -> dict[str, ProfileRecord]:
        found: dict[str, ProfileRecord] = {}
        unique = sorted(set(artists))
        for start in range(0, len(unique), 500):  # bounded statements, whatever the catalog's size
            chunk = unique[start : start + 500]
            rows = self._query(f"SELECT * FROM profiles WHERE artist IN ({','.join('?' * len(chunk))})", tuple(chunk))
            for r in rows:
                found[r["artist"]] = ProfileRecord(
                    Address(r["artist"]), r["name"], int(r["issued_at"]), bytes(r["signature"])
                )
        return found

    def set_coop_close(self, channel_id: bytes, consent: CoopClose | None) -> None:
        column = None if consent is None else consent.to_column()
        self._execute("UPDATE channels SET coop_close_digest=? WHERE channel_id=?", (column, channel_id))

    def set_settled(self, s: SettledRecord) -> None:
        self._execute(
            """INSERT INTO settled VALUES (?,?,?,?,?) ON CONFLICT(channel_id) DO UPDATE SET total=excluded.total,
               payees=excluded.payees, credited=excluded.credited, block=excluded.block""",
            settled_params(s),
        )

    def add_claim(self, tx_hash: bytes, log_index: int, payee: str, token: str, amount: int, block: int) -> None:
        self._execute(
            "INSERT INTO claims VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (tx_hash, log_index, payee, token, str(amount), block),
        )

    def set_cursor(self, name: str, block: int) -> None:
        self._execute(
            "INSERT INTO cursors VALUES (?,?) ON CONFLICT(name) DO UPDATE SET block=excluded.block", (name, block)
        )

    def add_outbox(self, kind: str, nonce: int, tx_hash: bytes, raw_tx: bytes, payload: dict[str, Any]) -> int:
        now = time.time()
        rows = self._query(
            "INSERT INTO outbox (kind, status, nonce, tx_hash, raw_tx, payload, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?) RETURNING id",
            (kind, "signed", nonce, tx_hash, raw_tx, json.dumps(payload), now, now),
        )
        return int(rows[0]["id"])

    def update_outbox(self, outbox_id: int, status: str, *, block: int | None = None, error: str | None = None) -> None:
        self._execute(
            "UPDATE outbox SET status=?, block=COALESCE(?, block), error=?, updated_at=? WHERE id=?",
            (status, block, error, time.time(), outbox_id),
        )

    # ------------------------------------------------------------------ reads
    def get_channel(self, channel_id: bytes) -> ChannelRecord | None:
        rows = self._query("SELECT * FROM channels WHERE channel_id=?", (channel_id,))
        return channel_from_row(rows[0]) if rows else None

    def channels(self, status: str | None = None) -> list[ChannelRecord]:
        if status is None:
            return [channel_from_row(r) for r in self._query("SELECT * FROM channels")]
        return [channel_from_row(r) for r in self._query("SELECT * FROM channels WHERE status=?", (status,))]

    def channels_of(self, payer: str) -> list[ChannelRecord]:
        return [channel_from_row(r) for r in self._query("SELECT * FROM channels WHERE payer=?", (payer,))]

    def load_ledger(self, channel_id: bytes, day_start: float) -> tuple[LedgerState, int]:
        """Rebuild the channel's ledger from its accepted payments; also what it spent since `day_start`."""
        rows = self._query(
            "SELECT channel_id, seq, kind, target, units, amount, accepted_at, payees, amounts, play_hash FROM payments"
            " WHERE channel_id=? ORDER BY seq",
            (channel_id,),
        )
        if not rows:
            return LedgerState.opened(channel_id), 0
        plays: dict[bytes, int] = {}
        owned: set[bytes] = set()
        seconds: dict[bytes, int] = {}
        spent_today = 0
        for row in rows:
            target = bytes(row["target"])
            if row["kind"] == Kind.PLAY:
                plays[target] = plays.get(target, 0) + 1
            elif row["kind"] == Kind.DOWNLOAD:
                owned.add(target)
            elif row["kind"] == Kind.SECONDS:
                seconds[target] = seconds.get(target, 0) + int(row["units"])
            if row["accepted_at"] >= day_start:
                spent_today += int(row["amount"])
        last = rows[-1]
        state = LedgerState(
            voucher=voucher_from_row(last),
            seq=int(last["seq"]),
            plays=MappingProxyType(plays),
            owned=frozenset(owned),
            seconds=MappingProxyType(seconds),
        )
        return state, spent_today

    def payment_at(self, channel_id: bytes, seq: int) -> PaymentRecord | None:
        rows = self._query("SELECT * FROM payments WHERE channel_id=? AND seq=?", (channel_id, seq))
        return payment_from_row(rows[0]) if rows else None

    def latest_payment(self, channel_id: bytes) -> PaymentRecord | None:
        rows = self._query("SELECT * FROM payments WHERE channel_id=? ORDER BY seq DESC LIMIT 1", (channel_id,))
        return payment_from_row(rows[0]) if rows else None

    def history(self, channel_id: bytes, *, limit: int = 50, before_seq: int | None = None) -> list[PaymentRecord]:
        if before_seq is None:
            rows = self._query(
                "SELECT * FROM payments WHERE channel_id=? ORDER BY seq DESC LIMIT ?", (channel_id, limit)
            )
        else:
            rows = self._query(
                "SELECT * FROM payments WHERE channel_id=? AND seq<? ORDER BY seq DESC LIMIT ?",
                (channel_id, before_seq, limit),
            )
        return [payment_from_row(r) for r in rows]

    def payment_count(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM payments")[0]["n"])

    def earnings_rows(self, payee: str, since: float = 0.0) -> list[EarningRow]:
        rows = self._query(
            "SELECT channel_id, seq, target, kind, units, amount, accepted_at FROM earnings"
            " WHERE payee=? AND accepted_at>=? ORDER BY accepted_at, channel_id, seq",
            (payee, since),
        )
        return [earning_from_row(r) for r in rows]

    def get_settled(self, channel_id: bytes) -> SettledRecord | None:
        rows = self._query("SELECT * FROM settled WHERE channel_id=?", (channel_id,))
        return settled_from_row(rows[0]) if rows else None

    def claims_of(self, payee: str) -> list[ClaimRow]:
        rows = self._query("SELECT * FROM claims WHERE payee=? ORDER BY block, log_index", (payee,))
        return [claim_from_row(r) for r in rows]

    def get_cursor(self, name: str) -> int | None:
        rows = self._query("SELECT block FROM cursors WHERE name=?", (name,))
        return int(rows[0]["block"]) if rows else None

    def outbox(self, statuses: tuple[str, ...]) -> list[OutboxRecord]:
        if not statuses:
            return []
        marks = ",".join("?" * len(statuses))
        rows = self._query(f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY id", statuses)
        return [outbox_from_row(r) for r in rows]

    # ------------------------------------------------------------------ audio delivered
    def record_delivery(
        self,
        channel_id: bytes,
        target: bytes,
        play_seq: int,
        segment: int,
        millis: int,
        *,
        budget_ms: int | None,
        served_at: float,
    ) -> str:
        key = (channel_id, target, play_seq, segment)
        if budget_ms is None:  # not metered: nothing to check, the key tells a repeat
            inserted = self._query(
                "INSERT INTO deliveries (channel_id, target, play_seq, segment, millis, metered, served_at)"
                " VALUES (?,?,?,?,?,0,?) ON CONFLICT DO NOTHING RETURNING segment",
                (*key, millis, served_at),
            )
            return SERVED if inserted else REPEAT
        # Metered: in one transaction holding the lock of this channel's track across every instance on the
        # database, so the budget check below sees every segment recorded before it (a statement's snapshot is
        # taken once the lock is held) and nobody records one in between.
        with self._metering(channel_id, target) as query:
            inserted = query(
                "INSERT INTO deliveries (channel_id, target, play_seq, segment, millis, metered, served_at)"
                " SELECT ?,?,?,?,?,1,? WHERE (SELECT COALESCE(SUM(millis), 0) FROM deliveries"
                " WHERE channel_id=? AND target=? AND metered=1) < ? ON CONFLICT DO NOTHING RETURNING segment",
                (*key, millis, served_at, channel_id, target, budget_ms),
            )
            if inserted:
                return SERVED
            seen = "SELECT 1 AS x FROM deliveries WHERE channel_id=? AND target=? AND play_seq=? AND segment=?"
            return REPEAT if query(seen, key) else EXHAUSTED

    def deliveries(self, channel_id: bytes) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT target, SUM(millis) AS millis, SUM(millis * metered) AS metered_millis, COUNT(*) AS segments"
            " FROM deliveries WHERE channel_id=? GROUP BY target ORDER BY target",
            (channel_id,),
        )
        return [
            {
                "target": bytes(r["target"]),
                "millis": int(r["millis"]),
                "metered_millis": int(r["metered_millis"]),
                "segments": int(r["segments"]),
            }
            for r in rows
        ]

    def metered_deliveries_of(self, payee: str) -> dict[tuple[bytes, bytes], int]:
        # one query, led by the payee's (channel, track) pairs and joined on the deliveries' key prefix
        rows = self._query(
            "SELECT p.channel_id, p.target, SUM(d.millis * d.metered) AS ms"
            " FROM (SELECT DISTINCT channel_id, target FROM earnings WHERE payee=?) p"
            " JOIN deliveries d ON d.channel_id = p.channel_id AND d.target = p.target"
            " GROUP BY p.channel_id, p.target",
            (payee,),
        )
        return {(bytes(r["channel_id"]), bytes(r["target"])): int(r["ms"]) for r in rows}

    def seconds_paid(self, channel_id: bytes, target: bytes, up_to_seq: int | None = None) -> int:
        rows = self._query(
            "SELECT COALESCE(SUM(units), 0) AS n FROM payments WHERE channel_id=? AND target=? AND kind=? AND seq<=?",
            (channel_id, target, int(Kind.SECONDS), 2**62 if up_to_seq is None else up_to_seq),
        )
        return int(rows[0]["n"])

    def add_deliveries(self, rows: list[tuple[bytes, bytes, int, int, int, int, float]]) -> None:
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            self._execute(
                "INSERT INTO deliveries (channel_id, target, play_seq, segment, millis, metered, served_at) VALUES "
                + ",".join(["(?,?,?,?,?,?,?)"] * len(chunk))
                + " ON CONFLICT DO NOTHING",
                [value for row in chunk for value in row],
            )

    def served_segments(self, channel_id: bytes, target: bytes, play_seq: int) -> list[int]:
        rows = self._query(
            "SELECT segment FROM deliveries WHERE channel_id=? AND target=? AND play_seq=?",
            (channel_id, target, play_seq),
        )
        return [int(r["segment"]) for r in rows]

    def metered_millis(self, channel_id: bytes, target: bytes) -> int:
        rows = self._query(
            "SELECT COALESCE(SUM(millis), 0) AS n FROM deliveries WHERE channel_id=? AND target=? AND metered=1",
            (channel_id, target),
        )
        return int(rows[0]["n"])
