"""What only the PostgreSQL store has to handle: a server that drops the writer's connection, a database
written by a newer relay, and choosing the backend from the database setting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chainstream.errors import ConfigurationError, UnrecoverableError
from chainstream.protocol.types import Address
from chainstream.store import SqliteStore, open_store
from chainstream.store.postgres import PostgresStore
from chainstream.store.records import SCHEMA_VERSION, ProfileRecord
from tests.store.postgres_server import PostgresServer
from tests.unit.test_group_commit import records


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_url)
    store.start()
    try:
        yield store
    finally:
        store.close()


def _terminate(server: PostgresServer, pid: int) -> None:
    """Cut a server connection (as a server restart or a network cut would) and wait until it is gone."""
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} did not exit"
            time.sleep(0.01)


@pytest.mark.postgres
def test_the_writer_fails_the_group_of_a_cut_connection_then_reconnects(
    postgres_server: PostgresServer, pg_store: PostgresStore
) -> None:
    pg_store.submit_payments(records(1, 2)).result(timeout=30)
    assert pg_store._write_conn is not None
    _terminate(postgres_server, pg_store._write_conn.info.backend_pid)
    lost = pg_store.submit_payments(records(2, 2))
    with pytest.raises(UnrecoverableError, match="could not store payments"):
        lost.result(timeout=30)
    pg_store.submit_payments(records(3, 2)).result(timeout=30)  # a new connection, the same writer
    assert pg_store.payment_at((2).to_bytes(32, "big"), 1) is None
    assert pg_store.payment_count() == 4


@pytest.mark.postgres
def test_a_database_from_a_newer_relay_is_refused_and_a_current_one_reopens(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    store.start()
    store.submit_payments(records(1, 2)).result(timeout=30)
    store.close()
    again = PostgresStore(postgres_url)  # CREATE ... IF NOT EXISTS on an existing schema changes nothing
    assert again.payment_count() == 2
    again.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE chainstream_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(UnrecoverableError, match="upgrade chainstream"):
        PostgresStore(postgres_url)


@pytest.mark.postgres
def test_a_schema_3_database_gains_the_profiles_table_and_keeps_its_payments(postgres_url: str) -> None:
    """Schema 3 -> 4 on PostgreSQL: the artists' profiles table is added; nothing else changes."""
    store = PostgresStore(postgres_url)
    store.start()
    store.submit_payments(records(1, 2)).result(timeout=30)
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as a schema-3 relay left it
        conn.execute("DROP TABLE profiles")
        conn.execute("UPDATE chainstream_schema SET version = 3")
    upgraded = PostgresStore(postgres_url)
    upgraded.start()
    try:
        assert upgraded.payment_count() == 2
        artist = Address("0x1111111111111111111111111111111111111111")
        assert upgraded.set_profile(ProfileRecord(artist, "Ada", 5, b"\x01" * 65))
        assert upgraded.profile(artist) == ProfileRecord(artist, "Ada", 5, b"\x01" * 65)
    finally:
        upgraded.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM chainstream_schema").fetchone() == (SCHEMA_VERSION,)


@pytest.mark.postgres
def test_open_store_opens_postgresql_for_a_postgresql_url(postgres_url: str) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        store.close()


def test_open_store_opens_sqlite_for_a_path_or_a_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for database, path in (
        (str(tmp_path / "a.db"), tmp_path / "a.db"),
        ("b.db", tmp_path / "b.db"),
        ("sqlite:///c.db", tmp_path / "c.db"),
        (f"sqlite:///{tmp_path}/d.db", tmp_path / "d.db"),
    ):
        store = open_store(database)
        assert isinstance(store, SqliteStore)
        store.close()
        assert path.exists(), database
    with pytest.raises(ConfigurationError, match="unknown database URL scheme 'mysql'"):
        open_store("mysql://relay@localhost/relay")
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        open_store("sqlite://relative.db")


def test_missing_server_binaries_are_reported_with_the_make_target_that_installs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.store import postgres_server

    monkeypatch.setattr(postgres_server, "DEBIAN_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = postgres_server.missing_reason()
    assert reason is not None and "initdb" in reason and "make postgres" in reason
