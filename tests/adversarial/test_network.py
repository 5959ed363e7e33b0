"""Attacker: the network — duplicated, concurrent and reordered deliveries, and races with closes.

What it does: delivers the same payment many times at once over every transport (a retrying client, a proxy
replaying requests, several tabs of the player), delivers two different vouchers for the same seq at once (a
payer trying to spend one seq twice), and lets a payment race the channel's close, off chain (the cooperative
close the relay co-signs) and on chain (requestClose). Expected: for every seq exactly one voucher is
acknowledged as accepted and every other delivery gets the same answer (a duplicate of it, or a refusal); the
relay never acknowledges a voucher it cannot settle, and never loses one it acknowledged: what ends up settled
on chain is the last acknowledged voucher's total, to the wei.

A real in-process relay on the embedded chain, real HTTP and WebSocket clients in threads; no sleeps (waits poll
with a deadline).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from websockets.sync.client import connect as ws_connect

from chainstream.ledger import charge_play
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.sdk import Listener
from tests.integration.relay_fixtures import (
    BLUES,
    MODEM,
    InProcessRelay,
    RelayChain,
    Signed,
    cid_hex,
    new_wallet,
    open_listener,
    play_spec,
    sign_charge,
    signed_plays,
    wait_until,
)

Reply = tuple[int, dict[str, Any]]  # HTTP-like status, body


def _post_single(http: httpx.Client, cid: str, signed: Signed) -> Reply:
    response = http.post(f"/channels/{cid}/payments", json=signed.body)
    return response.status_code, response.json()


def _post_batch(http: httpx.Client, cid: str, signed: Signed) -> Reply:
    response = http.post("/payments/batch", json={"payments": [{**signed.body, "channelId": cid, "id": signed.seq}]})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    return (200 if result["ok"] else result["error"]["status"]), result


def _client(
    relay: InProcessRelay, cid: str, plays: list[Signed], transport: str, start: threading.Barrier
) -> list[Reply]:
    """One client delivering the whole sequence in order over one transport, each after the previous answer."""
    replies: list[Reply] = []
    if transport == "stream":
        url = relay.api.replace("http://", "ws://") + "/payments/stream"
        with ws_connect(url, open_timeout=10, close_timeout=5) as ws:
            start.wait()
            for signed in plays:
                ws.send(json.dumps({**signed.body, "channelId": cid, "id": signed.seq}))
                body = json.loads(ws.recv(timeout=30))
                replies.append((200 if body["ok"] else body["error"]["status"], body))
        return replies
    send = _post_single if transport == "single" else _post_batch
    with httpx.Client(base_url=relay.api, timeout=30) as http:
        start.wait()
        for signed in plays:
            replies.append(send(http, cid, signed))
    return replies


def test_theSamePaymentsFromManyClientsAtOnce_eachSeqIsAcceptedOnce_andEveryoneGetsTheSameAnswer(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """Nine clients (single POST, batch, WebSocket) deliver the same eight vouchers at the same moment."""
    # Duplicates: nine clients (three per transport: single POST, batch, WebSocket stream) deliver the same eight
    # vouchers of one channel, all starting at the same moment.
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**18)
    plays = signed_plays(listener, relay_chain.track(MODEM), 8)
    cid = cid_hex(listener)
    transports = ["single", "batch", "stream"] * 3
    start = threading.Barrier(len(transports))
    with ThreadPoolExecutor(len(transports)) as pool:
        results = list(pool.map(lambda t: _client(relay, cid, plays, t, start), transports))

    by_seq: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for replies in results:
        assert len(replies) == len(plays)
        for signed, (status, body) in zip(plays, replies, strict=True):
            assert status == 200, body  # never a refusal: every delivery is the accepted voucher or its duplicate
            by_seq[signed.seq].append(body)
    for signed in plays:
        answers = by_seq[signed.seq]
        assert sorted(a["status"] for a in answers) == ["accepted"] + ["duplicate"] * (len(transports) - 1)
        digest = "0x" + signed.state.voucher.digest(listener.channels.domain).hex()
        assert {(a["seq"], a["digest"], a["total"]) for a in answers} == {
            (signed.seq, digest, str(signed.state.voucher.total))
        }
    rows = relay.payment_rows(listener.channel_id)  # type: ignore[arg-type]
    assert [(r["seq"], int(r["total"])) for r in rows] == [(p.seq, p.state.voucher.total) for p in plays]


def test_twoDifferentVouchersForOneSeqAtOnce_exactlyOneIsAccepted_andTheOtherAlwaysRefused(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A payer signs seq 1 twice (two tracks) and many clients deliver both at once, on several channels."""
    # Double spend of a seq: a payer signs seq 1 twice (a play of one track and of another) and has both delivered by
    # many clients at once, on several channels.
    listeners = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain)) for _ in range(4)]
    copies = 6
    work: list[tuple[Listener, Signed]] = []
    for listener in listeners:
        for title in (MODEM, BLUES):
            track = relay_chain.track(title)
            signed = sign_charge(listener, charge_play(listener.state, listener.listing(track)), play_spec(track))
            work += [(listener, signed)] * copies
    start = threading.Barrier(len(work))

    def deliver(item: tuple[Listener, Signed]) -> tuple[bytes, bytes, Reply]:
        listener, signed = item
        with httpx.Client(base_url=relay.api, timeout=30) as http:
            start.wait()
            reply = _post_single(http, cid_hex(listener), signed)
        return listener.channel_id, signed.state.voucher.digest(listener.channels.domain), reply  # type: ignore[return-value]

    with ThreadPoolExecutor(len(work)) as pool:
        outcomes = list(pool.map(deliver, work))

    for listener in listeners:
        mine = [(digest, reply) for cid, digest, reply in outcomes if cid == listener.channel_id]
        acknowledged = {digest for digest, (status, _) in mine if status == 200}
        assert len(acknowledged) == 1, mine  # one voucher won seq 1 ...
        [winner] = acknowledged
        for digest, (status, body) in mine:
            if digest == winner:  # ... every delivery of it is acknowledged, once as accepted ...
                assert status == 200 and body["digest"] == "0x" + winner.hex(), body
            else:  # ... and every delivery of the other is refused, with the winner's state to resync from
                assert (status, body.get("error", {}).get("code")) == (409, "stale_voucher"), body
                assert body["state"]["seq"] == 1
        assert sum(1 for digest, (_, body) in mine if body.get("status") == "accepted") == 1
        rows = relay.payment_rows(listener.channel_id)  # type: ignore[arg-type]
        assert [(r["seq"], bytes(r["digest"])) for r in rows] == [(1, winner)]


