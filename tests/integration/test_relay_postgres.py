"""A real relay on the embedded chain with its state in a real PostgreSQL database (CHAINSTREAM_DATABASE set
to a postgresql:// URL): it acknowledges payments, a new relay instance on the same database finds every one
of them and carries on from them, and the channel settles."""

from __future__ import annotations

import os

import pytest

from chainstream.sdk import Paid
from chainstream.store.postgres import PostgresStore
from tests.integration.relay_fixtures import (  # noqa: F401 - fixtures
    DRIFT,
    ETH,
    LAZY,
    MODEM,
    InProcessRelay,
    RelayChain,
    new_wallet,
    open_listener,
    relay_chain,
    wait_until,
)
from tests.store.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.postgres


def test_a_relay_on_postgresql_keeps_every_acknowledged_payment_across_a_restart_and_settles(
        relay_chain: RelayChain, postgres_url: str) -> None:  # noqa: F811 - fixture
    actor = f"relay-pg-{os.urandom(4).hex()}"
    relay_chain.chain.keys[actor] = new_wallet(relay_chain)
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
        earnings = second.http().get(f"/artists/{artist}/earnings").json()
        assert earnings["tokens"][ETH]["total"] == str(voucher.amounts[0])
        assert earnings["tokens"][ETH]["settled"] == str(voucher.amounts[0])
    finally:
        second.stop()
