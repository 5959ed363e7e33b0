"""The watchtower: follows the contracts' events from the last processed block, surviving restarts.

Each poll reads logs up to `head - confirmations` in a worker thread (including the extra reads a log needs,
such as a settlement's calldata or a track's new terms), then applies the changes on the event loop and
moves the persisted cursor. Applying is idempotent, so a crash between the two only replays a range.
When a listener asks to close a channel (or rotates its session key), the channel's latest voucher is
settled at once, inside the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chainstream.chain.contracts import ChannelState
from chainstream.errors import ChainError
from chainstream.protocol.types import ZERO_ADDRESS
from chainstream.relay.catalog import CatalogEntry
from chainstream.relay.service import RelayService
from chainstream.relay.settler import Settler, record_from_receipt
from chainstream.store import ChannelRecord

log = logging.getLogger("chainstream.watcher")
CURSOR = "events"
MAX_RANGE = 2_000

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


@dataclass(frozen=True)
class Change:
    """One decoded event, with whatever it needed read from the chain, ready to apply without I/O."""

    name: str
    args: dict[str, Any]
    block: int
    apply: Callable[[], None]


class Watcher:
    def __init__(self, service: RelayService, settler: Settler) -> None:
        self.service = service
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

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll()
            except Exception:  # keep watching through RPC errors; the cursor makes it resume exactly
                log.exception("watcher poll failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_interval)

    async def poll(self) -> int:
        """Process every confirmed block not yet processed; returns the number of events applied."""
        latest = await asyncio.to_thread(self.w3.eth.get_block, "latest")
        self.service.observe_chain_time(latest["timestamp"])
        target = latest["number"] - self.settings.confirmations
        applied = 0
        while self.processed_block is not None and self.processed_block < target:
            start = self.processed_block + 1
            end = min(target, start + MAX_RANGE - 1)
            changes = await asyncio.to_thread(self.collect, start, end)
            for change in changes:
                change.apply()
            applied += len(changes)
            self.store.set_cursor(self.cursor, end)
            self.processed_block = end
        return applied

    # ----------------------------------------------------------- thread side
    def collect(self, start: int, end: int) -> list[Change]:
        logs = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": self._addresses})
        changes: list[Change] = []
        opened: set[bytes] = set()  # our channels opened in this range: not in the store until applied
        by_topic = {event.topic: (name, event) for name, event in self._events.items()}  # type: ignore[attr-defined]
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
        return changes

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
            return Change(name, args, block, lambda: service.add_channel(record))
        if channel_id not in opened and self.store.get_channel(channel_id) is None:
            return None  # not one of ours
        if name == "ChannelSettled":
            tx = self.w3.eth.get_transaction(entry["transactionHash"])
            receipt = self.w3.eth.get_transaction_receipt(entry["transactionHash"])
            return Change(name, args, block, lambda: self._record_settlement(channel_id, tx, receipt))
        state = service.channels.get_channel(channel_id)

        def apply_state() -> None:
            before = self.store.get_channel(channel_id)
            service.apply_chain_state(state)
            if name == "CloseRequested" or (name == "SessionKeyChanged" and _key_validity_shrank(before, state)):
                log.info("%s on 0x%s: settling its latest voucher now", name, channel_id.hex())
                self.settler.request(channel_id)

        return Change(name, args, block, apply_state)

    def _record_settlement(self, channel_id: bytes, tx: Any, receipt: Any) -> None:
        """Record a settlement seen on chain; one that cannot be read back (sent through another contract) is
        logged and its channel marked for the settler, and watching goes on."""
        try:
            record_from_receipt(self.store, self.service.channels, tx, receipt)
        except ChainError as exc:
            self.settler.cannot_read_settled_state(channel_id, exc)

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
