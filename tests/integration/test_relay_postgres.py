"""A real relay on the embedded chain with its state in a real PostgreSQL database (CHAINSTREAM_DATABASE set
to a postgresql:// URL): it acknowledges payments, a new relay instance on the same database finds every one
of them and carries on from them, and the channel settles."""

from __future__ import annotations

import os

import pytest

from chainstream.ledger import charge_play
from chainstream.sdk import Paid, RelayError
from chainstream.store.postgres import PostgresStore
from tests.integration.relay_fixtures import (
    DRIFT,
    ETH,
    LAZY,
    MODEM,
    PLAY_PRICE,
    InProcessRelay,
    RelayChain,
    cid_hex,
    new_wallet,
    open_listener,
    play_spec,
    sign_charge,
    signed_plays,
    wait_until,
)
from tests.store.postgres_server import PostgresServer
from tests.store.test_postgres_store import _terminate as terminate

pytestmark = pytest.mark.postgres


def relay_actor(rc: RelayChain) -> str:
    """A funded relay key of its own (instances of one relay share it)."""
    actor = f"relay-pg-{os.urandom(4).hex()}"
    rc.chain.keys[actor] = new_wallet(rc)
    return actor


def test_a_relay_on_postgresql_keeps_every_acknowledged_payment_across_a_restart_and_settles(
    relay_chain: RelayChain, postgres_url: str
) -> None:
    actor = relay_actor(relay_chain)
    first = InProcessRelay(relay_chain, postgres_url, relay_actor=actor, **LAZY).start()
    try:
        assert isinstance(first.relay.store, PostgresStore)
        listener = open_listener(relay_chain, first, wallet=new_wallet(relay_chain))
        acks: list[Paid] = [listener.play(relay_chain.track(MODEM)) for _ in range(3)]
        acks.append(listener.listen(relay_chain.track(DRIFT), 5))
    finally:
        first.stop()
    assert listener.channel_id is not None and listener.state is not None
    cid = listener.channel_id

    second = InProcessRelay(relay_chain, postgres_url, relay_actor=actor, **LAZY).start()
    try:
        store = second.relay.store
        for ack in acks:
            stored = store.payment_at(cid, ack.seq)
            assert stored is not None and stored.voucher.total == ack.total
        summary = second.channel(cid)
        assert (summary["seq"], summary["spent"]) == (4, str(listener.state.voucher.total))

        listener.relay = second.client()
        paid = listener.play(relay_chain.track(MODEM))  # the new instance carries on from the stored ledger
        assert paid.seq == 5
        second.settle_now(cid)
        wait_until(lambda: listener.chain_state().settled == paid.total, what="the settlement")
        wait_until(lambda: second.channel(cid)["settled"] == str(paid.total), what="the relay to record it")

        voucher = listener.state.voucher
        artist = voucher.payees[0]
        earnings = second.http().get(f"/artists/{artist}/earnings", headers=second.owner_headers(payee=artist)).json()
        assert earnings["tokens"][ETH]["total"] == str(voucher.amounts[0])
        assert earnings["tokens"][ETH]["settled"] == str(voucher.amounts[0])
    finally:
        second.stop()


