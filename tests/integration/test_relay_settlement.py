"""Settlement by a real in-process relay on the embedded chain: batching, growing payee lists (prevAmounts),
the settle policy (eager, near a session key's expiry), cooperative close after a partial settlement."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from web3.logs import DISCARD

from chainstream.chain.contracts import settle_entry
from chainstream.chain.transactions import fund
from chainstream.ledger import charge_play
from chainstream.protocol import PrivateKey, SignedVoucher
from chainstream.sdk import Listener, RelayError
from tests.integration.relay_fixtures import (
    DRIFT,
    LAZY,
    MODEM,
    PLAY_PRICE,
    InProcessRelay,
    RelayChain,
    cid_hex,
    new_wallet,
    open_listener,
    play_spec,
    rejected,
    sign_charge,
    wait_until,
)


def settled(listener: Listener) -> int:
    return listener.chain_state().settled


def settlement_receipts(rc: RelayChain, listeners: list[Listener], since: int) -> dict[bytes, Any]:
    """Transaction hash of each listener channel's latest ChannelSettled event since block `since`."""
    out: dict[bytes, Any] = {}
    for listener in listeners:
        logs = rc.chain.channels.contract.events.ChannelSettled().get_logs(
            from_block=since, argument_filters={"channelId": listener.channel_id}
        )
        out[listener.channel_id] = logs[-1]["transactionHash"]  # type: ignore[index]
    return out


def test_channels_settled_together_share_one_transaction_and_payee_lists_grow(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    listeners = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain)) for _ in range(3)]
    for listener in listeners:
        listener.play(relay_chain.track(MODEM))
    start = relay_chain.w3.eth.block_number
    relay.settle_now(*(lst.channel_id for lst in listeners))  # type: ignore[misc]
    for listener in listeners:
        wait_until(lambda: settled(listener) == PLAY_PRICE, what="the batch settlement")
    hashes = set(settlement_receipts(relay_chain, listeners, start).values())
    assert len(hashes) == 1, "three channels due in one round go in one settleBatch"
    receipt = relay_chain.w3.eth.get_transaction_receipt(hashes.pop())
    assert receipt["from"] == relay.address
    events = relay_chain.chain.channels.contract.events.ChannelSettled().process_receipt(receipt, errors=DISCARD)
    assert len(events) == 3

    # Later payments add payees (a tip to someone new, another track's split): the next settlement has to
    # present the previously settled amounts as prevAmounts, which the relay tracks per channel.
    for i, listener in enumerate(listeners):
        listener.tip(1_000 + i, artist=new_wallet(relay_chain, eth=0).address)
        listener.listen(relay_chain.track(DRIFT), 10)
    relay.settle_now(*(lst.channel_id for lst in listeners))  # type: ignore[misc]
    for listener in listeners:
        voucher = listener.state.voucher  # type: ignore[union-attr]
        wait_until(lambda: settled(listener) == voucher.total, what="the second settlement")
        assert listener.settled_state().credited == voucher.amounts  # type: ignore[union-attr]
        wait_until(
            lambda: relay.channel(listener.channel_id)["settled"] == str(voucher.total),  # type: ignore[arg-type]
            what="the relay to record it",
        )


def test_an_eager_relay_settles_without_being_asked(eager_relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, eager_relay, wallet=new_wallet(relay_chain))
    assert listener.chain_state().relay == eager_relay.address
    paid = listener.play(relay_chain.track(MODEM))
    wait_until(lambda: settled(listener) == paid.total, what="the eager relay to settle")
    paid = listener.play(relay_chain.track(MODEM))
    wait_until(lambda: settled(listener) == paid.total, what="the eager relay to settle again")


