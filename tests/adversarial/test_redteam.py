"""Attacker: the outside red team, after the fixes for the security review (issue 8). Each test is an attack that
still works on the code it was written against, stated as the safe outcome it expects; see docs/SECURITY.md for
the claims attacked.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from chainstream.chain.transactions import TxSender
from chainstream.devstack import start_stack
from chainstream.errors import ProtocolError
from chainstream.pricing import Split, Terms
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.sdk import Artist, RelayError
from tests.adversarial.test_lying_relay import LyingRelay, lying_client
from tests.adversarial.test_payee import DUE_AT_ONCE, publish_dust_track, rounds_pass, settled_on_chain
from tests.integration.relay_fixtures import (
    BLUES,
    LAZY,
    InProcessRelay,
    RelayChain,
    new_wallet,
    open_listener,
    rejected,
    wait_until,
)


def relay_settlement_gas(relay: Any) -> int:
    """Gas the relay's key spent on its settlement transactions so far (from its outbox, receipts on chain)."""
    w3 = relay.rc.w3
    return sum(
        int(w3.eth.get_transaction_receipt(bytes(row["tx_hash"]))["gasUsed"])
        for row in relay.rows("SELECT tx_hash FROM outbox WHERE kind = 'settleBatch'")
    )


def test_extending_a_session_key_forces_no_settlement_at_a_loss(make_relay: Any, relay_chain: RelayChain) -> None:
    """A griefer re-sets its live session key with one more second after each 1-wei play; the relay must not
    spend more gas settling that dust than the griefer spends forcing it (SECURITY.md, settlement economics)."""
    relay = make_relay(**DUE_AT_ONCE)
    _, dust_track = publish_dust_track(relay_chain, relay)
    sybil = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**15)
    sybil.play(dust_track)
    rounds_pass(relay)
    assert settled_on_chain(sybil) == 0  # dust is held for economics, as claimed
    assert sybil.channel_id is not None
    griefer_tx = TxSender(relay_chain.w3, sybil.wallet)
    griefer_gas = 0
    for plays in range(2, 5):
        sybil.play(dust_track)
        expiry = sybil.chain_state().session_expiry
        # Same key, one second longer: nothing is shortened, no rotation grace starts, no limit on repeats.
        receipt = sybil.channels.set_session_key(griefer_tx, sybil.channel_id, sybil.session_key.address, expiry + 1)
        griefer_gas += int(receipt["gasUsed"])
        # What the relay does with it once its watcher has seen the change: a settlement of the dust whatever it
        # costs (or nothing, which is safe).
        wait_until(lambda: relay.health()["block"] >= receipt["blockNumber"], what="the watcher to see the change")
        rounds_pass(relay)
        if settled_on_chain(sybil) != plays:
            break
    relay_gas = relay_settlement_gas(relay)
    assert relay_gas <= griefer_gas, (
        f"the relay spent {relay_gas} gas settling {settled_on_chain(sybil)} wei of dust, forced by "
        f"session-key extensions that cost the griefer {griefer_gas} gas"
    )


def test_extending_a_re_added_key_inside_its_grace_forces_no_settlement(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """The griefer revokes its key S and sets it again with a tiny expiry: S now settles until its rotation grace
    ends. Extending S in steps that stay below that grace shortens nothing (the contract's sessionKeyValidUntil is
    unchanged), so after the one settlement the revocation forces, the relay settles no more dust (the watcher
    compared the raw expiry with the stored validity and took every step for a shrink)."""
    relay = make_relay(**DUE_AT_ONCE)
    _, dust_track = publish_dust_track(relay_chain, relay)
    sybil = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**15)
    assert sybil.channel_id is not None
    cid, key = sybil.channel_id, sybil.session_key.address
    griefer_tx = TxSender(relay_chain.w3, sybil.wallet)

    def set_key(address: str, expiry: int) -> None:
        receipt = sybil.channels.set_session_key(griefer_tx, cid, address, expiry)
        wait_until(lambda: relay.health()["block"] >= receipt["blockNumber"], what="the watcher to see the change")
        rounds_pass(relay)

    sybil.play(dust_track)
    set_key("0x" + "00" * 20, 0)  # revoked: S's voucher settles only within its grace, so it is settled now
    wait_until(lambda: settled_on_chain(sybil) == 1, what="the settlement the revocation forces")
    short = relay_chain.chain.now() + 60
    set_key(key, short)  # re-added with a tiny expiry: it still settles until its grace ends
    for step in range(1, 4):
        sybil.play(dust_track)
        set_key(key, short + step * 10)  # longer each time, still inside the grace
    assert settled_on_chain(sybil) == 1, "extensions inside the grace forced dust settlements"


def test_an_audio_name_with_a_nul_byte_is_refused_not_a_500(relay: InProcessRelay) -> None:
    """A stranger asks for /audio/a%00.wav (a NUL byte in the file name): a 404, never a 500. (The free audio route
    is gone — audio is served only as paid segments — so the path does not exist.)"""
    with httpx.Client(base_url=relay.url, timeout=30) as http:
        rejected(http.get("/audio/a%00.wav"), 404, "not_found")
        assert http.get("/api/v1/tracks/0x%00/media/playlist.m3u8").status_code < 500


