"""The relay's acceptance rules, one row per rejection code, with no chain and no server: `verify_payment` is pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from chainstream.ledger import LedgerState, Listing, apply, charge_download, charge_play, charge_seconds
from chainstream.pricing import Model, Split, Terms
from chainstream.protocol import Domain, Kind, PrivateKey, Voucher
from chainstream.protocol.signing import high_s_twin
from chainstream.relay.api.errors import rejection_status
from chainstream.verify import (
    Accepted,
    ChannelTerms,
    ChargeSpec,
    Payment,
    Rejection,
    price,
    verify_payment,
)
from tests.conftest import test_key

PAYER = test_key("verify-payer")
SESSION = test_key("verify-session")
STRANGER = test_key("verify-stranger")
ARTIST = test_key("verify-artist").address
COLLAB = test_key("verify-collab").address
DOMAIN = Domain(chain_id=31337, verifying_contract="0x" + "c0" * 20)
CHANNEL = b"\x01" * 32
TRACK = b"\x0a" * 32
TRACK_S2O = b"\x0b" * 32
NOW = 1_700_000_000
MARGIN = 600
LISTINGS = {
    TRACK: Listing(
        TRACK,
        "Flat",
        ARTIST,
        Terms(per_play=1_000, per_second=10, download=50_000),
        Split((ARTIST, COLLAB), (8_000, 2_000)),
        1,
    ),
    TRACK_S2O: Listing(
        TRACK_S2O, "Own", ARTIST, Terms(per_play=100, model=Model.STREAM_TO_OWN, own_after=2), Split.solo(ARTIST), 1
    ),
}
TERMS = ChannelTerms(
    channel_id=CHANNEL,
    payer=PAYER.address,
    token="0x" + "00" * 20,
    deposit=100_000,
    session_key=SESSION.address,
    session_expiry=NOW + 86_400,
    open=True,
)


def play() -> ChargeSpec:
    return ChargeSpec(Kind.PLAY, track_id=TRACK)


@dataclass(frozen=True)
class Case:
    """A payment built from `state` with `spec` (signed by `signer`), then bent by `bend`, judged against `terms`."""

    code: str | None
    spec: ChargeSpec = dataclasses.field(default_factory=play)
    signer: PrivateKey = SESSION
    terms: ChannelTerms = TERMS
    state_plays: int = 0  # plays of TRACK already accepted
    spent_today: int = 0
    bend: Callable[[Payment], Payment] = lambda p: p
    status: int = 422  # how the HTTP edge answers it (relay/api/errors.py)
    details: dict[str, str] = dataclasses.field(default_factory=dict)  # the error body's `details`


def _state(plays: int) -> LedgerState:
    state = LedgerState.opened(CHANNEL)
    for _ in range(plays):
        state, _ = apply(state, charge_play(state, LISTINGS[TRACK]))
    return state


def _payment(case: Case) -> tuple[Payment, LedgerState]:
    state = _state(case.state_plays)
    try:
        charge = price(case.spec, state, LISTINGS.get)
        voucher = apply(state, charge)[0].voucher
    except Rejection:  # the spec itself is refused: send any voucher, pricing decides first
        voucher = state.voucher
    signature = case.signer.sign(voucher.digest(DOMAIN))
    return case.bend(Payment(CHANNEL, state.seq + 1, case.spec, voucher, signature)), state


def _judge(case: Case) -> Accepted:
    payment, state = _payment(case)
    return verify_payment(
        payment,
        state=state,
        channel=case.terms,
        domain=DOMAIN,
        listing_of=LISTINGS.get,
        now=NOW,
        spent_today=case.spent_today,
        session_margin=MARGIN,
        max_payees=2,
    )


def _other_voucher(p: Payment) -> Payment:
    """One wei more to the first payee, properly signed by the session key: not the voucher the charge makes."""
    v = p.voucher
    bumped = Voucher(v.channel_id, v.payees, (v.amounts[0] + 1, *v.amounts[1:]), v.play_hash)
    return replace(p, voucher=bumped, signature=SESSION.sign(bumped.digest(DOMAIN)))


CASES = {
    "accepted by the session key": Case(None),
    "accepted by the payer itself": Case(None, signer=PAYER),
    "channel_not_open": Case("channel_not_open", terms=replace(TERMS, open=False), status=409),
    "wrong_channel": Case("wrong_channel", bend=lambda p: replace(p, channel_id=b"\x02" * 32)),
    "stale_voucher": Case(
        "stale_voucher",
        state_plays=2,
        bend=lambda p: replace(p, seq=2),
        status=409,
        details={"expected": "3", "got": "2"},
    ),
    "seq_gap": Case("seq_gap", bend=lambda p: replace(p, seq=3), status=409, details={"expected": "1", "got": "3"}),
    "unknown_track": Case("unknown_track", spec=ChargeSpec(Kind.PLAY, track_id=b"\xee" * 32), status=404),
    "bad_charge (seconds without a track)": Case("bad_charge", spec=ChargeSpec(Kind.SECONDS, seconds=5)),
    "bad_units (more than an hour at once)": Case(
        "bad_units", spec=ChargeSpec(Kind.SECONDS, track_id=TRACK, seconds=3_601)
    ),
    "not_offered (no per-second price)": Case(
        "not_offered", spec=ChargeSpec(Kind.SECONDS, track_id=TRACK_S2O, seconds=5)
    ),
    "bad_amount (a zero tip)": Case("bad_amount", spec=ChargeSpec(Kind.TIP, artist=ARTIST, amount=0)),
    "bad_tip (both a track and an artist)": Case(
        "bad_tip", spec=ChargeSpec(Kind.TIP, track_id=TRACK, artist=ARTIST, amount=5)
    ),
    "memo_too_long (281 bytes)": Case(
        "memo_too_long", spec=ChargeSpec(Kind.TIP, artist=ARTIST, amount=5, memo="é" * 140 + "x")
    ),
    "voucher_mismatch (one wei more)": Case("voucher_mismatch", bend=_other_voucher, status=409),
    "voucher_mismatch (a charge other than signed)": Case(
        "voucher_mismatch",
        bend=lambda p: replace(p, charge=ChargeSpec(Kind.SECONDS, track_id=TRACK, seconds=1)),
        status=409,
    ),
    "too_many_payees": Case(
        "too_many_payees",
        spec=ChargeSpec(Kind.TIP, artist=test_key("verify-fan-favourite").address, amount=5),
        state_plays=1,
        terms=replace(TERMS, deposit=10**9),
        details={"payees": "3", "maxPayees": "2"},
    ),
    "insufficient_deposit": Case(
        "insufficient_deposit",
        terms=replace(TERMS, deposit=999),
        status=402,
        details={"total": "1000", "deposit": "999"},
    ),
    "a stranger past the deposit is unauthorized_signer (the signer is judged first)": Case(
        "unauthorized_signer", signer=STRANGER, terms=replace(TERMS, deposit=999), status=403
    ),
    "daily_cap_exceeded": Case(
        "daily_cap_exceeded",
        terms=replace(TERMS, daily_cap=1_500),
        spent_today=600,
        status=402,
        details={"spentToday": "600", "amount": "1000", "dailyCap": "1500"},
    ),
    "bad_signature (high-s twin)": Case("bad_signature", bend=lambda p: replace(p, signature=high_s_twin(p.signature))),
    "unauthorized_signer": Case("unauthorized_signer", signer=STRANGER, status=403),
    "unauthorized_signer (no session key set)": Case(
        "unauthorized_signer", terms=replace(TERMS, session_key="0x" + "00" * 20), status=403
    ),
    "session_key_expired (within the margin)": Case(
        "session_key_expired", terms=replace(TERMS, session_expiry=NOW + MARGIN - 1), status=403
    ),
    "session_cap_exceeded": Case(
        "session_cap_exceeded",
        terms=replace(TERMS, session_cap=999),
        status=402,
        details={"total": "1000", "sessionCap": "999"},
    ),
    "the payer is not bound by the session cap": Case(None, signer=PAYER, terms=replace(TERMS, session_cap=999)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_verify_payment(case: Case) -> None:
    if case.code is None:
        accepted = _judge(case)
        assert accepted.signer == case.signer.address
        assert accepted.state.seq == case.state_plays + 1
        return
    with pytest.raises(Rejection) as refused:
        _judge(case)
    assert refused.value.code == case.code, str(refused.value)
    assert rejection_status(refused.value) == case.status
    assert refused.value.details == case.details


def test_every_rejection_code_of_verify_has_a_row() -> None:
    """The table above covers every code verify_payment and price can raise (read from the source)."""
    import inspect
    import re

    from chainstream import ledger, pricing, verify

    raised = {c.lower() for c in re.findall(r"Rejection\(\s*Code\.(\w+)", inspect.getsource(verify))}
    raised |= {
        c.lower() for c in re.findall(r"code=Code\.(\w+)", inspect.getsource(ledger) + inspect.getsource(pricing))
    }
    covered = {c.code for c in CASES.values() if c.code}
    reachable_from_a_payment = raised - {
        "bad_terms",  # a registry listing's terms are validated when read from the chain, not per payment
        "bad_split",  # likewise the split
        "bad_play_number",  # play numbers come from the ledger, never from the payment
        "already_owned",  # covered below: needs a download first
        "insufficient_deposit",  # also raised by ledger.require_within; covered above
        "untrusted_state",  # ledger.replay: a client checking a relay's history (tests/unit/test_ledger_replay.py)
    }
    assert reachable_from_a_payment <= covered, reachable_from_a_payment - covered


def test_a_second_download_of_an_owned_track_is_already_owned() -> None:
    state, _ = apply(LedgerState.opened(CHANNEL), charge_download(LedgerState.opened(CHANNEL), LISTINGS[TRACK]))
    with pytest.raises(Rejection) as refused:
        price(ChargeSpec(Kind.DOWNLOAD, track_id=TRACK), state, LISTINGS.get)
    assert refused.value.code == "already_owned"


def test_an_accepted_payment_is_the_exact_next_voucher_and_its_receipt() -> None:
    accepted = _judge(Case(None, spec=ChargeSpec(Kind.SECONDS, track_id=TRACK, seconds=7)))
    assert accepted.charge.amount == 70
    assert dict(zip(accepted.state.voucher.payees, accepted.state.voucher.amounts, strict=True)) == {
        ARTIST: 56,
        COLLAB: 14,
    }
    assert accepted.receipt.units == 7 and accepted.digest == accepted.state.voucher.digest(DOMAIN)
    assert charge_seconds(LISTINGS[TRACK], 7).payments == accepted.charge.payments
