"""The stranger on the relay's HTTP port: no key, no channel of its own, only requests (security review, issue 8,
findings 2 and 8). It tries to kill the relay with one request, to keep it from settling a closing channel, to
make it answer 500, to hold its memory and descriptors, and to lock a listener's caps.

The crash cases run against real `chainstream relay` processes (on anvil); the rest against the in-process relay
on the embedded chain, whose interpreter has the raised recursion limit web3's import leaves behind.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from chainstream.ledger import charge_tip
from chainstream.protocol.eip712 import caps_struct_hash
from tests.integration.relay_fixtures import (
    MODEM,
    InProcessRelay,
    RelayChain,
    RelayProcess,
    cid_hex,
    free_port,
    open_listener,
    rejected,
    relay_key_hex,
    sign_charge,
    signed_plays,
    wait_until,
)

#: the review's body: 200 KB of `[`, which made json.loads overflow the C stack under a recursion limit of 100,000
NESTED = b"[" * 200_000
LAZY = {"CHAINSTREAM_SETTLE_MIN_VALUE": str(10**30), "CHAINSTREAM_SETTLE_MAX_AGE": "1000000000"}
ZERO32 = "0x" + "00" * 32
JSON = {"content-type": "application/json"}  # FastAPI parses a body as JSON only with this header


def raw_request(port: int, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it (AssertionError if it never does
    within `timeout`: a connection the server holds open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            raise AssertionError(f"the relay held the connection open; received so far: {out[:300]!r}") from None
        return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> dict[str, Any]:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def stream_url(relay: Any) -> str:
    return str(relay.api).replace("http://", "ws://") + "/payments/stream"


# ------------------------------------------------------------------------------ finding 2: one request kills it


def test_nested_brackets_on_every_body_endpoint_are_400_and_the_relay_process_stays_up(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """The review's crash: 200 KB of `[` POSTed/PUT to payments, batch, close and caps of a `chainstream relay`."""
    relay_process.start(**LAZY)
    cid = "0x" + "ab" * 32
    for method, path in (
        ("POST", f"/channels/{cid}/payments"),
        ("POST", "/payments/batch"),
        ("POST", f"/channels/{cid}/close"),
        ("PUT", f"/channels/{cid}/caps"),
    ):
        try:
            response = httpx.request(
                method, relay_process.api + path, content=NESTED, headers={"content-type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise AssertionError(f"{method} {path} killed the relay: {exc!r}") from exc
        rejected(response, 400, "too_deeply_nested")
        assert relay_process.proc is not None and relay_process.proc.poll() is None
    # The same nesting in UTF-16 (which json.loads also reads), hidden from a byte scan behind an escaped quote.
    hidden = ('["\\"", ' + "[" * 5_000 + '"y"' + "]" * 5_000 + ', "z"]').encode("utf-16-le")
    response = httpx.post(
        f"{relay_process.api}/channels/{cid}/payments", content=hidden, headers={"content-type": "application/json"}
    )
    rejected(response, 422, "invalid_request")
    assert "UTF-8" in response.json()["error"]["message"]
    assert relay_process.health()["ok"]


def test_nested_brackets_are_400_on_a_relay_sharing_the_embedded_chains_interpreter(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The same body against a relay whose process imported eth-tester (recursion limit 100,000): the demo's case."""
    assert sys.getrecursionlimit() >= 100_000  # the condition of the attack holds in this process
    http = relay.http()
    response = http.post(
        f"/channels/0x{'ab' * 32}/payments", content=NESTED, headers={"content-type": "application/json"}
    )
    rejected(response, 400, "too_deeply_nested")
    nested_objects = b'{"a":' * 100_000  # objects too, and brackets inside strings do not count
    rejected(http.post("/payments/batch", content=nested_objects, headers=JSON), 400, "too_deeply_nested")
    assert http.get("/health/live").json() == {"ok": True}, http.get("/health").json()


def test_a_body_of_unclosed_escaped_quotes_is_refused_without_holding_the_event_loop(
    relay: InProcessRelay,
) -> None:
    """33 brackets (past the guard's fast path), then 2 MB of `"\\"`: a string scan that restarts at every unclosed
    quote takes hours on the event loop that answers every payment. It is refused at once (the 30 s client
    timeout only catches a hang) and the relay keeps answering."""
    http = relay.http()
    body = b"[" * 33 + b'"' + b'\\"' * 1_000_000
    rejected(http.post("/payments/batch", content=body, headers=JSON), 400, "too_deeply_nested")
    assert http.get("/health/live").json() == {"ok": True}, http.get("/health").json()


def test_nested_brackets_are_400_from_the_demo_process_on_the_embedded_chain(tmp_path: Any) -> None:
    """The same body against `chainstream demo` (a real process whose relay shares the embedded chain's interpreter)."""
    port = free_port()
    executable = Path(sys.executable).parent / "chainstream"
    with open(tmp_path / "demo.log", "wb") as log:
        demo = subprocess.Popen(
            [str(executable), "demo", "--listeners", "1", "--plays", "1", "--port", str(port), "--keep-serving"],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_until(
            lambda: demo.poll() is None and httpx.get(f"{api}/health", timeout=5).status_code == 200, timeout=120
        )
        response = httpx.post(
            f"{api}/channels/0x{'ab' * 32}/payments", content=NESTED, headers={"content-type": "application/json"}
        )
        rejected(response, 400, "too_deeply_nested")
        # alive and answering (liveness: readiness may dip while the demo's own plays and settlements run)
        assert demo.poll() is None and httpx.get(f"{api}/health/live", timeout=5).json() == {"ok": True}
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(timeout=30)


def test_the_relay_command_on_an_rpc_node_neither_imports_the_embedded_chain_nor_keeps_the_raised_recursion_limit(
    anvil_relay_chain: RelayChain, tmp_path: Any
) -> None:
    """What `chainstream relay` loads and sets up before serving, started and stopped in a fresh interpreter."""
    rc = anvil_relay_chain
    script = f"""
import asyncio, json, sys
import chainstream.cli
from chainstream.config import Settings
from chainstream.relay.server import build_served_app
settings = Settings(rpc_url={rc.node.url!r}, deployment_file={str(rc.deployment_file)!r},
                    database={str(tmp_path / "relay.db")!r}, relay_key={relay_key_hex(rc)!r})
app = build_served_app(settings)
relay = app.state.relay
async def start_and_stop():
    await relay.start()
    await relay.stop()
asyncio.run(start_and_stop())
print(json.dumps({{"limit": sys.getrecursionlimit(),
                   "loaded": sorted(m for m in ("eth_tester", "eth", "py_evm") if m in sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"limit": 1_000, "loaded": []}


def test_a_closing_channel_is_settled_before_a_restarted_relay_opens_its_port(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """The crash loop: the relay is down when the payer asks to close, and dies again as soon as it listens."""
    rc = anvil_relay_chain
    relay_process.start(**LAZY)
    listener = open_listener(rc, relay_process, deposit=10**17)
    for _ in range(3):
        listener.play(rc.track(MODEM))
    latest = listener.state.voucher  # type: ignore[union-attr]
    relay_process.kill()  # killed by the stranger's request
    listener.request_close()  # the payer starts the window while the relay is down
    assert listener.chain_state().settled == 0

    # From now on blocks are mined only by the loop below, and only while the relay's port is closed: whatever
    # the relay has mined by the time it listens, it did before opening its port.
    w3 = rc.w3
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    listening = threading.Event()

    def mine_until_listening() -> None:
        while not listening.is_set():
            try:
                socket.create_connection(("127.0.0.1", relay_process.port), timeout=1).close()
                listening.set()
                return
            except OSError:
                w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
                time.sleep(0.1)

    miner = threading.Thread(target=mine_until_listening, daemon=True)
    try:
        miner.start()
        relay_process.start(**LAZY)
        listening.wait(timeout=60)
        miner.join(timeout=30)
        assert listening.is_set()
        assert listener.chain_state().settled == latest.total, "the port opened before the settlement was mined"
    finally:
        listening.set()
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    wait_until(lambda: relay_process.channel(listener.channel_id)["settled"] == str(latest.total))  # type: ignore[arg-type]


# -------------------------------------------------------------------------- finding 8: 500s and unbounded costs


def test_caps_issued_at_2_63_or_far_ahead_of_the_relays_clock_is_refused_and_cannot_lock_the_caps(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The payer's own key signs caps dated 2^63 (a 500), then a century ahead (caps no later message can replace)."""
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    domain = listener.channels.domain

    def caps(issued_at: int) -> httpx.Response:
        digest = domain.digest(caps_struct_hash(listener.channel_id, 10**15, 0, issued_at))  # type: ignore[arg-type]
        body = {
            "dailyCap": str(10**15),
            "sessionCap": "0",
            "issuedAt": issued_at,
            "signature": listener.wallet.sign(digest).to_hex(),
        }
        return http.put(f"/channels/{cid}/caps", json=body)

    rejected(caps(2**63), 422, "invalid_request")
    rejected(caps(int(time.time()) + 100 * 365 * 86_400), 422, "caps_from_future")
    rejected(http.get(f"/channels/{cid}/caps/typed-data", params={"issuedAt": 2**63}), 422, "invalid_request")
    rejected(http.get(f"/channels/{cid}/caps/typed-data", params={"dailyCap": 2**300}), 422, "invalid_request")
    now = caps(int(time.time()))  # the listener can still set caps
    assert now.status_code == 200, now.text
    assert now.json()["dailyCap"] == str(10**15)


def test_history_before_2_63_is_422(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """GET history?before=2^63: past SQLite's integers (a 500)."""
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    owner = {"Authorization": f"ChainStream-Read {relay.read_token(listener.wallet)}"}
    history = f"/channels/{cid_hex(listener)}/history"
    rejected(http.get(history, params={"before": 2**63}, headers=owner), 422, "invalid_request")
    assert http.get(history, params={"before": 2**63 - 1}, headers=owner).status_code == 200


def test_lone_surrogates_in_a_tip_memo_or_a_batch_id_are_422(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """A correctly signed tip whose memo is "\\ud800" (valid JSON, not text), and a batch item id likewise."""
    listener = open_listener(relay_chain, relay)
    artist = relay_chain.chain.address("artist")
    signed = sign_charge(listener, charge_tip(10**12, artist=artist), {"kind": "tip", "artist": artist})
    signed.body["charge"]["amount"] = str(10**12)
    http = relay.http()
    body = {**signed.body, "charge": {**signed.body["charge"], "memo": "\ud800"}}
    headers = {"content-type": "application/json"}
    rejected(
        http.post(f"/channels/{cid_hex(listener)}/payments", content=json.dumps(body), headers=headers),
        422,
        "invalid_request",
    )
    item = {**signed.body, "channelId": cid_hex(listener), "id": "\udfff"}
    response = http.post("/payments/batch", content=json.dumps({"payments": [item]}), headers=headers)
    rejected(response, 422, "invalid_request")
    accepted = http.post(f"/channels/{cid_hex(listener)}/payments", json=signed.body)  # the same tip, untouched
    assert accepted.status_code == 200, accepted.text


def test_a_binary_websocket_frame_is_answered_and_the_stream_goes_on(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A binary frame on the payment stream (it killed the connection without a close frame)."""
    listener = open_listener(relay_chain, relay)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    with ws_connect(stream_url(relay), open_timeout=10, close_timeout=5) as ws:
        ws.send(b"\x00\x01 not text")
        reply = json.loads(ws.recv(timeout=20))
        assert reply == {
            "ok": False,
            "error": {"code": "binary_frame", "message": reply["error"]["message"], "details": {}, "status": 400},
        }
        ws.send(json.dumps({**play.body, "channelId": cid_hex(listener), "id": 1}))
        ack = json.loads(ws.recv(timeout=20))
        assert ack["ok"] and ack["status"] == "accepted", ack


def test_a_body_declared_at_64_mib_is_413_before_it_is_sent(relay: InProcessRelay) -> None:
    """Content-Length: 64 MiB, and nothing sent after the headers: the relay must not wait for (or buffer) it."""
    head = (
        f"POST /api/v1/payments/batch HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
    ).encode()
    response = raw_request(relay.port, head)
    assert status_of(response) == 413
    assert body_of(response)["error"]["code"] == "body_too_large"


def test_a_chunked_body_past_the_limit_is_413(relay: InProcessRelay) -> None:
    """A chunked body that grows past the limit (no Content-Length to refuse it by)."""

    def chunks() -> Any:
        piece = b'{"payments": [' + b" " * (256 * 1024)
        yield piece
        for _ in range(3 * 4 * 4):  # 3 MiB of spaces in all
            yield b" " * (64 * 1024)

    http = relay.http()
    rejected(http.post("/payments/batch", content=chunks(), headers=JSON), 413, "body_too_large")


def test_a_megabyte_invalid_field_is_refused_without_being_quoted_back(relay: InProcessRelay) -> None:
    """A 1 MB string where an integer belongs: the 422 used to quote the whole input back."""
    response = relay.http().post(f"/channels/0x{'ab' * 32}/payments", json={"seq": "x" * 1_000_000})
    rejected(response, 422, "invalid_request")
    assert len(response.content) < 10_000


def test_a_stalled_body_is_408_and_the_connection_closed(make_relay: Any) -> None:
    """Slowloris on the body: ten bytes of a promised hundred, then silence."""
    slow = make_relay(body_timeout=1.0)
    head = (
        b"POST /api/v1/payments/batch HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"payments'
    )
    response = raw_request(slow.port, head)
    assert status_of(response) == 408
    assert body_of(response)["error"]["code"] == "request_timeout"


def test_slow_or_silent_headers_and_oversized_messages_are_cut_off_by_the_relay_process(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """Slowloris on the headers, a connection that never speaks, and a 200 KB WebSocket message."""
    relay_process.start(CHAINSTREAM_HEADER_TIMEOUT="1", **LAZY)
    partial = b"GET /api/v1/health HTTP/1.1\r\nHost: relay\r\nX-Slow: 1"  # never finished
    response = raw_request(relay_process.port, partial)
    assert status_of(response) == 408, response
    silent = raw_request(relay_process.port, b"")  # connects, says nothing
    assert silent == b"" or status_of(silent) == 408, silent
    with ws_connect(stream_url(relay_process), open_timeout=10, close_timeout=5) as ws:
        ws.send(NESTED.decode())
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    assert relay_process.health()["ok"]


def test_method_not_allowed_names_the_allowed_methods(relay: InProcessRelay) -> None:
    """POST to a GET path, DELETE on caps: 405 must carry Allow (RFC 9110)."""
    http = relay.http()
    for method, path, allowed in (
        ("POST", "/health", "GET"),
        ("DELETE", f"/channels/0x{'ab' * 32}/caps", "PUT"),
        ("PATCH", f"/channels/0x{'ab' * 32}/close", "POST"),
    ):
        response = http.request(method, path)
        rejected(response, 405, "method_not_allowed")
        assert allowed in [m.strip() for m in response.headers["allow"].split(",")], response.headers


def test_a_close_request_nesting_objects_51_deep_is_400(relay: InProcessRelay) -> None:
    """Nested objects under a valid-looking close request key (objects count as much as arrays)."""
    body = '{"voucherDigest": "' + ZERO32 + '", "signature": ' + '{"x":' * 50 + "1" + "}" * 50 + "}"
    rejected(
        relay.http().post(f"/channels/0x{'ab' * 32}/close", content=body, headers={"content-type": "application/json"}),
        400,
        "too_deeply_nested",
    )
