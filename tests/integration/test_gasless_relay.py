"""Gas-free onboarding and scheduled payouts end to end, through a real relay (issue 13).

A fresh listener holding only the stablecoin (0 ETH, never sends a transaction) opens a channel, plays, tops up
and closes cooperatively through the relay, paying the relay's quoted fee each time and never more than it
signed; an artist who opted in to payouts by signature is paid by the relay's payout loop without sending a
transaction: exactly its balance (less its signed fee), once. On the embedded chain (in-process relay) and on
anvil (a `chainstream relay` process).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from chainstream.chain.contracts import ChannelsClient
from chainstream.chain.gasless import PaidOut, payouts_to
from chainstream.errors import ProtocolError
from chainstream.protocol import PrivateKey
from chainstream.sdk import Artist, Listener
from chainstream.sdk.client import RelayError
from tests.integration.conftest import STABLE
from tests.integration.relay_fixtures import RelayChain, wait_until

RELAY_FEE = STABLE // 100  # the relay's gas-free fee: one cent
PAYOUT_FEE = 1_000
SETTINGS = {"gasless_fee": RELAY_FEE, "payout_fee": PAYOUT_FEE, "payout_interval": 0.2}


def paid_out_events(channels: ChannelsClient, payee: str) -> list[tuple[str, PaidOut]]:
    """(transaction, payout) of each payout of `payee`, decoded from the PaidOutBatch records."""
    return payouts_to(channels, payee)


def scenario(rc: RelayChain, relay: Any) -> None:
    chain = rc.chain
    stable = chain.deployment.stablecoin
    assert stable is not None
    listener_key = PrivateKey.generate()  # no ETH, ever
    chain.token.mint(chain.tx("stranger"), listener_key.address, 50 * STABLE)
    artist_key = chain.key("ada")
    artist = Artist(artist_key, w3=rc.w3, deployment=chain.deployment, relay=relay.client())
    artist_nonce = rc.w3.eth.get_transaction_count(artist_key.address)
    artist_eth = rc.w3.eth.get_balance(artist_key.address)

    # The artist opts in by signature: any balance above the fee, no period, at most PAYOUT_FEE per payout.
    artist.schedule_payouts(stable, threshold=1, max_fee=PAYOUT_FEE)

    listener = Listener(listener_key, w3=rc.w3, deployment=chain.deployment, relay=relay.client())
    # The relay's fee is shown before signing: a listener accepting less is refused before anything is signed.
    with pytest.raises(ProtocolError) as info:
        listener.open_gasless(20 * STABLE, token=stable, max_fee=RELAY_FEE - 1)
    assert info.value.code == "fee_above_max"
    listener.open_gasless(20 * STABLE, token=stable, max_fee=2 * RELAY_FEE)
    assert listener.chain_state().deposit == 20 * STABLE - RELAY_FEE
    assert listener.chain_state().payer == listener_key.address

    track = rc.track("Morning Modem")
    paid = [listener.play(track) for _ in range(3)]
    spent = sum(p.amount for p in paid)
    assert listener.top_up_gasless(5 * STABLE, max_fee=RELAY_FEE) == 5 * STABLE - RELAY_FEE
    deposit = 25 * STABLE - 2 * RELAY_FEE
    wait_until(lambda: listener.spending()["deposit"] == str(deposit), what="the relay to see the top-up")
    paid.append(listener.play(track))
    spent += paid[-1].amount

    refund = listener.close_gasless(max_fee=RELAY_FEE)
    assert refund == deposit - spent - RELAY_FEE
    assert chain.token.balance_of(listener_key.address) == 50 * STABLE - 25 * STABLE + refund
    assert rc.w3.eth.get_balance(listener_key.address) == 0
    assert rc.w3.eth.get_transaction_count(listener_key.address) == 0

    # The final voucher was settled by the close: the artist's share is pushed by the relay, once.
    share = listener.state.voucher.amount_of(artist_key.address)  # type: ignore[union-attr]
    assert share > PAYOUT_FEE
    events = wait_until(lambda: paid_out_events(chain.channels, artist_key.address), what="the payout", timeout=30)
    time.sleep(1.0)  # a few more payout rounds: none may pay again
    events = paid_out_events(chain.channels, artist_key.address)
    assert len(events) == 1
    [(payout_tx, payout)] = events
    assert (payout.amount, payout.fee) == (share - PAYOUT_FEE, PAYOUT_FEE)
    assert payout.to == artist_key.address
    assert chain.channels.claimable(artist_key.address, stable) == 0
    # The relay records the payout as the payee's claim: its earnings show that money claimed, not settled.
    wait_until(
        lambda: artist.earnings()["tokens"][stable]["claimed"] == str(share),
        what="the payout in the artist's earnings",
    )
    assert artist.earnings()["tokens"][stable]["settled"] == "0"
    # The studio's view: the schedule, the next payout, every payout with its transaction.
    view = artist.payouts()["tokens"][stable]
    assert view["schedule"]["enabled"] is True and view["schedule"]["maxFee"] == str(PAYOUT_FEE)
    assert view["claimable"] == "0" and view["nextPayoutAt"] == 0
    assert [(p["amount"], p["fee"], p["txHash"]) for p in view["payouts"]] == [
        (str(share - PAYOUT_FEE), str(PAYOUT_FEE), payout_tx)
    ]
    assert rc.w3.eth.get_transaction_count(artist_key.address) == artist_nonce
    assert rc.w3.eth.get_balance(artist_key.address) == artist_eth


def test_listener_without_eth_and_scheduled_artist_on_embedded_chain(make_relay: Any, relay_chain: RelayChain) -> None:
    """Open, play, top up, close by signatures; the artist is paid by the payout loop (in-process relay)."""
    relay = make_relay(**SETTINGS)
    scenario(relay_chain, relay)


@pytest.mark.anvil
def test_listener_without_eth_and_scheduled_artist_on_anvil(relay_process: Any) -> None:
    """The same through a `chainstream relay` process on anvil."""
    relay_process.start(
        CHAINSTREAM_GASLESS_FEE=str(RELAY_FEE),
        CHAINSTREAM_PAYOUT_FEE=str(PAYOUT_FEE),
        CHAINSTREAM_PAYOUT_INTERVAL="0.2",
    )
    scenario(relay_process.rc, relay_process)


def test_relay_refuses_an_authorisation_for_another_relay(make_relay: Any, relay_chain: RelayChain) -> None:
    """A signed open naming another relay is refused before any gas is spent (403 wrong_relay)."""
    relay = make_relay(**SETTINGS)
    other = make_relay(**SETTINGS)
    listener_key = PrivateKey.generate()
    relay_chain.chain.token.mint(relay_chain.chain.tx("stranger"), listener_key.address, 50 * 10**6)
    listener = Listener(listener_key, w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=other.client())
    # Sign for `other`'s terms, but send to `relay`.
    listener.relay = relay.client()
    original = relay.client().get("/onboard/quote")
    assert original["relay"] == relay.address
    with pytest.raises(RelayError) as info:
        listener.relay.post(  # type: ignore[union-attr]
            "/onboard/open",
            {
                "auth": {
                    "payer": listener_key.address,
                    "token": relay_chain.chain.deployment.stablecoin,
                    "relay": other.address,
                    "sessionKey": listener.session_key.address,
                    "sessionExpiry": 2**32 - 1,
                    "salt": "0x" + "11" * 32,
                    "amount": "1000000",
                    "maxFee": "100000",
                    "submitter": "0x" + "00" * 20,
                    "nonce": "1",
                    "deadline": str(2**40),
                },
                "signature": "0x" + "11" * 65,
            },
        )
    assert info.value.code == "wrong_relay"