def test_two_relay_instances_share_one_database(relay_chain: RelayChain, postgres_url: str) -> None:
    """Instances "a" and "b" of one relay (one key) on one PostgreSQL database, behind a round-robin balancer:
    a listener's payments alternate between them and every one is accepted in order; caps set through one bind
    payments through the other at once; one instance settles, and the other takes over when it stops; after a
    cooperative close through one, the other takes no payment."""
    actor = relay_actor(relay_chain)
    a, b = (
        InProcessRelay(relay_chain, postgres_url, relay_actor=actor, instance=name, **LAZY).start()
        for name in ("a", "b")
    )
    try:
        listener = open_listener(relay_chain, a, wallet=new_wallet(relay_chain))
        cid = listener.channel_id
        assert cid is not None
        track = relay_chain.track(MODEM)
        clients = [a.client(), b.client()]
        for i in range(6):
            listener.relay = clients[i % 2]
            assert listener.play(track).seq == i + 1
        assert [p.seq for p in reversed(a.relay.store.history(cid))] == [1, 2, 3, 4, 5, 6]
        assert a.channel(cid)["seq"] == b.channel(cid)["seq"] == 6  # reads see the other instance's payments

        # Caps set through a bind payments through b (whose memory still had no cap).
        listener.relay = clients[0]
        spent_today = int(a.channel(cid)["spentToday"])
        listener.set_caps(daily=spent_today + PLAY_PRICE)
        listener.relay = clients[1]
        assert listener.play(track).seq == 7
        with pytest.raises(RelayError) as info:
            listener.play(track)
        assert info.value.code == "daily_cap_exceeded"
        listener.relay = clients[0]
        listener.set_caps(daily=0)  # lifted (by the wallet)

        # One instance leads settlement; the other never sends.
        wait_until(lambda: a.relay.settler.leading != b.relay.settler.leading, what="one leader")
        leader, follower = (a, b) if a.relay.settler.leading else (b, a)
        assert leader.health()["leader"] and not follower.health()["leader"]
        follower.settle_now(cid)
        leader.settle_now(cid)
        wait_until(lambda: listener.chain_state().settled == 7 * PLAY_PRICE, what="the leader's settlement")
        assert follower.relay.settler.batches_sent == 0

        # The leader stops: the follower takes over and settles what comes next.
        leader.stop()
        listener.relay = follower.client()
        wait_until(lambda: follower.relay.settler.leading, what="the follower to take the lead")
        assert listener.play(track).seq == 8
        follower.settle_now(cid)
        wait_until(lambda: listener.chain_state().settled == 8 * PLAY_PRICE, what="the new leader's settlement")

        # A second instance again, as "a": a cooperative close through one, then no payment through the other.
        again = InProcessRelay(
            relay_chain, postgres_url, relay_actor=actor, instance=leader.settings.instance, **LAZY
        ).start()
        try:
            listener.relay = again.client()
            assert listener.play(track).seq == 9
            listener.relay = follower.client()
            refund = listener.close_cooperatively()
            assert refund == 10**17 - 9 * PLAY_PRICE
            listener.relay = again.client()
            with pytest.raises(RelayError) as info:
                listener.play(track)
            assert info.value.code == "channel_not_open"
        finally:
            again.stop()
    finally:
        for relay in (a, b):
            if relay.thread.is_alive():
                relay.stop()


