"""Scheduled payouts at the relay: a loop that pushes payees' due balances in payoutBatch transactions.

Payees opt in by signature (POST /payouts/schedule, or straight to the contract); the loop learns them from the
contract's PayoutScheduleSet events, asks the contract which are due (enabled, balance ≥ threshold and above the
fee, period elapsed), and sends one payoutBatch per `payout_batch_size` of them. The contract pays each balance
only to its owner or the recipient the owner signed, keeps at most the owner's signed maxFee for the relay, and
skips anything not due, so a stale view here costs gas at worst, never anyone's money. Only the settlement leader
pushes (the same key, one nonce sequence).

Every payout of every PaidOutBatch record (whoever sent the batch: one log per batch, decoded into one entry per
listed payee, chain.gasless.decode_payout_entries) is kept by payee for GET /artists/{address}/payouts (read from the
contract's logs once, incrementally, by the loop's rounds, never per request) and recorded as a claim of
`amount + fee` in the store: the payee's whole balance left the contract, so its earnings (and the earnings CSV) show
those payments as claimed, like a pull claim. (Recorded as seen, without the watcher's reorg handling: a payout
dropped by a reorg would show as claimed until the payee claims or is paid again.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from chainstream.chain.contracts import LOG_RANGE, ChannelsClient
from chainstream.chain.gasless import (
    PaidOut,
    PayoutBatchLog,
    payout_batch,
    payout_batches,
    payout_schedule,
    payouts_in,
)
from chainstream.chain.transactions import TxSender
from chainstream.config import Settings
from chainstream.errors import ChainError
from chainstream.protocol.types import Address, to_address
from chainstream.store import Store
from chainstream.tokens import TokenInfo

log = logging.getLogger("chainstream.payouts")


@dataclass(frozen=True)
class PayoutRecord:
    """One payout (an entry of a PaidOutBatch record): a payee's balance of `token` sent to `to`, less the `fee` its
    submitter kept."""

    token: Address
    to: Address
    amount: int
    fee: int
    tx_hash: str
    block: int

    def as_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "amount": str(self.amount),
            "fee": str(self.fee),
            "txHash": self.tx_hash,
            "block": self.block,
        }


# A claim row is keyed by (transaction, log index); one PaidOutBatch log holds many payouts, so each gets a key of its
# own below zero (real log indices are never negative, so a Claimed row cannot collide): -(1 + log index * 4096 + k)
# for the batch's k-th payout. It must fit PostgreSQL's INTEGER column.
_CLAIM_KEY_SPAN = 4096
_CLAIM_KEY_MIN = -(2**31)


def claim_key(log_index: int, k: int) -> int | None:
    """The store key of the `k`-th payout of the PaidOutBatch log at `log_index`; None if it would not fit (a block
    with more than 524,287 logs before it, or a batch paying more than 4,096 payees: more gas than a block holds)."""
    key = -(1 + log_index * _CLAIM_KEY_SPAN + k)
    return key if k < _CLAIM_KEY_SPAN and key >= _CLAIM_KEY_MIN else None


@dataclass
class PayoutPusher:
    """Finds scheduled payees and pushes their due balances."""

    settings: Settings
    channels: ChannelsClient
    sender: TxSender
    tokens: list[str]
    store: Store | None = None
    from_block: int = 0
    scheduled: dict[str, set[Address]] = field(default_factory=dict)
    paid: list[tuple[str, PaidOut]] = field(default_factory=list)
    #: every payout seen so far (whoever sent it), by payee, oldest first: the payouts view reads this
    history: dict[Address, list[PayoutRecord]] = field(default_factory=dict)

    def discover(self) -> None:
        """Read new PayoutScheduleSet events (enabled or not: the contract's view decides at payout time) and record
        the payouts of new PaidOutBatch records."""
        head = int(self.channels.w3.eth.block_number)
        # At most LOG_RANGE blocks per log query (providers refuse longer ranges), so a start
        # that catches up from the deploy block on a long chain reads it in steps, each one kept before the next.
        while self.from_block <= head:
            end = min(head, self.from_block + LOG_RANGE - 1)
            logs = self.channels.contract.events.PayoutScheduleSet().get_logs(from_block=self.from_block, to_block=end)
            for entry in logs:
                token = to_address(entry["args"]["token"])
                self.scheduled.setdefault(token, set()).add(to_address(entry["args"]["payee"]))
            for batch in payout_batches(self.channels, self.from_block, end):
                self._record(batch)
            self.from_block = end + 1

    def _record(self, batch: PayoutBatchLog) -> None:
        tx_hash = "0x" + batch.tx_hash.hex()
        for k, paid in enumerate(batch.paid()):
            record = PayoutRecord(batch.token, paid.to, paid.amount, paid.fee, tx_hash, batch.block)
            self.history.setdefault(paid.payee, []).append(record)
            key = claim_key(batch.log_index, k)
            if self.store is None:
                continue
            if key is None:
                log.warning("payout %s #%d not recorded as a claim: log index out of the store's range", tx_hash, k)
                continue
            self.store.add_claim(batch.tx_hash, key, paid.payee, batch.token, paid.amount + paid.fee, batch.block)

    def due(self, token: str) -> list[Address]:
        """The scheduled payees of `token` the contract would pay now (a preview; the contract checks again)."""
        now = int(self.channels.w3.eth.get_block("latest")["timestamp"])
        out = []
        for payee in sorted(self.scheduled.get(token, ())):
            s = payout_schedule(self.channels, payee, token)
            if not s.enabled:
                continue
            balance = self.channels.claimable(payee, token)
            fee = min(self.settings.payout_fee, s.max_fee)
            if balance < s.threshold or balance <= fee:
                continue
            if s.period and now < s.last_paid_at + s.period:
                continue
            out.append(payee)
        return out

    def run_once(self, push: bool = True) -> list[PaidOut]:
        """One round: discover (and record payouts), then, if `push`, one payoutBatch per batch of due payees per
        token. Returns what this round paid."""
        self.discover()
        if not push:
            return []
        paid: list[PaidOut] = []
        size = self.settings.payout_batch_size
        for token in self.tokens:
            due = self.due(token)
            for i in range(0, len(due), size):
                try:
                    paid.extend(self._send(token, due[i : i + size]))
                except ChainError as exc:
                    # One recipient refusing its transfer reverts the batch (found by the gas estimate, before
                    # sending): pay the others one by one; the refusing payee keeps its balance to claim.
                    log.warning("payoutBatch of %d refused (%s); paying one by one", len(due[i : i + size]), exc)
                    for payee in due[i : i + size]:
                        try:
                            paid.extend(self._send(token, [payee]))
                        except ChainError as single:
                            log.warning("payout to %s refused: %s", payee, single)
        return paid

    def _send(self, token: str, payees: list[Address]) -> list[PaidOut]:
        receipt = payout_batch(self.channels, self.sender, token, list(payees), self.settings.payout_fee)
        batch = payouts_in(self.channels, receipt)
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        self.paid.extend((tx, p) for p in batch)
        log.info("payoutBatch %s: %d paid of %d due", tx, len(batch), len(payees))
        return batch

    async def run(self, stop: asyncio.Event, leading: object) -> None:
        """Rounds every `payout_interval` seconds (pushing while `leading()` says this instance leads settlement);
        with payout_interval 0, every settle_interval, only recording payouts others sent."""
        interval = self.settings.payout_interval or self.settings.settle_interval
        while not stop.is_set():
            try:
                push = self.settings.payout_interval > 0 and callable(leading) and bool(leading())
                await asyncio.to_thread(self.run_once, push)
            except Exception:  # the loop must survive RPC hiccups; the contract skips anything not due
                log.exception("payout round failed; retrying next round")
                self.sender.reset_nonce()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


def payout_view(
    channels: ChannelsClient, payee: Address, tokens: list[TokenInfo], payouts: list[PayoutRecord]
) -> dict[str, Any]:
    """Per token: the payee's schedule, its claimable balance, when the next payout can be due, and its payouts
    (`payouts`: the pusher's history of the payee, as far as its rounds have read the chain)."""
    out: dict[str, Any] = {}
    for t in tokens:
        s = payout_schedule(channels, payee, t.address)
        balance = channels.claimable(payee, t.address)
        next_at = None
        if s.enabled:
            next_at = s.last_paid_at + s.period if s.period and s.last_paid_at else 0
        out[t.address] = {
            "schedule": {
                "enabled": s.enabled,
                "recipient": s.recipient,
                "threshold": str(s.threshold),
                "period": s.period,
                "maxFee": str(s.max_fee),
            },
            "claimable": str(balance),
            "lastPaidAt": s.last_paid_at,
            "nextPayoutAt": next_at,  # unix seconds from which the period allows one (0: now); null without schedule
            "payouts": [p.as_json() for p in payouts if p.token == t.address],
        }
    return out


__all__ = ["PayoutPusher", "PayoutRecord", "payout_view"]
