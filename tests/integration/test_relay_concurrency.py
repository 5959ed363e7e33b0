"""Concurrency and the streaming transports, against a real in-process relay on the embedded chain: payments of
one channel from many threads, many channels at once, the batch endpoint, the websocket stream, SSE."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from websockets.sync.client import connect as ws_connect

from tests.conftest import test_key
from tests.integration.relay_fixtures import (
    MODEM,
    PLAY_PRICE,
    InProcessRelay,
    RelayChain,
    Signed,
    cid_hex,
    new_wallet,
    open_listener,
    signed_plays,
    wait_until,
)


def _submit_until_taken(url: str, channel: str, signed: Signed, start: threading.Barrier, deadline: float) -> list[Any]:
    """POST one payment, retrying while the relay says an earlier seq is missing; every reply, in order."""
    replies: list[Any] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        start.wait()
        while time.monotonic() < deadline:
            response = http.post(f"/channels/{channel}/payments", json=signed.body)
            body = response.json()
            replies.append((response.status_code, body))
            if response.status_code == 200:
                return replies
            assert response.status_code == 409 and body["error"]["code"] == "seq_gap", body
            assert body["state"]["seq"] < signed.seq, body  # never ahead of a voucher not yet accepted
            time.sleep(0.005)
    raise AssertionError(f"seq {signed.seq} never accepted: {replies[-3:]}")


def test_one_channel_from_many_threads_is_serialised(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """Each thread holds one voucher of a 24-voucher sequence and submits it at the same moment as the others:
    the relay takes them strictly in order, each exactly once; the rest are cleanly rejected (seq_gap) until
    their turn."""
    listener = open_listener(relay_chain, relay, deposit=10**18)
    plays = signed_plays(listener, relay_chain.track(MODEM), 24)
    start = threading.Barrier(len(plays))
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(len(plays)) as pool:
        futures = [pool.submit(_submit_until_taken, relay.api, cid_hex(listener), p, start, deadline) for p in plays]
        results = [f.result() for f in futures]
    for signed, replies in zip(plays, results, strict=True):
        status, ack = replies[-1]
        assert ack["status"] == "accepted" and ack["seq"] == signed.seq, ack
        assert int(ack["total"]) == signed.state.voucher.total
    rows = relay.payment_rows(listener.channel_id)  # type: ignore[arg-type]
    assert [r["seq"] for r in rows] == list(range(1, 25))
    assert [int(r["total"]) for r in rows] == [p.state.voucher.total for p in plays]
    summary = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    assert summary["seq"] == 24 and int(summary["spent"]) == 24 * PLAY_PRICE


def test_the_same_voucher_from_many_threads_is_accepted_once(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    start = threading.Barrier(12)

    def submit() -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=relay.api, timeout=30) as http:
            start.wait()
            response = http.post(f"/channels/{cid_hex(listener)}/payments", json=play.body)
            return response.status_code, response.json()

    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda _: submit(), range(12)))
    assert all(status == 200 for status, _ in replies), replies
    statuses = sorted(body["status"] for _, body in replies)
    assert statuses == ["accepted"] + ["duplicate"] * 11
    assert {body["digest"] for _, body in replies} == {"0x" + play.state.voucher.digest(listener.channels.domain).hex()}
    assert len(relay.payment_rows(listener.channel_id)) == 1  # type: ignore[arg-type]


def test_many_channels_in_parallel(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listeners = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**17) for _ in range(8)]
    track = relay_chain.track(MODEM)

    def stream(listener: Any) -> list[int]:
        return [listener.play(track).seq for _ in range(6)]

    with ThreadPoolExecutor(len(listeners)) as pool:
        seqs = list(pool.map(stream, listeners))
    assert seqs == [[1, 2, 3, 4, 5, 6]] * len(listeners)
    for listener in listeners:
        rows = relay.payment_rows(listener.channel_id)
        assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert int(rows[-1]["total"]) == 6 * PLAY_PRICE == listener.state.voucher.total
        assert relay.channel(listener.channel_id)["seq"] == 6


def test_batch_endpoint_answers_each_payment_on_its_own(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    a = open_listener(relay_chain, relay)
    b = open_listener(relay_chain, relay, wallet="listener2")
    track = relay_chain.track(MODEM)
    a_plays = signed_plays(a, track, 3)
    b_plays = signed_plays(b, track, 3)

    def item(listener: Any, signed: Signed, ident: Any) -> dict[str, Any]:
        return {**signed.body, "channelId": cid_hex(listener), "id": ident}

    batch = [
        item(a, a_plays[0], "a1"),
        item(b, b_plays[0], "b1"),
        item(a, a_plays[1], "a2"),
        item(a, a_plays[2], 3),
        item(b, b_plays[2], "b3-gap"),
        item(b, b_plays[1], "b2"),
        item(a, a_plays[2], "a3-again"),
        item(a, a_plays[0], "a1-again"),
    ]  # accepted in this very batch, maybe not yet durable: still a duplicate
    http = relay.http()
    response = http.post("/payments/batch", json={"payments": batch})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["a1", "b1", "a2", 3, "b3-gap", "b2", "a3-again", "a1-again"]
    by_id = {r["id"]: r for r in results}
    for ident, seq in (("a1", 1), ("b1", 1), ("a2", 2), (3, 3), ("b2", 2)):
        assert by_id[ident]["ok"] and by_id[ident]["status"] == "accepted" and by_id[ident]["seq"] == seq, by_id[ident]
    gap = by_id["b3-gap"]
    assert gap["state"]["channelId"] == cid_hex(b) and gap["state"]["seq"] >= 1  # to resynchronise from
    assert {k: v for k, v in gap.items() if k != "state"} == {
        "id": "b3-gap",
        "ok": False,
        "error": {
            "code": "seq_gap",
            "message": gap["error"]["message"],
            "details": {"expected": "2", "got": "3"},
            "status": 409,
        },
    }
    assert by_id["a3-again"]["ok"] and by_id["a3-again"]["status"] == "duplicate"
    assert by_id["a1-again"]["ok"] and by_id["a1-again"]["status"] == "duplicate" and by_id["a1-again"]["seq"] == 1
    assert [r["seq"] for r in relay.payment_rows(a.channel_id)] == [1, 2, 3]  # type: ignore[arg-type]
    assert [r["seq"] for r in relay.payment_rows(b.channel_id)] == [1, 2]  # type: ignore[arg-type]
    # Schema errors reject the whole request; an empty batch is one.
    assert http.post("/payments/batch", json={"payments": []}).json()["error"]["code"] == "invalid_request"
    bad = http.post("/payments/batch", json={"payments": [{**item(b, b_plays[2], 1), "channelId": "0x12"}]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    ok = http.post("/payments/batch", json={"payments": [item(b, b_plays[2], "b3")]}).json()["results"]
    assert ok[0]["ok"] and ok[0]["seq"] == 3


def test_websocket_stream_pipelines_payments(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    plays = signed_plays(listener, relay_chain.track(MODEM), 10)
    url = relay.api.replace("http://", "ws://") + "/payments/stream"
    with ws_connect(url, open_timeout=10, close_timeout=5) as ws:
        for i, signed in enumerate(plays):  # all sent before any reply is read
            ws.send(json.dumps({**signed.body, "channelId": cid_hex(listener), "id": i}))
        replies = [json.loads(ws.recv(timeout=20)) for _ in plays]
        assert sorted(r["id"] for r in replies) == list(range(10))
        for reply in replies:
            assert reply["ok"] and reply["status"] == "accepted" and reply["seq"] == reply["id"] + 1, reply
        for i, signed in enumerate([plays[0], plays[5], plays[9]]):  # resubmitted, pipelined: duplicates
            ws.send(json.dumps({**signed.body, "channelId": cid_hex(listener), "id": f"again-{i}"}))
        again = sorted((json.loads(ws.recv(timeout=20)) for _ in range(3)), key=lambda r: r["id"])
        assert [(r["ok"], r["status"], r["seq"]) for r in again] == [
            (True, "duplicate", 1),
            (True, "duplicate", 6),
            (True, "duplicate", 10),
        ], again
        ws.send("{not json")
        garbled = json.loads(ws.recv(timeout=20))
        assert (
            garbled["ok"] is False
            and garbled["error"]["code"] == "invalid_request"
            and garbled["error"]["status"] == 422
        )
        ws.send(json.dumps({**plays[3].body, "channelId": cid_hex(listener), "id": "again"}))
        again = json.loads(ws.recv(timeout=20))
        assert again["id"] == "again" and again["ok"] and again["status"] == "duplicate" and again["seq"] == 4
        [late] = signed_plays(listener, relay_chain.track(MODEM), 1, state=plays[-1].state)
        [skip] = signed_plays(listener, relay_chain.track(MODEM), 1, state=late.state)
        ws.send(json.dumps({**skip.body, "channelId": cid_hex(listener), "id": "skip"}))
        gap = json.loads(ws.recv(timeout=20))
        assert gap.pop("state")["seq"] == 10
        assert gap == {
            "id": "skip",
            "ok": False,
            "error": {
                "code": "seq_gap",
                "message": gap["error"]["message"],
                "details": {"expected": "11", "got": "12"},
                "status": 409,
            },
        }
    assert [r["seq"] for r in relay.payment_rows(listener.channel_id)] == list(range(1, 11))  # type: ignore[arg-type]


def test_pipelined_streams_keep_their_order_from_the_first_payment(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A client pipelines a channel's first payments over the websocket: the first loads the channel, the rest
    queue behind it, and none may overtake another (a seq_gap here would be the relay's doing, not the client's).
    Several fresh channels, since each load is one chance to get the order wrong."""
    url = relay.api.replace("http://", "ws://") + "/payments/stream"
    for _ in range(5):
        listener = open_listener(relay_chain, relay)
        plays = signed_plays(listener, relay_chain.track(MODEM), 25)
        with ws_connect(url, open_timeout=10, close_timeout=5) as ws:
            for i, signed in enumerate(plays):
                ws.send(json.dumps({**signed.body, "channelId": cid_hex(listener), "id": i}))
            replies = [json.loads(ws.recv(timeout=20)) for _ in plays]
        refused = [r for r in replies if not r["ok"]]
        assert not refused, refused[:3]
        assert sorted(r["seq"] for r in replies) == list(range(1, 26))


