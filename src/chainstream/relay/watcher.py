"""The watchtower: follows the contracts' events from the last processed block, surviving restarts and reorgs.

Each poll reads logs up to `head - confirmations` in a worker thread (including the extra reads a log needs,
such as a settlement's calldata, decoded once per transaction, or a track's new terms), then applies the
changes on the event loop and moves the persisted cursor. Applying is idempotent, so a crash between the two
only replays a range. When a listener asks to close a channel (or rotates its session key), the channel's
latest voucher is settled at once, inside the window.

Reorgs: the watcher remembers the hash of each block it processed up to (the last `REORG_WINDOW`). A poll
that finds the hash of its last processed block changed, or a node whose head is behind it (restarted from
an older state), rolls back: it finds the newest remembered block still on the chain, re-reads every known
channel as the chain now has it (status, deposit, key, and the settled state: a settlement the chain no
longer shows is forgotten and settled again), puts the outbox transactions mined after that block back to
be followed, and processes the replacement blocks' events from there. Claims and catalog entries learnt from
dropped blocks are not undone (they are re-read from the replacement blocks; a claim that vanished stays
listed until the chain shows it again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_typing import Hash32

from chainstream.chain.contracts import LOG_RANGE, ChannelState, ChannelStatus, SettledState
from chainstream.errors import ChainError
from chainstream.protocol.types import ZERO_ADDRESS
from chainstream.relay.catalog import CatalogEntry
from chainstream.relay.observer import NO_OBSERVER, RelayObserver
from chainstream.relay.outage import DatabaseStatus
from chainstream.relay.service import RelayService
from chainstream.relay.settler import Settler, record_state
from chainstream.store import ChannelRecord

log = logging.getLogger("chainstream.watcher")
CURSOR = "events"
#: how many processed blocks' hashes are kept to find where a reorg forked (deeper reorgs roll back this far)
REORG_WINDOW = 256

CHANNEL_EVENTS = (
    "ChannelOpened",
    "ChannelToppedUp",
    "SessionKeyChanged",
    "CloseRequested",
    "ChannelClosed",
    "ChannelSettled",
    "Claimed",
)
REGISTRY_EVENTS = ("TrackRegistered", "TermsSet", "SplitSet", "TrackTransferred")
#: the events that can put a deadline on a known channel's vouchers (its close window started, its signing key
#: was cut short) or end it: what start-up reads from the backlog before serving (`Watcher.catch_up_deadlines`)
DEADLINE_EVENTS = ("CloseRequested", "SessionKeyChanged", "ChannelClosed")


@dataclass(frozen=True)
class Change:
    """One decoded event, with whatever it needed read from the chain, ready to apply without I/O."""

    name: str
    args: dict[str, Any]
    block: int
    apply: Callable[[], None]


class Watcher:
    def __init__(self, service: RelayService, settler: Settler, observer: RelayObserver = NO_OBSERVER) -> None:
        """`observer` hears of every reorg the watcher detects (and rolls back)."""
        self.service = service
        self.observer = observer
        self.settler = settler
        self.store = service.store
        self.settings = service.settings
        self.w3 = service.channels.w3
        channels = service.channels.contract
        registry = service.registry.contract
        self._events = {name: getattr(channels.events, name)() for name in CHANNEL_EVENTS}
        self._events.update({name: getattr(registry.events, name)() for name in REGISTRY_EVENTS})
        self._addresses = [channels.address, registry.address]
        # Each instance sharing a database follows the chain itself (its catalog and channels live in its memory)
        self.cursor = CURSOR if self.settings.instance == "main" else f"{CURSOR}@{self.settings.instance}"
        self.processed_block = self.store.get_cursor(self.cursor)
        if self.processed_block is None:
            self.processed_block = service.deployment.deploy_block - 1
        #: block number -> hash of blocks processed up to (the ends of poll ranges), to detect reorgs
        self.hashes: dict[int, bytes] = {}
        self.reorgs = 0
        self._settlements: dict[bytes, list[SettledState] | ChainError] = {}
        self._range_end = self.processed_block
        #: the database as the polls find it (relay/outage.py `follow_chain`): lost and back logged once each
        self.database = DatabaseStatus("watcher", log)

    async def poll(self) -> int:
        """Process every confirmed block not yet processed (after rolling back a reorg, if one happened);
        returns the number of events applied."""
        latest = await asyncio.to_thread(self.w3.eth.get_block, "latest")
        self.service.observe_chain_time(latest["timestamp"])
        fork = await asyncio.to_thread(self.find_fork, int(latest["number"]))
        if fork is not None:
            await self.rollback(fork)
        target = latest["number"] - self.settings.confirmations
        applied = 0
        while self.processed_block is not None and self.processed_block < target:
            start = self.processed_block + 1
            end = min(target, start + LOG_RANGE - 1)
            changes, end_hash = await asyncio.to_thread(self.collect, start, end)
            for change in changes:
                change.apply()
            applied += len(changes)
            self.store.set_cursor(self.cursor, end)
            self.processed_block = end
            self._remember(end, end_hash)
        return applied

    async def catch_up_deadlines(self) -> int:
        """Before the relay serves (start-up): apply, from the blocks not yet processed, only the events that put
        a deadline on a known channel (DEADLINE_EVENTS), and ask the settler to settle those channels, so that
        `Settler.settle_urgent_before_serving` defends them before the port opens. One filtered log query per
        LOG_RANGE blocks and one channel read per flagged channel, however long the backlog: the full catch-up
        (`poll`: every event, settlements read back, the cursor moved) runs after the port opened. Returns how
        many channels were updated. The cursor does not move: the full poll applies these events again
        (idempotently)."""
        latest = await asyncio.to_thread(self.w3.eth.get_block, "latest")
        self.service.observe_chain_time(latest["timestamp"])
        if self.processed_block is None:
            return 0
        target = int(latest["number"]) - self.settings.confirmations
        changes = await asyncio.to_thread(self._collect_deadlines, self.processed_block + 1, target)
        for change in changes:
            change.apply()
        if changes:
            log.warning(
                "start-up: %d channel(s) with a close or key change in blocks %s..%s applied before serving",
                len(changes),
                self.processed_block + 1,
                target,
            )
        return len(changes)

    def _collect_deadlines(self, start: int, end: int) -> list[Change]:
        """The last deadline event of each known channel in blocks `start`..`end`, with the channel's state as of
        `end` (thread side)."""
        topics = [self._events[name].topic for name in DEADLINE_EVENTS]
        names = {bytes.fromhex(t.removeprefix("0x")): name for t, name in zip(topics, DEADLINE_EVENTS, strict=True)}
        last: dict[bytes, tuple[str, dict[str, Any], int]] = {}
        for first in range(start, end + 1, LOG_RANGE):
            logs = self.w3.eth.get_logs(
                {
                    "fromBlock": first,
                    "toBlock": min(end, first + LOG_RANGE - 1),
                    "address": self._addresses[0],
                    "topics": [topics],
                }
            )
            for entry in logs:
                name = names.get(bytes(entry["topics"][0]))
                if name is None:
                    continue
                args = dict(self._events[name].process_log(entry)["args"])
                channel_id = bytes(args["channelId"])
                if self.store.get_channel(channel_id) is None:
                    continue  # not known: never paid on here (a payment stores its channel first), nothing to settle
                # a close request is not undone by a later key change of the channel (both ask for a settlement)
                if last.get(channel_id, ("",))[0] != "CloseRequested" or name == "ChannelClosed":
                    last[channel_id] = (name, args, int(entry["blockNumber"]))
        changes = []
        for channel_id, (name, args, block) in last.items():
            state = self.service.channels.get_channel(channel_id, block=end)
            changes.append(Change(name, args, block, self._state_applier(name, channel_id, state)))
        return changes

    # ----------------------------------------------------------- reorgs
    def _remember(self, number: int, block_hash: bytes | None) -> None:
        if block_hash is None:
            return
        self.hashes[number] = block_hash
        while len(self.hashes) > REORG_WINDOW:
            del self.hashes[min(self.hashes)]

    def _hash_of(self, number: int) -> bytes | None:
        block = self.w3.eth.get_block(number)
        return bytes(block["hash"]) if block is not None and block.get("hash") is not None else None

    def find_fork(self, head: int) -> int | None:
        """None if the chain still holds the last processed block; else the block to roll back to: the newest
        remembered block the chain still holds (thread side)."""
        processed = self.processed_block
        if processed is None or processed < 0:
            return None
        behind = head < processed
        if not behind:
            known = self.hashes.get(processed)
            if known is None:  # (after a restart) from now on a reorg of this block is seen
                self._remember(processed, self._hash_of(processed))
                return None
            if self._hash_of(processed) == known:
                return None
        for number in sorted(self.hashes, reverse=True):
            if number > head:
                continue
            if self._hash_of(number) == self.hashes[number]:
                return number
        # Nothing remembered survives (a restart forgets hashes, or a reorg deeper than the window): go back a
        # whole window from what the node has (re-applying a processed range is harmless).
        floor = self.service.deployment.deploy_block - 1
        return max(floor, min(head, processed) - REORG_WINDOW)

    async def rollback(self, fork: int) -> None:
        """Forget what was learnt after block `fork`: re-derive every known channel from the chain, put the
        outbox transactions mined after it back to be followed, and process again from `fork + 1`."""
        self.reorgs += 1
        self.observer.reorg_detected()
        log.warning(
            "chain reorganised: processed up to block %s, rolling back to %s and re-reading channels",
            self.processed_block,
            fork,
        )
        for number in [n for n in self.hashes if n > fork]:
            del self.hashes[number]
        states = await asyncio.to_thread(self._chain_states)
        for state in states:
            self._apply_rederived(state)
        await asyncio.to_thread(self._reopen_outbox, fork)
        self.store.set_cursor(self.cursor, fork)
        self.processed_block = fork

    def _chain_states(self) -> list[ChannelState]:
        """Every known channel as the chain holds it at the confirmed block, with its settled state fixed where
        the relay's was ahead of the chain's (a dropped settlement) (thread side)."""
        block = self.service.cache.confirmed_block()
        out = []
        # Channels the relay holds closed are not re-read (a relay with years of channels would make one call
        # each): a dropped ChannelClosed leaves the channel refused by the relay (its payer can open another),
        # and the payer's withdrawal or cooperative close, back in a later block, closes it again.
        for record in [*self.store.channels("open"), *self.store.channels("closing")]:
            try:
                state = self.service.channels.get_channel(record.channel_id, block)
            except ChainError as exc:
                log.warning("cannot re-read channel 0x%s after a reorg: %s", record.channel_id.hex(), exc)
                continue
            if state.status == ChannelStatus.NONE:
                continue  # its opening was dropped: it stays known (payments need the chain to show it to settle)
            self.settler.refresh_settled(record.channel_id, state)
            out.append(state)
        return out

    def _apply_rederived(self, state: ChannelState) -> None:
        before = self.store.get_channel(state.channel_id)
        self.service.cache.apply_chain_state(state)
        if state.status == ChannelStatus.CLOSING and (before is None or before.status != "closing"):
            self.settler.request(state.channel_id)

    def _reopen_outbox(self, fork: int) -> None:
        """Outbox transactions recorded as mined after `fork` may be gone with the dropped blocks: follow them
        again (the settler re-broadcasts or drops them by receipt)."""
        for row in self.store.outbox(("confirmed", "mined")):
            if row.block is not None and row.block > fork:
                self.store.update_outbox(row.id, "sent")

    # ----------------------------------------------------------- thread side
    def collect(self, start: int, end: int) -> tuple[list[Change], bytes | None]:
        """The changes of blocks `start`..`end`, and the hash of block `end` they were read from."""
        end_hash = self._hash_of(end)
        logs = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": self._addresses})
        changes: list[Change] = []
        opened: set[bytes] = set()  # our channels opened in this range: not in the store until applied
        self._settlements = {}  # tx hash -> decoded once
        self._range_end = end
        by_topic = {event.topic: (name, event) for name, event in self._events.items()}
        for entry in logs:
            topic = bytes(entry["topics"][0])
            match = next((v for k, v in by_topic.items() if bytes.fromhex(k.removeprefix("0x")) == topic), None)
            if match is None:
                continue
            name, event = match
            decoded = event.process_log(entry)
            change = self._change(name, dict(decoded["args"]), entry, opened)
            if change is not None:
                changes.append(change)
        return changes, end_hash

    def _change(self, name: str, args: dict[str, Any], entry: Any, opened: set[bytes]) -> Change | None:
        block = int(entry["blockNumber"])
        service = self.service
        if name in REGISTRY_EVENTS:
            catalog_entry = service.catalog.fetch(bytes(args["trackId"]))
            return Change(name, args, block, lambda: self._put_track(catalog_entry))
        if name == "Claimed":
            return Change(
                name,
                args,
                block,
                lambda: self.store.add_claim(
                    bytes(entry["transactionHash"]),
                    int(entry["logIndex"]),
                    args["payee"],
                    args["token"],
                    int(args["amount"]),
                    block,
                ),
            )
        channel_id = bytes(args["channelId"])
        if name == "ChannelOpened":
            if args["relay"] != service.address:
                return None
            record = ChannelRecord(
                channel_id,
                args["payer"],
                args["token"],
                int(args["deposit"]),
                args["sessionKey"],
                int(args["sessionExpiry"]),
                "open",
                0,
                opened_block=block,
            )
            opened.add(channel_id)
            return Change(name, args, block, lambda: service.cache.add_channel(record))
        if channel_id not in opened and self.store.get_channel(channel_id) is None:
            return None  # not one of ours
        if name == "ChannelSettled":
            settled = self._settled_by(bytes(entry["transactionHash"]), int(entry["logIndex"]))
            return Change(name, args, block, lambda: self._record_settlement(channel_id, settled))
        # as of the end of the range: never past it (what is shallower than `confirmations` is not acted on)
        state = service.channels.get_channel(channel_id, block=self._range_end)
        return Change(name, args, block, self._state_applier(name, channel_id, state))

    def _state_applier(self, name: str, channel_id: bytes, state: ChannelState) -> Callable[[], None]:
        """Apply a channel's re-read state after event `name`; a close request or a key change that can void
        vouchers asks the settler to settle the channel now (loop side)."""

        def apply_state() -> None:
            before = self.store.get_channel(channel_id)
            self.service.cache.apply_chain_state(state)
            if name == "CloseRequested" or (name == "SessionKeyChanged" and _key_validity_shrank(before, state)):
                log.info("%s on 0x%s: settling its latest voucher now", name, channel_id.hex())
                self.settler.request(channel_id)

        return apply_state

    def _settled_by(self, tx_hash: bytes, log_index: int) -> SettledState | ChainError | None:
        """What the ChannelSettled at `log_index` of this transaction settled. A settlement transaction's calldata
        and receipt are read and decoded once per collect (a 100-channel batch emits 100 events: decoding it
        for each was quadratic, and ran on the event loop)."""
        decoded = self._settlements.get(tx_hash)
        if decoded is None:
            tx = self.w3.eth.get_transaction(Hash32(tx_hash))
            receipt = self.w3.eth.get_transaction_receipt(Hash32(tx_hash))
            try:
                decoded = self.service.channels.settlements_in(tx, receipt)
            except ChainError as exc:
                decoded = exc
            self._settlements[tx_hash] = decoded
        if isinstance(decoded, ChainError):
            return decoded
        return next((s for s in decoded if s.log_index == log_index), None)

    def _record_settlement(self, channel_id: bytes, settled: SettledState | ChainError | None) -> None:
        """Record a settlement seen on chain (decoded in the worker thread); one that cannot be read back (sent
        through another contract) is logged and its channel marked for the settler, and watching goes on."""
        if isinstance(settled, ChainError):
            self.settler.cannot_read_settled_state(channel_id, settled)
        elif settled is not None:
            record_state(self.store, settled)

    # ------------------------------------------------------------- loop side
    def _put_track(self, entry: CatalogEntry) -> None:
        self.service.put_track(entry)


def _key_validity_shrank(before: ChannelRecord | None, after: ChannelState) -> bool:
    """Whether a key change can void what the relay holds: the previous key was rotated out (it now settles only
    within its grace) or its validity was cut short. Setting a first key, or extending the same one, shortens
    nothing, and must not force a settlement (a griefer could otherwise buy a relay's ~57k-gas settlement of
    dust with each ~33k-gas extension)."""
    if before is None or before.session_key == ZERO_ADDRESS:
        return False
    # the stored expiry is the contract's validity (sessionKeyValidUntil), so compare it with the same
    return after.session_key != before.session_key or after.session_valid_until < before.session_expiry
