"""The relay's hold on the chain across reorgs, a node that comes back behind its old head, and a stuck transaction.

Real processes only: `chainstream relay` on an anvil node that the tests reorganise (`anvil_reorg`), roll back
(`anvil_rollback`, what a node restarted from an older state shows) or starve (a base fee raised above what a
pending settlement offers, with automine off). Each case ends with the chain and the relay agreeing and every
acknowledged voucher settled exactly once: each payee's on-chain credit equals what the acknowledged vouchers
owe it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from chainstream.chain.contracts import ChannelStatus
from chainstream.chain.transactions import TxSender
from chainstream.sdk import Listener, RelayError
from tests.integration.relay_fixtures import MODEM, RelayChain, RelayProcess, open_listener, wait_until
from tests.integration.test_relay_process import EAGER, LAZY, settled_logs

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def rpc(rc: RelayChain, method: str, params: list[Any]) -> Any:
    response = rc.w3.provider.make_request(method, params)
    assert "error" not in response, response
    return response.get("result")


def mine(rc: RelayChain, blocks: int = 1) -> None:
    for _ in range(blocks):
        rpc(rc, "evm_mine", [])


def reorg(rc: RelayChain, depth: int, txs: list[tuple[bytes, int]] = ()) -> None:  # type: ignore[assignment]
    """Replace the last `depth` blocks with as many new ones, holding only `txs` (raw transaction, block offset)."""
    rpc(rc, "anvil_reorg", [depth, [["0x" + raw.hex(), offset] for raw, offset in txs]])


@contextlib.contextmanager
def held_blocks(rc: RelayChain) -> Iterator[None]:
    """Automine off for the block; afterwards automine on and the next base fee back to what it was (anvil keeps
    a base fee set by anvil_setNextBlockBaseFeePerGas across evm_revert: later tests' fees would be too low)."""
    base_fee = int(rc.w3.eth.get_block("latest")["baseFeePerGas"])
    rpc(rc, "evm_setAutomine", [False])
    try:
        yield
    finally:
        rpc(rc, "evm_setAutomine", [True])
        rpc(rc, "anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])


def play(listener: Listener, rc: RelayChain, times: int) -> None:
    for _ in range(times):
        listener.play(rc.track(MODEM))


def total(listener: Listener) -> int:
    assert listener.state is not None
    return int(listener.state.voucher.total)


def owed(listeners: list[Listener]) -> Counter[str]:
    """What the listeners' acknowledged vouchers owe each payee, in total."""
    out: Counter[str] = Counter()
    for listener in listeners:
        assert listener.state is not None
        voucher = listener.state.voucher
        for payee, amount in zip(voucher.payees, voucher.amounts, strict=True):
            out[payee] += amount
    return out


def credited(rc: RelayChain, payees: list[str], since_block: int) -> Counter[str]:
    """What each payee was credited on chain since `since_block` (claimable now minus claimable then)."""
    claimable = rc.chain.channels.contract.functions.claimable
    return Counter(
        {
            p: int(claimable(p, "0x" + "00" * 20).call())
            - int(claimable(p, "0x" + "00" * 20).call(block_identifier=since_block))
            for p in payees
        }
    )


def assert_settled_exactly_once(rc: RelayChain, relay: RelayProcess, listeners: list[Listener], since: int) -> None:
    """The chain settled every acknowledged voucher, the relay says so, and each payee got exactly its due."""
    for listener in listeners:
        assert listener.chain_state().settled == total(listener)
        cid = listener.channel_id
        assert cid is not None
        wait_until(lambda c=cid, t=total(listener): relay.channel(c)["settled"] == str(t), what="the relay to agree")
    due = owed(listeners)
    assert credited(rc, list(due), since) == due


def settled_everywhere(rc: RelayChain, listeners: list[Listener], confirmations: int) -> bool:
    mine(rc, confirmations)  # (a relay waiting for confirmations needs blocks to come)
    return all(listener.chain_state().settled == total(listener) for listener in listeners)


@pytest.mark.parametrize(
    ("confirmations", "deeper"),
    [(0, 0), (2, 0), (2, 2)],
    ids=["no-confirmations", "reorg-before-confirmations", "reorg-deeper-than-confirmations"],
)
def test_a_settlement_dropped_by_a_reorg_is_settled_again(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain, confirmations: int, deeper: int
) -> None:
    """A reorg drops the relay's settleBatch (then later blocks): the relay settles every acknowledged voucher."""
    rc = anvil_relay_chain
    since = rc.w3.eth.block_number
    relay_process.start(CHAINSTREAM_CONFIRMATIONS=str(confirmations), **EAGER)
    listeners = [open_listener(rc, relay_process, wallet=w, deposit=10**17) for w in ("listener", "listener2")]
    mine(rc, confirmations)
    for listener in listeners:
        play(listener, rc, 3)
    wait_until(
        lambda: all(x.chain_state().settled == total(x) for x in listeners), timeout=60, what="the first settlement"
    )
    settled_block = max(log["blockNumber"] for x in listeners for log in settled_logs(rc, x.channel_id))  # type: ignore[arg-type]
    if deeper:
        mine(rc, deeper)  # the relay records it, `confirmations` deep
        for listener in listeners:
            wait_until(
                lambda c=listener.channel_id, t=total(listener): relay_process.channel(c)["settled"] == str(t),  # type: ignore[arg-type]
                what="the relay to record its settlement",
            )
    dropped = rc.w3.eth.get_block(settled_block)["hash"]
    reorg(rc, rc.w3.eth.block_number - settled_block + 1)
    assert rc.w3.eth.get_block(settled_block)["hash"] != dropped  # (the relay may already be settling again)
    for listener in listeners:
        play(listener, rc, 2)
    wait_until(lambda: settled_everywhere(rc, listeners, confirmations), timeout=60, what="settled again")
    mine(rc, confirmations)
    assert_settled_exactly_once(rc, relay_process, listeners, since)


def test_a_close_request_dropped_by_a_reorg_is_no_longer_believed(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """A reorg drops a CloseRequested the relay acted on: the channel takes payments again, all settled once."""
    rc = anvil_relay_chain
    since = rc.w3.eth.block_number
    relay_process.start(**LAZY)  # settles only as the watchtower
    listener = open_listener(rc, relay_process, deposit=10**17)
    cid = listener.channel_id
    assert cid is not None
    play(listener, rc, 3)
    # The close request is mined in the next block (the lazy relay sends nothing before it); read after it, the
    # head could already be the watchtower's settlement, and the reorg below would then keep the close.
    close_block = rc.w3.eth.block_number + 1
    listener.request_close()
    mined = rc.w3.eth.get_block(close_block, full_transactions=True)["transactions"]
    assert [tx["from"] for tx in mined] == [listener.address]  # the block the reorg must drop holds the request
    wait_until(lambda: relay_process.channel(cid)["status"] == "closing", what="the relay to see the close")
    wait_until(lambda: listener.chain_state().settled == total(listener), what="the watchtower's settlement")
    reorg(rc, rc.w3.eth.block_number - close_block + 1)  # the close request and the watchtower's settlement
    assert listener.chain_state().status == ChannelStatus.OPEN
    wait_until(lambda: relay_process.channel(cid)["status"] == "open", what="the relay to forget the close")
    metrics = httpx.get(relay_process.url + "/metrics").text
    assert any(
        line.startswith("chainstream_reorgs_total ") and float(line.split()[1]) >= 1 for line in metrics.splitlines()
    )
    play(listener, rc, 2)  # accepted again
    listener.tx.reset_nonce()  # (its request went with the dropped block)
    listener.request_close()  # a real close this time: the watchtower settles what was acknowledged
    wait_until(lambda: listener.chain_state().settled == total(listener), what="the settlement of the new close")
    assert_settled_exactly_once(rc, relay_process, [listener], since)


def test_a_close_request_only_in_the_replacement_block_is_seen(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """A reorg brings in a block with a CloseRequested: the relay settles it and refuses the channel's payments."""
    rc = anvil_relay_chain
    since = rc.w3.eth.block_number
    relay_process.start(**LAZY)
    listener = open_listener(rc, relay_process, deposit=10**17)
    cid = listener.channel_id
    assert cid is not None
    play(listener, rc, 3)
    mine(rc)
    head = rc.w3.eth.block_number
    wait_until(lambda: relay_process.health()["block"] == head, what="the relay to process the head")
    sender = TxSender(rc.w3, rc.chain.key("listener"))
    tx = sender.build(rc.chain.channels.contract.functions.requestClose(cid), action="requestClose")
    tx["nonce"] = rc.w3.eth.get_transaction_count(sender.address)
    raw = bytes(Account.sign_transaction(tx, sender.account.key).raw_transaction)
    reorg(rc, 1, [(raw, 0)])
    assert listener.chain_state().status == ChannelStatus.CLOSING
    wait_until(lambda: listener.chain_state().settled == total(listener), what="the watchtower to settle")
    wait_until(lambda: relay_process.channel(cid)["status"] == "closing", what="the relay to see the close")
    with pytest.raises(RelayError) as refused:
        play(listener, rc, 1)
    assert refused.value.code == "channel_not_open"
    assert_settled_exactly_once(rc, relay_process, [listener], since)


@pytest.mark.parametrize("restart_relay", [False, True], ids=["relay-up", "relay-restarted"])
def test_a_node_back_behind_its_old_head_loses_no_settlement(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain, restart_relay: bool
) -> None:
    """The node comes back from an older state (its last blocks, with a settlement, lost): all settled again."""
    rc = anvil_relay_chain
    since = rc.w3.eth.block_number
    relay_process.start(**EAGER)
    listeners = [
        open_listener(rc, relay_process, wallet=w, deposit=10**17) for w in ("listener", "listener2", "stranger")
    ]
    for listener in listeners:
        play(listener, rc, 3)
    wait_until(
        lambda: all(x.chain_state().settled == total(x) for x in listeners), timeout=60, what="the first settlement"
    )
    for listener in listeners:
        wait_until(
            lambda c=listener.channel_id, t=total(listener): relay_process.channel(c)["settled"] == str(t),  # type: ignore[arg-type]
            what="the relay to record its settlement",
        )
    settled_block = max(log["blockNumber"] for x in listeners for log in settled_logs(rc, x.channel_id))  # type: ignore[arg-type]
    mine(rc, 2)
    if restart_relay:
        relay_process.kill()
    head = rc.w3.eth.block_number
    rpc(rc, "anvil_rollback", [head - settled_block + 1])  # its last 3 blocks lost
    assert rc.w3.eth.block_number < head  # (the relay may already be settling again)
    if restart_relay:
        relay_process.start(**EAGER)
    for listener in listeners:
        play(listener, rc, 2)
    wait_until(lambda: settled_everywhere(rc, listeners, 0), timeout=60, what="settled again")
    assert_settled_exactly_once(rc, relay_process, listeners, since)


def test_a_stuck_underpriced_settlement_is_replaced_with_a_higher_fee(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """The base fee jumps above a pending settlement's fee cap: it is replaced at its nonce, settled once."""
    rc = anvil_relay_chain
    since = rc.w3.eth.block_number
    relay_process.start(CHAINSTREAM_SETTLE_REPLACE_AFTER="1", CHAINSTREAM_SETTLE_RECEIPT_WAIT="1", **EAGER)
    listener = open_listener(rc, relay_process, deposit=10**17)
    with held_blocks(rc):
        play(listener, rc, 3)
        first = wait_until(
            lambda: relay_process.rows("SELECT id, nonce FROM outbox WHERE status='sent'"), what="a settlement sent"
        )[0]
        rpc(rc, "anvil_setNextBlockBaseFeePerGas", [hex(100 * 10**9)])
        mine(rc)  # at 100 gwei: the settlement (about 2 gwei at most) stays out
        assert listener.chain_state().settled == 0
        wait_until(
            lambda: relay_process.rows(
                "SELECT id FROM outbox WHERE nonce=? AND id>? AND status='sent'", (first["nonce"], first["id"])
            ),
            what="a replacement at the same nonce",
        )
        mine(rc)
    wait_until(lambda: listener.chain_state().settled == total(listener), what="the replacement mined")
    rows = wait_until(
        lambda: (
            (r := relay_process.rows("SELECT id, status FROM outbox WHERE nonce=?", (first["nonce"],)))
            and all(x["status"] in ("confirmed", "dropped") for x in r)
            and r
        ),
        what="the outbox settled",
    )
    assert sorted(x["status"] for x in rows) == ["confirmed", "dropped"]
    assert len(settled_logs(rc, listener.channel_id)) == 1  # type: ignore[arg-type]
    assert_settled_exactly_once(rc, relay_process, [listener], since)


def test_a_restart_with_a_settlement_still_unmined_serves_at_once_and_replaces_it(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain
) -> None:
    """The relay restarts while its settlement waits unmined in the node's pool: it serves, then replaces it."""
    rc = anvil_relay_chain
    since = rc.w3.eth.block_number
    fast = {"CHAINSTREAM_SETTLE_REPLACE_AFTER": "1", "CHAINSTREAM_SETTLE_RECEIPT_WAIT": "1"}
    relay_process.start(**fast, **EAGER)
    listener = open_listener(rc, relay_process, deposit=10**17)
    with held_blocks(rc):
        play(listener, rc, 3)
        first = wait_until(
            lambda: relay_process.rows("SELECT id, nonce FROM outbox WHERE status='sent'"), what="a settlement sent"
        )[0]
        relay_process.kill()
        relay_process.start(**fast, **EAGER)  # serving again (start() waits for /health), the settlement unmined
        assert listener.chain_state().settled == 0
        play(listener, rc, 1)  # acknowledged while the settlement waits
        wait_until(
            lambda: relay_process.rows(
                "SELECT id FROM outbox WHERE nonce=? AND id>? AND status='sent'", (first["nonce"], first["id"])
            ),
            what="a replacement at the same nonce",
        )
        mine(rc)
    wait_until(lambda: listener.chain_state().settled == total(listener), timeout=60, what="everything settled")
    assert_settled_exactly_once(rc, relay_process, [listener], since)
