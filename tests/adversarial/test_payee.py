"""Attacker: a payee (a track owner, or anyone credited by settlements) going after the relay's gas or other
payees' balances (review issue 8, finding 4).

The griefer registers a track at 1 wei a play, pays it from sybil channels so that each holds dust, and waits
for the relay to settle every channel at ~26k gas per wei. The relay must settle a channel only when its gas is
a small fraction of what it settles (`settle_max_gas_fraction`), except to beat a deadline (a close window, a
session key's expiry), where dust is settled whatever it costs.
"""

from __future__ import annotations

import os
from typing import Any

from chainstream.chain.transactions import TxSender
from chainstream.pricing import Split, Terms
from chainstream.sdk import Artist, Listener
from tests.integration.helpers import reverts
from tests.integration.relay_fixtures import ETH, InProcessRelay, RelayChain, new_wallet, open_listener, wait_until

#: every unsettled wei is due at once (the review's setting: SETTLE_MAX_AGE forcing dust), gas rule as shipped
DUE_AT_ONCE = {"settle_min_value": 1, "settle_max_age": 0}


def publish_dust_track(rc: RelayChain, relay: InProcessRelay) -> tuple[Artist, bytes]:
    """The griefer's track: 1 wei per play, all of it to the griefer; returns once the relay offers it."""
    griefer = Artist(new_wallet(rc), w3=rc.w3, deployment=rc.chain.deployment, relay=relay.client())
    track_id = os.urandom(32)
    griefer.register_track(track_id, "Dust", Terms(per_play=1), Split((griefer.address,), (10_000,)))
    wait_until(lambda: relay.http().get(f"/tracks/0x{track_id.hex()}").status_code == 200, what="the relay's catalog")
    return griefer, track_id


def settled_on_chain(listener: Listener) -> int:
    return listener.chain_state().settled


def rounds_pass(relay: InProcessRelay, n: int = 3) -> None:
    settler = relay.relay.settler
    start = settler.rounds
    wait_until(lambda: settler.rounds >= start + n, what=f"{n} settlement rounds")


def test_dust_channels_are_held_not_settled_at_a_loss(make_relay: Any, relay_chain: RelayChain) -> None:
    """Sybil channels each owe the griefer 2 wei; a channel worth its gas is settled, the dust is held."""
    relay = make_relay(**DUE_AT_ONCE)
    _, dust_track = publish_dust_track(relay_chain, relay)
    sybils = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**15) for _ in range(3)]
    for sybil in sybils:
        sybil.play(dust_track)
        sybil.play(dust_track)
    honest = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    honest.tip(10**16, artist=new_wallet(relay_chain, eth=0).address)
    wait_until(lambda: settled_on_chain(honest) == 10**16, what="the honest channel to settle unasked")
    rounds_pass(relay)

    assert [settled_on_chain(s) for s in sybils] == [0, 0, 0]
    settler = relay.relay.settler
    assert {s.channel_id for s in sybils} <= set(settler.held_for_economics)
    assert all(settler.held_for_economics[s.channel_id] == 2 for s in sybils)  # type: ignore[index]
    assert honest.channel_id not in settler.held_for_economics


def test_a_close_window_still_settles_dust(make_relay: Any, relay_chain: RelayChain) -> None:
    """The griefer closes a dust channel, betting the relay must then lose its dust or pay the gas: it pays."""
    relay = make_relay(**DUE_AT_ONCE)
    griefer, dust_track = publish_dust_track(relay_chain, relay)
    sybil = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**15)
    sybil.play(dust_track)
    rounds_pass(relay)
    assert settled_on_chain(sybil) == 0  # held for economics
    sybil.request_close()
    wait_until(lambda: settled_on_chain(sybil) == 1, what="the watchtower to settle inside the window")
    assert griefer.claimable() == 1


def test_a_session_key_about_to_expire_still_settles_dust(make_relay: Any, relay_chain: RelayChain) -> None:
    """The sybil's session key expires within the deadline margin: its dust voucher is settled before."""
    relay = make_relay(**DUE_AT_ONCE)
    _, dust_track = publish_dust_track(relay_chain, relay)
    sybil = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**15, session_ttl=1_800)
    sybil.play(dust_track)
    rounds_pass(relay)
    assert settled_on_chain(sybil) == 0  # held while the key may still sign more (each play would force one)
    # within SESSION_MARGIN of the expiry the relay takes no more of the key's vouchers: then it settles, once
    relay_chain.chain.advance(1_800 - relay.service.settings.session_margin + 1)
    wait_until(lambda: settled_on_chain(sybil) == 1, what="a settlement ahead of the key's expiry")


def test_a_payee_cannot_claim_another_payees_balance(make_relay: Any, relay_chain: RelayChain) -> None:
    """The griefer, credited nothing, tries to claim the balance settled to an artist, to itself."""
    relay = make_relay(**DUE_AT_ONCE)
    victim_key = new_wallet(relay_chain)
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    listener.tip(10**16, artist=victim_key.address)
    wait_until(lambda: settled_on_chain(listener) == 10**16, what="the settlement")
    griefer_key = new_wallet(relay_chain)
    channels = listener.channels
    with reverts("NothingToClaim", payee=griefer_key.address, token=ETH):
        channels.claim(TxSender(relay_chain.w3, griefer_key), ETH, griefer_key.address)
    assert channels.claimable(victim_key.address) == 10**16
    before = relay_chain.w3.eth.get_balance(griefer_key.address)
    channels.claim(TxSender(relay_chain.w3, victim_key), ETH, victim_key.address)
    assert channels.claimable(victim_key.address) == 0
    assert relay_chain.w3.eth.get_balance(griefer_key.address) <= before  # only its own gas moved
