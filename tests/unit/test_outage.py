"""The relay's view of its node (relay/outage.py) and the reasons it shows anyone (/health, error bodies)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from chainstream.config import Settings
from chainstream.relay.metrics import DATABASE_ERRORS
from chainstream.relay.outage import ChainStatus, DatabaseStatus, follow_chain, is_chain_unreachable
from chainstream.store.errors import public_reason

PROVIDER_ERROR = requests.ConnectionError(
    "HTTPSConnectionPool(host='mainnet.example', port=443): Max retries exceeded with url: /v3/secretapikey123 "
    "(Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused'))"
)


def test_an_outage_is_logged_once_when_lost_and_once_when_back_with_backoff_doubling_up_to_its_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twenty failed polls are one ERROR line and one WARNING line, not twenty; polls back off 1, 2, 4, 5, 5 s."""
    now = [0.0]
    status = ChainStatus(Settings(poll_interval=1.0, chain_backoff_max=5.0), clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="chainstream")
    delays = []
    for _ in range(20):
        status.failed(PROVIDER_ERROR)
        delays.append(status.delay())
        now[0] += 1
    assert delays[:5] == [1.0, 2.0, 4.0, 5.0, 5.0] and status.retry_after() == 5
    status.answered(head=7)
    status.answered(head=8)
    lines = [r for r in caplog.records if r.name == "chainstream.relay.outage"]
    assert [r.levelname for r in lines] == ["ERROR", "WARNING"], [r.getMessage() for r in lines]
    assert "chain node back after 20.0 s (20 failed attempts)" in lines[1].getMessage()
    assert status.reachable and status.head == 8 and status.delay() == 1.0 and status.outages == 1


def test_the_reason_shown_publicly_hides_the_provider_url_path_and_database_addresses() -> None:
    """A provider URL's API key (in its path) and a database server's address or user never reach /health."""
    status = ChainStatus(Settings())
    status.failed(PROVIDER_ERROR)
    reason = status.reason() or ""
    assert "secretapikey123" not in reason and "chain node unreachable" in reason
    db = public_reason(Exception('connection to server at "10.0.0.5", port 5432 failed: for user "relay"'))
    assert "10.0.0.5" not in db and '"relay"' not in db


def test_unreachable_is_recognised_through_a_chain_of_causes() -> None:
    """web3 or the relay may wrap the provider's error; the cause still makes it chain_unavailable."""
    try:
        try:
            raise PROVIDER_ERROR
        except requests.ConnectionError as inner:
            raise RuntimeError("while loading a channel") from inner
    except RuntimeError as outer:
        assert is_chain_unreachable(outer)
    assert not is_chain_unreachable(ValueError("a bug"))


class _WritingWatcher:
    """A watcher whose polls write to a real SQLite database: read-only for the first `failing` polls (the
    driver's own error), writable after that; it stops the loop after `polls` polls."""

    def __init__(self, path: Path, failing: int, polls: int, stop: asyncio.Event) -> None:
        self.path, self.failing, self.polls, self.stop = path, failing, polls, stop
        self.processed_block: int | None = 0
        self.done = 0

    async def poll(self) -> int:
        self.done += 1
        if self.done >= self.polls:
            self.stop.set()
        mode = "ro" if self.done <= self.failing else "rw"
        conn = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True)
        try:
            with conn:
                conn.execute("INSERT INTO cursor VALUES (?)", (self.done,))
        finally:
            conn.close()
        return 0


def test_a_database_lost_in_the_watchers_loop_is_logged_once_lost_and_once_back_not_per_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten polls fail on a database that takes no write, then it takes writes again: one ERROR line with the
    driver's reason and one WARNING line, no traceback per poll; the failures are counted."""
    database = tmp_path / "relay.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE cursor (block INTEGER)")
    status = ChainStatus(Settings(poll_interval=0.001))
    caplog.set_level(logging.INFO, logger="chainstream")
    errors_before = DATABASE_ERRORS._value.get()

    async def run() -> None:
        stop = asyncio.Event()
        watcher = _WritingWatcher(database, failing=10, polls=13, stop=stop)
        chain = SimpleNamespace(eth=SimpleNamespace(block_number=5))
        await follow_chain(
            watcher, chain, status, stop, DatabaseStatus("watcher", logging.getLogger("chainstream.watcher"))
        )

    asyncio.run(run())
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name.startswith("chainstream")]
    assert [(level, exc) for level, _, exc in lines] == [("ERROR", None), ("WARNING", None)], lines
    assert "watcher: database unavailable (OperationalError: attempt to write a readonly database)" in lines[0][1]
    assert "watcher: database back after" in lines[1][1] and "(10 failed rounds)" in lines[1][1]
    assert DATABASE_ERRORS._value.get() - errors_before == 10
    assert status.reachable  # the node was never the problem
