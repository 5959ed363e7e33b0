"""The attacker submits (or front-runs) a listener's gas-free authorisations, or a payee's payout schedule.

Gas-free onboarding (issue 13): a listener holding only the stablecoin signs an OpenChannel / TopUpChannel /
CloseChannel authorisation and an EIP-2612 permit; anyone (normally the relay) submits them through the
ChainStreamGasless contract and keeps a fee of at most the signed maximum. The attacker is that submitter, or a
stranger watching the mempool: it tries to change the terms, replay an authorisation, take more than the signed
fee, use an expired one, block the open with the permit, play zero-address tricks, call the trusted entry points
directly, and redirect or repeat scheduled payouts.

Real chains (eth-tester and anvil, `chain`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from web3.middleware import Web3Middleware

from chainstream.chain.gasless import (
    NO_PERMIT,
    GaslessClient,
    PermitSig,
    payout_batch,
    payout_batches_in,
    payout_schedule,
    payout_skips_in,
    payouts_in,
    sign_permit,
)
from chainstream.config import Settings
from chainstream.errors import ChainError
from chainstream.protocol import PrivateKey
from chainstream.protocol.gasless import CloseAuth, OpenAuth, ScheduleAuth, TopUpAuth
from chainstream.protocol.signing import Signature, high_s_twin
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH
from chainstream.relay.payouts import PayoutPusher
from chainstream.store.sqlite import SqliteStore
from tests.conftest import test_key
from tests.integration.conftest import STABLE, Chain
from tests.integration.helpers import (
    close_signature,
    deploy_token,
    open_channel,
    reverts,
    salt,
    settle,
    sign,
    token_balance,
    voucher,
)

FEE = STABLE // 100  # what the relay asks: one cent
MAX_FEE = 2 * FEE


@pytest.fixture
def listener() -> PrivateKey:
    """A listener that never holds ETH: it only signs."""
    return test_key("gasless-listener-no-eth")


@pytest.fixture
def gasless(chain: Chain, listener: PrivateKey) -> GaslessClient:
    chain.token.mint(chain.tx("stranger"), listener.address, 100 * STABLE)
    return GaslessClient.of(chain.channels)


def open_auth(chain: Chain, listener: PrivateKey, **changes: object) -> OpenAuth:
    auth = OpenAuth(
        payer=listener.address,
        token=chain.token.address,
        relay=chain.address("relay"),
        session_key=chain.address("session"),
        session_expiry=chain.now() + 86_400,
        salt=salt("gasless"),
        amount=10 * STABLE,
        max_fee=MAX_FEE,
        submitter=ZERO_ADDRESS,
        nonce=1,
        deadline=chain.now() + 600,
    )
    return replace(auth, **changes)  # type: ignore[arg-type]


def permit(chain: Chain, gasless: GaslessClient, listener: PrivateKey, value: int = 1_000 * STABLE) -> PermitSig:
    return sign_permit(chain.w3, chain.token.address, listener, gasless.address, value, chain.now() + 600)


def open_gasless(chain: Chain, gasless: GaslessClient, listener: PrivateKey, **changes: object) -> bytes:
    auth = open_auth(chain, listener, **changes)
    gasless.open_for(
        chain.tx("relay"), auth, auth.sign(listener, gasless.domain), FEE, permit(chain, gasless, listener)
    )
    return chain.channels.channel_id_for(listener.address, auth.token, auth.relay, auth.salt)


# ----------------------------------------------------------------------------------------------- baseline


def test_gasless_open_by_listener_without_eth_charges_at_most_the_signed_fee(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """Baseline: the relay submits a 0-ETH listener's open; the channel has the signed terms, the fee is as asked."""
    auth = open_auth(chain, listener)
    assert gasless.contract.functions.openDigest(auth.values()).call() == auth.digest(gasless.domain)
    relay_before = chain.token.balance_of(chain.address("relay"))
    gasless.open_for(
        chain.tx("relay"), auth, auth.sign(listener, gasless.domain), FEE, permit(chain, gasless, listener)
    )
    state = chain.channels.get_channel(
        chain.channels.channel_id_for(listener.address, auth.token, auth.relay, auth.salt)
    )
    assert (state.payer, state.relay, state.session_key, state.deposit) == (
        listener.address,
        auth.relay,
        auth.session_key,
        auth.amount - FEE,
    )
    assert chain.token.balance_of(chain.address("relay")) - relay_before == FEE
    assert chain.balance(listener.address) == 0
    assert chain.token.balance_of(gasless.address) == 0


