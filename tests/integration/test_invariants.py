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
(d) no payee is ever credited more than the latest voucher the listener signed for it;
(e) session keys: the current and retired keys on chain equal the model's, and a voucher signed by a key that
    was once authorised with validity V settles at least until min(V, t + keyRotationGrace), t being the time
    of any later change of the channel's key. The model keeps that promise per key independently of how the
    contract stores keys, so a contract that forgets a grace (security review, issue 8: S -> 0 -> S) is caught.

Key changes: revoke (zero key), re-add a retired key, rotate to another key, set a key expiring now or in the
past, and same-block sequences: one payer is a contract wallet (WalletPayer) that runs two or three key changes
(and a close request) atomically, in one transaction, so at one block timestamp.

Profiles: the CI profile (25 examples x 20 steps) runs by default; CHAINSTREAM_INVARIANTS=deep selects the deep
profile (256 examples x 500 steps, hours) — see docs/OPERATIONS.md.

Each example runs on a chain snapshot taken when the machine starts and reverted in its teardown.
"""

from __future__ import annotations

import copy
import os
import sys
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

from chainstream.chain.artifacts import error_abis, load_artifact
from chainstream.chain.contracts import ChannelState, ChannelStatus, settle_entry
from chainstream.chain.deploy import deploy_contract
from chainstream.chain.gasless import GaslessClient, PayoutEntry, decode_payout_entries, payout_batch
from chainstream.errors import ChainError
from chainstream.pricing import TOTAL_BPS, Split
from chainstream.protocol import Kind, PlayReceipt, PrivateKey, SignedVoucher, Voucher
from chainstream.protocol.hashing import hash_addresses, hash_uints, keccak
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from tests.conftest import test_key
from tests.integration.conftest import CHALLENGE_PERIOD, KEY_ROTATION_GRACE, Chain

LISTENERS = ("listener", "listener2", "stranger")
RECIPIENTS = ("artist", "collab", "label")
FEE_RECIPIENT = "platform"
PAYEES = (*RECIPIENTS, FEE_RECIPIENT)
SETTLERS = ("relay", "relay", "relay", "stranger", "artist", "deployer")  # the relay settles; others mostly may not
WALLET = "wallet"  # a contract-wallet payer (WalletPayer, owned by WALLET_OWNER): runs key changes atomically
WALLET_OWNER = "listener"
PAYERS = (*LISTENERS, WALLET)
SESSION_KEYS = ("session", "session2")  # signing keys only (never funded)
KEYS: dict[str, PrivateKey] = {name: test_key(name) for name in SESSION_KEYS}
ACTORS = (*LISTENERS, *PAYEES, "relay", *SESSION_KEYS, "deployer")
ADDR: dict[str, Address] = {actor: test_key(actor).address for actor in ACTORS}  # + WALLET once deployed
# A new key's expiry, relative to the next block's time: in the past, now, just after (most often: a payer
# shortening a key is the attack), and further out.
KEY_EXPIRY_OFFSETS = (-1, 0, 1, 1, 2, 2, 60, KEY_ROTATION_GRACE - 1, KEY_ROTATION_GRACE + 1, 86_400, 3 * 86_400)
# Which key a change sets: none (revoke), the current key again, the retired key again, or a named key.
KEY_CHOICES = (None, None, "current", "retired", "retired", *SESSION_KEYS)
FORGER = test_key("forger")  # signs vouchers nobody authorized; not a funded actor, not anyone's session key
SELECTORS: dict[str, bytes] = {abi["name"]: selector for selector, abi in error_abis().items()}

# Next-transaction time must be predictable: the machine moves the chain's clock a day ahead of the wall clock,
# so every block's timestamp is its parent's + 1 (py-evm uses max(wall clock, parent + 1)).
CLOCK_LEAD = 86_400
ADVANCES = (1, 59, 3_600, 43_200, CHALLENGE_PERIOD - 1, CHALLENGE_PERIOD, CHALLENGE_PERIOD + 1, 2 * CHALLENGE_PERIOD)
MAX_CHANNELS = 8  # per example
MAX_LIVE_CHANNELS = 3  # not closed
PROGRESS: Counter[str] = Counter()  # examples finished (printed in the deep profile)
COVERAGE: Counter[str] = Counter()  # how often each outcome was exercised (printed with `pytest -s`)

CI_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: CHAINSTREAM_INVARIANTS=deep: 256 examples of up to 500 steps (hours on the embedded chain; run it in the
#: background, see docs/OPERATIONS.md). Shrinking is kept, so a failure still ends as a short sequence.
DEEP_SETTINGS = settings(
    CI_SETTINGS,
    # CHAINSTREAM_INVARIANT_EXAMPLES splits the 256 among parallel runs with distinct --hypothesis-seed values
    max_examples=int(os.environ.get("CHAINSTREAM_INVARIANT_EXAMPLES", "256")),
    stateful_step_count=500,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,  # 500 steps are large by design
        HealthCheck.data_too_large,
    ],
)
SETTINGS = DEEP_SETTINGS if os.environ.get("CHAINSTREAM_INVARIANTS") == "deep" else CI_SETTINGS


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
    session_key: str | None  # the current key (a name in SESSION_KEYS), None for the zero key
    session_expiry: int  # 0: no session key
    voucher: Voucher  # the latest voucher the listener (or its session key) signed
    retired_key: str | None = None  # the contract's retired slot (what retiredSessionKey returns)
    retired_until: int = 0
    #: the promise, per key: once authorised with validity V and then changed at t, it settles until at least
    #: min(V, t + grace) whatever happens next (kept independently of the contract's storage)
    promised: dict[str, int] = field(default_factory=dict)
    signed: list[tuple[SignedVoucher, Address]] = field(default_factory=list)  # every signed voucher and its signer
    seq: int = 0
    settled_payees: tuple[Address, ...] = ()
    #: the last settlement reached the contract through the payer's wallet contract (a cooperative close it
    #: sent): its calldata is the wallet's, so the chain cannot say which voucher it settled
    settled_through_wallet: bool = False
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


@dataclass(frozen=True)
class ScheduleModel:
    """A payee's enabled payout schedule (ETH) as the contract stores it."""

    recipient: str | None  # an actor, None: the payee itself
    threshold: int  # the signed one, rounded up (PackedBalance)
    period: int
    max_fee: int  # the signed one, rounded down


