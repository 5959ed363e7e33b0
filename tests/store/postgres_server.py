"""A throwaway PostgreSQL cluster for the PostgreSQL store tests (no mocks): initdb in a temporary directory,
a server listening only on a unix socket there (so no port can collide), fsync on, removed at the end.

initdb refuses to run as root: as root, the server's commands run as the `postgres` user (runuser), which owns
the directory. The binaries are Debian's (/usr/lib/postgresql/<version>/bin), or initdb/pg_ctl on PATH.
Missing binaries FAIL the tests that need them: `make postgres` (scripts/install_postgres.sh) installs them.

A pytest plugin (tests/conftest.py's `pytest_plugins`): `postgres_server` (one cluster per test module) and
`postgres_url` (a fresh database per test).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "run `make postgres` (scripts/install_postgres.sh; `make test` does it too)"
SERVER_USER = "postgres"  # the OS user that runs the server when the tests run as root


def server_bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin directory, else the one holding initdb and pg_ctl on PATH."""
    versions = [p.parent for p in DEBIAN_ROOT.glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()]
    if versions:
        return max(versions, key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


class PostgresServer:
    """One cluster: `start()` (initdb + pg_ctl start), `url(database)`, `create_database()`, `stop()`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # Under /tmp, not pytest's tmp_path: the server user must be able to reach it (pytest-of-root is 0700),
        # and a unix socket path must stay under ~100 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix="chainstream-pg-"))
        self.data = self.workdir / "data"
        self.log = self.workdir / "server.log"
        if self.as_root:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.workdir, account.pw_uid, account.pw_gid)

    def _run(self, *command: str) -> None:
        argv = [str(self.bindir / command[0]), *command[1:]]
        if self.as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log}")

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = ''\nunix_socket_directories = '{self.workdir}'\nport = 5432\n"
                "fsync = on\nsynchronous_commit = on\n"
            )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.workdir}&port=5432"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/")[3].split("?")[0]
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def missing_reason() -> str | None:
    if server_bindir() is None:
        return (
            f"the PostgreSQL server binaries (initdb, pg_ctl) are not installed (looked in "
            f"{DEBIAN_ROOT}/*/bin and on PATH): {INSTALL_HINT}"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, the test server runs as the {SERVER_USER!r} user, which does not exist: {INSTALL_HINT}"
    return None


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test module; fails if PostgreSQL is not installed."""
    reason = missing_reason()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    bindir = server_bindir()
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)