def test_gasless_open_moves_the_payers_tokens_once_and_keeps_exactly_the_deposit(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """The submitter's open: one pull of the signed amount straight into escrow, then only its fee comes out."""
    auth = open_auth(chain, listener)
    escrow = chain.channels.address
    escrow_before = chain.token.balance_of(escrow)
    receipt = gasless.open_for(
        chain.tx("relay"), auth, auth.sign(listener, gasless.domain), FEE, permit(chain, gasless, listener)
    )
    moves = [
        (e["args"]["from"], e["args"]["to"], e["args"]["value"])
        for e in chain.token.contract.events.Transfer().process_receipt(receipt)
    ]
    assert moves == [(listener.address, escrow, auth.amount), (escrow, chain.address("relay"), FEE)]
    assert chain.token.balance_of(escrow) - escrow_before == auth.amount - FEE
    assert chain.token.contract.functions.allowance(gasless.address, escrow).call() == 0


# ----------------------------------------------------------------------------------------------- the terms


@pytest.mark.parametrize(
    "change",
    [
        {"relay": "stranger"},
        {"session_key": "stranger"},
        {"session_expiry": 1},
        {"salt": salt("other")},
        {"amount": 5 * STABLE},
        {"max_fee": 5 * STABLE},
        {"submitter": "relay"},
        {"nonce": 2},
        {"deadline": 2**40},
    ],
)
def test_submitter_altering_any_signed_term_is_refused(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey, change: dict[str, object]
) -> None:
    """The submitter changes one term of a signed open (relay, session key, amount, fee cap...): bad signature."""
    auth = open_auth(chain, listener)
    sig = auth.sign(listener, gasless.domain)
    field, value = next(iter(change.items()))
    if field == "session_expiry":
        value = auth.session_expiry + 1
    altered = replace(auth, **{field: chain.address(value) if value in ("stranger", "relay") else value})  # type: ignore[arg-type]
    with reverts("GaslessInvalidSignature"):
        gasless.open_for(chain.tx("relay"), altered, sig, FEE, permit(chain, gasless, listener))


def test_authorisation_of_another_kind_or_domain_is_refused(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """A voucher-domain signature over the same struct, or a high-s twin of a good signature, does not open."""
    auth = open_auth(chain, listener)
    wrong_domain = listener.sign(chain.channels.domain.digest(auth.struct_hash()))
    with reverts("GaslessInvalidSignature"):
        gasless.open_for(chain.tx("relay"), auth, wrong_domain, FEE, permit(chain, gasless, listener))
    twin = high_s_twin(auth.sign(listener, gasless.domain))
    with pytest.raises(ChainError) as info:
        gasless.open_for(chain.tx("relay"), auth, twin, FEE, permit(chain, gasless, listener))
    assert info.value.reason in {"GaslessInvalidSignature"}, info.value


# ------------------------------------------------------------------------------------------------- replay


def test_replayed_open_and_top_up_are_refused(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """The relay submits the same open twice (another salt cannot be swapped in), then a top-up twice."""
    auth = open_auth(chain, listener)
    sig = auth.sign(listener, gasless.domain)
    gasless.open_for(chain.tx("relay"), auth, sig, FEE, permit(chain, gasless, listener))
    with reverts("GaslessNonceUsed", nonce=1):
        gasless.open_for(chain.tx("relay"), auth, sig, FEE)
    cid = chain.channels.channel_id_for(listener.address, auth.token, auth.relay, auth.salt)
    top = TopUpAuth(listener.address, cid, 5 * STABLE, MAX_FEE, ZERO_ADDRESS, 2, chain.now() + 600)
    top_sig = top.sign(listener, gasless.domain)
    gasless.top_up_for(chain.tx("relay"), top, top_sig, FEE)
    deposit = chain.channels.get_channel(cid).deposit
    with reverts("GaslessNonceUsed", nonce=2):
        gasless.top_up_for(chain.tx("stranger"), top, top_sig, FEE)
    assert chain.channels.get_channel(cid).deposit == deposit == 15 * STABLE - 2 * FEE


def test_cancelled_nonce_cannot_be_used(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """A payer with gas cancels a signed open before the relay submits it."""
    payer = chain.key("listener")
    auth = open_auth(chain, payer)
    chain.tx("listener").transact(gasless.contract.functions.cancelAuthorization(1), action="cancelAuthorization")
    with reverts("GaslessNonceUsed", nonce=1):
        gasless.open_for(chain.tx("relay"), auth, auth.sign(payer, gasless.domain), FEE, permit(chain, gasless, payer))


# --------------------------------------------------------------------------------------------------- fees


def test_fee_above_the_signed_max_is_refused(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """The relay asks one unit more than the signed maximum, or the whole amount."""
    auth = open_auth(chain, listener)
    sig = auth.sign(listener, gasless.domain)
    with reverts("GaslessFeeAboveMax", fee=MAX_FEE + 1, maxFee=MAX_FEE):
        gasless.open_for(chain.tx("relay"), auth, sig, MAX_FEE + 1, permit(chain, gasless, listener))
    generous = open_auth(chain, listener, max_fee=auth.amount, nonce=9)
    with reverts("GaslessFeeTooHigh"):
        gasless.open_for(
            chain.tx("relay"),
            generous,
            generous.sign(listener, gasless.domain),
            auth.amount,
            permit(chain, gasless, listener),
        )


def test_close_fee_larger_than_the_refund_is_refused(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """The payer spent nearly everything; the relay's close fee may not dig into what payees are owed."""
    cid = open_gasless(chain, gasless, listener, max_fee=10 * STABLE)
    deposit = chain.channels.get_channel(cid).deposit
    final = sign(chain, voucher(cid, {chain.address("artist"): deposit - 1}), listener)
    close = CloseAuth(
        listener.address, cid, final.voucher.digest(chain.channels.domain), 5, ZERO_ADDRESS, 7, chain.now() + 600
    )
    with reverts("GaslessFeeTooHigh", fee=2, available=1):
        gasless.close_for(
            chain.tx("relay"),
            replace(close, max_fee=2),
            replace(close, max_fee=2).sign(listener, gasless.domain),
            2,
            final,
            (),
            close_signature(chain, cid, final.voucher),
        )
    gasless.close_for(
        chain.tx("relay"),
        close,
        close.sign(listener, gasless.domain),
        1,
        final,
        (),
        close_signature(chain, cid, final.voucher),
    )
    assert chain.channels.claimable(chain.address("artist"), chain.token.address) == deposit - 1


# ------------------------------------------------------------------------------------------------ expiry


def test_expired_authorisation_is_refused(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """The relay holds a signed open and submits it after its deadline."""
    auth = open_auth(chain, listener)
    sig = auth.sign(listener, gasless.domain)
    long_permit = sign_permit(chain.w3, chain.token.address, listener, gasless.address, 10**12, chain.now() + 10**6)
    chain.advance(601)
    with reverts("GaslessExpired", deadline=auth.deadline):
        gasless.open_for(chain.tx("relay"), auth, sig, FEE, long_permit)


# ------------------------------------------------------------------------------------------ front-running


def test_front_run_permit_does_not_block_the_open(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """A stranger submits the listener's permit first (consuming its nonce); the open still goes through."""
    auth = open_auth(chain, listener)
    p = permit(chain, gasless, listener)
    chain.tx("stranger").transact(
        chain.token.contract.functions.permit(listener.address, gasless.address, p.value, p.deadline, p.v, p.r, p.s),
        action="permit",
    )
    gasless.open_for(chain.tx("relay"), auth, auth.sign(listener, gasless.domain), FEE, p)
    cid = chain.channels.channel_id_for(listener.address, auth.token, auth.relay, auth.salt)
    assert chain.channels.get_channel(cid).deposit == auth.amount - FEE


def test_missing_allowance_is_a_clear_error(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """The submitter drops the permit (or it is for too little): GaslessAllowanceTooLow, nothing moves."""
    auth = open_auth(chain, listener)
    with reverts("GaslessAllowanceTooLow", allowance=0, amount=auth.amount):
        gasless.open_for(chain.tx("relay"), auth, auth.sign(listener, gasless.domain), FEE, NO_PERMIT)
    assert not gasless.nonce_used(listener.address, 1)


def test_stranger_submitting_first_gets_no_other_terms_and_a_bound_submitter_stops_it(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """A stranger copies the relay's pending open: the channel is exactly the signed one; with submitter=relay it
    cannot submit at all."""
    auth = open_auth(chain, listener, submitter=chain.address("relay"))
    sig = auth.sign(listener, gasless.domain)
    with reverts("GaslessWrongSubmitter"):
        gasless.open_for(chain.tx("stranger"), auth, sig, FEE, permit(chain, gasless, listener))
    anyone = open_auth(chain, listener, nonce=2, salt=salt("anyone"))
    gasless.open_for(
        chain.tx("stranger"), anyone, anyone.sign(listener, gasless.domain), MAX_FEE, permit(chain, gasless, listener)
    )
    state = chain.channels.get_channel(
        chain.channels.channel_id_for(listener.address, anyone.token, anyone.relay, anyone.salt)
    )
    assert (state.payer, state.relay, state.deposit) == (listener.address, anyone.relay, anyone.amount - MAX_FEE)


# ---------------------------------------------------------------------------------------- zero addresses


def test_zero_address_tricks_are_refused(chain: Chain, gasless: GaslessClient, listener: PrivateKey) -> None:
    """payer 0 with a garbage signature (ecrecover's 0), token 0 (ETH), relay 0: each refused with its reason."""
    garbage = Signature(v=27, r=0, s=0)
    with reverts("GaslessSignerZero"):
        gasless.open_for(chain.tx("relay"), open_auth(chain, listener, payer=ZERO_ADDRESS), garbage, 0)
    with reverts("GaslessInvalidSignature"):
        gasless.open_for(chain.tx("relay"), open_auth(chain, listener), garbage, 0, permit(chain, gasless, listener))
    eth = open_auth(chain, listener, token=ZERO_ADDRESS)
    with reverts("GaslessTokenRequired"):
        gasless.open_for(chain.tx("relay"), eth, eth.sign(listener, gasless.domain), 0)
    no_relay = open_auth(chain, listener, relay=ZERO_ADDRESS)
    with reverts("ChannelRelayZero"):
        gasless.open_for(
            chain.tx("relay"), no_relay, no_relay.sign(listener, gasless.domain), 0, permit(chain, gasless, listener)
        )


def test_trusted_entry_points_refuse_anyone_but_the_gasless_contract(chain: Chain, gasless: GaslessClient) -> None:
    """A stranger calls channels.openFor / cooperativeCloseFor / setPayoutScheduleFor directly to act as someone."""
    fns = chain.channels.contract.functions
    victim = chain.address("listener")
    token = chain.token.address
    for call in (
        fns.openFor(victim, chain.address("relay"), token, 1, salt(1), ZERO_ADDRESS, 0, 0, chain.address("stranger")),
        fns.cooperativeCloseFor(victim, (salt(1), [], [], ZERO_HASH, [], ZERO_HASH, ZERO_HASH), ZERO_HASH, ZERO_HASH),
        fns.setPayoutScheduleFor(victim, token, (True, chain.address("stranger"), 1, 0, 0)),
    ):
        with reverts("NotGaslessForwarder"):
            chain.tx("stranger").transact(call, action="direct")


def test_close_authorisation_cannot_close_someone_elses_channel(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """A stranger signs a CloseChannel naming itself as payer for the listener's channel."""
    cid = open_gasless(chain, gasless, listener)
    stranger = chain.key("stranger")
    close = CloseAuth(stranger.address, cid, ZERO_HASH, 0, ZERO_ADDRESS, 1, chain.now() + 600)
    with reverts("ChannelNotPayer"):
        gasless.close_for(
            chain.tx("stranger"),
            close,
            close.sign(stranger, gasless.domain),
            0,
            None,
            (),
            close_signature(chain, cid, None),
        )


# ----------------------------------------------------------------------------------------------- payouts


def credit(chain: Chain, gasless: GaslessClient, listener: PrivateKey, payments: dict[str, int]) -> bytes:
    cid = open_gasless(chain, gasless, listener)
    settle(chain, sign(chain, voucher(cid, payments), listener))
    return cid


def schedule(chain: Chain, gasless: GaslessClient, payee: str, **changes: object) -> tuple[ScheduleAuth, Signature]:
    auth = ScheduleAuth(
        payee=chain.address(payee),
        token=chain.token.address,
        enabled=True,
        recipient=ZERO_ADDRESS,
        threshold=STABLE,
        period=0,
        max_fee=FEE,
        nonce=gasless.schedule_nonce(chain.address(payee)),
        deadline=chain.now() + 600,
    )
    auth = replace(auth, **changes)  # type: ignore[arg-type]
    return auth, auth.sign(chain.key(payee), gasless.domain)


def test_payout_goes_only_to_the_payee_or_its_signed_recipient_once(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """The relay redirects a payout to itself, lists the payee twice and asks more than the signed fee."""
    artist, collab = chain.address("artist"), chain.address("collab")
    credit(chain, gasless, listener, {artist: 3 * STABLE, collab: 2 * STABLE})
    auth, sig = schedule(chain, gasless, "artist", recipient=chain.address("label"))
    with reverts("GaslessInvalidSignature"):
        gasless.set_schedule_for(chain.tx("relay"), replace(auth, recipient=chain.address("relay")), sig)
    gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    label_before = chain.token.balance_of(chain.address("label"))
    receipt = payout_batch(chain.channels, chain.tx("relay"), chain.token.address, [artist, collab, artist], 10 * FEE)
    paid = payouts_in(chain.channels, receipt)
    assert [(p.payee, p.to, p.amount, p.fee) for p in paid] == [(artist, chain.address("label"), 3 * STABLE - FEE, FEE)]
    assert [reason for _, reason in payout_skips_in(chain.channels, receipt)] == [
        "PayoutNotScheduled",
        "PayoutBelowThreshold",
    ]
    assert chain.token.balance_of(chain.address("label")) - label_before == 3 * STABLE - FEE
    assert chain.channels.claimable(artist, chain.token.address) == 0
    assert chain.channels.claimable(collab, chain.token.address) == 2 * STABLE  # no schedule: untouched


def test_old_schedule_signature_cannot_be_replayed_after_an_opt_out(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """The payee opts out (by signature, then by transaction); the relay re-submits the older opt-in."""
    first, first_sig = schedule(chain, gasless, "artist")
    gasless.set_schedule_for(chain.tx("relay"), first, first_sig)
    stop, stop_sig = schedule(chain, gasless, "artist", enabled=False, threshold=0)
    gasless.set_schedule_for(chain.tx("relay"), stop, stop_sig)
    with reverts("GaslessScheduleNonce", nonce=0, expected=2):
        gasless.set_schedule_for(chain.tx("relay"), first, first_sig)
    pending, pending_sig = schedule(chain, gasless, "artist")  # signed, not yet submitted
    gasless.set_schedule(chain.tx("artist"), chain.token.address, enabled=False)
    with reverts("GaslessScheduleNonce"):
        gasless.set_schedule_for(chain.tx("relay"), pending, pending_sig)
    assert not payout_schedule(chain.channels, chain.address("artist"), chain.token.address).enabled


def test_period_is_enforced_and_pull_claim_keeps_working(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """The relay pushes again inside the signed period; the payee pulls the new balance itself meanwhile."""
    artist = chain.address("artist")
    cid = credit(chain, gasless, listener, {artist: 2 * STABLE})
    auth, sig = schedule(chain, gasless, "artist", threshold=0, period=86_400)
    gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    assert (
        len(
            payouts_in(
                chain.channels, payout_batch(chain.channels, chain.tx("relay"), chain.token.address, [artist], 0)
            )
        )
        == 1
    )
    settle(chain, sign(chain, voucher(cid, {artist: 3 * STABLE}), listener), (2 * STABLE,))
    receipt = payout_batch(chain.channels, chain.tx("relay"), chain.token.address, [artist], 0)
    assert payout_skips_in(chain.channels, receipt) == [(artist, "PayoutNotDue")]
    chain.channels.claim(chain.tx("artist"), chain.token.address)
    assert chain.channels.claimable(artist, chain.token.address) == 0
    chain.advance(86_400)
    receipt = payout_batch(chain.channels, chain.tx("relay"), chain.token.address, [artist], 0)
    assert payout_skips_in(chain.channels, receipt) == [(artist, "PayoutBelowThreshold")]  # nothing left to pay


def test_recipient_refusing_its_payout_cannot_block_the_others(chain: Chain, gasless: GaslessClient) -> None:
    """A payee signs a recipient that refuses ETH: the batch reverts as a whole (nothing moves), and the relay's
    payout loop pays the other payees one by one; the refusing payee keeps its balance to claim."""
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10**18)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * 10**15, collab: 2 * 10**15})))
    refuser = chain.deployment.registry  # a contract without a receive function
    for payee, recipient in (("artist", refuser), ("collab", ZERO_ADDRESS)):
        auth, sig = schedule(chain, gasless, payee, token=ZERO_ADDRESS, threshold=1, max_fee=0, recipient=recipient)
        gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    with reverts("PayoutFailed"):
        payout_batch(chain.channels, chain.tx("relay"), ZERO_ADDRESS, [artist, collab], 0)
    assert chain.channels.claimable(collab) == 2 * 10**15
    pusher = PayoutPusher(Settings(payout_fee=0), chain.channels, chain.tx("relay"), [ZERO_ADDRESS])
    paid = pusher.run_once()
    assert [(p.payee, p.amount) for p in paid] == [(collab, 2 * 10**15)]
    assert chain.channels.claimable(artist) == 3 * 10**15
    chain.channels.claim(chain.tx("artist"))
    assert chain.channels.claimable(artist) == 0


# Neither value below is a decimal float the balance slot stores exactly (at most 26 bits of mantissa).
ODD_THRESHOLD = 123_456_789  # stored as 123_456_790
ODD_MAX_FEE = 98_765_432  # stored as 98_765_430


def test_schedule_values_stored_inexactly_never_pay_early_or_charge_more_than_signed(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """The payee signs a threshold and a max fee the packed slot cannot hold exactly; the relay pushes one unit
    below the signed threshold and asks a fee far above the signed maximum."""
    artist = chain.address("artist")
    chain.token.mint(chain.tx("stranger"), listener.address, 3 * ODD_THRESHOLD)
    cid = open_gasless(chain, gasless, listener, amount=3 * ODD_THRESHOLD)
    settle(chain, sign(chain, voucher(cid, {artist: ODD_THRESHOLD - 1}), listener))
    auth, sig = schedule(chain, gasless, "artist", threshold=ODD_THRESHOLD, max_fee=ODD_MAX_FEE)
    gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    receipt = payout_batch(chain.channels, chain.tx("relay"), chain.token.address, [artist], 10**12)
    assert payout_skips_in(chain.channels, receipt) == [(artist, "PayoutBelowThreshold")]
    settle(chain, sign(chain, voucher(cid, {artist: 2 * ODD_THRESHOLD}), listener), (ODD_THRESHOLD - 1,))
    receipt = payout_batch(chain.channels, chain.tx("relay"), chain.token.address, [artist], 10**12)
    [paid] = payouts_in(chain.channels, receipt)
    assert paid.fee <= ODD_MAX_FEE and paid.amount + paid.fee == 2 * ODD_THRESHOLD
    effective = payout_schedule(chain.channels, artist, chain.token.address)
    assert (effective.threshold, effective.max_fee) == (123_456_790, 98_765_430)


def test_schedule_sharing_the_balance_slot_never_changes_a_balance(
    chain: Chain, gasless: GaslessClient, listener: PrivateKey
) -> None:
    """A payee never credited signs the widest schedule there is, then is credited, claims, is credited again and
    opts out: every unit credited is claimable or paid, not one more or less, and the schedule survives it all."""
    artist = chain.address("artist")
    widest = {"threshold": 2**96 - 1, "period": 2**32 - 1, "max_fee": 2**64 - 1}
    auth, sig = schedule(chain, gasless, "artist", **widest)
    gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    assert chain.channels.claimable(artist, chain.token.address) == 0
    cid = credit(chain, gasless, listener, {artist: 7})
    assert chain.channels.claimable(artist, chain.token.address) == 7
    before = chain.token.balance_of(artist)
    chain.channels.claim(chain.tx("artist"), chain.token.address)
    assert chain.token.balance_of(artist) - before == 7
    settle(chain, sign(chain, voucher(cid, {artist: 12}), listener), (7,))
    assert chain.channels.claimable(artist, chain.token.address) == 5
    kept = payout_schedule(chain.channels, artist, chain.token.address)
    assert (kept.enabled, kept.threshold, kept.period) == (True, 2**96 - 1, 2**32 - 1)
    assert kept.max_fee <= 2**64 - 1
    gasless.set_schedule(chain.tx("artist"), chain.token.address, enabled=False)
    assert chain.channels.claimable(artist, chain.token.address) == 5
    assert not payout_schedule(chain.channels, artist, chain.token.address).enabled


@pytest.mark.parametrize("kind", ["NoReturnToken", "ReentrantToken"])
def test_payout_in_a_non_standard_or_reentering_token_pays_each_balance_exactly_once(
    chain: Chain, gasless: GaslessClient, kind: str
) -> None:
    """The payout token returns nothing (USDT-style), or re-enters claim() on every transfer out of the contract."""
    artist, collab = chain.address("artist"), chain.address("collab")
    token = deploy_token(chain, kind)
    if kind == "ReentrantToken":
        chain.tx("deployer").transact(token.contract.functions.setTarget(chain.channels.address), action="setTarget")
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * STABLE, collab: 2 * STABLE})))
    for payee in ("artist", "collab"):
        auth, sig = schedule(chain, gasless, payee, token=token.address)
        gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    before = {a: token.balance_of(a) for a in (artist, collab, chain.address("relay"))}
    receipt = payout_batch(chain.channels, chain.tx("relay"), token.address, [artist, collab, artist], FEE)
    assert [(p.payee, p.amount, p.fee) for p in payouts_in(chain.channels, receipt)] == [
        (artist, 3 * STABLE - FEE, FEE),
        (collab, 2 * STABLE - FEE, FEE),
    ]
    after = {a: token.balance_of(a) - before[a] for a in before}
    assert after == {artist: 3 * STABLE - FEE, collab: 2 * STABLE - FEE, chain.address("relay"): 2 * FEE}
    assert token.balance_of(chain.channels.address) == 5 * STABLE  # the unspent deposit, nothing else
    if kind == "ReentrantToken":
        assert token.contract.functions.reentrySucceeded().call() == 0


# --------------------------------------------------------------------------- the batch's one record

# The batch below: the relay asks FEE; "platform" signed a max fee below it; "collab" signed a recipient; "stranger" has no
# schedule; "artist" is listed twice. Each kind of entry appears: one word, four words (capped fee, recipient),
# skipped (not scheduled, and the second "artist": nothing left).
LISTED = ["artist", "collab", "platform", "stranger", "artist"]
CREDITS = {"artist": 3 * STABLE, "collab": 2 * STABLE, "platform": STABLE, "stranger": STABLE // 2}


@pytest.mark.parametrize("kind", ["stablecoin", "NoReturnToken", "ETH"])
def test_payout_record_states_exactly_what_each_listed_payee_lost_and_each_recipient_got(
    chain: Chain, gasless: GaslessClient, kind: str
) -> None:
    """The relay's batch mixes every kind of entry (plain, capped fee, signed recipient, unscheduled, listed twice) in
    the stablecoin, a token returning nothing, or ETH: decoding the one PaidOutBatch record alone must give, per listed
    payee, the balance it lost, who got it and the fee kept — compared with the balances before and after."""
    token = ZERO_ADDRESS if kind == "ETH" else chain.token.address
    if kind == "NoReturnToken":
        token = deploy_token(chain, kind).address
    cid = open_channel(chain, 10 * STABLE, token=token)
    settle(chain, sign(chain, voucher(cid, {chain.address(p): a for p, a in CREDITS.items()})))
    signed = {"artist": {}, "collab": {"recipient": chain.address("label")}, "platform": {"max_fee": FEE // 4}}
    for payee, changes in signed.items():
        auth, sig = schedule(chain, gasless, payee, token=token, threshold=1, **changes)
        gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    holders = [chain.address(a) for a in ("artist", "collab", "platform", "stranger", "label", "relay")]
    held = (lambda a: chain.balance(a)) if kind == "ETH" else (lambda a: token_balance(chain, token, a))
    claimable_before = {a: chain.channels.claimable(a, token) for a in holders}
    held_before = {a: held(a) for a in holders + [chain.channels.address]}

    receipt = payout_batch(chain.channels, chain.tx("relay"), token, [chain.address(p) for p in LISTED], FEE)

    [record] = payout_batches_in(chain.channels, receipt)
    assert (record.token, record.submitter, record.fee) == (token, chain.address("relay"), FEE)
    assert [(e.index, e.payee) for e in record.entries] == list(enumerate(chain.address(p) for p in LISTED))
    got = {a: 0 for a in holders}
    lost = {a: 0 for a in holders}
    for e in record.entries:
        if e.reason is None:
            assert e.to is not None and e.fee <= FEE
            got[e.to] += e.amount
            got[chain.address("relay")] += e.fee
            lost[e.payee] += e.amount + e.fee
    if kind == "ETH":
        got[chain.address("relay")] -= receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert {a: held(a) - held_before[a] for a in holders} == got
    assert {a: claimable_before[a] - chain.channels.claimable(a, token) for a in holders} == lost
    assert held_before[chain.channels.address] - held(chain.channels.address) == sum(lost.values())
    # ... and what the record says is what the schedules allow: whole balances, signed recipients and max fees.
    artist, collab, platform, stranger = (chain.address(p) for p in ("artist", "collab", "platform", "stranger"))
    assert [(e.payee, e.to, e.amount, e.fee, e.reason) for e in record.entries] == [
        (artist, artist, 3 * STABLE - FEE, FEE, None),
        (collab, chain.address("label"), 2 * STABLE - FEE, FEE, None),
        (platform, platform, STABLE - FEE // 4, FEE // 4, None),
        (stranger, None, 0, 0, "PayoutNotScheduled"),
        (artist, None, 0, 0, "PayoutBelowThreshold"),
    ]


def test_relay_books_every_payout_of_one_batch_as_a_claim_of_its_own_payee_once(
    chain: Chain, gasless: GaslessClient, tmp_path: Path
) -> None:
    """A stranger pays two scheduled payees in one batch (one log for both): the relay, reading the chain twice (a
    restart), books each payee's claim once, not one claim for the log nor two for a re-read."""
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * STABLE, token=chain.token.address)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * STABLE, collab: 2 * STABLE})))
    for payee in ("artist", "collab"):
        auth, sig = schedule(chain, gasless, payee, threshold=1)
        gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    payout_batch(chain.channels, chain.tx("stranger"), chain.token.address, [artist, collab], FEE)
    store = SqliteStore(tmp_path / "relay.db")
    try:
        for _ in range(2):  # the second pusher re-reads from block 0, as after a restart
            pusher = PayoutPusher(Settings(), chain.channels, chain.tx("relay"), [chain.token.address], store=store)
            pusher.run_once(push=False)
            assert {p: [(r.to, r.amount, r.fee) for r in pusher.history[p]] for p in (artist, collab)} == {
                artist: [(artist, 3 * STABLE - FEE, FEE)],
                collab: [(collab, 2 * STABLE - FEE, FEE)],
            }
        assert [int(c["amount"]) for c in store.claims_of(artist)] == [3 * STABLE]
        assert [int(c["amount"]) for c in store.claims_of(collab)] == [2 * STABLE]
    finally:
        store.close()


def test_relay_reads_payouts_in_log_ranges_a_provider_accepts_however_long_the_chain(
    chain: Chain, gasless: GaslessClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider refuses eth_getLogs over more than LOG_RANGE blocks (as hosted nodes do): a relay starting from
    the deploy block on a chain longer than that still finds every schedule and payout, reading it in steps."""
    from chainstream.relay import payouts as payouts_module

    monkeypatch.setattr(payouts_module, "LOG_RANGE", 3)
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * STABLE, token=chain.token.address)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * STABLE})))
    auth, sig = schedule(chain, gasless, "artist", threshold=1)
    gasless.set_schedule_for(chain.tx("relay"), auth, sig)
    payout_batch(chain.channels, chain.tx("stranger"), chain.token.address, [artist], FEE)
    assert int(chain.w3.eth.block_number) > 3 * 3  # the scan needs several steps
    chain.w3.middleware_onion.inject(_ShortLogRanges, name="short-log-ranges", layer=0)
    try:
        pusher = PayoutPusher(Settings(), chain.channels, chain.tx("relay"), [chain.token.address])
        pusher.run_once(push=False)
    finally:
        chain.w3.middleware_onion.remove("short-log-ranges")
    assert pusher.scheduled == {chain.token.address: {artist}}
    assert [(r.to, r.amount, r.fee) for r in pusher.history[artist]] == [(artist, 3 * STABLE - FEE, FEE)]
    assert pusher.from_block == int(chain.w3.eth.block_number) + 1


class _ShortLogRanges(Web3Middleware):
    """A provider's policy: eth_getLogs over more than 3 blocks is refused."""

    def request_processor(self, method: Any, params: Any) -> Any:
        if method == "eth_getLogs":
            bounds = [params[0][k] for k in ("fromBlock", "toBlock")]
            first, last = (int(b, 16) if isinstance(b, str) else int(b) for b in bounds)
            if last - first + 1 > 3:
                raise ValueError(f"query exceeds the provider's range of 3 blocks ({last - first + 1})")
        return method, params
