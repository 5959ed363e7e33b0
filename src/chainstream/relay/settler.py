"""Batched settlement through a transaction outbox.

Policy (`settle_policy`): a channel is settled when a deadline forces it (the channel is closing; the session
key that signed its latest voucher is within `session_margin` of its expiry, or was rotated out; or the
watchtower or a key change asked for it — past a deadline the voucher could no longer be settled), or when it
is due (unsettled value
>= `settle_min_value`, or its oldest unsettled payment `settle_max_age` old) and worth its gas
(`settle_max_gas_fraction`); due channels not worth their gas are held (`held_for_economics`) until they are.
Settled channels go in `settle_batch_size` chunks, one settleBatch transaction each.

Outbox: a transaction is signed, then written to the database with its nonce and hash, and only then sent.
Every round (and after a crash) the outbox is reconciled with the chain by receipt, not by memory
(`reconcile_outbox`): what a settlement credited is recorded only once its receipt is `confirmations` deep; a
transaction whose receipt vanished (a reorg, a node restarted behind) is re-broadcast as the same bytes, or
dropped if its nonce went to another transaction (its channels then settle again); one left unmined for
`settle_replace_after` seconds is replaced at the same nonce with a 12.5 % higher fee, up to
`settle_max_fee_per_gas`. Channels in an unfinished transaction are not settled again meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from eth_account import Account
from hexbytes import HexBytes
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3RPCError

from chainstream.chain.contracts import ChannelsClient, ChannelState, SettledState, settle_entry
from chainstream.chain.transactions import PRIORITY_FEE, TxSender, bumped_fees, unsigned_from_raw
from chainstream.errors import ChainError
from chainstream.protocol import Signature, SignedVoucher, to_address
from chainstream.relay.observer import NO_OBSERVER, RelayObserver
from chainstream.relay.outage import DatabaseStatus, is_database_unavailable
from chainstream.relay.service import RelayService
from chainstream.relay.settle_policy import ENTRY_GAS, PAYEE_GAS, Decision, SettlePolicy, entry_gas
from chainstream.store import OutboxRecord, PaymentRecord, SettledRecord, Store

log = logging.getLogger("chainstream.settler")

#: Reasons settleBatch skips an entry for that no later round can change for the same voucher (its channel's
#: window is over, its signer is no longer authorised, it is malformed). The others (stale, prevAmounts not
#: matching the settled state) mean the relay's view of the settled state is behind the chain's.
PERMANENT_SKIPS = frozenset(
    {
        "ChannelNotFound",
        "ChannelNotSettleable",
        "VoucherLengthMismatch",
        "VoucherAmountOverflow",
        "VoucherInvalidSignature",
        "VoucherUnauthorizedSigner",
    }
)


#: outbox states of a transaction not yet settled for good: signed (maybe not sent), sent, mined (fewer than
#: `confirmations` blocks deep), replaced (a higher-fee transaction of the same nonce was sent; either may land)
UNFINISHED = ("signed", "sent", "mined", "replaced")
#: settlements this process recorded are checked against reorgs until `confirmations` + RECHECK_DEPTH blocks deep
#: (at most RECHECK_WINDOW of them): long enough for the watcher, which checks every block it processed, to be past
#: them (a reorg of a block the watcher processed is the watcher's to roll back)
RECHECK_DEPTH, RECHECK_WINDOW = 16, 256


class Settler:
    def __init__(self, service: RelayService, sender: TxSender, observer: RelayObserver = NO_OBSERVER) -> None:
        """`observer` hears of every settlement batch sent or failed and the gas of each one recorded."""
        self.service = service
        self.observer = observer
        self.store = service.store
        self.settings = service.settings
        self.sender = sender
        self.urgent: set[bytes] = set()
        #: channel -> (voucher total, reason) of a latest voucher the contract refused for good: not sent again
        #: (each attempt would pay gas for another skip) until the channel has a newer voucher
        self.unsettleable: dict[bytes, tuple[int, str]] = {}
        self._mismatched: dict[bytes, int] = {}  # channel -> voucher total last refused for its prevAmounts
        self._wake = asyncio.Event()
        self.batches_sent = 0
        self.rounds = 0
        #: wei per gas a settlement costs now (base fee + tip), read each round; None until the first round, and
        #: while unknown nothing is settled for economics alone (deadlines still are)
        self.gas_price: int | None = None
        #: channel -> unsettled value of each due channel the last round held because its gas would cost more
        #: than `settle_max_gas_fraction` of it (operators: watch its size; `held_rounds` counts round-holds)
        self.held_for_economics: dict[bytes, int] = {}
        self.held_rounds = 0
        #: whether this instance settles: always with one instance; with several sharing a database, the one
        #: holding the lead (Store.try_lead), and the others take over when it goes
        self.leading = False
        self._at_ceiling: set[int] = set()  # outbox rows stuck at the fee ceiling (said once)
        #: outbox id -> (block, block hash, payload) of settlements recorded lately, checked for reorgs
        self._recent: dict[int, tuple[int, bytes, dict[str, Any]]] = {}
        #: the database as the rounds find it: lost and back are logged once each, not a traceback per round
        self.database = DatabaseStatus("settler", log)

    def wake(self) -> None:
        """Run the next round (or notice a stop) now instead of at the end of the interval."""
        self._wake.set()

    def request(self, channel_id: bytes) -> None:
        """Settle this channel in the next round, whatever the policy says (watchtower, key rotation)."""
        self.urgent.add(channel_id)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._lead()
                if self.leading:
                    await self.settle_round()
                self.database.succeeded()
            except Exception as exc:  # the loop must survive RPC hiccups; the outbox keeps state consistent
                if is_database_unavailable(exc):
                    self.database.failed(exc)
                else:
                    log.exception("settlement round failed; retrying next round")
                self.sender.reset_nonce()
            self.rounds += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.settle_interval)

    async def _lead(self) -> None:
        """Take (or keep) the lead; on taking it, finish what the outbox holds and read the key's nonce anew
        (after a restart, or after another instance led)."""
        leading = await asyncio.to_thread(self.store.try_lead)
        if leading and not self.leading:
            if self.store.shared:
                log.info("instance %s leads settlement", self.settings.instance)
            self.sender.reset_nonce()
            await asyncio.to_thread(self.recover_outbox)
        elif not leading and self.leading:
            log.warning("instance %s lost the lead: another instance settles now", self.settings.instance)
        self.leading = leading

    async def settle_urgent_before_serving(self) -> int:
        """At start, before the relay opens its port: settle (sent and mined) the latest voucher of every channel
        whose close window is running, or that the watchtower flagged while catching up (CloseRequested,
        SessionKeyChanged). A relay that is killed again at each restart (by a request that crashes it, before
        its settler's first round) still defends those channels: the payer cannot settle an older voucher at
        the end of a window the relay slept through. Returns how many channels were settled. Only the instance
        leading settlement does it; a failure is logged and left to the regular rounds."""
        await self._lead()
        if not self.leading:
            return 0
        block_time = await asyncio.to_thread(lambda: int(self.sender.w3.eth.get_block("latest")["timestamp"]))
        self.service.observe_chain_time(block_time)
        urgent = []
        in_flight = await asyncio.to_thread(self.in_flight)
        for latest, prev in self.due(self.service.clock(), chain_now=self.service.chain_now()):
            if latest.channel_id in in_flight:
                continue
            record = self.store.get_channel(latest.channel_id)
            if latest.channel_id in self.urgent or (record is not None and record.status == "closing"):
                urgent.append((latest, prev))
        count = 0
        for chunk in batches(urgent, self.settings.settle_batch_size, self.settings.settle_batch_gas):
            try:
                await asyncio.to_thread(self._settle_chunk, chunk)
            except Exception:  # the node refused or timed out: the regular rounds retry, the outbox keeps state
                log.exception("settling closing channels before serving failed; the settler retries")
                self.sender.reset_nonce()
                continue
            for latest, _ in chunk:
                self.urgent.discard(latest.channel_id)
            count += len(chunk)
        if count:
            log.warning("settled %d closing channel(s) before serving", count)
        return count

    # ------------------------------------------------------------------ policy
    def due(
        self, now: float, force: bool = False, chain_now: float | None = None
    ) -> list[tuple[PaymentRecord, tuple[int, ...]]]:
        """Latest unsettled voucher (and the prevAmounts to submit with it) of every channel to settle now
        (`SettlePolicy.decide`; due channels not worth their gas go to `held_for_economics` instead).

        Close windows and key expiries are measured on the chain's clock (`chain_now`, the latest block's time).
        A voucher the contract can only refuse (its channel's window is over, its session key has expired) is
        left out: sending it would pay gas every round for a settlement that is skipped every time."""
        due: list[tuple[PaymentRecord, tuple[int, ...]]] = []
        held: dict[bytes, int] = {}
        policy = self.policy
        chain_now = now if chain_now is None else chain_now
        for record in self.store.channels():
            if record.status == "closed":
                continue
            latest = self.store.latest_payment(record.channel_id)
            if latest is None:
                continue
            blocked = self.unsettleable.get(record.channel_id)
            if blocked is not None:
                if blocked[0] == latest.voucher.total:
                    continue
                del self.unsettleable[record.channel_id]  # a newer voucher: worth a try
            settled = self.store.get_settled(record.channel_id)
            settled_total = settled.total if settled else 0
            unsettled = latest.voucher.total - settled_total
            if unsettled <= 0:
                continue
            since = self.service.cache.unsettled_since(record.channel_id) or latest.accepted_at
            closing = record.status == "closing"
            by_session_key = latest.signer == record.session_key and latest.signer != record.payer
            if (closing and record.closes_at and record.closes_at <= chain_now) or (
                by_session_key and record.session_expiry <= chain_now
            ):
                continue
            # A session key's deadline counts once the relay has stopped taking that key's vouchers (within
            # SESSION_MARGIN of its expiry): the voucher can no longer grow, so this forces one settlement per key,
            # not one per play (a griefer's dust played inside a longer margin would force one each round).
            key_deadline = by_session_key and record.session_expiry - chain_now <= self.settings.session_margin
            # A voucher signed by neither the payer nor the current key is a rotated-out key's: it settles only
            # within that key's grace (the watcher's request for it is in memory only; this survives a restart).
            retired_signer = latest.signer not in (record.payer, record.session_key)
            # A closing channel takes no more payments: settle it now. (The watchtower's request for it is only
            # in memory; after a restart the cursor is past the CloseRequested, and this is what remains.)
            forced = force or record.channel_id in self.urgent or closing or key_deadline or retired_signer
            decision = policy.decide(
                token=to_address(record.token),
                unsettled=unsettled,
                payees=len(latest.voucher.payees),
                age=now - since,
                deadline=forced,
                gas_price=self.gas_price,
            )
            if decision is Decision.HOLD_ECONOMICS:
                held[record.channel_id] = unsettled
            elif decision is not Decision.WAIT:
                due.append((latest, settled.credited if settled else ()))
        self._note_held(held)
        return due

    @property
    def policy(self) -> SettlePolicy:
        """The selection policy from the current settings (read each time: an operator or the demo may change
        them while the relay runs)."""
        return SettlePolicy.from_settings(self.settings)

    def _note_held(self, held: dict[bytes, int]) -> None:
        """Report the channels held for economics: each newly held one once (not every round), and the count."""
        for channel_id, unsettled in held.items():
            if channel_id not in self.held_for_economics:
                log.info(
                    "settlement of 0x%s held for economics: %d unsettled is worth less than its gas "
                    "/ settle_max_gas_fraction at %s wei/gas (settled once worth it, or at a deadline)",
                    channel_id.hex(),
                    unsettled,
                    self.gas_price,
                )
        if held:
            self.held_rounds += 1
        self.held_for_economics = held

    async def settle_round(self, force: bool = False) -> int:
        """Settle everything due now; returns how many channels were settled."""
        await asyncio.to_thread(self.reconcile_outbox)
        block = await asyncio.to_thread(self.sender.w3.eth.get_block, "latest")
        self.service.observe_chain_time(int(block["timestamp"]))
        self.gas_price = int(block.get("baseFeePerGas", 0) or 0) + PRIORITY_FEE
        in_flight = await asyncio.to_thread(self.in_flight)
        due = [
            d
            for d in self.due(self.service.clock(), force, self.service.chain_now())
            if d[0].channel_id not in in_flight
        ]
        count = 0
        for chunk in batches(due, self.settings.settle_batch_size, self.settings.settle_batch_gas):
            await asyncio.to_thread(self._settle_chunk, chunk)
            for latest, _ in chunk:
                self.urgent.discard(latest.channel_id)
                self.service.cache.mark_settled(latest.channel_id, latest.voucher.total)
            count += len(chunk)
        return count

    # ------------------------------------------------------------- transactions
    def _settle_chunk(self, chunk: list[tuple[PaymentRecord, tuple[int, ...]]]) -> None:
        """Settle one batch of channels (`_send_chunk`), reported to the observer as sent or failed."""
        try:
            self._send_chunk(chunk)
        except Exception:  # reported, and raised on
            self.observer.settlement_failed()
            raise
        self.observer.settlement_sent(len(chunk))

    def _send_chunk(self, chunk: list[tuple[PaymentRecord, tuple[int, ...]]]) -> None:
        """Sign one settleBatch, write it to the outbox, send it, and follow it for up to `settle_receipt_wait`
        seconds (a round never hangs on a stuck transaction: the outbox follows it in later rounds)."""
        entries = [settle_entry(SignedVoucher(p.voucher, Signature.from_bytes(p.signature)), prev) for p, prev in chunk]
        call = self.service.channels.settle_batch_call(entries)
        tx = self.sender.build(call, gas=None, action="settleBatch")
        tx["gas"] = int(tx["gas"] * 1.25) + 50_000
        ceiling = self.settings.settle_max_fee_per_gas
        tx["maxFeePerGas"] = max(min(tx["maxFeePerGas"], ceiling), tx["maxPriorityFeePerGas"])
        with self.sender._lock:
            tx["nonce"] = self.sender._next_nonce()
            signed = Account.sign_transaction(tx, self.sender.account.key)
        payload = {"channels": ["0x" + p.channel_id.hex() for p, _ in chunk]}
        outbox_id = self.store.add_outbox(
            "settleBatch", tx["nonce"], bytes(signed.hash), bytes(signed.raw_transaction), payload
        )
        self._broadcast(outbox_id, bytes(signed.raw_transaction))
        self.batches_sent += 1
        try:
            receipt = self.sender.w3.eth.wait_for_transaction_receipt(
                HexBytes(signed.hash), timeout=self.settings.settle_receipt_wait
            )
        except TimeExhausted:
            log.warning(
                "settlement 0x%s (nonce %s) not mined within %ss: the outbox follows it (replaced if stuck)",
                bytes(signed.hash).hex(),
                tx["nonce"],
                self.settings.settle_receipt_wait,
            )
            return
        head = int(self.sender.w3.eth.block_number)
        row = OutboxRecord(
            outbox_id, "settleBatch", "sent", tx["nonce"], bytes(signed.hash), b"", payload, time.time(), None, None
        )
        self._on_receipt(row, receipt, head, {p.channel_id: p.voucher.total for p, _ in chunk})

    def _on_receipt(self, row: OutboxRecord, receipt: Any, head: int, totals: dict[bytes, int] | None = None) -> None:
        """A receipt of an outbox transaction: recorded once `confirmations` deep (a reorg shallower than that
        could still drop it, and what it settled must then be settled again), else left `mined`."""
        block = int(receipt["blockNumber"])
        if receipt["status"] != 1:
            self.store.update_outbox(row.id, "failed", block=block, error="reverted")
            return
        if head - block < self.settings.confirmations:
            if row.status != "mined":
                self.store.update_outbox(row.id, "mined", block=block)
            return
        self.record_settlements(receipt)
        self.store.update_outbox(row.id, "confirmed", block=block)
        self._recent[row.id] = (block, bytes(receipt["blockHash"]), row.payload)
        while len(self._recent) > RECHECK_WINDOW:
            del self._recent[min(self._recent)]
        if totals is None:
            totals = {}
            for channel in row.payload.get("channels", ()):
                channel_id = bytes.fromhex(channel.removeprefix("0x"))
                latest = self.store.latest_payment(channel_id)
                totals[channel_id] = latest.voucher.total if latest else 0
        self._note_skips(receipt, totals)

    def _note_skips(self, receipt: Any, totals: dict[bytes, int]) -> None:
        """Remember vouchers the contract refused for good; re-read the settled state where ours was behind."""
        self.observer.settlement_mined(int(receipt.get("gasUsed", 0) or 0))
        for channel_id, reason in self.service.channels.skipped_in(receipt):
            total = totals.get(channel_id, 0)
            if reason == "VoucherPrevStateMismatch":
                # Sent again after re-reading the settled state and refused again: the chain's settled state is
                # not a prefix of this voucher (settled by someone else): no round can change that.
                if self._mismatched.get(channel_id) == total:
                    self._hold(channel_id, total, f"{reason} (twice)")
                    continue
                self._mismatched[channel_id] = total
            if reason in PERMANENT_SKIPS:
                self._hold(channel_id, total, reason)
                continue
            self.refresh_settled(channel_id)

    def refresh_settled(self, channel_id: bytes, state: ChannelState | None = None) -> bool:
        """Make the stored settled state of a channel the chain's (`state`: the channel as just read, if at
        hand), whichever is ahead: a settlement a reorg dropped (or a node restarted behind lost) is forgotten,
        so the channel is settled again with prevAmounts that the chain holds. Returns whether it changed."""
        chain = state if state is not None else self.service.channels.get_channel(channel_id)
        stored = self.store.get_settled(channel_id)
        stored_total = stored.total if stored else 0
        if chain.settled == stored_total:
            return False
        if chain.settled == 0:
            fresh: SettledState | None = None
        else:
            try:
                fresh = self.service.channels.settled_state(channel_id)
            except ChainError as exc:
                self.cannot_read_settled_state(channel_id, exc)
                return False
        if fresh is None:
            record = SettledRecord(channel_id, 0, (), (), 0)
        else:
            record = SettledRecord(channel_id, fresh.total, fresh.payees, fresh.credited, fresh.block_number)
        log.warning(
            "settled state of 0x%s re-read from the chain: %d (the relay had %d)",
            channel_id.hex(),
            record.total,
            stored_total,
        )
        self.store.set_settled(record)
        self._mismatched.pop(channel_id, None)
        self.unsettleable.pop(channel_id, None)
        self.service.cache.mark_settled_at(channel_id, record.total)
        return True

    def cannot_read_settled_state(self, channel_id: bytes, exc: Exception) -> None:
        """The channel was settled in a way the relay cannot read back (through another contract): without the
        settled payees it cannot build prevAmounts, so it stops sending the channel's vouchers (each would be
        skipped) until a newer voucher, and says so. Other channels are not affected."""
        latest = self.store.latest_payment(channel_id)
        self._hold(channel_id, latest.voucher.total if latest else 0, "SettledStateUnknown", str(exc))

    def _hold(self, channel_id: bytes, total: int, reason: str, detail: str = "") -> None:
        """Stop sending the channel's voucher of this total (a newer voucher lifts it; see `due`), and say so."""
        log.warning("settlement of 0x%s held until a newer voucher: %s %s", channel_id.hex(), reason, detail)
        self.unsettleable[channel_id] = (total, reason)

    def _broadcast(self, outbox_id: int, raw: bytes) -> None:
        try:
            self.sender.w3.eth.send_raw_transaction(raw)
        except (Web3RPCError, ValueError) as exc:
            text = str(exc).lower()
            if "already known" not in text and "nonce too low" not in text:
                self.store.update_outbox(outbox_id, "failed", error=str(exc))
                self.sender.reset_nonce()
                raise
        self.store.update_outbox(outbox_id, "sent")

    def record_settlements(self, receipt: Any) -> None:
        """Store what a settlement transaction credited, from its events and calldata."""
        tx = self.sender.w3.eth.get_transaction(receipt["transactionHash"])
        record_from_receipt(self.store, self.service.channels, tx, receipt)

    def in_flight(self) -> set[bytes]:
        """Channels in a settlement transaction not yet confirmed (sent, mined, or being replaced): not settled
        again meanwhile (a second transaction would pay gas for a no-op)."""
        out: set[bytes] = set()
        for row in self.store.outbox(UNFINISHED):
            out.update(bytes.fromhex(c.removeprefix("0x")) for c in row.payload.get("channels", ()))
        return out

    def reconcile_outbox(self) -> None:
        """Follow every unfinished outbox transaction by its receipt, never by memory (run each round, and after a
        restart or on taking the lead). Per nonce:

        - a receipt `confirmations` deep: its settlements are recorded (`confirmed`); the other transactions of
          that nonce (replaced ones) are `dropped`;
        - a receipt not yet that deep: `mined`, looked at again next round (a reorg may still drop it);
        - no receipt and the nonce already used on chain by a transaction not ours: `dropped`, and the settled
          state of its channels re-read from the chain (they settle again in a later round if they need to);
        - no receipt and the nonce free: re-broadcast (a reorg or a node restart loses transactions; the same
          bytes fill the nonce gap), and replaced with a 12.5 % higher fee once older than
          `settle_replace_after` (up to `settle_max_fee_per_gas`).

        Nothing here waits for a transaction, so one stuck transaction never stops the rounds (nor the defence of
        closing channels, which its replacement unblocks)."""
        self._recheck_recent()
        # The next settlement's nonce is read from the chain's view (its pending count) after this reconciliation,
        # never carried over from memory: a reorg or a node restart may have lost what the key sent.
        self.sender.reset_nonce()
        rows = self.store.outbox(UNFINISHED)
        if not rows:
            return
        w3 = self.sender.w3
        head = int(w3.eth.block_number)
        chain_nonce = int(w3.eth.get_transaction_count(self.sender.address, "latest"))
        by_nonce: dict[int, list[OutboxRecord]] = {}
        for row in rows:
            by_nonce.setdefault(row.nonce, []).append(row)
        for nonce in sorted(by_nonce):
            group = by_nonce[nonce]
            landed = None
            for row in group:
                receipt = self._receipt(row.tx_hash)
                if receipt is not None:
                    landed = (row, receipt)
                    break
            if landed is not None:
                row, receipt = landed
                self._on_receipt(row, receipt, head)
                for other in group:
                    if other.id != row.id:
                        self.store.update_outbox(other.id, "dropped", error=f"replaced by outbox {row.id}")
                continue
            if nonce < chain_nonce:
                for row in group:
                    self.store.update_outbox(row.id, "dropped", error="its nonce was used by another transaction")
                self._refresh_channels(group)
                continue
            newest = group[-1]
            self._rebroadcast(newest)
            if time.time() - newest.created_at >= self.settings.settle_replace_after:
                self._replace(newest, [row.id for row in group])
        self.sender.reset_nonce()

    def _recheck_recent(self) -> None:
        """The settlements this process recorded lately: one whose block the chain no longer holds (a reorg
        deeper than `confirmations`, a node restarted behind) is followed again and its channels' settled state
        re-read from the chain (the watcher does the same for the blocks it processed)."""
        if not self._recent:
            return
        w3 = self.sender.w3
        head = int(w3.eth.block_number)
        depth = self.settings.confirmations + RECHECK_DEPTH
        hashes: dict[int, bytes] = {}  # one read per block, however many settlements it holds
        for outbox_id, (block, block_hash, payload) in list(self._recent.items()):
            if block <= head:
                if block not in hashes:
                    hashes[block] = bytes(w3.eth.get_block(block)["hash"])
                if hashes[block] == block_hash:
                    if head - block > depth:
                        del self._recent[outbox_id]
                    continue
            del self._recent[outbox_id]
            log.warning(
                "settlement of outbox %s (block %s) is no longer on the chain: following it again", outbox_id, block
            )
            self.store.update_outbox(outbox_id, "sent")
            for channel in payload.get("channels", ()):
                try:
                    self.refresh_settled(bytes.fromhex(channel.removeprefix("0x")))
                except ChainError as exc:
                    log.warning("cannot re-read the settled state of %s: %s", channel, exc)

    def _receipt(self, tx_hash: bytes) -> Any:
        try:
            return self.sender.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def _refresh_channels(self, rows: list[OutboxRecord]) -> None:
        for row in rows:
            for channel in row.payload.get("channels", ()):
                channel_id = bytes.fromhex(channel.removeprefix("0x"))
                try:
                    self.refresh_settled(channel_id)
                except ChainError as exc:
                    log.warning("cannot re-read the settled state of %s: %s", channel, exc)

    def _rebroadcast(self, row: OutboxRecord) -> None:
        """Send the row's signed bytes again (a no-op if the node's pool holds them)."""
        try:
            self.sender.w3.eth.send_raw_transaction(row.raw_tx)
        except (Web3RPCError, ValueError) as exc:
            text = str(exc).lower()
            if "already known" in text or "nonce too low" in text:
                return
            log.info("outbox %s (nonce %s) not re-broadcast: %s", row.id, row.nonce, exc)
            return
        if row.status == "signed":
            self.store.update_outbox(row.id, "sent")
        log.info("re-broadcast outbox %s (nonce %s)", row.id, row.nonce)

    def _replace(self, row: OutboxRecord, superseded: list[int]) -> None:
        """Re-sign the row's transaction at the same nonce with fees 12.5 % higher (EIP-1559 replacement), within
        `settle_max_fee_per_gas`; the old rows stay followed (`replaced`) in case one of them lands first."""
        fields = unsigned_from_raw(row.raw_tx)
        base_fee = int(self.sender.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        fees = bumped_fees(
            int(fields["maxFeePerGas"]),
            int(fields["maxPriorityFeePerGas"]),
            base_fee=base_fee,
            ceiling=self.settings.settle_max_fee_per_gas,
        )
        if fees is None:
            if row.id not in self._at_ceiling:
                self._at_ceiling.add(row.id)
                log.warning(
                    "outbox %s (nonce %s) is stuck at %s wei/gas (base fee %s) and SETTLE_MAX_FEE_PER_GAS (%s) "
                    "allows no higher replacement: it waits",
                    row.id,
                    row.nonce,
                    fields["maxFeePerGas"],
                    base_fee,
                    self.settings.settle_max_fee_per_gas,
                )
            return
        fields["maxFeePerGas"], fields["maxPriorityFeePerGas"] = fees
        signed = Account.sign_transaction(fields, self.sender.account.key)
        payload = {**row.payload, "replaces": row.id}
        new_id = self.store.add_outbox(row.kind, row.nonce, bytes(signed.hash), bytes(signed.raw_transaction), payload)
        try:
            self._broadcast(new_id, bytes(signed.raw_transaction))
        except (Web3RPCError, ValueError) as exc:
            log.warning("replacement of outbox %s refused by the node: %s", row.id, exc)
            return
        for old in superseded:
            self.store.update_outbox(old, "replaced")
        log.warning(
            "outbox %s (nonce %s) unmined for %.0fs: replaced by outbox %s at %s wei/gas (tip %s)",
            row.id,
            row.nonce,
            time.time() - row.created_at,
            new_id,
            fees[0],
            fees[1],
        )

    def recover_outbox(self) -> None:
        """After a restart (or on taking the lead): finish what the outbox holds (`reconcile_outbox`)."""
        self.reconcile_outbox()
        self.sender.reset_nonce()


__all__ = ["ENTRY_GAS", "PAYEE_GAS", "PERMANENT_SKIPS", "Settler", "batches", "entry_gas", "record_state"]


def batches(
    due: list[tuple[PaymentRecord, tuple[int, ...]]], size: int, gas_budget: int
) -> list[list[tuple[PaymentRecord, tuple[int, ...]]]]:
    """`due` in order, cut into settleBatch chunks of at most `size` entries and about `gas_budget` gas (by
    entry_gas), so that channels with many payees can never make one transaction exceed a block's gas limit
    (which would fail the round for every channel after it). An entry over the budget on its own goes alone."""
    out: list[list[tuple[PaymentRecord, tuple[int, ...]]]] = []
    chunk: list[tuple[PaymentRecord, tuple[int, ...]]] = []
    used = 0
    for item in due:
        cost = entry_gas(len(item[0].voucher.payees))
        if chunk and (len(chunk) >= size or used + cost > gas_budget):
            out.append(chunk)
            chunk, used = [], 0
        chunk.append(item)
        used += cost
    if chunk:
        out.append(chunk)
    return out


def record_from_receipt(store: Store, channels: ChannelsClient, tx: Any, receipt: Any) -> None:
    """Update the settled table from a transaction's settlements (ours, or anyone else's seen by the watcher)."""
    for settled in channels.settlements_in(tx, receipt):
        record_state(store, settled)


def record_state(store: Store, settled: SettledState) -> None:
    """Keep a channel's settled state, unless the store already has a later one."""
    current = store.get_settled(settled.channel_id)
    if current is None or current.total <= settled.total:
        store.set_settled(
            SettledRecord(settled.channel_id, settled.total, settled.payees, settled.credited, settled.block_number)
        )