def test_a_bad_address_is_refused_without_quoting_it_back(relay: InProcessRelay) -> None:
    """A stranger sends a 50 kB "address" to the catalog: bad_address, and the refusal does not echo the input."""
    junk = "A" * 50_000
    body = rejected(relay.http().get("/catalog", params={"token": junk}), 400, "bad_address")
    assert "A" * 100 not in body["error"]["message"], f"the refusal quotes {len(body['error']['message'])} characters"


#: history pages the lying relay below serves before it stops by itself (500 made-up items each)
LYING_PAGES = 100


def test_a_lying_relays_endless_history_is_refused_before_the_relay_stops_lying(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The relay answers a play with the listener's own signed voucher claimed at seq 10^18 and serves made-up
    history pages back from there: the SDK must refuse (untrusted_state) on its own, not page on as long as the
    relay keeps answering (it would for 2 * 10^15 requests, holding every item in memory)."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(BLUES)
    listener.play(track)
    listener.play(track)
    honest = listener.state
    assert listener.channel_id is not None
    cid = listener.channel_id
    lie = relay.channel(cid)
    lie["seq"] = 10**18
    real_item = (
        relay.http().get(f"/channels/0x{cid.hex()}/history", headers=relay.owner_headers(cid)).json()["items"][0]
    )

    transport = LyingRelay()
    listener.relay = lying_client(relay, transport)
    pages = 0

    def answer(request: httpx.Request) -> tuple[int, Any] | None:
        nonlocal pages
        if request.method == "POST" and request.url.path.endswith("/payments"):
            return 409, {"error": {"code": "voucher_mismatch", "message": "resync"}, "state": lie}
        if request.url.path.endswith("/history"):
            pages += 1
            if pages > LYING_PAGES:
                return 200, {"channelId": "0x" + cid.hex(), "items": []}
            before = int(request.url.params["before"])
            items = [dict(real_item, seq=seq) for seq in range(before - 1, before - 501, -1)]
            return 200, {"channelId": "0x" + cid.hex(), "items": items}
        return None

    transport.answer = answer
    with pytest.raises(ProtocolError) as info:
        listener.play(track)
    assert info.value.code == "untrusted_state"
    assert listener.state == honest
    assert pages <= LYING_PAGES, f"the SDK read {pages} made-up history pages and would have gone on"


def test_a_key_inside_its_deadline_margin_forces_one_dust_settlement_not_one_per_play(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """A sybil opens one channel whose session key expires in 30 min (inside the 1 h deadline margin, outside the
    10 min acceptance margin) and plays 1 wei after each settlement: at most one uneconomic settlement per
    deadline (SECURITY.md), not one per play for the open's gas alone."""
    relay = make_relay(**DUE_AT_ONCE)
    _, dust_track = publish_dust_track(relay_chain, relay)
    sybil = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**15, session_ttl=1_800)
    for plays in range(1, 4):
        sybil.play(dust_track)
        rounds_pass(relay)
        if settled_on_chain(sybil) != plays:
            break
    settlements = len(relay.rows("SELECT id FROM outbox WHERE kind = 'settleBatch'"))
    assert settlements <= 1, (
        f"the relay sent {settlements} settlements ({relay_settlement_gas(relay)} gas) for "
        f"{settled_on_chain(sybil)} wei of dust on one key's deadline"
    )


def test_a_track_title_cannot_start_a_formula_cell_in_a_semicolon_spreadsheet(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A track owner titles its track "Hit;=2+5;" and puts a victim artist in its split: the victim's earnings CSV,
    opened where the list separator is ";" (Excel in most European locales), must not hold a cell that starts
    with a formula character."""
    owner = Artist(new_wallet(relay_chain), w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    victim = new_wallet(relay_chain).address
    track_id = os.urandom(32)
    owner.register_track(track_id, "Hit;=2+5;", Terms(per_play=10**9), Split((owner.address, victim), (5_000, 5_000)))
    wait_until(lambda: relay.http().get(f"/tracks/0x{track_id.hex()}").status_code == 200, what="the relay's catalog")
    open_listener(relay_chain, relay, wallet=new_wallet(relay_chain)).play(track_id)

    answer = relay.http().get(
        f"/artists/{victim}/earnings", params={"format": "csv"}, headers=relay.owner_headers(payee=victim)
    )
    assert answer.status_code == 200, answer.text
    cells = [cell for row in csv.reader(io.StringIO(answer.text), delimiter=";") for cell in row]
    formulas = [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]
    assert formulas == [], f"cells a spreadsheet would run: {formulas}"


@pytest.mark.anvil
def test_a_session_key_rotation_not_yet_confirmed_is_not_trusted_so_a_reorg_voids_nothing_acknowledged(
    anvil_relay_chain: RelayChain, tmp_path: Path
) -> None:
    """The payer rotates to a new session key and pays with it at once; a relay set to 3 confirmations must not
    acknowledge on that unconfirmed rotation (it re-reads the chain's head on unauthorized_signer): after a
    one-block reorg drops the rotation, every voucher it acknowledged must still be settleable."""
    rc = anvil_relay_chain
    relay = InProcessRelay(rc, tmp_path / "relay.db", confirmations=3, **LAZY).start()
    try:
        listener = open_listener(rc, relay, wallet=new_wallet(rc))
        track = rc.track(BLUES)
        for _ in range(4):  # the open is confirmed: only the rotation below is at the head
            rc.w3.provider.make_request("evm_mine", [])
        listener.play(track)
        assert listener.channel_id is not None
        cid = listener.channel_id
        before_rotation = rc.chain.snapshot()
        listener.authorise_session_key()
        with contextlib.suppress(RelayError):  # refused is the safe answer
            listener.play(track)
        rc.chain.revert(before_rotation)  # a one-block reorg, shallower than the relay's 3 confirmations

        now = rc.chain.now()
        payer = listener.address
        contract = rc.chain.channels.contract
        acknowledged = relay.rows("SELECT seq, signer FROM payments WHERE channel_id=? ORDER BY seq", (cid,))
        unsettleable = [
            (row["seq"], row["signer"])
            for row in acknowledged
            if row["signer"] != payer and contract.functions.sessionKeyValidUntil(cid, row["signer"]).call() < now
        ]
        assert unsettleable == [], f"acknowledged vouchers no key on chain authorises after the reorg: {unsettleable}"
    finally:
        relay.stop()


@pytest.mark.anvil
def test_an_expired_session_key_cannot_lock_the_channel_with_a_close_request(
    anvil_relay_chain: RelayChain, tmp_path: Path
) -> None:
    """A thief kept a copy of a session key; once the key has expired on chain (the listener has not rotated yet),
    it asks the relay to co-sign a cooperative close, which would stop the channel's payments for good: refused
    403 session_key_expired, as its reads are (a key's powers end at its expiry)."""
    rc = anvil_relay_chain
    relay = InProcessRelay(rc, tmp_path / "relay.db", **LAZY).start()
    try:
        listener = open_listener(rc, relay, wallet=new_wallet(rc), session_ttl=3_600)
        listener.play(rc.track(BLUES))
        assert listener.channel_id is not None and listener.state is not None
        cid = listener.channel_id
        rc.chain.advance(7_200)
        wait_until(lambda: relay.service.chain_now() > listener.chain_state().session_expiry, what="the relay to see")
        domain = listener.channels.domain
        latest = listener.state.voucher.digest(domain)
        stolen = listener.session_key.sign(domain.digest(close_struct_hash(cid, latest)))
        answer = relay.http().post(
            f"/channels/0x{cid.hex()}/close", json={"voucherDigest": "0x" + latest.hex(), "signature": stolen.to_hex()}
        )
        rejected(answer, 403, "session_key_expired")
        assert relay.channel(cid)["status"] == "open", "the channel still takes payments"
    finally:
        relay.stop()


class HarvestingRelay(LyingRelay):
    """A lying relay that also keeps the Authorization headers (read tokens) its clients send it."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            self.authorizations.append(request.headers["authorization"])
        return super().handle_request(request)


def test_a_relay_cannot_harvest_read_tokens_for_another_relay_by_naming_it_in_info(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """A relay the artist also uses answers /info with another relay's address; the SDK signs the artist's earnings
    token for that relay, which the liar replays there: it must open nothing at the other relay (401)."""
    liar, honest = make_relay(), make_relay()
    artist_key = new_wallet(relay_chain)
    listener = open_listener(relay_chain, honest, wallet=new_wallet(relay_chain))
    listener.tip(10**15, artist=artist_key.address, message="private note")

    transport = HarvestingRelay()
    transport.rewrite = lambda request, body: (
        {**body, "relay": honest.address} if request.url.path.endswith("/info") else body
    )
    artist = Artist(
        artist_key, w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=lying_client(liar, transport)
    )
    with pytest.raises(ProtocolError) as refused:  # the liar cannot sign the SDK's challenge as the honest relay
        artist.earnings()
    assert refused.value.code == "untrusted_relay"
    for authorization in transport.authorizations:  # nothing harvested, or nothing that opens the honest relay
        replayed = honest.http().get(
            f"/artists/{artist_key.address}/earnings", headers={"Authorization": authorization}
        )
        assert replayed.status_code == 401, f"the harvested token read the artist's earnings elsewhere: {replayed.text}"


@pytest.mark.anvil
def test_the_dev_stack_cuts_off_an_oversized_websocket_message_like_the_relay_command() -> None:
    """`chainstream dev` (which can serve a LAN interface, --host) gets a 1 MiB WebSocket message: closed 1009
    before it is buffered, as `chainstream relay` does, not read whole (uvicorn's own limit is 16 MiB)."""
    stack = start_stack()
    try:
        with ws_connect(stack.url.replace("http", "ws") + "/api/v1/payments/stream", open_timeout=10) as ws:
            ws.send("x" * 2**20)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        stack.stop()
