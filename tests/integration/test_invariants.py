"""Escrow invariants of ChainStreamChannels, checked by a stateful property test on the real embedded chain.

A hypothesis RuleBasedStateMachine drives random sequences of channel operations — open (with or without a
session key), top up, sign cumulative vouchers (often promising more than the deposit), settle the latest or an
older voucher, settle batches, claim, request close, let time pass (around and past the challenge window),
withdraw, and close cooperatively with the relay's signature — against the deployed contract (no mocks).

A plain-Python model mirrors the contract's rules and predicts the outcome of every transaction (the exact
revert reason, a batch's skipped entries, a settlement capped by the deposit). After every step it checks:

(a) the contract's ETH balance equals what it owes: the unspent deposit of every non-closed channel plus every
    payee's claimable balance (so escrow always covers outstanding obligations);
(b) per channel, paid to payees + refunded <= deposited, and settled <= deposit;
(c) the on-chain settled totals, settled-state commitments, statuses and claimable balances equal the model's;
(d) no payee is ever credited more than the latest voucher the listener signed for it.

Each example runs on a chain snapshot taken when the machine starts and reverted in its teardown.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hexbytes import HexBytes
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chainstream.chain.artifacts import error_abis
from chainstream.chain.contracts import ChannelState, ChannelStatus, settle_entry
from chainstream.errors import ChainError
from chainstream.pricing import TOTAL_BPS, Split
from chainstream.protocol import Kind, PlayReceipt, PrivateKey, SignedVoucher, Voucher
from chainstream.protocol.hashing import hash_addresses, hash_uints, keccak
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from tests.conftest import test_key
from tests.integration.conftest import CHALLENGE_PERIOD, Chain

LISTENERS = ("listener", "listener2", "stranger")
RECIPIENTS = ("artist", "collab", "label")
FEE_RECIPIENT = "platform"
PAYEES = (*RECIPIENTS, FEE_RECIPIENT)
SETTLERS = ("relay", "relay", "relay", "stranger", "artist", "deployer")  # the relay settles; others mostly may not
ACTORS = (*LISTENERS, *PAYEES, "relay", "session", "deployer")
ADDR: dict[str, Address] = {actor: test_key(actor).address for actor in ACTORS}
FORGER = test_key("forger")  # signs vouchers nobody authorized; not a funded actor, not anyone's session key
SELECTORS: dict[str, bytes] = {abi["name"]: selector for selector, abi in error_abis().items()}

# Next-transaction time must be predictable: the machine moves the chain's clock a day ahead of the wall clock,
# so every block's timestamp is its parent's + 1 (py-evm uses max(wall clock, parent + 1)).
CLOCK_LEAD = 86_400
ADVANCES = (1, 59, 3_600, 43_200, CHALLENGE_PERIOD - 1, CHALLENGE_PERIOD, CHALLENGE_PERIOD + 1, 2 * CHALLENGE_PERIOD)
MAX_CHANNELS = 8  # per example
MAX_LIVE_CHANNELS = 3  # not closed
COVERAGE: Counter[str] = Counter()  # how often each outcome was exercised (printed with `pytest -s`)

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def event(label: str) -> None:
    COVERAGE[label] += 1


@st.composite
def splits(draw: st.DrawFn) -> Split:
    """A revenue split over 1-3 of the recipients, sometimes with a platform fee."""
    names = draw(st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=len(RECIPIENTS), unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(1, TOTAL_BPS - 1), min_size=len(names) - 1, max_size=len(names) - 1, unique=True))
    )
    bounds = [0, *cuts, TOTAL_BPS]
    bps = tuple(b - a for a, b in zip(bounds, bounds[1:], strict=False))
    fee_bps = draw(st.sampled_from((0, 0, 250, 5_000)))
    return Split(tuple(ADDR[n] for n in names), bps, ADDR[FEE_RECIPIENT] if fee_bps else ZERO_ADDRESS, fee_bps)


def settled_root(payees: tuple[Address, ...], credited: tuple[int, ...]) -> bytes:
    """VoucherHashing.settledRoot: the top 160 bits of keccak(hash(payees) || hash(credited))."""
    return keccak(hash_addresses(payees) + hash_uints(credited))[:20]


@dataclass
class ChannelModel:
    cid: bytes
    payer: str
    deposit: int
    session_expiry: int  # 0: no session key
    voucher: Voucher  # the latest voucher the listener (or its session key) signed
    signed: list[tuple[SignedVoucher, Address]] = field(default_factory=list)  # every signed voucher and its signer
    seq: int = 0
    settled_payees: tuple[Address, ...] = ()
    credited: tuple[int, ...] = ()  # what the last settlement credited (the next prevAmounts)
    settled: int = 0
    closes_at: int = 0  # 0 open, 1 closed, else end of the challenge window
    refunded: int = 0

    @property
    def status(self) -> ChannelStatus:
        if self.closes_at == 0:
            return ChannelStatus.OPEN
        return ChannelStatus.CLOSED if self.closes_at == 1 else ChannelStatus.CLOSING


@dataclass
class Outcome:
    """What the contract does with one settle entry at time t."""

    error: str | None = None  # the revert reason (single settle) or skip reason (batch)
    stale: bool = False  # a no-op (reverts nothing; skipped as VoucherStale in a batch)
    payees: tuple[Address, ...] = ()
    credited: tuple[int, ...] = ()
    capped: bool = False
    deltas: dict[Address, int] = field(default_factory=dict)

    @property
    def settles(self) -> bool:
        return self.error is None and not self.stale

    @property
    def skip_reason(self) -> str | None:
        return self.error or ("VoucherStale" if self.stale else None)


def describe(out: Outcome) -> str:
    return out.skip_reason or ("capped" if out.capped else "settled")


def predict(
    ch: ChannelModel, voucher: Voucher, signer: Address, prev: tuple[int, ...], t: int, caller: str | None
) -> Outcome:
    """The contract's _settle, check for check, on the model (`caller` None: the relay consented, a close)."""
    if ch.closes_at != 0 and t >= ch.closes_at:
        return Outcome(error="ChannelNotSettleable")
    if caller is not None and caller != "relay" and (ch.closes_at == 0 or t < ch.closes_at - CHALLENGE_PERIOD // 2):
        return Outcome(error="SettleNotAllowed")
    payees, amounts = voucher.payees, voucher.amounts
    n, k = len(payees), len(prev)
    total = sum(amounts)
    if total <= ch.settled or ch.settled == ch.deposit:
        return Outcome(stale=True)
    if k > n:
        return Outcome(error="VoucherLengthMismatch")
    if tuple(payees[:k]) != ch.settled_payees or tuple(prev) != ch.credited:
        return Outcome(error="VoucherPrevStateMismatch")
    if any(amounts[i] < prev[i] for i in range(k)):
        return Outcome(error="VoucherNotMonotonic")
    session_ok = ch.session_expiry != 0 and signer == ADDR["session"] and t <= ch.session_expiry
    if signer != ADDR[ch.payer] and not session_ok:
        return Outcome(error="VoucherUnauthorizedSigner")
    available = ch.deposit - ch.settled
    credited: list[int] = []
    deltas: dict[Address, int] = {}
    for i, payee in enumerate(payees):
        before = prev[i] if i < k else 0
        delta = min(amounts[i] - before, available)
        available -= delta
        credited.append(before + delta)
        if delta:
            deltas[payee] = delta
    return Outcome(
        payees=tuple(payees), credited=tuple(credited), capped=tuple(credited) != tuple(amounts), deltas=deltas
    )


class ChannelMachine(RuleBasedStateMachine):
    chain: Chain  # set by the test

    def __init__(self) -> None:
        super().__init__()
        c = self.chain
        self.snapshot_id = c.snapshot()
        c.advance(max(0, int(time.time()) - c.now()) + CLOCK_LEAD)
        self.cc = c.channels
        self.contract_address = self.cc.address
        self.channels: list[ChannelModel] = []
        self.final_states: dict[bytes, ChannelState] = {}
        self.start_block = c.w3.eth.block_number  # every channel of this example opens after it
        self.checked_block = -1  # the chain state at this block was checked against the model
        self.salt = 0
        # Whatever the chain held before this example (nothing, after the fixture's revert) is the baseline.
        self.claimable: dict[Address, int] = {ADDR[p]: self.cc.claimable(ADDR[p]) for p in PAYEES}
        self.initial_claimable = dict(self.claimable)
        self.claimed: dict[Address, int] = {ADDR[p]: 0 for p in PAYEES}
        self.base_balance = c.balance(self.contract_address) - sum(self.claimable.values())

    def teardown(self) -> None:
        self.chain.revert(self.snapshot_id)

    # ------------------------------------------------------------------ helpers
    def next_time(self) -> int:
        return self.chain.now() + 1

    def expect_revert(self, reason: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(ChainError) as excinfo:
            fn(*args, **kwargs)
        assert excinfo.value.reason == reason, str(excinfo.value)

    def check_time(self, receipt: Any, t: int) -> None:
        assert self.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == t

    def prev_for(self, ch: ChannelModel, mode: str, data: st.DataObject | None = None) -> tuple[int, ...]:
        """prevAmounts from the model's record, from the chain (events and calldata), or deliberately wrong."""
        if mode == "chain":
            from_chain = tuple(self.cc.prev_amounts(ch.cid, from_block=self.start_block))
            assert from_chain == ch.credited, f"prev_amounts read from the chain {from_chain} != {ch.credited}"
            return from_chain
        if mode == "wrong":
            assert data is not None
            if not ch.credited:
                return (1,)
            options = [ch.credited[:-1], (*ch.credited[:-1], ch.credited[-1] + 1), ()]
            if len(ch.credited) > 1:
                options.append(tuple(reversed(ch.credited)) if len(set(ch.credited)) > 1 else ch.credited[1:])
            return data.draw(st.sampled_from([o for o in options if o != ch.credited]), label="wrong prev")
        return ch.credited

    def apply(self, ch: ChannelModel, out: Outcome) -> None:
        assert out.settles
        ch.settled_payees = out.payees
        ch.credited = out.credited
        ch.settled = sum(out.credited)
        for payee, delta in out.deltas.items():
            self.claimable[payee] += delta

    def finalize(self, ch: ChannelModel) -> int:
        refund = ch.deposit - ch.settled
        ch.refunded = refund
        ch.closes_at = 1
        return refund

    def events(self, name: str, receipt: Any) -> list[Any]:
        """This contract's `name` logs in the receipt, decoded, in log order."""
        decoder = getattr(self.cc.contract.events, name)()
        topic = HexBytes(decoder.topic)
        return [
            decoder.process_log(log)
            for log in receipt["logs"]
            if log["address"] == self.contract_address and HexBytes(log["topics"][0]) == topic
        ]

    def check_settlement_events(self, receipt: Any, expected: list[tuple[ChannelModel, Outcome]]) -> None:
        """ChannelSettled/SettlementCapped logs match the entries the model says settle, in order."""
        settled = [
            (bytes(e["args"]["channelId"]), e["args"]["settled"]) for e in self.events("ChannelSettled", receipt)
        ]
        assert settled == [(ch.cid, sum(out.credited)) for ch, out in expected if out.settles]
        capped = [
            (bytes(e["args"]["channelId"]), tuple(e["args"]["credited"]))
            for e in self.events("SettlementCapped", receipt)
        ]
        assert capped == [(ch.cid, out.credited) for ch, out in expected if out.settles and out.capped]

    def check_closed_event(self, receipt: Any, ch: ChannelModel, refund: int, *, cooperative: bool) -> None:
        (log,) = self.events("ChannelClosed", receipt)
        args = log["args"]
        assert (bytes(args["channelId"]), args["settled"], args["refund"], args["cooperative"]) == (
            ch.cid,
            ch.settled,
            refund,
            cooperative,
        )

    def with_vouchers(self) -> list[ChannelModel]:
        return [ch for ch in self.channels if ch.signed]

    def live(self) -> list[ChannelModel]:
        return [ch for ch in self.channels if ch.closes_at != 1]

    def pick(self, data: st.DataObject, channels: list[ChannelModel]) -> ChannelModel:
        """A channel, more likely a live one with an unsettled voucher (closed channels only revert or no-op)."""
        live = [ch for ch in channels if ch.closes_at != 1]
        pending = [ch for ch in live if ch.settled < min(ch.voucher.total, ch.deposit)]
        return data.draw(st.sampled_from(pending + pending + live + channels), label="channel")

    def view(self, fn: str, *args: Any) -> Any:
        """A view call with an explicit `from` (web3 otherwise asks eth-tester for its accounts every time)."""
        return getattr(self.cc.contract.functions, fn)(*args).call({"from": ADDR["deployer"]})

    def channel_state(self, cid: bytes) -> ChannelState:
        """ChannelsClient.get_channel, through the faster view call."""
        raw = self.view("getChannel", cid)
        return ChannelState(
            cid,
            to_address(raw[0]),
            to_address(raw[1]),
            to_address(raw[2]),
            raw[3],
            raw[4],
            to_address(raw[5]),
            raw[6],
            raw[7],
            bytes(raw[8]),
            ChannelStatus(raw[9]),
        )

    # -------------------------------------------------------------------- rules
    @initialize(
        listener=st.sampled_from(LISTENERS),
        deposit=st.integers(1, 100_000),
        session_ttl=st.one_of(st.none(), st.integers(60, 3 * CHALLENGE_PERIOD)),
        data=st.data(),
    )
    def first_channel(self, listener: str, deposit: int, session_ttl: int | None, data: st.DataObject) -> None:
        """Start every example with a channel and a first voucher, so that settlement rules apply at once."""
        self.open_channel(listener, deposit, session_ttl)
        self.sign_voucher(
            data,
            data.draw(splits(), label="split"),
            data.draw(st.integers(1, 40_000), label="price"),
            1,
            data.draw(st.booleans(), label="use_session"),
        )

    @precondition(lambda self: len(self.channels) < MAX_CHANNELS and len(self.live()) < MAX_LIVE_CHANNELS)
    @rule(
        listener=st.sampled_from(LISTENERS),
        deposit=st.integers(1, 100_000),
        session_ttl=st.one_of(st.none(), st.integers(60, 3 * CHALLENGE_PERIOD)),
    )
    def open_channel(self, listener: str, deposit: int, session_ttl: int | None) -> None:
        self.salt += 1
        t = self.next_time()
        expiry = 0 if session_ttl is None else t + session_ttl
        cid, receipt = self.cc.open(
            self.chain.tx(listener),
            relay=ADDR["relay"],
            amount=deposit,
            salt=self.salt.to_bytes(32, "big"),
            session_key=ADDR["session"] if expiry else ZERO_ADDRESS,
            session_expiry=expiry,
        )
        self.check_time(receipt, t)
        self.channels.append(ChannelModel(cid, listener, deposit, expiry, Voucher.empty(cid)))

    @precondition(lambda self: self.live())
    @rule(data=st.data(), funder=st.sampled_from(LISTENERS), amount=st.integers(1, 100_000))
    def top_up(self, data: st.DataObject, funder: str, amount: int) -> None:
        ch = self.pick(data, self.channels)
        if ch.closes_at != 0:
            self.expect_revert("ChannelNotOpen", self.cc.top_up, self.chain.tx(funder), ch.cid, amount)
            return
        before = self.chain.balance(funder)
        receipt = self.cc.top_up(self.chain.tx(funder), ch.cid, amount)
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert self.chain.balance(funder) == before - amount - gas
        ch.deposit += amount

    @precondition(lambda self: self.live())
    @rule(
        data=st.data(), split=splits(), price=st.integers(1, 40_000), plays=st.integers(1, 3), use_session=st.booleans()
    )
    def sign_voucher(self, data: st.DataObject, split: Split, price: int, plays: int, use_session: bool) -> None:
        """The listener pays `plays` plays off-chain: a new cumulative voucher (it may exceed the deposit)."""
        ch = data.draw(st.sampled_from(self.live()), label="channel")
        voucher = ch.voucher
        for _ in range(plays):
            ch.seq += 1
            receipt = PlayReceipt(
                seq=ch.seq, target=b"\x22" * 32, kind=Kind.PLAY, units=1, amount=price, split_hash=split.hash
            )
            voucher = voucher.add(split.apply(price), receipt)
        session_valid = ch.session_expiry >= self.next_time()  # (it may still expire before settlement)
        key: PrivateKey = self.chain.key("session" if use_session and session_valid else ch.payer)
        signed = voucher.sign(self.cc.domain, key)
        assert signed.signer(self.cc.domain) == key.address
        ch.voucher = voucher
        ch.signed.append((signed, key.address))

    def settle_one(
        self, ch: ChannelModel, signed: SignedVoucher, signer: Address, prev: tuple[int, ...], caller: str
    ) -> Outcome:
        t = self.next_time()
        out = predict(ch, signed.voucher, signer, prev, t, caller)
        event(f"settle: {describe(out)}")
        if out.error:
            self.expect_revert(out.error, self.cc.settle, self.chain.tx(caller), signed, prev)
            return out
        receipt = self.cc.settle(self.chain.tx(caller), signed, prev)
        self.check_time(receipt, t)
        self.check_settlement_events(receipt, [(ch, out)])
        if out.settles:
            self.apply(ch, out)
        return out

    def forge(self, ch: ChannelModel, bump: int) -> SignedVoucher:
        """The channel's next voucher as a thief would like it, signed by a key the channel never authorized."""
        receipt = PlayReceipt(
            seq=ch.seq + 1, target=b"\x33" * 32, kind=Kind.TIP, units=0, amount=bump, split_hash=b"\x00" * 32
        )
        return ch.voucher.add({ADDR["artist"]: bump}, receipt).sign(self.cc.domain, FORGER)

    @precondition(lambda self: any(ch.signed and ch.closes_at != 1 for ch in self.channels))
    @rule(
        data=st.data(),
        variant=st.sampled_from(("model", "chain", "chain", "wrong prev", "forged")),
        caller=st.sampled_from(SETTLERS),
    )
    def settle_latest(self, data: st.DataObject, variant: str, caller: str) -> None:
        """Anyone settles a channel's latest voucher (or a forged one, or with wrong prevAmounts)."""
        ch = self.pick(data, self.with_vouchers())
        if variant == "forged":
            # A voucher signed by a key the channel never authorized never moves money.
            forged = self.forge(ch, data.draw(st.integers(1, 50_000), label="bump"))
            out = self.settle_one(ch, forged, FORGER.address, self.prev_for(ch, "chain"), caller)
            assert not out.settles
            return
        signed, signer = ch.signed[-1]
        prev_mode = "wrong" if variant == "wrong prev" else variant
        self.settle_one(ch, signed, signer, self.prev_for(ch, prev_mode, data), caller)

    @precondition(lambda self: any(len(ch.signed) > 1 and ch.closes_at != 1 for ch in self.channels))
    @rule(data=st.data(), prev_mode=st.sampled_from(("model", "chain")), caller=st.sampled_from(SETTLERS))
    def settle_older(self, data: st.DataObject, prev_mode: str, caller: str) -> None:
        """An older voucher states less than the latest: once the latest settled, it must be a no-op."""
        ch = self.pick(data, [c for c in self.channels if len(c.signed) > 1])
        index = data.draw(st.integers(0, len(ch.signed) - 2), label="older voucher")
        signed, signer = ch.signed[index]
        before = (ch.settled, ch.credited, self.channel_state(ch.cid))
        out = self.settle_one(ch, signed, signer, self.prev_for(ch, prev_mode), caller)
        latest_total = ch.voucher.total
        assert signed.voucher.total < latest_total
        if before[0] >= signed.voucher.total or before[0] == ch.deposit:
            # Nothing an older voucher states is news: state and balances are untouched.
            assert not out.settles
            assert (ch.settled, ch.credited) == before[:2]
            assert self.channel_state(ch.cid) == before[2]
            # Even with fewer payees than the settled state (and the chain's longer prevAmounts): a no-op, or
            # refused before any check of it (the window is over, or the caller may not settle yet).
            assert out.stale or out.error in ("ChannelNotSettleable", "SettleNotAllowed")

    @precondition(lambda self: any(ch.signed and ch.closes_at != 1 for ch in self.channels))
    @rule(data=st.data(), prev_mode=st.sampled_from(("model", "chain")), caller=st.sampled_from(SETTLERS))
    def settle_batch(self, data: st.DataObject, prev_mode: str, caller: str) -> None:
        """Several channels' vouchers in one settleBatch; invalid entries are skipped, the rest settle."""
        with_vouchers = self.with_vouchers()
        live = [ch for ch in with_vouchers if ch.closes_at != 1]
        pending = [ch for ch in live if ch.settled < min(ch.voucher.total, ch.deposit)]
        candidates = pending + pending + live + with_vouchers
        picks = data.draw(
            st.lists(
                st.tuples(
                    st.sampled_from(candidates), st.sampled_from(("latest", "latest", "latest", "older", "forged"))
                ),
                min_size=1,
                max_size=5,
            ),
            label="entries",
        )
        prevs = {ch.cid: self.prev_for(ch, prev_mode) for ch, _ in picks}  # read once, before the batch
        entries: list[tuple[ChannelModel, SignedVoucher, Address]] = []
        for ch, kind in picks:
            if kind == "older" and len(ch.signed) > 1:
                entries.append((ch, *ch.signed[data.draw(st.integers(0, len(ch.signed) - 2), label="older")]))
            elif kind == "forged":
                entries.append((ch, self.forge(ch, 7), FORGER.address))
            else:
                entries.append((ch, *ch.signed[-1]))
        t = self.next_time()
        # Predict sequentially on copies: an entry sees the state the previous entries left.
        work = {ch.cid: copy.copy(ch) for ch, _ in picks}
        outcomes: list[tuple[ChannelModel, Outcome]] = []
        for ch, signed, signer in entries:
            w = work[ch.cid]
            out = predict(w, signed.voucher, signer, prevs[ch.cid], t, caller)
            if out.settles:
                w.settled_payees, w.credited, w.settled = out.payees, out.credited, sum(out.credited)
            outcomes.append((ch, out))
            event(f"batch entry: {describe(out)}")
        receipt = self.cc.settle_batch(
            self.chain.tx(caller), [settle_entry(signed, prevs[ch.cid]) for ch, signed, _ in entries]
        )
        self.check_time(receipt, t)
        skipped = [
            (bytes(e["args"]["channelId"]), e["args"]["index"], bytes(e["args"]["reason"]))
            for e in self.events("SettlementSkipped", receipt)
        ]
        assert skipped == [
            (ch.cid, i, SELECTORS[out.skip_reason]) for i, (ch, out) in enumerate(outcomes) if out.skip_reason
        ]
        self.check_settlement_events(receipt, outcomes)
        for ch, out in outcomes:
            if out.settles:
                self.apply(ch, out)

    @precondition(lambda self: any(self.claimable.values()))
    @rule(data=st.data(), to_other=st.booleans())
    def claim(self, data: st.DataObject, to_other: bool) -> None:
        owing = [p for p in PAYEES if self.claimable[ADDR[p]]]
        payee = data.draw(st.sampled_from([*owing, *owing, *PAYEES, "relay"]), label="payee")
        address = ADDR[payee]
        to = ADDR["deployer"] if to_other else address
        owed = self.claimable.get(address, 0)
        event(f"claim: {'ok' if owed else 'NothingToClaim'}")
        if owed == 0:
            self.expect_revert("NothingToClaim", self.cc.claim, self.chain.tx(payee), to=to)
            return
        before = self.chain.balance(to)
        receipt = self.cc.claim(self.chain.tx(payee), to=to)
        gas = 0 if to_other else receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert self.chain.balance(to) == before + owed - gas
        (log,) = self.events("Claimed", receipt)
        assert (log["args"]["payee"], log["args"]["to"], log["args"]["amount"]) == (address, to, owed)
        self.claimable[address] = 0
        self.claimed[address] += owed

    @precondition(lambda self: self.live())
    @rule(data=st.data(), by_payer=st.sampled_from((True, True, True, False)))
    def request_close(self, data: st.DataObject, by_payer: bool) -> None:
        ch = self.pick(data, self.channels)
        sender = ch.payer if by_payer else next(a for a in LISTENERS if a != ch.payer)
        if not by_payer:
            self.expect_revert("ChannelNotPayer", self.cc.request_close, self.chain.tx(sender), ch.cid)
            return
        if ch.closes_at != 0:
            self.expect_revert("ChannelNotOpen", self.cc.request_close, self.chain.tx(sender), ch.cid)
            return
        t = self.next_time()
        receipt = self.cc.request_close(self.chain.tx(sender), ch.cid)
        self.check_time(receipt, t)
        ch.closes_at = t + CHALLENGE_PERIOD

    @rule(
        data=st.data(),
        seconds=st.sampled_from(ADVANCES),
        to_deadline=st.sampled_from((False, False, True)),
        offset=st.sampled_from((-1, 0, 1)),
    )
    def advance_time(self, data: st.DataObject, seconds: int, to_deadline: bool, offset: int) -> None:
        """Let time pass, sometimes up to one second before, at, or after a close window's end or a key's expiry."""
        now = self.chain.now()
        clean = self.checked_block == self.chain.w3.eth.block_number
        deadlines = [d for ch in self.channels for d in (ch.closes_at, ch.session_expiry) if d > now + 2]
        if to_deadline and deadlines:
            target = data.draw(st.sampled_from(deadlines), label="deadline") + offset  # the next transaction's time
            seconds = target - 1 - now
        self.chain.advance(seconds)
        assert self.chain.now() == now + seconds
        if clean:  # an empty block changes no contract state
            self.checked_block = self.chain.w3.eth.block_number

    @precondition(lambda self: any(ch.closes_at > 1 for ch in self.channels))
    @rule(data=st.data(), caller=st.sampled_from(("payer", "stranger", "relay")))
    def withdraw(self, data: st.DataObject, caller: str) -> None:
        closing = [ch for ch in self.channels if ch.closes_at > 1]
        over = [ch for ch in closing if ch.closes_at <= self.next_time()]
        ch = data.draw(st.sampled_from(over + over + closing + self.channels), label="channel")
        sender = ch.payer if caller == "payer" else caller
        t = self.next_time()
        event(f"withdraw: {'ok' if 1 < ch.closes_at <= t else 'ChannelWindowNotOver'}")
        if ch.closes_at <= 1 or t < ch.closes_at:
            self.expect_revert("ChannelWindowNotOver", self.cc.withdraw, self.chain.tx(sender), ch.cid)
            return
        before = self.chain.balance(ch.payer)
        receipt = self.cc.withdraw(self.chain.tx(sender), ch.cid)
        self.check_time(receipt, t)
        refund = self.finalize(ch)
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"] if sender == ch.payer else 0
        assert self.chain.balance(ch.payer) == before + refund - gas
        self.check_closed_event(receipt, ch, refund, cooperative=False)

    @precondition(lambda self: self.live())
    @rule(
        data=st.data(),
        final=st.sampled_from(("none", "latest", "latest", "older")),
        relay_ok=st.sampled_from((True, True, True, False)),
        by_payer=st.sampled_from((True, True, True, False)),
        prev_mode=st.sampled_from(("model", "chain")),
    )
    def cooperative_close(
        self, data: st.DataObject, final: str, relay_ok: bool, by_payer: bool, prev_mode: str
    ) -> None:
        ch = self.pick(data, self.channels)
        entry: tuple[SignedVoucher, Address] | None = None
        if final == "latest" and ch.signed:
            entry = ch.signed[-1]
        elif final == "older" and len(ch.signed) > 1:
            entry = ch.signed[data.draw(st.integers(0, len(ch.signed) - 2), label="older")]
        voucher = entry[0].voucher if entry else Voucher.empty(ch.cid)
        relay_key = self.chain.key("relay" if relay_ok else "stranger")
        relay_sig = relay_key.sign(voucher.close_digest(self.cc.domain))
        prev = self.prev_for(ch, prev_mode) if entry else ()
        sender = ch.payer if by_payer else next(a for a in LISTENERS if a != ch.payer)
        t = self.next_time()

        def close() -> Any:
            return self.cc.cooperative_close(
                self.chain.tx(sender), entry[0] if entry else None, prev, relay_sig, channel_id=ch.cid
            )

        out: Outcome | None = None
        if not by_payer:
            reason: str | None = "ChannelNotPayer"
        elif ch.closes_at != 0 and t >= ch.closes_at:
            reason = "ChannelNotSettleable"
        elif not relay_ok:
            reason = "CloseInvalidRelaySignature"
        else:
            out = predict(ch, voucher, entry[1], prev, t, None) if entry else Outcome(stale=True)
            reason = out.error
        event(f"cooperative close: {reason or describe(out)}")
        if reason:
            self.expect_revert(reason, close)
            return
        assert out is not None
        before = self.chain.balance(ch.payer)
        receipt = close()
        self.check_time(receipt, t)
        self.check_settlement_events(receipt, [(ch, out)])
        if out.settles:
            self.apply(ch, out)
        refund = self.finalize(ch)
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert self.chain.balance(ch.payer) == before + refund - gas
        self.check_closed_event(receipt, ch, refund, cooperative=True)

    # --------------------------------------------------------------- invariants
    @invariant()
    def escrow_matches_obligations(self) -> None:
        block = self.chain.w3.eth.block_number
        if block == self.checked_block:
            return  # no transaction was mined since the last check (signing, reverted calls, time passing)
        self.checked_block = block
        # A closed channel is final: it is read once after it closed (its later effect on the contract's balance
        # is still checked by (a)), which keeps each step's checks cheap.
        on_chain = {ch.cid: self.final_states.get(ch.cid) or self.channel_state(ch.cid) for ch in self.channels}
        self.final_states.update({cid: s for cid, s in on_chain.items() if s.status == ChannelStatus.CLOSED})
        claimable = {address: self.view("claimable", address, ZERO_ADDRESS) for address in self.claimable}
        # (c) the model predicts the chain exactly
        assert claimable == self.claimable
        for ch in self.channels:
            state = on_chain[ch.cid]
            assert (state.payer, state.deposit, state.settled, state.closes_at, state.status) == (
                ADDR[ch.payer],
                ch.deposit,
                ch.settled,
                ch.closes_at,
                ch.status,
            )
            assert state.settled_root == settled_root(ch.settled_payees, ch.credited)
            assert (state.session_key, state.session_expiry) == (
                (ADDR["session"], ch.session_expiry) if ch.session_expiry else (ZERO_ADDRESS, 0)
            )
        # (a) the contract holds exactly what it owes: unspent deposits of live channels plus claimable balances
        outstanding = sum(s.deposit - s.settled for s in on_chain.values() if s.status != ChannelStatus.CLOSED)
        assert self.chain.balance(self.contract_address) == self.base_balance + outstanding + sum(claimable.values())
        # (b) per channel: credited + refunded <= deposited, settled <= deposit
        for ch in self.channels:
            state = on_chain[ch.cid]
            assert state.settled <= state.deposit
            assert sum(ch.credited) == state.settled
            assert state.settled + ch.refunded <= state.deposit
            if state.status == ChannelStatus.CLOSED:
                assert state.settled + ch.refunded == state.deposit
        # (d) nobody is credited more than the latest voucher the listener signed for it — per channel, and in
        # total across channels as the chain reports it (claimable now + claimed so far)
        promised: dict[Address, int] = {}
        credited: dict[Address, int] = {}
        for ch in self.channels:
            for payee, amount in zip(ch.settled_payees, ch.credited, strict=True):
                assert amount <= ch.voucher.amount_of(payee)
                credited[payee] = credited.get(payee, 0) + amount
            for payee, amount in zip(ch.voucher.payees, ch.voucher.amounts, strict=True):
                promised[payee] = promised.get(payee, 0) + amount
        for address in self.claimable:
            earned = claimable[address] + self.claimed[address] - self.initial_claimable[address]
            assert earned == credited.get(address, 0) <= promised.get(address, 0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_channel_escrow_invariants(embedded_chain: Chain) -> None:
    class Machine(ChannelMachine):
        chain = embedded_chain

    COVERAGE.clear()
    run_state_machine_as_test(Machine, settings=SETTINGS)
    print("\n".join(f"{count:5d}  {label}" for label, count in sorted(COVERAGE.items())))
