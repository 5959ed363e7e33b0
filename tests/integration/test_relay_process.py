"""The relay as a real process (`chainstream relay`) on anvil: kill -9 and restart, outbox crash recovery, the
watchtower against a stale unilateral close (with time travel), block confirmations, caps across restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound

from chainstream.chain.contracts import settle_entry
from chainstream.chain.node import advance_time
from chainstream.chain.transactions import TxSender
from chainstream.errors import ChainError
from chainstream.ledger import charge_play
from chainstream.protocol import Signature, SignedVoucher
from chainstream.protocol.eip712 import caps_struct_hash
from chainstream.sdk import Listener, RelayError
from chainstream.store import SqliteStore
from tests.integration.conftest import CHALLENGE_PERIOD
from tests.integration.relay_fixtures import (
    MODEM,
    OWN,
    PLAY_PRICE,
    RelayChain,
    RelayProcess,
    Signed,
    cid_hex,
    free_port,
    open_listener,
    play_spec,
    relay_key_hex,
    sign_charge,
    wait_until,
)

pytestmark = pytest.mark.anvil

# Settle only when asked (the watchtower asks), or as soon as anything is unsettled.
LAZY = {"CHAINSTREAM_SETTLE_MIN_VALUE": str(10**30), "CHAINSTREAM_SETTLE_MAX_AGE": "1000000000"}
EAGER = {
    "CHAINSTREAM_SETTLE_MIN_VALUE": "1",
    "CHAINSTREAM_SETTLE_MAX_AGE": "300",
    "CHAINSTREAM_SETTLE_MAX_GAS_FRACTION": "1e12",  # whatever the gas costs: these tests settle single plays
}


def settled_logs(rc: RelayChain, channel_id: bytes) -> list[Any]:
    return list(
        rc.chain.channels.contract.events.ChannelSettled().get_logs(
            from_block=rc.chain.deployment.deploy_block, argument_filters={"channelId": channel_id}
        )
    )


def mixed_plays(listener: Listener, rc: RelayChain, count: int) -> list[Signed]:
    """Plays alternating a flat-priced track and a stream-to-own one (whose price depends on the play count,
    so a relay that rebuilt its ledger wrongly after a restart would price the next play differently)."""
    out: list[Signed] = []
    state = listener.state
    for i in range(count):
        track = rc.track(MODEM if i % 2 else OWN)
        signed = sign_charge(listener, charge_play(state, listener.listing(track)), play_spec(track), state=state)
        out.append(signed)
        state = signed.state
    return out


def test_kill_9_loses_no_acknowledged_voucher_and_settles_after_restart(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    rc = anvil_relay_chain
    relay_process.start(**LAZY)
    listeners = [open_listener(rc, relay_process, wallet=w, deposit=10**18) for w in ("listener", "listener2")]
    sequences = [mixed_plays(listener, rc, 400) for listener in listeners]
    acked: list[list[int]] = [[] for _ in listeners]
    failures: list[BaseException] = []

    def pay(i: int) -> None:
        with httpx.Client(base_url=relay_process.api, timeout=10) as http:
            for signed in sequences[i]:
                try:
                    response = http.post(f"/channels/{cid_hex(listeners[i])}/payments", json=signed.body)
                except httpx.TransportError:
                    return  # the relay is gone
                if response.status_code != 200:
                    failures.append(AssertionError(response.text))
                    return
                acked[i].append(response.json()["seq"])

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(len(listeners))]
    for t in threads:
        t.start()
    wait_until(lambda: all(len(a) >= 15 for a in acked), timeout=60, what="payments to flow")
    relay_process.kill()  # mid-stream: requests are in flight
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures
    assert all(len(a) < 400 for a in acked), "the relay was killed after everything was paid; nothing in flight"

    # Every acknowledged voucher is in the database (and maybe some that were stored but not yet answered).
    stored: list[int] = []
    for listener, seqs, signed in zip(listeners, acked, sequences, strict=True):
        assert seqs == list(range(1, len(seqs) + 1))
        rows = relay_process.payment_rows(listener.channel_id)  # type: ignore[arg-type]
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        assert len(rows) >= len(seqs)
        for row in rows:
            expected = signed[row["seq"] - 1].state.voucher
            assert int(row["total"]) == expected.total
            assert bytes(row["digest"]) == expected.digest(listener.channels.domain)
        stored.append(len(rows))

    # Restarted on the same database: the channels resume exactly where the database says, and settle.
    relay_process.start(**EAGER)
    for listener, n, signed in zip(listeners, stored, sequences, strict=True):
        summary = relay_process.channel(listener.channel_id)  # type: ignore[arg-type]
        assert summary["seq"] == n and int(summary["spent"]) == signed[n - 1].state.voucher.total
        http = relay_process.http()
        if n > 1:
            assert (
                http.post(f"/channels/{cid_hex(listener)}/payments", json=signed[n - 2].body).json()["status"]
                == "duplicate"
            )
        for more in signed[n : n + 3]:
            ack = http.post(f"/channels/{cid_hex(listener)}/payments", json=more.body).json()
            assert ack["status"] == "accepted" and ack["seq"] == more.seq, ack
    for listener, n, signed in zip(listeners, stored, sequences, strict=True):
        total = signed[n + 2].state.voucher.total
        wait_until(lambda: listener.chain_state().settled == total, what="settlement after the restart")
        wait_until(
            lambda: relay_process.channel(listener.channel_id)["settled"] == str(total),  # type: ignore[arg-type]
            what="the relay to record its settlement",
        )
        credited = listener.settled_state().credited  # type: ignore[union-attr]
        assert credited == signed[n + 2].state.voucher.amounts


@pytest.mark.parametrize("crash", ["signed_never_broadcast", "mined_never_recorded"])
def test_outbox_recovery_settles_exactly_once(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain, crash: str
) -> None:
    rc = anvil_relay_chain
    relay_process.start(**LAZY)
    listener = open_listener(rc, relay_process, deposit=10**17)
    track = rc.track(MODEM)
    for _ in range(3):
        listener.play(track)
    relay_process.kill()
    cid = listener.channel_id
    assert cid is not None

    # What the settler had done before the crash: sign a settleBatch and write it to the outbox ('signed')...
    store = SqliteStore(relay_process.database)
    latest = store.latest_payment(cid)
    assert latest is not None and latest.seq == 3
    sender = TxSender(rc.w3, rc.chain.key("relay"))
    entry = settle_entry(SignedVoucher(latest.voucher, Signature.from_bytes(latest.signature)), ())
    tx = sender.build(rc.chain.channels.contract.functions.settleBatch([entry]), action="settleBatch")
    tx["gas"] = int(tx["gas"] * 1.25) + 50_000
    tx["nonce"] = rc.w3.eth.get_transaction_count(sender.address, "pending")
    signed = Account.sign_transaction(tx, sender.account.key)
    outbox_id = store.add_outbox(
        "settleBatch", tx["nonce"], bytes(signed.hash), bytes(signed.raw_transaction), {"channels": [cid_hex(listener)]}
    )
    if crash == "mined_never_recorded":  # ...and broadcast it, and it was mined, but the receipt was never read
        rc.w3.eth.send_raw_transaction(signed.raw_transaction)
        rc.w3.eth.wait_for_transaction_receipt(signed.hash)
        store.update_outbox(outbox_id, "sent")
        assert listener.chain_state().settled == latest.voucher.total
    else:
        with pytest.raises(TransactionNotFound):
            rc.w3.eth.get_transaction(HexBytes(signed.hash))
        assert listener.chain_state().settled == 0
    store.close()

    relay_process.start(**EAGER)
    wait_until(
        lambda: relay_process.rows("SELECT status FROM outbox WHERE id=?", (outbox_id,))[0]["status"] == "confirmed",
        what="the outbox row to be confirmed",
    )
    assert rc.w3.eth.get_transaction_receipt(HexBytes(signed.hash))["status"] == 1
    assert listener.chain_state().settled == latest.voucher.total
    wait_until(lambda: relay_process.channel(cid)["settled"] == str(latest.voucher.total), what="settled recorded")
    # The relay goes on settling with the right nonce and prevAmounts: one more play, one more settlement.
    paid = listener.play(track)
    wait_until(lambda: listener.chain_state().settled == paid.total, what="the next settlement")
    logs = settled_logs(rc, cid)
    assert [int(log["args"]["settled"]) for log in logs] == [latest.voucher.total, paid.total]
    assert logs[0]["transactionHash"] == HexBytes(signed.hash)
    outbox = wait_until(
        lambda: (
            (rows := relay_process.rows("SELECT id, status, tx_hash FROM outbox ORDER BY id"))
            and all(r["status"] == "confirmed" for r in rows)
            and rows
        ),
        what="both outbox rows confirmed",
    )
    assert len(outbox) == 2
    assert bytes(outbox[0]["tx_hash"]) == bytes(signed.hash)


def test_watchtower_defeats_a_stale_unilateral_close(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    rc = anvil_relay_chain
    relay_process.start(**LAZY)
    deposit = 10**17
    listener = open_listener(rc, relay_process, deposit=deposit)
    track = rc.track(MODEM)
    listener.play(track)
    listener.play(track)
    old = SignedVoucher(listener.state.voucher, listener.signatures[2])  # type: ignore[union-attr]
    for _ in range(4):
        listener.play(track)
    latest = listener.state.voucher  # type: ignore[union-attr]
    assert latest.total == 6 * PLAY_PRICE and listener.chain_state().settled == 0

    # The listener tries to walk away having paid for two plays of six: settling the old voucher is refused
    # (only the relay settles an open channel), so it asks to close, hoping the relay is not watching.
    with pytest.raises(ChainError, match="SettleNotAllowed"):
        listener.settle_self(old)
    closes_at = listener.request_close()
    assert closes_at > rc.chain.now()
    wait_until(
        lambda: listener.chain_state().settled == latest.total, what="the watchtower to settle the latest voucher"
    )
    summary = wait_until(
        lambda: (
            (s := relay_process.channel(listener.channel_id))["status"] == "closing"  # type: ignore[arg-type]
            and s["settled"] == str(latest.total)
            and s
        ),
        what="the relay to record it",
    )
    assert summary["closesAt"] == closes_at
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.code == "channel_not_open" and info.value.status == 409

    with pytest.raises(ChainError) as window:  # still inside the window: no withdrawal yet
        listener.withdraw()
    assert window.value.reason == "ChannelWindowNotOver"
    advance_time(rc.w3, CHALLENGE_PERIOD + 1)
    before = rc.w3.eth.get_balance(listener.address)
    refund = listener.withdraw()
    assert refund == deposit - latest.total
    closed = rc.chain.channels.contract.events.ChannelClosed().get_logs(
        from_block=rc.chain.deployment.deploy_block, argument_filters={"channelId": listener.channel_id}
    )
    assert [(int(e["args"]["settled"]), int(e["args"]["refund"]), e["args"]["cooperative"]) for e in closed] == [
        (latest.total, deposit - latest.total, False)
    ]
    assert 0 < before + refund - rc.w3.eth.get_balance(listener.address) < 10**16  # the withdraw's gas
    assert sum(listener.channels.claimable(p) for p in latest.payees) == latest.total
    wait_until(
        lambda: relay_process.channel(listener.channel_id)["status"] == "closed",  # type: ignore[arg-type]
        what="the relay to see the close",
    )


def test_the_watcher_waits_for_confirmations(relay_process: RelayProcess, anvil_relay_chain: RelayChain) -> None:
    rc = anvil_relay_chain
    relay_process.start(CHAINSTREAM_CONFIRMATIONS="2", **LAZY)
    listener = open_listener(rc, relay_process, deposit=10**17)
    # The relay acts on the opening only once it has two confirmations (a reorg could still drop it).
    with pytest.raises(RelayError) as unconfirmed:
        listener.play(rc.track(MODEM))
    assert unconfirmed.value.code == "channel_unconfirmed"
    for _ in range(2):
        rc.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    for _ in range(3):
        listener.play(rc.track(MODEM))
    total = listener.state.voucher.total  # type: ignore[union-attr]
    listener.request_close()
    block = rc.w3.eth.block_number

    def watched_up_to(n: int) -> bool:
        processed = relay_process.health()["block"]
        assert processed <= n, f"the watcher processed block {processed}, beyond {n}"
        return bool(processed == n)

    wait_until(lambda: watched_up_to(block - 2), what="the watcher to reach head - 2")
    assert relay_process.channel(listener.channel_id)["status"] == "open"  # type: ignore[arg-type]
    assert listener.chain_state().settled == 0
    rc.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    wait_until(lambda: watched_up_to(block - 1), what="the watcher to reach head - 2")
    assert relay_process.channel(listener.channel_id)["status"] == "open"  # type: ignore[arg-type]
    assert listener.chain_state().settled == 0
    rc.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    # Two confirmations: the close is acted on.
    wait_until(lambda: listener.chain_state().settled == total, what="the watchtower after two confirmations")
    wait_until(
        lambda: relay_process.channel(listener.channel_id)["status"] == "closing",  # type: ignore[arg-type]
        what="the relay to mark the channel closing",
    )


def test_caps_survive_a_restart_and_cannot_be_replayed(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    rc = anvil_relay_chain
    relay_process.start(**LAZY)
    listener = open_listener(rc, relay_process, deposit=10**17)
    cid = listener.channel_id
    assert cid is not None

    def caps(daily: int, issued_at: int) -> dict[str, Any]:
        digest = listener.channels.domain.digest(caps_struct_hash(cid, daily, 0, issued_at))
        return {
            "dailyCap": str(daily),
            "sessionCap": "0",
            "issuedAt": issued_at,
            "signature": listener.session_key.sign(digest).to_hex(),
        }

    loose, tight = caps(100 * PLAY_PRICE, 1_000), caps(2 * PLAY_PRICE, 2_000)
    http = relay_process.http()
    assert http.put(f"/channels/{cid_hex(listener)}/caps", json=loose).status_code == 200
    assert http.put(f"/channels/{cid_hex(listener)}/caps", json=tight).status_code == 200
    assert http.put(f"/channels/{cid_hex(listener)}/caps", json=loose).json()["error"]["code"] == "stale_caps"
    listener.play(rc.track(MODEM))

    relay_process.kill()
    relay_process.start()
    http = relay_process.http()
    summary = relay_process.channel(cid)
    assert summary["dailyCap"] == str(2 * PLAY_PRICE) and summary["spentToday"] == str(PLAY_PRICE)
    # Whoever saw the listener's earlier, looser caps cannot bring them back after a restart.
    replay = http.put(f"/channels/{cid_hex(listener)}/caps", json=loose)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "stale_caps", replay.text
    listener.play(rc.track(MODEM))
    with pytest.raises(RelayError) as info:
        listener.play(rc.track(MODEM))
    assert info.value.code == "daily_cap_exceeded" and info.value.status == 402


def test_no_gas_is_spent_on_a_window_that_is_over(relay_process: RelayProcess, anvil_relay_chain: RelayChain) -> None:
    """The relay was down for a channel's whole close window: the listener's close stands (its risk model), and
    the relay, back up, must not pay for settlements the contract can only skip, round after round. A second
    channel shows that rounds do run and settle what can be settled."""
    rc = anvil_relay_chain
    relay_process.start(**LAZY)
    doomed = open_listener(rc, relay_process, deposit=10**17)
    doomed.play(rc.track(MODEM))
    doomed.play(rc.track(MODEM))
    relay_process.kill()
    doomed.request_close()
    advance_time(rc.w3, CHALLENGE_PERIOD + 1)

    relay_process.start(**EAGER)
    witness = open_listener(rc, relay_process, wallet="listener2", deposit=10**17)
    for _ in range(2):  # two settlement rounds at least, each after the relay knew the window was over
        paid = witness.play(rc.track(MODEM))
        wait_until(lambda: witness.chain_state().settled == paid.total, what="the witness channel's settlement")
        assert relay_process.channel(doomed.channel_id)["status"] == "closing"  # type: ignore[arg-type]
    batches = [
        json.loads(r["payload"])["channels"] for r in relay_process.rows("SELECT payload FROM outbox ORDER BY id")
    ]
    assert batches and all(channels == [cid_hex(witness)] for channels in batches), batches
    assert doomed.chain_state().settled == 0
    assert doomed.withdraw() == 10**17  # nothing was settled in the window: the whole deposit goes back
    wait_until(
        lambda: relay_process.channel(doomed.channel_id)["status"] == "closed",  # type: ignore[arg-type]
        what="the relay to see the withdrawal",
    )


def test_a_second_relay_on_the_same_database_is_refused_with_a_message(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """Two relays on one database would each keep the channels' state in memory and send from the same key:
    `chainstream relay` refuses to start next to a running one, in one line, and the first is unharmed."""
    relay_process.start()
    assert relay_process.proc is not None
    args = [
        str(Path(sys.executable).parent / "chainstream"),
        "relay",
        "--rpc-url",
        anvil_relay_chain.node.url,  # type: ignore[union-attr]
        "--deployment",
        str(anvil_relay_chain.deployment_file),
        "--database",
        str(relay_process.database),
        "--port",
        str(free_port()),
    ]
    second = subprocess.run(
        args,
        env={**os.environ, "CHAINSTREAM_RELAY_KEY": relay_key_hex(anvil_relay_chain)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = second.stdout + second.stderr
    assert second.returncode == 1, output
    assert f"another relay instance (pid {relay_process.proc.pid}) is using {relay_process.database}" in output
    assert "Traceback" not in output
    assert relay_process.health()["ok"]


def test_sigterm_stops_the_relay_promptly_with_live_event_and_websocket_clients_and_frees_the_database(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """An operator's restart: SIGTERM while a browser holds the live-event stream and a client holds the payment
    WebSocket. The relay ends both, exits within 5 s (the issue's bound), and releases the database, so the next
    `chainstream relay` on it starts."""
    from websockets.sync.client import connect as ws_connect

    relay_process.start()
    assert relay_process.proc is not None
    events_open = threading.Event()
    events_ended = threading.Event()

    def follow_events() -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("GET", relay_process.url + "/api/v1/events") as response,
        ):
            for _ in response.iter_lines():
                events_open.set()
        events_ended.set()

    threading.Thread(target=follow_events, daemon=True).start()
    assert events_open.wait(20), "the event stream did not open"
    ws = ws_connect(relay_process.url.replace("http", "ws") + "/api/v1/payments/stream", open_timeout=10)
    try:
        relay_process.proc.terminate()
        try:
            code = relay_process.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the relay did not exit within 5 s of SIGTERM:\n{relay_process.log}")
        assert code == 0, relay_process.log
        assert events_ended.wait(5), "the event stream was not ended"
    finally:
        ws.close()
    relay_process.start()  # same database: the lock was released
    assert relay_process.health()["ok"]
