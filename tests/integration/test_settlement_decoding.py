"""Settling never blocks serving: a settlement transaction is decoded once per reader, in a worker thread.

A real in-process relay on the embedded chain settles several channels in one settleBatch; the watcher then sees
one ChannelSettled per channel of that transaction. The relay's ChannelsClient is the real one, wrapped only to
note which thread each decoding ran on (the decoding itself runs unchanged).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from chainstream.sdk import Listener
from tests.integration.relay_fixtures import (
    LAZY,
    MODEM,
    InProcessRelay,
    RelayChain,
    new_wallet,
    open_listener,
    wait_until,
)


def test_a_batch_settlement_is_decoded_once_per_reader_and_never_on_the_event_loop(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain
) -> None:
    """A 4-channel settleBatch: decoded once by the settler and once by the watcher, both off the event loop."""
    relay = make_relay(**LAZY)
    channels = relay.service.channels
    calls: list[tuple[bytes, threading.Thread]] = []
    decode = channels.settlements_in

    def noting(tx: Any, receipt: Any) -> Any:
        calls.append((bytes(receipt["transactionHash"]), threading.current_thread()))
        return decode(tx, receipt)

    channels.settlements_in = noting  # type: ignore[method-assign]
    listeners: list[Listener] = [open_listener(relay_chain, relay, wallet=new_wallet(relay_chain)) for _ in range(4)]
    for listener in listeners:
        listener.play(relay_chain.track(MODEM))
    relay.settle_now(*(x.channel_id for x in listeners))  # type: ignore[misc]
    wait_until(
        lambda: all(relay.channel(x.channel_id)["settled"] == str(x.state.voucher.total) for x in listeners),  # type: ignore[arg-type,union-attr]
        what="the batch settled and recorded",
    )
    watched = relay_chain.w3.eth.block_number
    wait_until(lambda: relay.health()["block"] >= watched, what="the watcher past the settlement")
    per_tx = Counter(tx for tx, _ in calls)
    assert len(per_tx) == 1, per_tx  # one settleBatch for the four channels
    assert list(per_tx.values()) == [2], "decoded by the settler and by the watcher, once each"
    assert all(thread is not relay.thread for _, thread in calls), "decoded on the thread serving requests"