def test_vouchers_of_a_session_key_about_to_expire_are_settled_first(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The lazy relay settles only on request, except when waiting longer could make a voucher unsettleable:
    here the session key that signed it is within SESSION_MARGIN of its expiry (the relay takes no more of its
    vouchers, so its latest is final and is settled, once)."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), session_ttl=1_800)
    paid = listener.play(relay_chain.track(MODEM))
    relay_chain.chain.advance(1_800 - relay.service.settings.session_margin + 1)
    wait_until(lambda: settled(listener) == paid.total, what="a settlement ahead of the key's expiry")


def test_cooperative_close_after_a_partial_settlement(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    deposit = 10**17
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=deposit)
    listener.play(relay_chain.track(MODEM))
    listener.play(relay_chain.track(MODEM))
    relay.settle_now(listener.channel_id)  # type: ignore[arg-type]
    wait_until(lambda: settled(listener) == 2 * PLAY_PRICE, what="the partial settlement")
    wait_until(
        lambda: relay.channel(listener.channel_id)["settled"] == str(2 * PLAY_PRICE),  # type: ignore[arg-type]
        what="the relay to record it",
    )
    fan_favourite = new_wallet(relay_chain, eth=0).address
    listener.tip(4_321, artist=fan_favourite, message="bye")
    listener.listen(relay_chain.track(DRIFT), 5)
    voucher = listener.state.voucher  # type: ignore[union-attr]
    assert listener.close_cooperatively() == deposit - voucher.total
    state = listener.chain_state()
    assert state.settled == voucher.total and state.status.name == "CLOSED"
    assert listener.channels.claimable(fan_favourite) == 4_321
    own = {"Authorization": "ChainStream-Read " + relay.read_token(listener.wallet)}
    listed = {
        c["channelId"]
        for c in relay.http().get(f"/listeners/{listener.address}/channels", headers=own).json()["channels"]
    }
    assert listed == {"0x" + listener.channel_id.hex()}  # type: ignore[union-attr]
    page = (
        relay.http()
        .get(f"/channels/0x{listener.channel_id.hex()}/history", params={"limit": 2, "before": 4}, headers=own)
        .json()
    )  # type: ignore[union-attr]
    assert [item["seq"] for item in page["items"]] == [3, 2]


def test_a_rotated_session_key(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The payer replaces the session key on chain: the relay settles what the old key signed at once (the
    contract honours the old key only for a grace period), then refuses the old key and takes the new one."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)
    listener.play(track)
    listener.play(track)
    old_key, new_key = listener.session_key, PrivateKey.generate()
    listener.channels.set_session_key(
        listener.tx,
        listener.channel_id,
        new_key.address,  # type: ignore[arg-type]
        relay_chain.chain.now() + 7 * 86_400,
    )
    wait_until(
        lambda: relay.channel(listener.channel_id)["sessionKey"] == new_key.address,  # type: ignore[arg-type]
        what="the relay to see the new key",
    )
    wait_until(lambda: settled(listener) == 2 * PLAY_PRICE, what="the old key's vouchers to be settled")
    stale = sign_charge(listener, charge_play(listener.state, listener.listing(track)), play_spec(track), key=old_key)
    rejected(relay.http().post(f"/channels/{cid_hex(listener)}/payments", json=stale.body), 403, "unauthorized_signer")
    listener.session_key = new_key
    assert listener.play(track).seq == 3


def test_a_close_seen_before_a_restart_is_still_settled_at_once(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain
) -> None:
    """The watchtower's "settle this now" must survive a restart. Here the relay cannot pay for gas when the
    CloseRequested arrives (so it cannot settle), is stopped, funded and started again on the same database:
    its cursor is past the close, yet it must settle the closing channel at once, not in the window's last hour."""
    broke = make_relay(eth=0, **LAZY)
    listener = open_listener(relay_chain, broke, wallet=new_wallet(relay_chain))
    listener.play(relay_chain.track(MODEM))
    listener.play(relay_chain.track(MODEM))
    listener.request_close()
    wait_until(lambda: broke.channel(listener.channel_id)["status"] == "closing", what="the watcher")  # type: ignore[arg-type]
    assert settled(listener) == 0
    broke.stop()
    fund(relay_chain.w3, broke.address, 10**19)
    make_relay(actor=broke.actor, **LAZY)
    wait_until(lambda: settled(listener) == 2 * PLAY_PRICE, timeout=15, what="the closing channel to be settled")


def test_a_channel_opened_and_closed_while_the_relay_was_away(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain
) -> None:
    """The watcher meets a channel's ChannelOpened and its later events (a top-up, a close request) in one
    range of blocks: it must apply all of them, not only the opening, or it takes a closing channel for open
    (and keeps accepting payments the contract will not let it settle once the window ends)."""
    actor = f"relay-away-{os.urandom(3).hex()}"
    relay_chain.chain.keys[actor] = new_wallet(relay_chain)
    listener = Listener(new_wallet(relay_chain), w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    listener.open_channel(10**17, relay_address=relay_chain.chain.address(actor))
    listener.top_up(10**17)
    listener.request_close()
    away = make_relay(actor=actor, **LAZY)  # starts now: its first poll covers all three events
    summary = away.channel(listener.channel_id)  # type: ignore[arg-type]
    assert summary["status"] == "closing" and summary["deposit"] == str(2 * 10**17)
    assert summary["closesAt"] == listener.chain_state().closes_at
    listener.relay = away.client()
    with pytest.raises(RelayError) as info:
        listener.play(relay_chain.track(MODEM))
    assert info.value.code == "channel_not_open" and info.value.status == 409


def test_a_voucher_the_contract_refuses_for_good_is_not_sent_again(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain
) -> None:
    """The relay is away for a whole key rotation: when it comes back, the old key's grace is over and its
    latest voucher can only be skipped (VoucherUnauthorizedSigner). The settler sends it once, learns that from
    the SettlementSkipped event, and does not pay gas for the same skip every round; a newer voucher (signed
    by the new key, cumulative) settles everything."""
    relay = make_relay(**LAZY)
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)
    listener.play(track)
    relay.stop()

    listener.authorise_session_key()
    relay_chain.chain.advance(relay_chain.chain.channels.contract.functions.keyRotationGrace().call() + 1)
    back = make_relay(actor=relay.actor, **LAZY)
    listener.relay = back.client()
    settler = back.relay.settler
    cid: bytes = listener.channel_id  # type: ignore[assignment]
    back.settle_now(cid)
    assert wait_until(lambda: settler.unsettleable.get(cid), what="the skip") == (
        PLAY_PRICE,
        "VoucherUnauthorizedSigner",
    )
    sent, rounds = settler.batches_sent, settler.rounds
    back.settle_now(cid)
    wait_until(lambda: settler.rounds >= rounds + 2, what="two more settlement rounds")
    assert settler.batches_sent == sent and settled(listener) == 0

    assert listener.play(track).seq == 2  # the new key signs the cumulative 2 plays
    back.settle_now(cid)
    wait_until(lambda: settled(listener) == 2 * PLAY_PRICE, what="the new key's voucher to be settled")
    wait_until(lambda: settler.batches_sent > sent, what="the settler to count its batch")
    assert settler.batches_sent == sent + 1 and cid not in settler.unsettleable


def forwarder(rc: RelayChain, target: str) -> str:
    """Deploy a contract that forwards any call to `target` (CALL with its own calldata): hand-assembled EVM."""
    # CALLDATACOPY(0, 0, size); CALL(gas, target, 0, 0, size, 0, 0); STOP
    runtime = bytes.fromhex("36600060003760006000366000600073") + bytes.fromhex(target[2:]) + bytes.fromhex("5af100")
    init = bytes.fromhex(f"60{len(runtime):02x}80600b6000396000f3") + runtime  # 11 bytes: copy and return
    w3 = rc.w3
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": init}))
    return receipt["contractAddress"]  # type: ignore[no-any-return]


def test_a_settlement_sent_through_another_contract_does_not_stop_the_watchtower(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain
) -> None:
    """In the second half of a close window anyone may settle, also through a forwarding contract: its calldata
    is not the settlement's, so the relay cannot read the settled payees back. It marks that channel and goes on
    watching: the next blocks' events (another channel's top-up) are applied and other channels still settle.
    (The relay here has no gas when the close is requested, so that the forwarded settlement is the first.)"""
    relay = make_relay(eth=0, **LAZY)
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    other = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)
    listener.play(track)
    other.play(track)
    cid: bytes = listener.channel_id  # type: ignore[assignment]
    voucher = SignedVoucher(listener.state.voucher, listener.signatures[1])  # type: ignore[union-attr]
    channels = relay_chain.chain.channels
    closes_at = listener.request_close()
    relay_chain.chain.advance(
        closes_at - channels.contract.functions.challengePeriod().call() // 2 - relay_chain.chain.now()
    )
    data = channels.contract.encode_abi("settle", [settle_entry(voucher, ())])
    via = forwarder(relay_chain, channels.address)
    w3 = relay_chain.w3
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": via, "data": data, "gas": 1_000_000})
    )
    assert settled(listener) == PLAY_PRICE  # settled on chain, through the forwarder

    settler = relay.relay.settler
    assert wait_until(lambda: settler.unsettleable.get(cid), what="the channel to be marked") == (
        PLAY_PRICE,
        "SettledStateUnknown",
    )
    fund(relay_chain.w3, relay.address, 10**19)
    other.top_up(10**16)
    wait_until(
        lambda: relay.channel(other.channel_id)["deposit"] == str(10**17 + 10**16),  # type: ignore[arg-type]
        what="the watcher to go on past the forwarded settlement",
    )
    relay.settle_now(other.channel_id)  # type: ignore[arg-type]
    wait_until(lambda: settled(other) == PLAY_PRICE, what="other channels to settle as before")