def _read_sse(lines: Iterator[str], want: int, kind: str = "payment") -> list[dict[str, Any]]:
    """Read Server-Sent Events from an open stream's lines until `want` events of `kind` arrived."""
    events: list[dict[str, Any]] = []
    event_type = None
    for line in lines:
        if line.startswith("event: "):
            event_type = line.removeprefix("event: ")
        elif line.startswith("data: ") and event_type == kind:
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == want:
                return events
    raise AssertionError(f"the stream ended after {events}")


def test_server_sent_events_deliver_payments(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    other = open_listener(relay_chain, relay, wallet="listener2")
    track = relay_chain.track(MODEM)
    ada = relay_chain.chain.address("ada")
    timeout = httpx.Timeout(10.0, read=15.0)
    subscribers = len(relay.service.bus._subscribers)
    with (
        httpx.Client(base_url=relay.api, timeout=timeout) as http,
        http.stream(
            "GET",
            "/events",
            params={
                "channel": cid_hex(listener),
                "readToken": relay.read_token(listener.session_key, listener.address),
            },
        ) as by_channel,
        http.stream(
            "GET", "/events", params={"payee": ada, "readToken": relay.read_token(relay_chain.chain.key("ada"))}
        ) as by_payee,
    ):
        assert by_channel.status_code == 200 and by_channel.headers["content-type"].startswith("text/event-stream")
        channel_lines, payee_lines = by_channel.iter_lines(), by_payee.iter_lines()
        assert next(channel_lines) == ": connected"
        assert next(payee_lines) == ": connected"
        other.play(track)  # another channel: not on the channel's stream
        listener.play(track)
        paid = listener.tip(777, artist=ada, message="encore")
        mine = _read_sse(channel_lines, 2)
        assert [e["seq"] for e in mine] == [1, 2] and {e["channelId"] for e in mine} == {cid_hex(listener)}
        assert mine[0]["kind"] == "play" and int(mine[0]["amount"]) == PLAY_PRICE
        assert mine[1]["kind"] == "tip" and mine[1]["memo"] == "encore" and mine[1]["payments"] == {ada: "777"}
        assert int(mine[1]["total"]) == paid.total
        to_ada = _read_sse(payee_lines, 3)  # ada is paid by both channels' plays and by the tip
        # ada sees what it was paid, for what, and a tip's message; nothing of the listeners (no channel, payer or
        # totals: docs/API.md, live events)
        assert [(e["kind"], e["payee"]) for e in to_ada] == [("play", ada), ("play", ada), ("tip", ada)]
        assert to_ada[2]["amount"] == "777" and to_ada[2]["memo"] == "encore"
        assert not {"channelId", "seq", "total", "remaining", "spentToday", "payments"} & {k for e in to_ada for k in e}
    # Subscriptions end with their connections (no queue is left filling up for nobody).
    wait_until(lambda: len(relay.service.bus._subscribers) == subscribers, what="the subscriptions to be dropped")


def test_a_batch_is_applied_in_order_when_its_first_payment_makes_the_relay_read_the_chain(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """[seq 3 paid by a top-up the relay has not seen yet, seq 4]: the first makes the relay re-read the chain; the
    second waits for it instead of being judged against the old head (it was seq_gap)."""
    relay = make_relay(poll_interval=3_600)  # the watcher polls once, at start: only the re-read sees the top-up
    listener = open_listener(relay_chain, relay, deposit=2 * PLAY_PRICE)
    track = relay_chain.track(MODEM)
    plays = signed_plays(listener, track, 4)
    http = relay.http()
    cid = cid_hex(listener)
    for signed in plays[:2]:
        assert http.post(f"/channels/{cid}/payments", json=signed.body).status_code == 200
    listener.top_up(2 * PLAY_PRICE)
    batch = [{**signed.body, "channelId": cid, "id": signed.seq} for signed in plays[2:]]
    results = http.post("/payments/batch", json={"payments": batch}).json()["results"]
    assert [(r["id"], r["ok"], r.get("seq")) for r in results] == [(3, True, 3), (4, True, 4)], results
    assert int(relay.channel(listener.channel_id)["remaining"]) == 0  # type: ignore[arg-type]


def test_a_strangers_refused_payment_does_not_hold_up_the_channels_own_payments(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """Anyone can send a payment with a garbage signature; it is refused unauthorized_signer after the relay
    re-reads the channel from the chain (the signer could be a key just authorised). While that read hangs (a slow
    or unreachable node), the listener's own next payment is still decided: the stranger's re-read blocks nobody."""
    relay = make_relay(poll_interval=3_600)
    listener = open_listener(relay_chain, relay)
    first, honest = signed_plays(listener, relay_chain.track(MODEM), 2)
    http = relay.http()
    cid = cid_hex(listener)
    assert http.post(f"/channels/{cid}/payments", json=first.body).status_code == 200  # the relay knows the channel
    channels = relay.service.channels
    reading, release = threading.Event(), threading.Event()
    get_channel = channels.get_channel

    def slow_get_channel(channel_id: bytes, *block: Any) -> Any:
        reading.set()
        release.wait(30)  # the node does not answer until the test lets it
        return get_channel(channel_id, *block)

    digest = honest.state.voucher.digest(listener.channels.domain)
    forged = {**honest.body, "signature": test_key("a stranger").sign(digest).to_hex()}  # a valid, foreign signature
    with ThreadPoolExecutor(1) as pool:
        channels.get_channel = slow_get_channel
        stranger = pool.submit(http.post, f"/channels/{cid}/payments", json=forged)
        assert reading.wait(10), "the stranger's payment made the relay read the chain"
        try:
            answer = httpx.post(f"{relay.api}/channels/{cid}/payments", json=honest.body, timeout=10)
            assert answer.status_code == 200 and answer.json()["seq"] == 2, answer.text
        finally:
            release.set()
            channels.get_channel = get_channel
        assert stranger.result(30).json()["error"]["code"] == "unauthorized_signer"
