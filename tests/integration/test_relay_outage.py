"""Node outages (issue 9, docs/API.md "Outages"): a real `chainstream relay` process whose anvil node is killed
(and later restarted from its dumped state) or frozen (SIGSTOP: a node that hangs).

Each test runs its own anvil: the session's node is shared by other tests and must never be stopped.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from websockets.sync.client import connect as ws_connect

from chainstream.chain.node import AnvilNode, anvil_binary
from chainstream.protocol import PrivateKey
from chainstream.sdk import Listener
from chainstream.sdk.gasless import open_request
from tests.integration.conftest import STABLE, _anvil_or_skip
from tests.integration.relay_fixtures import (
    MODEM,
    RelayChain,
    RelayProcess,
    _build,
    cid_hex,
    open_listener,
    signed_plays,
    wait_until,
)


@pytest.fixture
def own_anvil(tmp_path: Path) -> Iterator[RelayChain]:
    """A chain on an anvil node of this test's own (the test stops and restarts it)."""
    _anvil_or_skip()
    node = AnvilNode().start()
    try:
        rc = _build("anvil", node.web3())
        rc.node = node
        rc.deployment_file = tmp_path / "deployment.json"
        rc.chain.deployment.save(rc.deployment_file)
        yield rc
    finally:
        assert rc.node is not None
        process = rc.node._process
        if process is not None and process.poll() is None:
            os.kill(_node_pid(rc), signal.SIGCONT)  # a test that froze it
        rc.node.stop()


