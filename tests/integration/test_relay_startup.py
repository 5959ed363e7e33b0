"""Start-up after downtime (issue 9, fast and safe restart): the relay serves before its watcher has caught up
with the blocks it missed, and still settles, before its port opens, every channel whose close window started
while it was away."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainstream.ledger import charge_play
from chainstream.pricing import Split, Terms
from chainstream.protocol.hashing import keccak
from chainstream.sdk import Artist
from tests.integration.relay_fixtures import (
    GWEI,
    LAZY,
    MODEM,
    PLAY_PRICE,
    InProcessRelay,
    RelayChain,
    cid_hex,
    new_wallet,
    open_listener,
    play_spec,
    rejected,
    sign_charge,
    wait_until,
)

BACKLOG = 120  # blocks mined while the relay is down: more than ready_max_lag_blocks (20)


def hold(owner: Any, method: str) -> threading.Event:
    """Make `owner.method` wait until the returned event is set (the test sets it in its `finally`; the long
    bound only keeps a broken test from hanging CI), then run as before."""
    released = threading.Event()
    original = getattr(owner, method)

    def held(*args: Any) -> Any:
        released.wait(timeout=600)
        return original(*args)

    setattr(owner, method, held)
    return released


def _settled(rc: RelayChain, channel_id: bytes) -> int:
    return int(rc.chain.channels.get_channel(channel_id).settled)


def test_a_relay_back_from_downtime_serves_before_its_watcher_caught_up_and_settled_closing_channels_first(
    make_relay: Callable[..., InProcessRelay],
    relay_chain: RelayChain,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the relay is down, one channel's payer asks to close and many blocks pass: on restart the relay must
    settle that channel before it serves, then serve (live, and a payment on another known channel) while its
    watcher is still working through the backlog (held here at its first range), and be ready once it caught up."""
    rc = relay_chain
    relay = make_relay(**LAZY)
    track = rc.track(MODEM)
    paying = open_listener(rc, relay, wallet=new_wallet(rc))
    closing = open_listener(rc, relay, wallet=new_wallet(rc))
    paying.play(track)
    closing.play(track)
    closing.play(track)
    relay.stop()

    closing.request_close()  # the close window starts while the relay is away
    tester = rc.w3.provider.ethereum_tester
    tester.mine_blocks(BACKLOG)
    head = rc.w3.eth.block_number

    back = InProcessRelay(rc, tmp_path / f"{relay.actor}.db", relay_actor=relay.actor, **LAZY)
    watcher = back.relay.watcher
    behind_at_start = watcher.processed_block
    assert behind_at_start is not None and head - behind_at_start > BACKLOG
    released = hold(watcher, "collect")  # the watcher's catch-up, until the test has checked what comes before it
    try:
        with caplog.at_level(logging.WARNING, logger="chainstream.settler"):
            back.start()
        # settled before serving, although the watcher never processed the CloseRequested
        assert "settled 1 closing channel(s) before serving" in caplog.text
        assert _settled(rc, closing.channel_id) == 2 * PLAY_PRICE  # type: ignore[arg-type]
        assert watcher.processed_block == behind_at_start  # serving, not caught up

        live = httpx.get(f"{back.api}/health/live", timeout=10)
        assert live.status_code == 200 and live.json()["ok"] is True
        ready = httpx.get(f"{back.api}/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        assert any("blocks behind the head" in reason for reason in ready.json()["reasons"]), ready.json()

        paying.relay = back.client()
        assert paying.play(track).seq == 2  # a known channel takes payments meanwhile
        assert watcher.processed_block == behind_at_start
    finally:
        released.set()
    wait_until(lambda: back.health()["ok"], what="the watcher to catch up and the relay to be ready")
    assert watcher.processed_block is not None and watcher.processed_block >= head
    back.stop()


def test_start_up_applies_a_backlogged_key_change_that_voids_vouchers_before_serving(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain, tmp_path: Path
) -> None:
    """While the relay is down the payer rotates its session key out (the old key's vouchers then settle only
    within the rotation grace): on restart the relay settles the old key's voucher before serving, although
    its watcher has not processed the SessionKeyChanged yet."""
    rc = relay_chain
    relay = make_relay(**LAZY)
    actor = relay.actor
    listener = open_listener(rc, relay, wallet=new_wallet(rc))
    listener.play(rc.track(MODEM))
    relay.stop()

    listener.authorise_session_key()  # rotates the key that signed the voucher out
    back = InProcessRelay(rc, tmp_path / f"{actor}.db", relay_actor=actor, **LAZY)
    watcher = back.relay.watcher
    behind_at_start = watcher.processed_block
    released = hold(watcher, "collect")
    try:
        back.start()
        assert _settled(rc, listener.channel_id) == PLAY_PRICE  # type: ignore[arg-type]
        assert watcher.processed_block == behind_at_start
    finally:
        released.set()
    back.stop()


MANY = 40  # tracks registered beyond the demo catalog's


def test_a_payment_for_a_track_is_priced_before_the_catalog_finished_loading_and_ready_waits_for_the_catalog(
    anvil_relay_chain: RelayChain, tmp_path: Path
) -> None:
    """On a chain with many tracks the relay opens its port before it has read its catalog (its listing of the
    registry is held here until the test has checked): /health/ready says the catalog is loading, a payment for
    the newest track is priced by reading that track alone, and once the catalog is read the relay is ready."""
    rc = anvil_relay_chain
    artist = rc.chain.key("artist")
    owner = Artist(artist, w3=rc.w3, deployment=rc.chain.deployment)
    many = [keccak(f"many tracks {n}".encode()) for n in range(MANY)]
    for n, track_id in enumerate(many):
        owner.register_track(track_id, f"track {n}", Terms(per_play=1_000 * GWEI), Split.solo(artist.address))
    registered = set(rc.chain.registry.track_ids())
    assert len(registered) >= MANY

    relay = InProcessRelay(rc, tmp_path / "relay.db", **LAZY)
    catalog = relay.service.catalog
    released = hold(catalog.registry, "track_ids")  # the catalog's listing of the registry, until checked
    try:
        relay.start()  # the port is open: start-up did not wait for the catalog
        ready = httpx.get(f"{relay.api}/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        assert "catalog loading (0 tracks read so far)" in ready.json()["reasons"], ready.json()

        listener = open_listener(rc, relay, wallet=new_wallet(rc))
        paid = listener.play(many[-1])  # the newest track, priced by the catalog the relay has not read
        assert paid.seq == 1 and paid.status == "accepted"
        assert not catalog.complete and set(catalog.entries) == {many[-1]}  # read on demand, alone
        # a track the registry does not know: refused as after the load (read once, found missing)
        nowhere = dataclasses.replace(listener.listing(many[-1]), track_id=b"\xab" * 32)
        unknown = sign_charge(listener, charge_play(listener.state, nowhere), play_spec(nowhere.track_id))
        post = relay.http().post(f"/channels/{cid_hex(listener)}/payments", json=unknown.body)
        rejected(post, 404, "unknown_track")
        assert "catalog loading (1 tracks read so far)" in relay.health()["reasons"]
        page = httpx.get(f"{relay.api}/tracks/0x{many[0].hex()}", timeout=10)  # a track's page reads it too
        assert page.status_code == 200 and page.json()["title"] == "track 0"
        assert not catalog.complete and set(catalog.entries) == {many[-1], many[0]}
    finally:
        released.set()
    wait_until(lambda: relay.health()["ok"], timeout=120, what="the catalog to load and the relay to be ready")
    assert catalog.complete and set(catalog.entries) == registered
    assert httpx.get(f"{relay.api}/health/ready", timeout=10).status_code == 200
    relay.stop()
