"""Disk trouble (issue 9): the relay's SQLite database on a real, small filesystem (a tmpfs mounted for the test)
that fills up or is remounted read-only under a running relay.

Mounting needs root (CAP_SYS_ADMIN); where the machine refuses, the tests are skipped with the reason.

A read-only disk is not tested here: the kernel refuses to remount a filesystem read-only while a file on it is
open for writing (EBUSY), and chmod or chattr +i do not affect descriptors already open, so a running relay
cannot be made to see one on this machine. The writer's recovery (a fresh connection after a failed write) is
the same code path the full disk takes; a database that turns read-only under a running relay is tested on
PostgreSQL (test_relay_postgres.py), where the server can be made read-only at run time.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.relay_fixtures import (
    LAZY,
    MODEM,
    InProcessRelay,
    RelayChain,
    open_listener,
    signed_plays,
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at a fresh directory, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(mount_point: Path) -> Path:
    """Write a file until the filesystem says it is full; returns it (remove it to free the space)."""
    filler = mount_point / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65_536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _relay_on(rc: RelayChain, disk: Path, tmp_path: Path) -> InProcessRelay:
    return InProcessRelay(rc, disk / "relay.db", media_dir=tmp_path / "media", **LAZY).start()


def test_disk_full_payment_refused_database_unavailable_retry_after_nothing_acknowledged_lost_recovers_without_restart(
    relay_chain: RelayChain, small_disk: Path, tmp_path: Path
) -> None:
    """The database's disk fills up under payment load: the payments it cannot store get 503
    database_unavailable (the real reason, Retry-After) and are not acknowledged; every acknowledged one is in the
    database; once space is freed the same relay (no restart) accepts the refused payment."""
    relay = _relay_on(relay_chain, small_disk, tmp_path)
    try:
        listener = open_listener(relay_chain, relay)
        cid = "0x" + listener.channel_id.hex()  # type: ignore[union-attr]
        plays = signed_plays(listener, relay_chain.track(MODEM), 400)
        http = relay.http()
        assert http.post(f"/channels/{cid}/payments", json=plays[0].body).status_code == 200
        filler = _fill(small_disk)
        acknowledged = [plays[0].seq]
        refused = None
        for signed in plays[1:]:  # the WAL reuses its space for a while: pay until a commit needs more
            response = http.post(f"/channels/{cid}/payments", json=signed.body)
            if response.status_code == 200:
                acknowledged.append(response.json()["seq"])
                continue
            refused = (signed, response)
            break
        assert refused is not None, "the full disk never refused a payment"
        signed, response = refused
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "database_unavailable", error
        assert "full" in error["message"], error  # the database's own reason
        assert int(response.headers["Retry-After"]) >= 1
        stored = [row["seq"] for row in relay.payment_rows(listener.channel_id)]  # type: ignore[arg-type]
        assert stored == acknowledged  # nothing acknowledged is missing, nothing refused is stored

        filler.unlink()
        again = http.post(f"/channels/{cid}/payments", json=signed.body)
        assert again.status_code == 200 and again.json()["status"] == "accepted", again.text
        stored = [row["seq"] for row in relay.payment_rows(listener.channel_id)]  # type: ignore[arg-type]
        assert stored == [*acknowledged, signed.seq]
    finally:
        relay.stop()