def _close_request(listener: Listener, signed: Signed) -> dict[str, Any]:
    domain = listener.channels.domain
    digest = signed.state.voucher.digest(domain)
    request = listener.session_key.sign(domain.digest(close_struct_hash(listener.channel_id, digest)))  # type: ignore[arg-type]
    return {"voucherDigest": "0x" + digest.hex(), "signature": request.to_hex()}


def test_aPaymentRacingACooperativeClose_isEitherSettledByTheClose_orRefused(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """Seq 2 and the payer's close request at seq 1 reach the relay at the same moment, on many channels."""
    # Pay vs cooperative close: on many channels at once, seq 2 and the payer's close request at seq 1 reach the relay
    # at the same moment. Whichever wins, the relay must not both co-sign the close at seq 1 and acknowledge seq 2 (the
    # close would then settle seq 1 and seq 2's money would be lost).
    listeners = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain)) for _ in range(6)]
    track = relay_chain.track(MODEM)
    pairs: dict[bytes, tuple[Signed, Signed]] = {}
    for listener in listeners:
        first, second = signed_plays(listener, track, 2)
        with httpx.Client(base_url=relay.api, timeout=30) as http:
            assert _post_single(http, cid_hex(listener), first)[0] == 200
        pairs[listener.channel_id] = (first, second)  # type: ignore[index]
    start = threading.Barrier(2 * len(listeners))

    def race(job: tuple[Listener, str]) -> tuple[bytes, str, Reply]:
        listener, what = job
        first, second = pairs[listener.channel_id]  # type: ignore[index]
        cid = cid_hex(listener)
        with httpx.Client(base_url=relay.api, timeout=30) as http:
            start.wait()
            if what == "pay":
                return listener.channel_id, what, _post_single(http, cid, second)  # type: ignore[return-value]
            response = http.post(f"/channels/{cid}/close", json=_close_request(listener, first))
            return listener.channel_id, what, (response.status_code, response.json())  # type: ignore[return-value]

    jobs = [(listener, what) for listener in listeners for what in ("pay", "close")]
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = {(cid, what): reply for cid, what, reply in pool.map(race, jobs)}

    for listener in listeners:
        first, second = pairs[listener.channel_id]  # type: ignore[index]
        (pay_status, pay), (close_status, close) = (outcomes[(listener.channel_id, w)] for w in ("pay", "close"))
        if close_status == 200:  # the close won: seq 2 is refused, and the consent is for seq 1
            assert (pay_status, pay.get("error", {}).get("code")) == (409, "channel_not_open"), pay
            assert close["voucher"]["amounts"] == [str(a) for a in first.state.voucher.amounts]
            last = first
        else:  # the payment won: the close request named a state that is no longer the latest
            assert pay_status == 200 and pay["status"] == "accepted", pay
            assert (close_status, close.get("error", {}).get("code")) == (409, "close_state_mismatch"), close
            last = second
        assert [r["seq"] for r in relay.payment_rows(listener.channel_id)] == list(range(1, last.seq + 1))  # type: ignore[arg-type]
        # The listener closes at the last acknowledged state; the chain settles exactly that.
        listener.state = last.state
        deposit = listener.chain_state().deposit
        assert listener.close_cooperatively() == deposit - last.state.voucher.total
        assert listener.chain_state().settled == last.state.voucher.total