def test_a_failed_commit_is_an_error_of_its_batch_items_only_and_they_can_be_resent(
    relay_chain: RelayChain, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """The database drops the writer's connection: the batch items of that group are answered 503 (not stored),
    the batch itself is a 200 with their results, and sending them again stores them."""
    actor = relay_actor(relay_chain)
    relay = InProcessRelay(relay_chain, postgres_url, relay_actor=actor, **LAZY).start()
    try:
        listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
        plays = signed_plays(listener, relay_chain.track(MODEM), 2)
        items = [{**p.body, "channelId": cid_hex(listener), "id": i} for i, p in enumerate(plays)]
        writer = relay.relay.store._write_conn
        assert writer is not None
        terminate(postgres_server, writer.info.backend_pid)
        reply = relay.http().post("/payments/batch", json={"payments": items})
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert [r["ok"] for r in results] == [False, False]
        assert {r["error"]["status"] for r in results} == {503}
        assert {r["error"]["code"] for r in results} == {"database_unavailable"}  # with the server's reason
        assert all(r["error"]["retryAfter"] >= 1 for r in results)
        assert relay.relay.store.latest_payment(listener.channel_id) is None  # type: ignore[arg-type]
        again = relay.http().post("/payments/batch", json={"payments": items}).json()["results"]
        assert [(r["ok"], r["status"], r["seq"]) for r in again] == [(True, "accepted", 1), (True, "accepted", 2)]
    finally:
        relay.stop()


def test_only_the_channels_own_signers_make_an_instance_reload_it(relay_chain: RelayChain, postgres_url: str) -> None:
    """A payment ahead of an instance's view makes it re-read the channel's history from the database, but only
    if the channel's payer or session key signed it: anyone can send one with any seq."""
    actor = relay_actor(relay_chain)
    a, b = (
        InProcessRelay(relay_chain, postgres_url, relay_actor=actor, instance=name, **LAZY).start()
        for name in ("a", "b")
    )
    try:
        listener = open_listener(relay_chain, a, wallet=new_wallet(relay_chain))
        track = relay_chain.track(MODEM)
        listing = listener.listing(track)
        listener.relay = b.client()
        listener.play(track)  # b has the channel at seq 1, as the database does
        store = b.relay.store
        loads: list[bytes] = []
        load_ledger = store.load_ledger
        store.load_ledger = lambda cid, day: loads.append(cid) or load_ledger(cid, day)
        stranger = relay_chain.chain.key("stranger")
        first = sign_charge(listener, charge_play(listener.state, listing), play_spec(track), key=stranger)
        ahead = sign_charge(
            listener, charge_play(first.state, listing), play_spec(track), key=stranger, state=first.state
        )  # seq 3: ahead of b's view
        reply = b.http().post(f"/channels/{cid_hex(listener)}/payments", json=ahead.body)
        # refused for its signer before its seq is looked at (tests/adversarial/test_snooper.py)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "unauthorized_signer"
        assert loads == []  # not signed by the channel's keys: b did not re-read the channel

        listener.relay = a.client()
        listener.play(track)
        listener.play(track)  # the database has seq 3
        listener.relay = b.client()
        assert listener.play(track).seq == 4  # the listener's own, ahead of b's view: b reloads, then accepts
        assert loads == [listener.channel_id]
    finally:
        a.stop()
        b.stop()


def test_a_database_turned_read_only_is_database_unavailable_with_its_reason_and_recovers_without_restart(
    relay_chain: RelayChain, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """The database stops taking writes under a running relay (made read-only, as a server failed over to a
    standby or a disk remounted read-only is): payments are answered 503 database_unavailable with the server's
    reason and a retry hint, /health says why, nothing acknowledged before is lost, and once the database takes
    writes again the same relay process accepts the refused payment (no restart)."""
    actor = relay_actor(relay_chain)
    relay = InProcessRelay(relay_chain, postgres_url, relay_actor=actor, **LAZY).start()
    read_only = False
    try:
        listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
        track = relay_chain.track(MODEM)
        acknowledged = listener.play(track)
        nxt = signed_plays(listener, track, 1)[0]
        postgres_server.admin("ALTER SYSTEM SET default_transaction_read_only = on")
        postgres_server.admin("SELECT pg_reload_conf()")
        read_only = True
        health = wait_until(
            lambda: (h := relay.health()) and not h["database"]["writable"] and h,
            timeout=60,
            what="/health to see the read-only database",
        )
        assert any("read-only" in r for r in health["reasons"]), health
        refused = relay.http().post(f"/channels/{cid_hex(listener)}/payments", json=nxt.body)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert "read-only" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        stored = relay.relay.store.latest_payment(listener.channel_id)  # type: ignore[arg-type]
        assert stored is not None and stored.seq == acknowledged.seq  # the acknowledged play is kept; nothing more

        postgres_server.admin("ALTER SYSTEM RESET default_transaction_read_only")
        postgres_server.admin("SELECT pg_reload_conf()")
        read_only = False
        accepted = wait_until(
            lambda: (
                (r := relay.http().post(f"/channels/{cid_hex(listener)}/payments", json=nxt.body)).status_code == 200
                and r
            ),
            timeout=60,
            what="the same relay to accept the payment again",
        )
        assert accepted.json()["status"] == "accepted" and accepted.json()["seq"] == acknowledged.seq + 1
        assert relay.health()["database"]["writable"] is True or wait_until(
            lambda: relay.health()["database"]["writable"], timeout=60, what="/health to see the database back"
        )
    finally:
        if read_only:
            postgres_server.admin("ALTER SYSTEM RESET default_transaction_read_only")
            postgres_server.admin("SELECT pg_reload_conf()")
        relay.stop()
