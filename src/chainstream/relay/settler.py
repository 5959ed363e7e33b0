"""Batched settlement through a transaction outbox.

Policy (`settle_policy`): a channel is settled when a deadline forces it (the channel is closing; the session
key that signed its latest voucher is within `session_margin` of its expiry, or was rotated out; or the
watchtower or a key change asked for it — past a deadline the voucher could no longer be settled), or when it
is due (unsettled value
>= `settle_min_value`, or its oldest unsettled payment `settle_max_age` old) and worth its gas
(`settle_max_gas_fraction`); due channels not worth their gas are held (`held_for_economics`) until they are.
Settled channels go in `settle_batch_size` chunks, one settleBatch transaction each.

Outbox: a transaction is signed, then written to the database with its nonce and hash, and only then sent.
After a crash, every signed or sent row is looked up by hash and re-broadcast as the same signed bytes if it
never landed, so a settlement is never lost and never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from eth_account import Account
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound, Web3RPCError

from chainstream.chain.contracts import ChannelsClient, SettledState, settle_entry
from chainstream.chain.transactions import PRIORITY_FEE, TxSender
from chainstream.errors import ChainError
from chainstream.protocol import Signature, SignedVoucher, to_address
from chainstream.relay.service import RelayService
from chainstream.relay.settle_policy import ENTRY_GAS, PAYEE_GAS, Decision, SettlePolicy, entry_gas
from chainstream.store import PaymentRecord, SettledRecord, Store

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


class Settler:
    def __init__(self, service: RelayService, sender: TxSender) -> None:
        self.service = service
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
            except Exception:  # the loop must survive RPC hiccups; the outbox keeps state consistent
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
        for latest, prev in self.due(self.service.clock(), chain_now=self.service.chain_now()):
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
            since = self.service.unsettled_since(record.channel_id) or latest.accepted_at
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
        block = await asyncio.to_thread(self.sender.w3.eth.get_block, "latest")
        self.service.observe_chain_time(int(block["timestamp"]))
        self.gas_price = int(block.get("baseFeePerGas", 0) or 0) + PRIORITY_FEE
        due = self.due(self.service.clock(), force, self.service.chain_now())
        count = 0
        for chunk in batches(due, self.settings.settle_batch_size, self.settings.settle_batch_gas):
            await asyncio.to_thread(self._settle_chunk, chunk)
            for latest, _ in chunk:
                self.urgent.discard(latest.channel_id)
                self.service.mark_settled(latest.channel_id, latest.voucher.total)
            count += len(chunk)
        return count

    # ------------------------------------------------------------- transactions
    def _settle_chunk(self, chunk: list[tuple[PaymentRecord, tuple[int, ...]]]) -> None:
        entries = [settle_entry(SignedVoucher(p.voucher, Signature.from_bytes(p.signature)), prev) for p, prev in chunk]
        call = self.service.channels.contract.functions.settleBatch(entries)
        tx = self.sender.build(call, gas=None, action="settleBatch")
        tx["gas"] = int(tx["gas"] * 1.25) + 50_000
        with self.sender._lock:
            tx["nonce"] = self.sender._next_nonce()
            signed = Account.sign_transaction(tx, self.sender.account.key)
        payload = {"channels": ["0x" + p.channel_id.hex() for p, _ in chunk]}
        outbox_id = self.store.add_outbox(
            "settleBatch", tx["nonce"], bytes(signed.hash), bytes(signed.raw_transaction), payload
        )
        self._broadcast(outbox_id, bytes(signed.raw_transaction))
        receipt = self._await_receipt(outbox_id, bytes(signed.hash))
        self.batches_sent += 1
        if receipt is not None:
            self._note_skips(receipt, {p.channel_id: p.voucher.total for p, _ in chunk})

    def _note_skips(self, receipt: Any, totals: dict[bytes, int]) -> None:
        """Remember vouchers the contract refused for good; re-read the settled state where ours was behind."""
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
            try:
                state = self.service.channels.settled_state(channel_id)
            except ChainError as exc:
                self.cannot_read_settled_state(channel_id, exc)
                continue
            if state is not None:
                record_state(self.store, state)

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

    def _await_receipt(self, outbox_id: int, tx_hash: bytes, timeout: float = 120) -> Any:
        """The transaction's receipt once mined (None if it reverted), its settlements recorded."""
        receipt = self.sender.w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout)
        if receipt["status"] != 1:
            self.store.update_outbox(outbox_id, "failed", block=receipt["blockNumber"], error="reverted")
            return None
        self.record_settlements(receipt)
        self.store.update_outbox(outbox_id, "confirmed", block=receipt["blockNumber"])
        return receipt

    def record_settlements(self, receipt: Any) -> None:
        """Store what a settlement transaction credited, from its events and calldata."""
        tx = self.sender.w3.eth.get_transaction(receipt["transactionHash"])
        record_from_receipt(self.store, self.service.channels, tx, receipt)

    def recover_outbox(self) -> None:
        """After a restart: finish what was signed or sent, re-broadcasting the same bytes if needed."""
        for row in self.store.outbox(("signed", "sent")):
            try:
                self.sender.w3.eth.get_transaction_receipt(HexBytes(row.tx_hash))
            except TransactionNotFound:
                log.info("re-broadcasting outbox %s (nonce %s)", row.id, row.nonce)
                try:
                    self._broadcast(row.id, row.raw_tx)
                except (Web3RPCError, ValueError):
                    continue
            try:
                self._await_receipt(row.id, row.tx_hash, timeout=60)
            except TimeoutError:
                log.warning("outbox %s not mined yet", row.id)
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