def test_paymentsRacingACloseRequestOnChain_everyAcknowledgedPaymentIsSettled(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """Payments stream in while the payer's requestClose is mined."""
    # Pay vs close on chain: while a client streams payments, the payer's requestClose is mined. Payments the relay
    # acknowledges before it sees the close must still be settled by its watchtower; once it has seen the close it
    # acknowledges none.
    listeners = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain)) for _ in range(3)]
    track = relay_chain.track(MODEM)
    streamed = 30
    plays = {listener.channel_id: signed_plays(listener, track, streamed + 1) for listener in listeners}
    start = threading.Barrier(2 * len(listeners))

    def stream(listener: Listener) -> list[Reply]:
        replies: list[Reply] = []
        with httpx.Client(base_url=relay.api, timeout=30) as http:
            start.wait()
            for signed in plays[listener.channel_id][:streamed]:
                replies.append(_post_single(http, cid_hex(listener), signed))
                if replies[-1][0] != 200:
                    break
        return replies

    def close(listener: Listener) -> list[Reply]:
        start.wait()
        listener.request_close()
        return []

    jobs: list[tuple[Callable[[Listener], list[Reply]], Listener]] = [
        (fn, listener) for listener in listeners for fn in (stream, close)
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs))

    for listener, replies in zip(listeners, results[::2], strict=True):
        acknowledged = [body for status, body in replies if status == 200]
        refused = [body for status, body in replies if status != 200]
        assert all(body["error"]["code"] == "channel_not_open" for body in refused), refused
        wait_until(lambda: relay.channel(listener.channel_id)["status"] == "closing", what="the watcher")  # type: ignore[arg-type]
        last_total = int(acknowledged[-1]["total"]) if acknowledged else 0
        # Nothing acknowledged is lost: every acknowledged seq is stored, and the watchtower settles the last one.
        assert [r["seq"] for r in relay.payment_rows(listener.channel_id)] == [a["seq"] for a in acknowledged]  # type: ignore[arg-type]
        wait_until(lambda: listener.chain_state().settled == last_total, what="the watchtower to settle")
        # And nothing more is acknowledged now that the relay knows the channel is closing.
        late = plays[listener.channel_id][len(acknowledged)]
        with httpx.Client(base_url=relay.api, timeout=30) as http:
            status, body = _post_single(http, cid_hex(listener), late)
        assert (status, body.get("error", {}).get("code")) == (409, "channel_not_open"), body