def stored_float(value: int, *, up: bool) -> int:
    """What the balance slot keeps of `value`: m * 10^e with m < 2^26, rounded up or down (PackedBalance)."""
    exponent, inexact = 0, False
    while value >= 2**26:
        inexact |= value % 10 != 0
        value, exponent = value // 10, exponent + 1
    if up and inexact:
        value += 1
        if value == 2**26:
            value, exponent = 2**26 // 10 + 1, exponent + 1
    return value * 10**exponent


# Signed thresholds and max fees: mostly small (so that payouts happen), and values of more than 7 significant
# digits (stored rounded).
_SMALL_AMOUNTS = st.sampled_from((0, 1, 999, 1_000, 5_000))
SCHEDULE_AMOUNTS = st.one_of(
    _SMALL_AMOUNTS, _SMALL_AMOUNTS, _SMALL_AMOUNTS, st.sampled_from((123_456_789, 2**64 - 1)), st.integers(0, 2**64 - 1)
)


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
    if signer != ADDR[ch.payer] and not key_valid(ch, signer, t):
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


def key_valid(ch: ChannelModel, signer: Address, t: int) -> bool:
    """Whether a voucher signed by `signer` may settle at `t` by the session-key rule (the payer aside)."""
    for name in SESSION_KEYS:
        if ADDR[name] == signer:
            current = ch.session_key == name and t <= ch.session_expiry
            return current or t <= ch.promised.get(name, 0)
    return False


def predict_key_change(ch: ChannelModel, key: str | None, expiry: int, t: int) -> str | None:
    """setSessionKey by the payer at `t`, on the model: the revert reason, or None after applying the change."""
    if ch.closes_at != 0:
        return "ChannelNotOpen"
    if key is not None and expiry <= t:
        return "SessionKeyExpiryInPast"
    previous = ch.session_key
    cap = min(ch.session_expiry, t + KEY_ROTATION_GRACE)
    if previous is not None and previous == key and expiry < cap:
        return "SessionKeyExpiryBelowGrace"
    if previous is not None and previous != key:
        if ch.retired_key is not None and ch.retired_until >= t:
            return "SessionKeyRotationPending"
        ch.retired_key, ch.retired_until = previous, cap
    if previous is not None:
        ch.promised[previous] = max(ch.promised.get(previous, 0), cap)
    ch.session_key = key
    ch.session_expiry = 0 if key is None else expiry
    return None