@pytest.fixture
def outage_relay(own_anvil: RelayChain, tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(own_anvil, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def _node_pid(rc: RelayChain) -> int:
    """The pid of the anvil binary itself: node_modules/.bin/anvil is a Node.js wrapper that spawns it (and only
    forwards SIGTERM/SIGINT), so kill -9 and SIGSTOP must reach the child."""
    assert rc.node is not None and rc.node._process is not None
    wrapper = rc.node._process.pid
    try:
        children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    except OSError:
        children = []
    return int(children[0]) if children else wrapper


def _item(body: dict[str, Any], channel_id: str, item_id: str) -> dict[str, Any]:
    return {**body, "channelId": channel_id, "id": item_id}


def _kill_node(rc: RelayChain) -> str:
    """kill -9 the node, after dumping its state (returned, for `_restart_node`)."""
    assert rc.node is not None and rc.node._process is not None
    state = rc.w3.provider.make_request("anvil_dumpState", [])["result"]
    os.kill(_node_pid(rc), signal.SIGKILL)
    rc.node._process.wait(timeout=10)  # the wrapper exits with its child
    return str(state)


def _restart_node(rc: RelayChain, state: str, workdir: Path) -> None:
    """A node on the same port again, starting from the state the killed one had (loaded before it serves: a
    node that came back empty and was loaded afterwards would show the relay a chain without its funds)."""
    assert rc.node is not None
    dump = workdir / "anvil-state.json"
    dump.write_bytes(gzip.decompress(bytes.fromhex(state.removeprefix("0x"))))
    rc.node._process = subprocess.Popen(
        [anvil_binary(), "--host", "127.0.0.1", "--port", str(rc.node.port), "--chain-id", str(rc.node.chain_id)]
        + ["--silent", "--accounts", str(rc.node.accounts), "--balance", "100000", "--load-state", str(dump)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            return bool(rc.w3.eth.chain_id == rc.node.chain_id)  # type: ignore[union-attr]
        except requests.ConnectionError:
            return False

    wait_until(answers, what="the node to answer again")


def test_node_killed_known_channels_pay_unknown_get_503_retry_after_batch_per_item_health_tells_node_back_recovers(
    own_anvil: RelayChain, outage_relay: RelayProcess, tmp_path: Path
) -> None:
    """The node dies under a running relay: payments within known deposits go on; whatever needs the node gets
    chain_unavailable with a retry hint (HTTP 503 + Retry-After, a batch per item, a WebSocket reply, never
    silence); /health tells the truth; one log line per state change, no traceback; once the node is back the
    relay is ready again without a restart and settles what it accepted during the outage."""
    rc = own_anvil
    relay = outage_relay.start(CHAINSTREAM_CHAIN_BACKOFF_MAX="0.4", CHAINSTREAM_SETTLE_MAX_GAS_FRACTION="1e12")
    track = rc.track(MODEM)
    listener = open_listener(rc, relay)
    listener.play(track)  # the relay holds the channel now
    cid = cid_hex(listener)
    plays = signed_plays(listener, track, 3)
    stranger = "0x" + os.urandom(32).hex()  # a channel the relay never saw: only the node can say what it is
    ready = httpx.get(f"{relay.api}/health/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["ok"] is True, ready.text

    state = _kill_node(rc)
    http = relay.http()

    # HTTP, a whole request that needs the node: 503 + Retry-After, promptly
    response = http.post(f"/channels/{stranger}/payments", json=plays[0].body)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "chain_unavailable"
    assert int(response.headers["Retry-After"]) >= 1

    # a batch: the known channel's item is accepted (and stored), the stranger's is chain_unavailable
    batch = http.post(
        "/payments/batch", json={"payments": [_item(plays[0].body, cid, "mine"), _item(plays[0].body, stranger, "x")]}
    )
    assert batch.status_code == 200, batch.text
    mine, theirs = batch.json()["results"]
    assert mine["ok"] is True and mine["status"] == "accepted" and mine["seq"] == plays[0].seq, mine
    assert theirs["ok"] is False and theirs["error"]["code"] == "chain_unavailable", theirs
    assert theirs["error"]["status"] == 503 and theirs["error"]["retryAfter"] >= 1
    assert [r["seq"] for r in relay.payment_rows(listener.channel_id)] == [1, 2]  # type: ignore[arg-type]

    # the WebSocket: a reply for each message, the one needing the node included
    with ws_connect(relay.url.replace("http", "ws") + "/api/v1/payments/stream", open_timeout=10) as ws:
        ws.send(json.dumps(_item(plays[1].body, stranger, "s1")))
        ws.send(json.dumps(_item(plays[1].body, cid, "k1")))
        replies = {r["id"]: r for r in (json.loads(ws.recv(timeout=15)) for _ in range(2))}
    assert replies["s1"]["ok"] is False and replies["s1"]["error"]["code"] == "chain_unavailable", replies
    assert replies["s1"]["error"]["retryAfter"] >= 1
    assert replies["k1"]["ok"] is True and replies["k1"]["seq"] == plays[1].seq, replies

    # health: live, not ready, and /health says so (with the reason)
    assert httpx.get(f"{relay.api}/health/live", timeout=10).json() == {"ok": True}
    not_ready = wait_until(
        lambda: (r := httpx.get(f"{relay.api}/health/ready", timeout=10)).status_code == 503 and r,
        what="/health/ready to turn 503",
    )
    assert not_ready.json()["error"]["code"] == "not_ready"
    assert "chain node unreachable" in not_ready.json()["reasons"][0]
    assert int(not_ready.headers["Retry-After"]) >= 1
    summary = relay.health()
    assert summary["ok"] is False and summary["chain"]["reachable"] is False, summary

    # several backed-off polls and settlement rounds later: one line for the outage, no tracebacks
    time.sleep(2.0)  # lets the watcher and the settler fail a few more times (what the log must not show)
    log = relay.log
    assert log.count("chain node lost") == 1, log
    assert "Traceback" not in log, log

    _restart_node(rc, state, tmp_path)
    wait_until(lambda: relay.health()["ok"], timeout=30, what="the relay to be ready again")
    assert httpx.get(f"{relay.api}/health/ready", timeout=10).status_code == 200
    assert relay.log.count("chain node back") == 1, relay.log
    # what was accepted during the outage is settled once the node is back
    listener.state = plays[1].state
    wait_until(
        lambda: rc.chain.channels.get_channel(listener.channel_id).settled >= plays[1].state.voucher.total,  # type: ignore[arg-type]
        timeout=30,
        what="the outage's payments to settle",
    )
    assert "Traceback" not in relay.log, relay.log


def test_node_hangs_websocket_payment_needing_it_answered_chain_unavailable_within_the_rpc_timeout(
    own_anvil: RelayChain, outage_relay: RelayProcess
) -> None:
    """The node stops answering (SIGSTOP: connections open, nothing comes back): a WebSocket payment that needs it
    is answered chain_unavailable once the relay's rpc_timeout passes, not left waiting."""
    rc = own_anvil
    relay = outage_relay.start(CHAINSTREAM_RPC_TIMEOUT="1")
    track = rc.track(MODEM)
    listener = open_listener(rc, relay)
    body = signed_plays(listener, track, 1)[0].body
    stranger = "0x" + os.urandom(32).hex()
    node_pid = _node_pid(rc)
    os.kill(node_pid, signal.SIGSTOP)
    try:
        with ws_connect(relay.url.replace("http", "ws") + "/api/v1/payments/stream", open_timeout=10) as ws:
            ws.send(json.dumps(_item(body, stranger, "hung")))
            reply = json.loads(ws.recv(timeout=15))  # the bound under test is the relay's 1 s, far below this
        assert reply["id"] == "hung" and reply["ok"] is False, reply
        assert reply["error"]["code"] == "chain_unavailable" and reply["error"]["status"] == 503, reply
    finally:
        os.kill(node_pid, signal.SIGCONT)
    wait_until(lambda: relay.health()["ok"], timeout=30, what="the relay to be ready again")


def test_node_hangs_gas_free_requests_do_not_stall_the_payments_beside_them(
    own_anvil: RelayChain, outage_relay: RelayProcess
) -> None:
    """A signed gas-free open reaches a relay whose node hangs: the relay's checks before spending gas ask no node
    (the deadline is judged by the chain clock it carries), and the submission waits off the event loop, so a
    payment on a known channel sent after it is answered while the open is still waiting for the node. (Before
    the fix the deadline check read the latest block on the event loop: every payment waited out the open's
    RPC timeout, and the open was answered first.)"""
    rc = own_anvil
    relay = outage_relay.start(CHAINSTREAM_RPC_TIMEOUT="20")
    track = rc.track(MODEM)
    payer = open_listener(rc, relay)
    payer.play(track)  # the relay holds this channel: its payments need no node
    play = signed_plays(payer, track, 1)[0]
    newcomer_key = PrivateKey.generate()
    rc.chain.token.mint(rc.chain.tx("stranger"), newcomer_key.address, 10 * STABLE)
    newcomer = Listener(newcomer_key, w3=rc.w3, deployment=rc.chain.deployment, relay=relay.client())
    stable = rc.chain.deployment.stablecoin
    assert stable is not None
    _, open_body = open_request(newcomer, 5 * STABLE, stable, max_fee=None, session_ttl=3600, salt=None)

    opened: dict[str, Any] = {}

    def send_open() -> None:
        with httpx.Client(timeout=120) as client:
            opened["response"] = client.post(f"{relay.api}/onboard/open", json=open_body)

    node_pid = _node_pid(rc)
    os.kill(node_pid, signal.SIGSTOP)
    try:
        sender = threading.Thread(target=send_open)
        sender.start()
        time.sleep(1.0)  # lets the open reach its handler first (no timing is asserted)
        response = relay.http().post(f"/channels/{cid_hex(payer)}/payments", json=play.body)
        assert sender.is_alive() and "response" not in opened, "the open was answered before the payment"
        assert response.status_code == 200, response.text
    finally:
        os.kill(node_pid, signal.SIGCONT)
    sender.join(timeout=120)
    assert "response" in opened and opened["response"].status_code in (200, 503), opened
    assert "Traceback" not in relay.log, relay.log
