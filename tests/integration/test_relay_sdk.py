"""The Python SDK end to end against a real in-process relay on the embedded chain: an artist publishes a track,
listeners pay for plays, seconds, tips and a download, the relay settles, the artist sees pending -> settled ->
claimed and claims; earnings as CSV; a listener SDK resynchronising after drift; price changes."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chainstream.errors import ProtocolError
from chainstream.pricing import Split, Terms
from chainstream.relay.earnings import CSV_COLUMNS
from chainstream.sdk import Artist, Listener, RelayError
from tests.integration.relay_fixtures import (
    ETH,
    GWEI,
    MODEM,
    STABLE_TERMS_UNIT,
    InProcessRelay,
    RelayChain,
    cid_hex,
    new_wallet,
    open_listener,
    wait_until,
)

ETH_SINK = "0x000000000000000000000000000000000000dEaD"
PER_PLAY = 10_000 * GWEI
PER_SECOND = 100 * GWEI
DOWNLOAD = 500_000 * GWEI


def publish(
    rc: RelayChain,
    relay: InProcessRelay,
    terms: Terms = Terms(per_play=PER_PLAY, per_second=PER_SECOND, download=DOWNLOAD),
) -> tuple[Artist, bytes, Split]:
    """A new artist (fresh wallet, so its earnings are this test's alone) publishes a track with a collaborator
    and a platform fee; returns once the relay's catalog offers it."""
    artist = Artist(new_wallet(rc), w3=rc.w3, deployment=rc.chain.deployment, relay=relay.client())
    collaborator = new_wallet(rc, eth=0).address
    split = Split((artist.address, collaborator), (7_000, 3_000), rc.chain.address("platform"), 500)
    track_id = os.urandom(32)
    artist.register_track(track_id, "Test Tune", terms, split)
    if rc.chain.deployment.stablecoin:
        artist.set_terms(track_id, Terms(per_play=3 * STABLE_TERMS_UNIT), token=rc.chain.deployment.stablecoin)
    wait_until(
        lambda: (
            relay.http().get(f"/tracks/0x{track_id.hex()}").status_code == 200
            and (
                not rc.chain.deployment.stablecoin
                or rc.chain.deployment.stablecoin in relay.http().get(f"/tracks/0x{track_id.hex()}").json()["terms"]
            )
        ),
        what="the relay's catalog to offer the new track",
    )
    return artist, track_id, split


def test_listener_and_artist_end_to_end(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    artist, track, split = publish(relay_chain, relay)
    deposit = 10**17
    listener = open_listener(relay_chain, relay, deposit=deposit)
    paid = [
        listener.play(track),
        listener.play(track),
        listener.listen(track, 20),
        listener.tip(5_000 * GWEI, track_id=track, message="great bridge"),
        listener.tip(1_234, artist=artist.address),
        listener.download(track),
        listener.play(track),
    ]
    assert [p.amount for p in paid] == [PER_PLAY, PER_PLAY, 20 * PER_SECOND, 5_000 * GWEI, 1_234, DOWNLOAD, 0]
    assert [p.seq for p in paid] == list(range(1, 8))
    assert all(p.status == "accepted" for p in paid)
    total = sum(p.amount for p in paid)
    assert paid[-1].total == total and paid[-1].remaining == deposit - total
    voucher = listener.state.voucher  # type: ignore[union-attr]
    share = voucher.amount_of(artist.address)
    assert share == sum(split.apply(p.amount).get(artist.address, 0) for p in paid[:4] + paid[5:]) + 1_234

    # A listener paying in the stablecoin (opened with a permit): a second token in the artist's earnings.
    stable = relay_chain.chain.deployment.stablecoin
    usd_listener = open_listener(
        relay_chain, relay, wallet="listener2", deposit=100 * STABLE_TERMS_UNIT, token=stable, permit=True
    )
    usd = usd_listener.play(track)
    assert usd.amount == 3 * STABLE_TERMS_UNIT
    usd_share = split.apply(usd.amount)[artist.address]

    def earnings() -> dict[str, Any]:
        return artist.earnings()

    pending = earnings()
    assert pending["payee"] == artist.address
    assert pending["tokens"][ETH] == {"pending": str(share), "settled": "0", "claimed": "0", "total": str(share)}
    assert pending["tokens"][stable]["pending"] == str(usd_share)
    rows = {(t["token"], t["target"]): t for t in pending["tracks"]}
    song = rows[(ETH, "0x" + track.hex())]
    assert song["title"] == "Test Tune" and song["plays"] == 2 and song["seconds"] == 20 and song["downloads"] == 1
    assert song["tips"] == str(split.apply(5_000 * GWEI)[artist.address])
    direct = next(t for (token, _), t in rows.items() if token == ETH and t["target"] != "0x" + track.hex())
    assert direct["tips"] == "1234" and direct["title"] is None
    assert sum(int(t["earned"]) for (token, _), t in rows.items() if token == ETH) == share

    # Settled: on chain, then in the earnings.
    relay.settle_now(listener.channel_id)  # type: ignore[arg-type]
    relay.settle_now(usd_listener.channel_id)  # type: ignore[arg-type]
    wait_until(lambda: listener.chain_state().settled == total, what="the relay to settle the ETH channel")
    wait_until(lambda: usd_listener.chain_state().settled == usd.total, what="the relay to settle the USD channel")
    settled = wait_until(lambda: (e := earnings())["tokens"][ETH]["pending"] == "0" and e, what="earnings settled")
    assert settled["tokens"][ETH] == {"pending": "0", "settled": str(share), "claimed": "0", "total": str(share)}
    assert listener.spending()["settled"] == str(total)
    assert listener.settled_state().credited == voucher.amounts  # type: ignore[union-attr]

    # Claimed: the artist withdraws; the relay's watcher sees the Claimed event.
    assert artist.claimable() == share
    before = relay_chain.w3.eth.get_balance(artist.address)
    assert artist.claim() == share
    assert 0 < before + share - relay_chain.w3.eth.get_balance(artist.address) < 10**16  # gas only
    assert artist.claimable() == 0 and artist.claim() == 0
    claimed = wait_until(lambda: (e := earnings())["tokens"][ETH]["claimed"] != "0" and e, what="earnings claimed")
    assert claimed["tokens"][ETH] == {"pending": "0", "settled": "0", "claimed": str(share), "total": str(share)}
    assert claimed["tokens"][stable]["settled"] == str(usd_share)  # not claimed in that token
    assert artist.claim(token=stable) == usd_share
    final = wait_until(
        lambda: (e := earnings())["tokens"][stable]["claimed"] == str(usd_share) and e,
        what="the stablecoin claim in the earnings",
    )["tracks"]

    # The same money as CSV, one row per payment, in token units, once the watcher has seen both claims.
    token = relay.read_token(artist.key)  # in the query, as a download link carries it
    response = httpx.get(
        f"{relay.api}/artists/{artist.address}/earnings", params={"format": "csv", "readToken": token}, timeout=10
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert artist.address in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert list(table[0]) == list(CSV_COLUMNS)
    eth_rows = [r for r in table if r["token"] == "ETH"]
    usd_rows = [r for r in table if r["token"] == "mUSD"]
    assert len(eth_rows) == 6 and len(usd_rows) == 1  # the free play paid the artist nothing: no row
    assert sum(Decimal(r["amount"]) for r in eth_rows) == Decimal(share) / 10**18
    assert Decimal(usd_rows[0]["amount"]) == Decimal(usd_share) / 10**6
    assert {r["status"] for r in table} == {"claimed"} and all(r["claimed"] == r["amount"] for r in table)
    assert {r["kind"] for r in eth_rows} == {"play", "seconds", "tip", "download"}
    assert {r["title"] for r in eth_rows} == {"Test Tune", ""}  # "" for the direct tip
    assert all(r["channel"] == cid_hex(listener) for r in eth_rows) and all(r["date"][:2] == "20" for r in table)
    assert sum(int(t["earned"]) for t in final if t["token"] == ETH) == share
    assert httpx.get(f"{relay.api}/artists/{artist.address}/earnings", params={"format": "xml"}).status_code == 422

    history = listener.history()
    assert [h["kind"] for h in history] == ["play", "download", "tip", "tip", "seconds", "play", "play"]
    assert history[0]["amount"] == "0" and history[3]["memo"] == "great bridge"


def test_sdk_resynchronises_when_another_client_paid(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """Two SDK instances on one channel (same wallet and session key, e.g. phone and laptop): the stale one is
    answered with the relay's state, adopts it, and its next payment goes through."""
    _, track, _ = publish(relay_chain, relay)
    other_track = relay_chain.track(MODEM)
    phone = open_listener(relay_chain, relay)
    laptop = Listener(
        phone.wallet,
        w3=relay_chain.w3,
        deployment=relay_chain.chain.deployment,
        relay=relay.client(),
        session_key=phone.session_key,
    )
    laptop.attach(phone.channel_id)  # type: ignore[arg-type]
    assert laptop.state == phone.state
    phone.play(track)
    phone.play(track)
    with pytest.raises(RelayError) as info:
        laptop.play(other_track)
    assert info.value.code == "stale_voucher" and info.value.status == 409 and info.value.state["seq"] == 2
    assert laptop.state == phone.state  # adopted the relay's state
    assert laptop.play(track).seq == 3
    with pytest.raises(RelayError) as info:
        phone.play(other_track)
    assert info.value.code == "stale_voucher"
    assert phone.play(other_track).seq == 4
    # Vouchers are deterministic: a device that builds exactly the voucher the relay already has (same state,
    # same charge) is told "duplicate", with nothing charged, and is then in step.
    laptop.resync(relay.channel(phone.channel_id))  # type: ignore[arg-type]
    phone.play(track)
    assert laptop.state != phone.state
    again = laptop.play(track)
    assert again.status == "duplicate" and again.amount == 0 and again.seq == 5 and laptop.state == phone.state
    assert [r["seq"] for r in relay.payment_rows(phone.channel_id)] == [1, 2, 3, 4, 5]  # type: ignore[arg-type]


def test_new_prices_reach_the_relay_and_the_sdk(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    artist, track, _ = publish(relay_chain, relay)
    listener = open_listener(relay_chain, relay)
    assert listener.play(track).amount == PER_PLAY
    with (
        httpx.Client(base_url=relay.api, timeout=httpx.Timeout(10.0, read=15.0)) as http,
        http.stream(
            "GET",
            "/events",
            params={
                "channel": cid_hex(listener),
                "readToken": relay.read_token(listener.session_key, listener.address),
            },
        ) as events,
    ):
        lines = events.iter_lines()
        assert next(lines) == ": connected"
        artist.set_terms(track, Terms(per_play=3 * PER_PLAY, per_second=PER_SECOND, download=DOWNLOAD))
        for line in lines:  # the catalog change is announced to every subscriber (other tests' tracks may come first)
            event = json.loads(line[6:]) if line.startswith("data: ") else {}
            if event.get("type") == "catalog" and event["trackId"] == "0x" + track.hex():
                break
    wait_until(  # the announcement may be the track's registration, seen late: its new terms follow
        lambda: relay.http().get(f"/tracks/0x{track.hex()}").json()["terms"][ETH]["perPlay"] == str(3 * PER_PLAY),
        what="the relay's catalog to carry the new price",
    )
    # The SDK priced from its cached catalog: the relay answers voucher_mismatch, the SDK refreshes its
    # prices, and the next play goes through at the new price.
    with pytest.raises(RelayError) as stale_price:
        listener.play(track)
    assert stale_price.value.code == "voucher_mismatch" and stale_price.value.status == 409
    paid = listener.play(track)
    assert paid.amount == 3 * PER_PLAY and paid.seq == 2
    artist.set_terms(track, Terms(per_play=PER_PLAY, enabled=False))
    wait_until(lambda: ETH not in relay.http().get(f"/tracks/0x{track.hex()}").json()["terms"], what="terms disabled")
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.code == "unknown_track" and info.value.status == 404


def test_the_sdk_prices_from_the_chain_and_adopts_only_a_state_its_keys_signed(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A relay cannot steer what the SDK signs: prices and splits come from the TrackRegistry (the SDK prices a
    track with no relay at all), and a channel state from the relay is adopted only if its latest voucher is
    signed by the payer or one of the channel's session keys — a device with a newer key included."""
    listener = open_listener(relay_chain, relay)
    track = relay_chain.track(MODEM)
    offline = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    offline.token = listener.token
    assert offline.listing(track) == listener.listing(track) == relay.service.catalog.listing(track, ETH)

    listener.play(track)
    summary = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    listener.resync(summary)  # signed by our session key: adopted
    forged = {
        **summary,
        "voucher": {
            **summary["voucher"],
            "payees": [*summary["voucher"]["payees"][:-1], ETH_SINK],
        },
    }
    with pytest.raises(ProtocolError) as info:
        listener.resync(forged)  # the payees changed: the signature no longer recovers to a key of the channel
    assert info.value.code == "untrusted_state"
    unsigned = {**summary, "voucher": {**summary["voucher"], "signature": None}}
    with pytest.raises(ProtocolError) as info:
        listener.resync(unsigned)
    assert info.value.code == "untrusted_state"

    # Another device authorises a key of its own and pays: this one adopts that state (the chain names the key).
    laptop = Listener(listener.wallet, w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=relay.client())
    laptop.attach(listener.channel_id)  # type: ignore[arg-type]
    laptop.authorise_session_key()
    wait_until(
        lambda: relay.channel(listener.channel_id)["sessionKey"] == laptop.session_key.address,  # type: ignore[arg-type]
        what="the relay to see the laptop's key",
    )
    laptop.play(track)
    listener.resync(relay.channel(listener.channel_id))  # type: ignore[arg-type]
    assert listener.state == laptop.state