class ChannelMachine(RuleBasedStateMachine):
    chain: Chain  # set by the test
    wallet: Any  # the WalletPayer contract, deployed by the test

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
        self.claimed: dict[Address, int] = {ADDR[p]: 0 for p in PAYEES}  # by claims and payouts (with their fees)
        self.gasless = GaslessClient.of(self.cc)
        self.schedules: dict[Address, ScheduleModel] = {}  # enabled ETH payout schedules
        self.last_paid: dict[Address, int] = {ADDR[p]: 0 for p in PAYEES}
        self.base_balance = c.balance(self.contract_address) - sum(self.claimable.values())

    def teardown(self) -> None:
        self.chain.revert(self.snapshot_id)
        if SETTINGS is DEEP_SETTINGS:  # a run of hours says how far it is
            PROGRESS["examples"] += 1
            print(f"{time.strftime('%H:%M:%S')} example {PROGRESS['examples']} done", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ helpers
    def next_time(self) -> int:
        return self.chain.now() + 1

    def as_payer(self, payer: str, calls: list[Any], value: int = 0) -> Any:
        """Send contract calls as `payer`: one transaction from an EOA, or the wallet's calls in one transaction."""
        if payer != WALLET:
            (call,) = calls
            return self.chain.tx(payer).transact(call, value=value, action=call.fn_name)
        encoded = [(self.contract_address, 0, bytes.fromhex(c._encode_transaction_data()[2:])) for c in calls]
        if value:
            encoded[0] = (self.contract_address, value, encoded[0][2])
        return self.chain.tx(WALLET_OWNER).transact(
            self.wallet.functions.execute(encoded), value=value, action="wallet.execute"
        )

    def gas_paid_by(self, payer: str, sender: str, receipt: Any) -> int:
        """Gas the payer's own balance paid (the wallet's owner pays for the wallet)."""
        return receipt["gasUsed"] * receipt["effectiveGasPrice"] if sender == payer and payer != WALLET else 0

    def expect_revert(self, reason: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(ChainError) as excinfo:
            fn(*args, **kwargs)
        assert excinfo.value.reason == reason, str(excinfo.value)

    def check_time(self, receipt: Any, t: int) -> None:
        assert self.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == t

    def prev_for(self, ch: ChannelModel, mode: str, data: st.DataObject | None = None) -> tuple[int, ...]:
        """prevAmounts from the model's record, from the chain (events and calldata), or deliberately wrong."""
        if mode == "chain":
            if ch.settled_through_wallet:
                # chain/contracts.py refuses to take a wallet's calldata for the settlement's (ChainError): a
                # relay uses its own record then (it co-signed that close), as the model does here
                with pytest.raises(ChainError, match="another contract"):
                    self.cc.prev_amounts(ch.cid, from_block=self.start_block)
                return ch.credited
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

    def apply(self, ch: ChannelModel, out: Outcome, *, through_wallet: bool = False) -> None:
        assert out.settles
        ch.settled_through_wallet = through_wallet
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

    def balance(self, actor: str) -> int:
        return self.chain.balance(ADDR[actor])

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
        listener=st.sampled_from(PAYERS),
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
            data.draw(st.sampled_from(("payer", *SESSION_KEYS)), label="signer"),
        )

    @precondition(lambda self: len(self.channels) < MAX_CHANNELS and len(self.live()) < MAX_LIVE_CHANNELS)
    @rule(
        listener=st.sampled_from(PAYERS),
        deposit=st.integers(1, 100_000),
        session_ttl=st.one_of(st.none(), st.integers(60, 3 * CHALLENGE_PERIOD)),
    )
    def open_channel(self, listener: str, deposit: int, session_ttl: int | None) -> None:
        self.salt += 1
        t = self.next_time()
        expiry = 0 if session_ttl is None else t + session_ttl
        salt = self.salt.to_bytes(32, "big")
        key = ADDR["session"] if expiry else ZERO_ADDRESS
        call = self.cc.contract.functions.open(ADDR["relay"], ZERO_ADDRESS, deposit, salt, key, expiry)
        receipt = self.as_payer(listener, [call], value=deposit)
        cid = self.cc.channel_id_for(ADDR[listener], ZERO_ADDRESS, ADDR["relay"], salt)
        self.check_time(receipt, t)
        self.channels.append(
            ChannelModel(cid, listener, deposit, "session" if expiry else None, expiry, Voucher.empty(cid))
        )

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
        data=st.data(),
        split=splits(),
        price=st.integers(1, 40_000),
        plays=st.integers(1, 3),
        signer=st.sampled_from(("payer", *SESSION_KEYS)),
    )
    def sign_voucher(self, data: st.DataObject, split: Split, price: int, plays: int, signer: str) -> None:
        """The listener pays `plays` plays off-chain: a new cumulative voucher (it may exceed the deposit), signed
        by the payer or by a session key the model says is valid now (else by the payer; for the contract wallet
        the payer's signature is its owner's, which the contract never accepts)."""
        ch = data.draw(st.sampled_from(self.live()), label="channel")
        voucher = ch.voucher
        for _ in range(plays):
            ch.seq += 1
            receipt = PlayReceipt(
                seq=ch.seq, target=b"\x22" * 32, kind=Kind.PLAY, units=1, amount=price, split_hash=split.hash
            )
            voucher = voucher.add(split.apply(price), receipt)
        use_key = signer != "payer" and key_valid(ch, ADDR[signer], self.next_time())  # (it may expire before settling)
        key: PrivateKey = KEYS[signer] if use_key else self.chain.key(WALLET_OWNER if ch.payer == WALLET else ch.payer)
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
        call = self.cc.contract.functions.requestClose(ch.cid)
        if not by_payer:
            self.expect_revert("ChannelNotPayer", self.as_payer, sender, [call])
            return
        if ch.closes_at != 0:
            self.expect_revert("ChannelNotOpen", self.as_payer, sender, [call])
            return
        t = self.next_time()
        receipt = self.as_payer(sender, [call])
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
        deadlines = [
            d
            for ch in self.channels
            for d in (ch.closes_at, ch.session_expiry, ch.retired_until, *ch.promised.values())
            if d > now + 2
        ]
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
        call = self.cc.contract.functions.withdraw(ch.cid)
        t = self.next_time()
        event(f"withdraw: {'ok' if 1 < ch.closes_at <= t else 'ChannelWindowNotOver'}")
        if ch.closes_at <= 1 or t < ch.closes_at:
            self.expect_revert("ChannelWindowNotOver", self.as_payer, sender, [call])
            return
        before = self.balance(ch.payer)
        receipt = self.as_payer(sender, [call])
        self.check_time(receipt, t)
        refund = self.finalize(ch)
        assert self.balance(ch.payer) == before + refund - self.gas_paid_by(ch.payer, sender, receipt)
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

        final_entry = (
            settle_entry(entry[0], prev) if entry else (ch.cid, [], [], b"\x00" * 32, [], b"\x00" * 32, b"\x00" * 32)
        )
        call = self.cc.contract.functions.cooperativeClose(final_entry, relay_sig.r_bytes, relay_sig.vs_bytes)

        def close() -> Any:
            return self.as_payer(sender, [call])

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
        before = self.balance(ch.payer)
        receipt = close()
        self.check_time(receipt, t)
        self.check_settlement_events(receipt, [(ch, out)])
        if out.settles:
            self.apply(ch, out, through_wallet=sender == WALLET)
        refund = self.finalize(ch)
        assert self.balance(ch.payer) == before + refund - self.gas_paid_by(ch.payer, sender, receipt)
        self.check_closed_event(receipt, ch, refund, cooperative=True)

    def key_change_call(self, ch: ChannelModel, key: str | None, expiry: int) -> Any:
        return self.cc.contract.functions.setSessionKey(ch.cid, ADDR[key] if key else ZERO_ADDRESS, expiry)

    @staticmethod
    def resolve_key(ch: ChannelModel, choice: str | None) -> str | None:
        """A KEY_CHOICES entry for this channel now ("current" and "retired" may name no key: the zero key)."""
        if choice == "current":
            return ch.session_key
        if choice == "retired":
            return ch.retired_key
        return choice

    @precondition(lambda self: self.channels)
    @rule(
        data=st.data(),
        choice=st.sampled_from(KEY_CHOICES),
        offset=st.sampled_from(KEY_EXPIRY_OFFSETS),
        by_payer=st.sampled_from((True, True, True, False)),
    )
    def change_session_key(self, data: st.DataObject, choice: str | None, offset: int, by_payer: bool) -> None:
        """The payer revokes its session key, re-adds one, rotates to another, or moves its expiry (by any amount,
        into the past too); a non-payer tries the same."""
        open_ = [c for c in self.channels if c.closes_at == 0]
        ch = data.draw(st.sampled_from(open_ + open_ + self.channels), label="channel")
        key = self.resolve_key(ch, choice)
        t = self.next_time()
        expiry = 0 if key is None and offset < 0 else max(0, t + offset)
        sender = ch.payer if by_payer else next(a for a in LISTENERS if a != ch.payer)
        call = self.key_change_call(ch, key, expiry)
        work = copy.deepcopy(ch)
        reason = predict_key_change(work, key, expiry, t) if by_payer else "ChannelNotPayer"
        event(f"key change: {reason or 'ok'}")
        if reason:
            self.expect_revert(reason, self.as_payer, sender, [call])
            return
        receipt = self.as_payer(sender, [call])
        self.check_time(receipt, t)
        self.adopt_keys(ch, work)

    @precondition(lambda self: any(ch.payer == WALLET for ch in self.channels))
    @rule(
        data=st.data(),
        changes=st.lists(
            st.tuples(st.sampled_from(KEY_CHOICES), st.sampled_from(KEY_EXPIRY_OFFSETS)),
            min_size=2,
            max_size=3,
        ),
        then_close=st.sampled_from((False, False, True)),
    )
    def key_changes_in_one_transaction(
        self, data: st.DataObject, changes: list[tuple[str | None, int]], then_close: bool
    ) -> None:
        """The contract-wallet payer makes two or three key changes (and maybe a close request) atomically: one
        block, one timestamp (S -> 0 -> S, A -> B -> A, A -> B -> C, ...). All happen, or none."""
        wallets = [c for c in self.channels if c.payer == WALLET]
        ch = data.draw(st.sampled_from([c for c in wallets if c.closes_at == 0] * 2 + wallets), label="channel")
        t = self.next_time()
        work = copy.deepcopy(ch)
        calls = []
        reason: str | None = None
        for choice, offset in changes:
            key = self.resolve_key(work, choice)  # as the wallet's owner sees the keys at this point of the sequence
            expiry = 0 if key is None and offset < 0 else max(0, t + offset)
            calls.append(self.key_change_call(ch, key, expiry))
            reason = reason or predict_key_change(work, key, expiry, t)
        if then_close:
            calls.append(self.cc.contract.functions.requestClose(ch.cid))
            if reason is None and work.closes_at != 0:
                reason = "ChannelNotOpen"
        event(f"key changes in one transaction: {reason or 'ok'}")
        if reason:
            self.expect_revert(reason, self.as_payer, WALLET, calls)
            return
        receipt = self.as_payer(WALLET, calls)
        self.check_time(receipt, t)
        self.adopt_keys(ch, work)
        if then_close:
            ch.closes_at = t + CHALLENGE_PERIOD

    @precondition(lambda self: any(ch.closes_at == 0 for ch in self.channels))
    @rule(data=st.data(), choice=st.sampled_from(KEY_CHOICES[2:]), tip=st.integers(1, 5_000))
    def pay_with_a_key_and_settle(self, data: st.DataObject, choice: str, tip: int) -> None:
        """The payer's key (current, retired, or any) signs the next voucher, valid or not, and the relay settles
        it at once: probes the session-key rule right after key changes (same block, a second later)."""
        ch = data.draw(st.sampled_from([c for c in self.channels if c.closes_at == 0]), label="channel")
        key = self.resolve_key(ch, choice) or "session"
        ch.seq += 1
        receipt = PlayReceipt(
            seq=ch.seq, target=b"\x44" * 32, kind=Kind.TIP, units=0, amount=tip, split_hash=b"\x00" * 32
        )
        voucher = ch.voucher.add({ADDR["artist"]: tip}, receipt)
        signed = voucher.sign(self.cc.domain, KEYS[key])
        ch.voucher = voucher
        ch.signed.append((signed, KEYS[key].address))
        out = self.settle_one(ch, signed, KEYS[key].address, ch.credited, "relay")
        event(f"pay with a key and settle: {describe(out)}")

    @staticmethod
    def adopt_keys(ch: ChannelModel, work: ChannelModel) -> None:
        ch.session_key, ch.session_expiry = work.session_key, work.session_expiry
        ch.retired_key, ch.retired_until, ch.promised = work.retired_key, work.retired_until, work.promised

    # ------------------------------------------------------------------ payouts
    @rule(
        data=st.data(),
        enabled=st.sampled_from((True, True, False)),
        recipient=st.sampled_from((None, None, "deployer")),
        threshold=SCHEDULE_AMOUNTS,
        period=st.sampled_from((0, 0, 1, 60, 86_400)),
        max_fee=SCHEDULE_AMOUNTS,
    )
    def set_payout_schedule(
        self, data: st.DataObject, enabled: bool, recipient: str | None, threshold: int, period: int, max_fee: int
    ) -> None:
        """The payee opts in (or out) by transaction; the schedule shares its balance slot."""
        owing = [p for p in PAYEES if self.claimable[ADDR[p]]]
        payee = data.draw(st.sampled_from([*owing, *owing, *PAYEES]), label="payee")
        self.schedule_payouts(payee, enabled, recipient, threshold, period, max_fee)

    def schedule_payouts(
        self, payee: str, enabled: bool, recipient: str | None, threshold: int, period: int, max_fee: int
    ) -> None:
        address = ADDR[payee]
        threshold = min(threshold, 2**96 - 1)
        call = (self.gasless.set_schedule, self.chain.tx(payee), ZERO_ADDRESS)
        kwargs = {"recipient": ADDR[recipient] if recipient else ZERO_ADDRESS, "period": period}
        kwargs |= {"enabled": enabled, "threshold": threshold, "max_fee": max_fee}
        if enabled and threshold == 0 and period == 0:
            event("payout schedule: PayoutScheduleEmpty")
            self.expect_revert("PayoutScheduleEmpty", *call, **kwargs)
            return
        event(f"payout schedule: {'set' if enabled else 'cancelled'}")
        self.gasless.set_schedule(self.chain.tx(payee), ZERO_ADDRESS, **kwargs)  # type: ignore[arg-type]
        self.schedules.pop(address, None)
        if enabled:
            stored = ScheduleModel(recipient, stored_float(threshold, up=True), period, stored_float(max_fee, up=False))
            assert threshold <= stored.threshold <= threshold * (1 + 1.5e-7) + 1
            assert max_fee * (1 - 1.5e-7) - 1 <= stored.max_fee <= max_fee
            self.schedules[address] = stored

    @precondition(lambda self: self.schedules)
    @rule(data=st.data(), fee=st.sampled_from((0, 0, 1, 500, 10**6, 2**64)))
    def payout(self, data: st.DataObject, fee: int) -> None:
        """Anyone's payoutBatch (here the relay's) over any list, duplicates and unscheduled payees included."""
        due = [p for p in PAYEES if ADDR[p] in self.schedules and self.claimable[ADDR[p]]]
        choices = st.sampled_from([*due, *due, *due, *PAYEES, "relay"])
        self.pay_out(data.draw(st.lists(choices, min_size=1, max_size=5), label="payees"), fee)

    @precondition(lambda self: any(self.claimable.values()))
    @rule(
        data=st.data(),
        recipient=st.sampled_from((None, None, "deployer")),
        period=st.sampled_from((0, 0, 1, 60)),
        fee=st.sampled_from((0, 1, 500)),
    )
    def pay_out_an_owed_balance(self, data: st.DataObject, recipient: str | None, period: int, fee: int) -> None:
        """A payee owed something opts in with a threshold its balance meets, and a batch listing it among others
        (duplicates, unscheduled payees) pays it: the paying path, which the random rules above rarely reach."""
        owing = [p for p in PAYEES if self.claimable[ADDR[p]]]
        payee = data.draw(st.sampled_from(owing), label="owed payee")
        balance = self.claimable[ADDR[payee]]
        threshold = data.draw(st.integers(1, balance), label="threshold")
        max_fee = data.draw(st.sampled_from((0, fee, balance // 2, 2**64 - 1)), label="max fee")
        self.schedule_payouts(payee, True, recipient, threshold, period, max_fee)
        others = data.draw(st.lists(st.sampled_from([*PAYEES, "relay"]), max_size=3), label="others")
        at = data.draw(st.integers(0, len(others)), label="position")
        self.pay_out([*others[:at], payee, *others[at:]], fee)

    def pay_out(self, payees: list[str], fee: int) -> None:
        """payoutBatch(payees, fee) by the relay, on the model and on the chain; the record and balances checked."""
        t = self.next_time()
        paid: list[tuple[int, Address, Address, int, int]] = []
        skipped: list[tuple[Address, int, str]] = []
        for i, name in enumerate(payees):
            address = ADDR[name]
            s = self.schedules.get(address)
            balance = self.claimable.get(address, 0)
            payee_fee = min(fee, s.max_fee) if s else 0
            if s is None:
                skipped.append((address, i, "PayoutNotScheduled"))
            elif balance < s.threshold or balance <= payee_fee:
                skipped.append((address, i, "PayoutBelowThreshold"))
            elif s.period and t < self.last_paid[address] + s.period:
                skipped.append((address, i, "PayoutNotDue"))
            else:
                to = ADDR[s.recipient] if s.recipient else address
                paid.append((i, address, to, balance - payee_fee, payee_fee))
                self.claimable[address] = 0
                self.claimed[address] += balance
                self.last_paid[address] = t
        event(f"payout: {len(paid)} paid; skipped: {', '.join(sorted({r for _, _, r in skipped})) or 'none'}")
        receivers = {to for _, _, to, _, _ in paid} | {ADDR["relay"]}
        before = {a: self.chain.balance(a) for a in receivers}
        receipt = payout_batch(self.cc, self.chain.tx("relay"), ZERO_ADDRESS, [ADDR[p] for p in payees], fee)
        self.check_time(receipt, t)
        # The batch's one record states every listed payee, in order, as the model has it, in the shortest form.
        [record] = self.events("PaidOutBatch", receipt)
        assert (record.args.token, record.args.submitter, record.args.fee) == (ZERO_ADDRESS, ADDR["relay"], fee)
        entries = decode_payout_entries(fee, list(record.args["entries"]))
        expected = {i: PayoutEntry(i, a, None, 0, 0, reason) for a, i, reason in skipped}
        expected.update({i: PayoutEntry(i, a, to, amount, f) for i, a, to, amount, f in paid})
        assert entries == [expected[i] for i in range(len(payees))]
        words = sum(1 if (to, f) == (a, fee) and amount < 2**94 else 4 for _, a, to, amount, f in paid)
        assert len(record.args["entries"]) == words + len(skipped)
        gets = Counter[Address]()
        for _, _, to, amount, payee_fee in paid:
            gets[to] += amount
            gets[ADDR["relay"]] += payee_fee
        gets[ADDR["relay"]] -= receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert {a: self.chain.balance(a) - before[a] for a in receivers} == {a: gets[a] for a in receivers}

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
            # (e) the keys on chain are the model's
            assert (state.session_key, state.session_expiry) == (
                (ADDR[ch.session_key], ch.session_expiry) if ch.session_key else (ZERO_ADDRESS, 0)
            )
            if state.status != ChannelStatus.CLOSED:
                retired = tuple(self.view("retiredSessionKey", ch.cid))
                assert (to_address(retired[0]), retired[1]) == (
                    (ADDR[ch.retired_key], ch.retired_until) if ch.retired_key else (ZERO_ADDRESS, 0)
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
        # (f) the schedules and last payout times sharing the balance slots are the model's
        for address in self.claimable:
            (enabled, recipient, threshold, period, max_fee), last = self.view("payoutSchedule", address, ZERO_ADDRESS)
            s = self.schedules.get(address)
            assert last == self.last_paid[address]
            assert (enabled, to_address(recipient), threshold, period, max_fee) == (
                (True, ADDR[s.recipient] if s.recipient else ZERO_ADDRESS, s.threshold, s.period, s.max_fee)
                if s
                else (False, ZERO_ADDRESS, 0, 0, 0)
            )


def machine_on(embedded_chain: Chain) -> type[ChannelMachine]:
    """The machine on this chain, with a contract wallet (WalletPayer) of its own."""
    wallet_address = deploy_contract(embedded_chain.tx(WALLET_OWNER), "WalletPayer")
    ADDR[WALLET] = wallet_address

    class Machine(ChannelMachine):
        chain = embedded_chain
        wallet = embedded_chain.w3.eth.contract(address=wallet_address, abi=load_artifact("WalletPayer").abi)

    return Machine


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_channel_escrow_invariants(embedded_chain: Chain) -> None:
    COVERAGE.clear()
    run_state_machine_as_test(machine_on(embedded_chain), settings=SETTINGS)
    print("\n".join(f"{count:5d}  {label}" for label, count in sorted(COVERAGE.items())))


def fixed_order_machine(embedded_chain: Chain) -> ChannelMachine:
    """A machine whose rules a test drives in a fixed order, with Picks."""
    return machine_on(embedded_chain)()


class Picks:
    """Stands in for hypothesis's `data` when a test drives the machine's rules in a fixed order: each draw
    returns the next value given (the rules' own logic, model and chain are the real ones)."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self.values.pop(0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_model_catches_a_revoked_and_readded_key(embedded_chain: Chain) -> None:
    """The review's finding 1 as rule steps, for an EOA payer (two blocks) and the contract wallet (one
    transaction): revoke S, set S again expiring a second later, then S pays and the relay settles. The model
    says S is still within its grace; a contract that judges S by its new expiry alone fails this test."""
    machine = fixed_order_machine(embedded_chain)
    try:
        for payer in ("listener", WALLET):
            machine.open_channel(payer, 50_000, 7 * 86_400)
            ch = machine.channels[-1]
            machine.pay_with_a_key_and_settle(Picks(ch), "current", 1_000)
            if payer == WALLET:
                machine.key_changes_in_one_transaction(Picks(ch), [(None, 60), ("retired", 1)], False)
            else:
                machine.change_session_key(Picks(ch), None, 60, True)
                machine.change_session_key(Picks(ch), "retired", 1, True)
            assert ch.session_key == "session" and ch.session_expiry < ch.promised["session"]  # shortened
            machine.chain.advance(30)
            machine.pay_with_a_key_and_settle(Picks(ch), "current", 2_000)
            assert ch.settled == 3_000
            machine.escrow_matches_obligations()
    finally:
        machine.teardown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_prev_amounts_after_a_close_through_a_wallet_come_from_the_record(embedded_chain: Chain) -> None:
    """The deep run's first counterexample (a harness gap, not a contract bug): the contract wallet closes
    cooperatively through its execute(), then a later rule reads the channel's prevAmounts from the chain. The
    chain cannot tell (the settling calldata is the wallet's): reading it raises ChainError, and the machine
    uses its record, as a relay uses the close it co-signed; the second close is refused as not settleable."""
    machine = fixed_order_machine(embedded_chain)
    try:
        machine.open_channel(WALLET, 50_000, 7 * 86_400)
        ch = machine.channels[-1]
        split = Split((ADDR["artist"],), (TOTAL_BPS,))
        machine.sign_voucher(Picks(ch), split, 1_000, 2, "session")
        machine.cooperative_close(Picks(ch), "latest", True, True, "model")
        assert ch.settled_through_wallet and ch.settled == 2_000 and ch.closes_at == 1
        machine.cooperative_close(Picks(ch), "latest", True, True, "chain")  # ChannelNotSettleable, prev from record
        machine.escrow_matches_obligations()
    finally:
        machine.teardown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_model_follows_scheduled_payouts_between_credits_and_claims(embedded_chain: Chain) -> None:
    """The payout rules in a fixed order, each checked against the model by the machine itself (the CI profile's
    20 steps seldom credit a payee that has a schedule): a payout listing the payee twice with a fee above its max,
    a credit and a claim while the schedule stands, a redirected payout, one inside the period, an opt-out."""
    machine = fixed_order_machine(embedded_chain)
    artist = ADDR["artist"]
    try:
        machine.open_channel("listener", 50_000, 7 * 86_400)
        ch = machine.channels[-1]
        machine.pay_with_a_key_and_settle(Picks(ch), "current", 1_000)
        machine.set_payout_schedule(Picks("artist"), True, None, 1, 0, 5)
        machine.payout(Picks(["artist", "artist", "collab"]), 10)
        assert (machine.claimable[artist], machine.claimed[artist]) == (0, 1_000)
        machine.escrow_matches_obligations()
        machine.pay_with_a_key_and_settle(Picks(ch), "current", 700)
        machine.claim(Picks("artist"), False)
        machine.pay_with_a_key_and_settle(Picks(ch), "current", 300)
        machine.set_payout_schedule(Picks("artist"), True, "deployer", 100, 86_400, 2**64 - 1)
        machine.payout(Picks(["artist"]), 1)  # a day since the first payout has not passed: PayoutNotDue
        assert machine.claimable[artist] == 300
        machine.chain.advance(86_400)
        machine.payout(Picks(["artist"]), 1)
        machine.pay_with_a_key_and_settle(Picks(ch), "current", 400)
        machine.payout(Picks(["artist"]), 1)  # inside the period: PayoutNotDue
        assert (machine.claimable[artist], machine.claimed[artist]) == (400, 2_000)
        machine.set_payout_schedule(Picks("artist"), False, None, 0, 0, 0)
        machine.escrow_matches_obligations()
    finally:
        machine.teardown()
