"""ChainStreamChannels on real chains: opening and funding, session keys, settlement (single and batch), and the
cooperative and unilateral closes. Every case runs on eth-tester and on anvil (see conftest.py)."""

from __future__ import annotations

import pytest

from chainstream.chain.contracts import ChannelStatus, empty_entry
from chainstream.errors import ChainError, ProtocolError
from chainstream.protocol import Domain, PrivateKey, SignedVoucher, recover
from chainstream.protocol.signing import HALF_N, high_s_twin
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH
from tests.integration.conftest import CHALLENGE_PERIOD, KEY_ROTATION_GRACE, STABLE, Chain
from tests.integration.helpers import (
    ETH,
    FINNEY,
    batch,
    close_signature,
    cooperative_close,
    crafted_high_s_key,
    entry,
    events,
    expected_channel_id,
    gas_cost,
    open_channel,
    play_hash,
    raw_channel,
    raw_entry,
    reverts,
    salt,
    selector,
    settle,
    settle_call,
    settle_raw,
    sign,
    voucher,
)

# --------------------------------------------------------------------------------------------------- open


def test_open_eth_createsChannelHoldingTheDeposit(chain: Chain) -> None:
    c = chain.channels
    listener, relay = chain.address("listener"), chain.address("relay")
    escrow_before = chain.balance(c.address)
    cid, receipt = c.open(chain.tx("listener"), relay=relay, amount=5 * FINNEY, salt=salt(1))

    assert cid == expected_channel_id(chain, listener, ETH, relay, salt(1))
    assert cid == c.channel_id_for(listener, ETH, relay, salt(1))
    (opened,) = events(c.contract, "ChannelOpened", receipt)
    assert bytes(opened.args.channelId) == cid
    assert (opened.args.payer, opened.args.relay, opened.args.token) == (listener, relay, ETH)
    assert (opened.args.deposit, opened.args.sessionKey, opened.args.sessionExpiry) == (5 * FINNEY, ZERO_ADDRESS, 0)
    assert bytes(opened.args.salt) == salt(1)
    (registered,) = events(c.contract, "RelayRegistered", receipt)
    assert registered.args.relay == relay
    assert registered.args.relayId == c.contract.functions.relayCount().call()

    state = c.get_channel(cid)
    assert state.status == ChannelStatus.OPEN
    assert (state.payer, state.relay, state.token) == (listener, relay, ETH)
    assert (state.deposit, state.settled, state.closes_at) == (5 * FINNEY, 0, 0)
    assert state.settled_root == bytes(c.contract.functions.EMPTY_ROOT().call())
    assert chain.balance(c.address) == escrow_before + 5 * FINNEY

    # The relay is registered once: a second channel with the same relay emits no RelayRegistered.
    _, receipt2 = c.open(chain.tx("listener"), relay=relay, amount=FINNEY, salt=salt(2))
    assert events(c.contract, "RelayRegistered", receipt2) == []


def test_open_withSessionKey_recordsKeyAndExpiry(chain: Chain) -> None:
    expiry = chain.now() + 1_000
    cid = open_channel(chain, FINNEY, session_key=chain.address("session"), session_expiry=expiry)
    state = chain.channels.get_channel(cid)
    assert (state.session_key, state.session_expiry) == (chain.address("session"), expiry)


def test_open_token_pullsTheApprovedAmount(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    listener = chain.address("listener")
    token.approve(chain.tx("listener"), c.address, 25 * STABLE)  # exactly the deposit, no more
    before = token.balance_of(listener)
    call = c.contract.functions.open(chain.address("relay"), token.address, 25 * STABLE, salt(1), ZERO_ADDRESS, 0)
    receipt = chain.tx("listener").transact(call, action="open")
    cid = c.channel_id_for(listener, token.address, chain.address("relay"), salt(1))

    assert token.balance_of(listener) == before - 25 * STABLE
    assert token.balance_of(c.address) == 25 * STABLE
    assert token.allowance(listener, c.address) == 0
    state = c.get_channel(cid)
    assert (state.token, state.deposit) == (token.address, 25 * STABLE)
    (opened,) = events(c.contract, "ChannelOpened", receipt)
    assert opened.args.token == token.address


def test_openWithPermit_opensWithoutPriorApproval(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    listener = chain.address("listener")
    assert token.allowance(listener, c.address) == 0
    nonce_before = token.contract.functions.nonces(listener).call()
    cid, _ = c.open_with_permit(
        chain.tx("listener"), relay=chain.address("relay"), token=token.address, amount=7 * STABLE, salt=salt(1)
    )
    assert c.get_channel(cid).deposit == 7 * STABLE
    assert token.balance_of(c.address) == 7 * STABLE
    assert token.contract.functions.nonces(listener).call() == nonce_before + 1
    assert token.allowance(listener, c.address) == 0


def test_openWithPermit_succeedsIfPermitWasFrontRun(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    listener = chain.address("listener")
    deadline = chain.now() + 3_600
    sig = token.sign_permit(chain.tx("listener"), c.address, 7 * STABLE, deadline)
    # Someone else submits the listener's permit first; the open must still go through on the allowance.
    chain.tx("stranger").transact(
        token.contract.functions.permit(listener, c.address, 7 * STABLE, deadline, sig.v, sig.r_bytes, sig.s_bytes),
        action="permit",
    )
    assert token.allowance(listener, c.address) == 7 * STABLE
    call = c.contract.functions.openWithPermit(
        chain.address("relay"),
        token.address,
        7 * STABLE,
        salt(1),
        ZERO_ADDRESS,
        0,
        deadline,
        sig.v,
        sig.r_bytes,
        sig.s_bytes,
    )
    chain.tx("listener").transact(call, action="openWithPermit")
    cid = c.channel_id_for(listener, token.address, chain.address("relay"), salt(1))
    assert c.get_channel(cid).deposit == 7 * STABLE
    assert token.balance_of(c.address) == 7 * STABLE


def test_open_revertsIfArgumentsInvalid(chain: Chain) -> None:
    c, tx = chain.channels.contract, chain.tx("listener")
    relay = chain.address("relay")
    with reverts("ChannelDepositZero"):
        tx.transact(c.functions.open(relay, ETH, 0, salt(1), ZERO_ADDRESS, 0), action="open")
    with reverts("ChannelRelayZero"):
        tx.transact(c.functions.open(ZERO_ADDRESS, ETH, FINNEY, salt(1), ZERO_ADDRESS, 0), value=FINNEY, action="open")
    with reverts("ChannelValueMismatch", expected=FINNEY, sent=FINNEY - 1):
        tx.transact(c.functions.open(relay, ETH, FINNEY, salt(1), ZERO_ADDRESS, 0), value=FINNEY - 1, action="open")
    with reverts("ChannelValueMismatch", expected=0, sent=1):
        tx.transact(
            c.functions.open(relay, chain.token.address, STABLE, salt(1), ZERO_ADDRESS, 0), value=1, action="open"
        )
    past = chain.now()
    with reverts("SessionKeyExpiryInPast", expiry=past):
        tx.transact(
            c.functions.open(relay, ETH, FINNEY, salt(1), chain.address("session"), past), value=FINNEY, action="open"
        )
    unlisted = chain.registry.address  # any contract that was never allowed
    with reverts("TokenNotAllowed", token=unlisted):
        tx.transact(c.functions.open(relay, unlisted, FINNEY, salt(1), ZERO_ADDRESS, 0), action="open")
    # A token channel without allowance fails inside the (standard) token.
    with pytest.raises(ChainError):
        tx.transact(c.functions.open(relay, chain.token.address, STABLE, salt(1), ZERO_ADDRESS, 0), action="open")


def test_open_revertsIfChannelIdExists(chain: Chain) -> None:
    cid = open_channel(chain, FINNEY, label="same")
    with reverts("ChannelExists", channelId=cid):
        open_channel(chain, FINNEY, label="same")
    # Ids are never reused, not even after the channel closed.
    cooperative_close(chain, cid, None)
    assert chain.channels.get_channel(cid).status == ChannelStatus.CLOSED
    with reverts("ChannelExists", channelId=cid):
        open_channel(chain, FINNEY, label="same")
    # The same salt with another payer, token or relay is another channel.
    other = open_channel(chain, FINNEY, label="same", payer="listener2")
    assert other != cid


# ------------------------------------------------------------------------------------------------- top up


def test_topUp_byPayerIncreasesDeposit(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 2 * FINNEY)
    receipt = c.top_up(chain.tx("listener"), cid, 3 * FINNEY)
    (ev,) = events(c.contract, "ChannelToppedUp", receipt)
    assert (bytes(ev.args.channelId), ev.args["from"], ev.args.amount, ev.args.deposit) == (
        cid,
        chain.address("listener"),
        3 * FINNEY,
        5 * FINNEY,
    )
    assert c.get_channel(cid).deposit == 5 * FINNEY
    assert chain.balance(c.address) == 5 * FINNEY


def test_topUp_byStrangerRefundsThePayer(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 2 * FINNEY)
    receipt = c.top_up(chain.tx("stranger"), cid, 3 * FINNEY)
    (ev,) = events(c.contract, "ChannelToppedUp", receipt)
    assert ev.args["from"] == chain.address("stranger")
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): FINNEY})))

    listener_before, stranger_before = chain.balance("listener"), chain.balance("stranger")
    receipt = cooperative_close(chain, cid, None)
    assert chain.balance("listener") == listener_before + 4 * FINNEY - gas_cost(receipt)
    assert chain.balance("stranger") == stranger_before


def test_topUp_token(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    cid = open_channel(chain, 5 * STABLE, token=token.address)
    c.top_up(chain.tx("stranger"), cid, 2 * STABLE, token=token.address)
    assert c.get_channel(cid).deposit == 7 * STABLE
    assert token.balance_of(c.address) == 7 * STABLE


def test_topUp_revertsIfInvalid(chain: Chain) -> None:
    c, tx = chain.channels, chain.tx("listener")
    cid = open_channel(chain, FINNEY)
    unknown = b"\x42" * 32
    with reverts("ChannelNotFound", channelId=unknown):
        c.top_up(tx, unknown, FINNEY)
    with reverts("ChannelDepositZero"):
        c.top_up(tx, cid, 0)
    with reverts("ChannelValueMismatch", expected=FINNEY, sent=1):
        tx.transact(c.contract.functions.topUp(cid, FINNEY), value=1, action="topUp")
    c.request_close(tx, cid)
    closes_at = c.get_channel(cid).closes_at
    with reverts("ChannelNotOpen", channelId=cid, closesAt=closes_at):
        c.top_up(tx, cid, FINNEY)


def test_topUp_revertsIfDepositOverflows96Bits(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    big = 2**96 - 1
    token.mint(chain.tx("listener"), chain.address("listener"), big)
    cid = open_channel(chain, big, token=token.address)
    with reverts("ChannelDepositOverflow", channelId=cid, deposit=2**96):
        c.top_up(chain.tx("listener"), cid, 1, token=token.address)


# ------------------------------------------------------------------------------------------- session keys


def test_setSessionKey_setsRotatesAndRevokes(chain: Chain) -> None:
    c, tx = chain.channels, chain.tx("listener")
    session, second = chain.address("session"), PrivateKey.generate().address
    cid = open_channel(chain, FINNEY)

    expiry = chain.now() + 10 * 86_400
    receipt = c.set_session_key(tx, cid, session, expiry)
    (ev,) = events(c.contract, "SessionKeyChanged", receipt)
    assert (ev.args.sessionKey, ev.args.expiry, ev.args.previousKey, ev.args.previousValidUntil) == (
        session,
        expiry,
        ZERO_ADDRESS,
        0,
    )
    state = c.get_channel(cid)
    assert (state.session_key, state.session_expiry) == (session, expiry)

    # Rotation: the old key is retired with a grace period of KEY_ROTATION_GRACE (its expiry is later).
    receipt = c.set_session_key(tx, cid, second, expiry)
    ts = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    (ev,) = events(c.contract, "SessionKeyChanged", receipt)
    assert (ev.args.sessionKey, ev.args.previousKey, ev.args.previousValidUntil) == (
        second,
        session,
        ts + KEY_ROTATION_GRACE,
    )
    assert tuple(c.contract.functions.retiredSessionKey(cid).call()) == (session, ts + KEY_ROTATION_GRACE)
    assert c.get_channel(cid).session_key == second

    # Revocation (after the first grace ended) retires the current key the same way.
    chain.advance(KEY_ROTATION_GRACE + 1)
    receipt = c.set_session_key(tx, cid, ZERO_ADDRESS, 0)
    ts = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    state = c.get_channel(cid)
    assert (state.session_key, state.session_expiry) == (ZERO_ADDRESS, 0)
    assert tuple(c.contract.functions.retiredSessionKey(cid).call()) == (second, ts + KEY_ROTATION_GRACE)


def test_setSessionKey_graceIsCappedByTheOldKeysExpiry(chain: Chain) -> None:
    c, tx = chain.channels, chain.tx("listener")
    expiry = chain.now() + 600  # sooner than the end of the grace
    cid = open_channel(chain, FINNEY, session_key=chain.address("session"), session_expiry=expiry)
    receipt = c.set_session_key(tx, cid, PrivateKey.generate().address, expiry + 86_400)
    (ev,) = events(c.contract, "SessionKeyChanged", receipt)
    assert ev.args.previousValidUntil == expiry


def test_setSessionKey_sameKeyExtendsExpiryWithoutRetiring(chain: Chain) -> None:
    c = chain.channels
    session = chain.address("session")
    cid = open_channel(chain, FINNEY, session_key=session, session_expiry=chain.now() + 600)
    later = chain.now() + 86_400
    receipt = c.set_session_key(chain.tx("listener"), cid, session, later)
    (ev,) = events(c.contract, "SessionKeyChanged", receipt)
    assert (ev.args.previousKey, ev.args.previousValidUntil) == (session, 0)
    assert c.get_channel(cid).session_expiry == later
    assert tuple(c.contract.functions.retiredSessionKey(cid).call()) == (ZERO_ADDRESS, 0)


def test_setSessionKey_revertsIfInvalid(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, FINNEY)
    session = chain.address("session")
    with reverts("ChannelNotPayer", channelId=cid, caller=chain.address("stranger")):
        c.set_session_key(chain.tx("stranger"), cid, session, chain.now() + 600)
    with reverts("ChannelNotFound"):
        c.set_session_key(chain.tx("listener"), b"\x42" * 32, session, chain.now() + 600)
    past = chain.now() - 1
    with reverts("SessionKeyExpiryInPast", expiry=past):
        c.set_session_key(chain.tx("listener"), cid, session, past)
    c.request_close(chain.tx("listener"), cid)
    with reverts("ChannelNotOpen", channelId=cid):
        c.set_session_key(chain.tx("listener"), cid, session, chain.now() + 600)


def test_setSessionKey_revertsIfRotationPendingDuringGrace(chain: Chain) -> None:
    c, tx = chain.channels, chain.tx("listener")
    expiry = chain.now() + 10 * 86_400
    cid = open_channel(chain, FINNEY, session_key=chain.address("session"), session_expiry=expiry)
    second, third = PrivateKey.generate().address, PrivateKey.generate().address
    c.set_session_key(tx, cid, second, expiry)
    _, valid_until = c.contract.functions.retiredSessionKey(cid).call()
    with reverts("SessionKeyRotationPending", channelId=cid, validUntil=valid_until):
        c.set_session_key(tx, cid, third, expiry)
    chain.advance(KEY_ROTATION_GRACE + 1)
    c.set_session_key(tx, cid, third, expiry)
    assert c.get_channel(cid).session_key == third
    assert c.contract.functions.retiredSessionKey(cid).call()[0] == second


def test_setSessionKey_sameKeyCannotEndBeforeTheRotationGrace(chain: Chain) -> None:
    """Setting the same key again must not void what it signed sooner than a rotation would: its expiry may
    move later, or earlier down to min(its expiry, now + grace), not below."""
    c, tx = chain.channels, chain.tx("listener")
    key = PrivateKey.generate()
    expiry = chain.now() + 10 * 86_400
    cid = open_channel(chain, 10 * FINNEY, session_key=key.address, session_expiry=expiry)
    too_soon = chain.now() + 2
    with reverts("SessionKeyExpiryBelowGrace", channelId=cid, expiry=too_soon):
        c.set_session_key(tx, cid, key.address, too_soon)
    soon = chain.now() + KEY_ROTATION_GRACE + 5  # about when a rotation would end the key
    c.set_session_key(tx, cid, key.address, soon)
    assert c.get_channel(cid).session_expiry == soon
    c.set_session_key(tx, cid, key.address, expiry + 86_400)  # later: always
    assert c.get_channel(cid).session_expiry == expiry + 86_400

    # What the key signed still settles up to the minimum: the payer cannot cut it off at once.
    signed = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}, play_hash(1)), key)
    chain.advance(KEY_ROTATION_GRACE - 60)
    assert settle_call(chain, entry(signed)) == FINNEY


# ------------------------------------------------------------------------------------------------- settle


def test_settle_creditsPayeesAndEmitsSettled(chain: Chain) -> None:
    c = chain.channels
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    v1 = sign(chain, voucher(cid, {artist: 2 * FINNEY}, play_hash(1)))
    assert settle_call(chain, entry(v1)) == 2 * FINNEY
    receipt = settle(chain, v1)
    (ev,) = events(c.contract, "ChannelSettled", receipt)
    assert (bytes(ev.args.channelId), ev.args.settled, bytes(ev.args.playHash)) == (cid, 2 * FINNEY, play_hash(1))
    assert events(c.contract, "SettlementCapped", receipt) == []
    assert c.claimable(artist) == 2 * FINNEY
    assert c.prev_amounts(cid) == (2 * FINNEY,)

    # The next voucher appends a payee; prevAmounts is what the last settlement credited.
    v2 = sign(chain, voucher(cid, {artist: 3 * FINNEY, collab: FINNEY}, play_hash(2)))
    assert settle_call(chain, entry(v2, (2 * FINNEY,))) == 2 * FINNEY
    settle(chain, v2, (2 * FINNEY,))
    state = c.get_channel(cid)
    assert (state.settled, state.deposit, state.status) == (4 * FINNEY, 10 * FINNEY, ChannelStatus.OPEN)
    assert (c.claimable(artist), c.claimable(collab)) == (3 * FINNEY, FINNEY)
    assert c.prev_amounts(cid) == (3 * FINNEY, FINNEY)
    assert chain.balance(c.address) == 10 * FINNEY  # credits stay in escrow until claimed


def test_settle_onlyTheRelayUntilTheSecondHalfOfACloseWindow(chain: Chain) -> None:
    """The payer's signature alone also signs vouchers the relay never accepted (one paying the payer itself):
    settled first, it would void what the relay accepted and not yet settled. So while the channel is open and
    in the first half of a close window only the relay settles; then anyone may (a relay gone for good cannot
    keep the payer from paying its artists)."""
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    fork = sign(chain, voucher(cid, {chain.address("listener"): 10 * FINNEY}, play_hash(1)))
    for who in ("listener", "stranger", "artist"):
        with reverts("SettleNotAllowed", channelId=cid, caller=chain.address(who), opensAt=0):
            settle(chain, fork, by=who)
    receipt = batch(chain, [entry(fork)], by="listener")
    assert [bytes(e.args.reason) for e in events(c.contract, "SettlementSkipped", receipt)] == [
        selector("SettleNotAllowed")
    ]

    honest = sign(chain, voucher(cid, {chain.address("artist"): 3 * FINNEY}, play_hash(1)))
    c.request_close(chain.tx("listener"), cid)
    closes_at = c.get_channel(cid).closes_at
    opens_at = closes_at - CHALLENGE_PERIOD // 2
    with reverts("SettleNotAllowed", channelId=cid, caller=chain.address("listener"), opensAt=opens_at):
        settle(chain, honest, by="listener")
    settle(chain, honest)  # the relay, first half: its latest voucher
    chain.advance(opens_at - chain.now())
    # The payer's own voucher now settles, but after the relay's: it can take only what the relay left.
    rest = sign(
        chain, voucher(cid, {chain.address("artist"): 3 * FINNEY, chain.address("listener"): 7 * FINNEY}, play_hash(2))
    )
    settle(chain, rest, (3 * FINNEY,), by="listener")
    assert c.get_channel(cid).settled == 10 * FINNEY and c.claimable(chain.address("artist")) == 3 * FINNEY


def test_settle_voucherDigestMatchesPythonDigest(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, FINNEY)
    v = voucher(cid, {chain.address("artist"): 5, chain.address("collab"): 7}, play_hash("x"))
    assert bytes(
        c.contract.functions.voucherDigest(cid, list(v.payees), list(v.amounts), v.play_hash).call()
    ) == v.digest(c.domain)
    assert bytes(c.contract.functions.domainSeparator().call()) == c.domain.separator
    assert bytes(c.contract.functions.closeDigest(cid, v.digest(c.domain)).call()) == v.close_digest(c.domain)


def test_settle_isIdempotentForTheSameVoucher(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    v = sign(chain, voucher(cid, {chain.address("artist"): 2 * FINNEY}))
    settle(chain, v)
    state = raw_channel(chain, cid)
    for prev in ((), (2 * FINNEY,)):  # resubmitted as first settlement or on top of itself
        assert settle_call(chain, entry(v, prev)) == 0
        receipt = settle(chain, v, prev)
        assert events(c.contract, "ChannelSettled", receipt) == []
    assert raw_channel(chain, cid) == state
    assert c.claimable(chain.address("artist")) == 2 * FINNEY


def test_settle_isNoOpForOlderVoucherAfterNewerOne(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    older = sign(chain, voucher(cid, {artist: 2 * FINNEY}))
    newer = sign(chain, voucher(cid, {artist: 5 * FINNEY}))
    settle(chain, newer)
    state = raw_channel(chain, cid)

    assert settle_call(chain, entry(older)) == 0
    receipt = settle(chain, older)
    assert events(c.contract, "ChannelSettled", receipt) == []
    assert raw_channel(chain, cid) == state
    assert c.claimable(artist) == 5 * FINNEY

    receipt = batch(chain, [entry(older)])
    (skipped,) = events(c.contract, "SettlementSkipped", receipt)
    assert (bytes(skipped.args.channelId), skipped.args.index, bytes(skipped.args.reason)) == (
        cid,
        0,
        selector("VoucherStale"),
    )
    assert raw_channel(chain, cid) == state


def test_settle_revertsIfPrevAmountsWrong(chain: Chain) -> None:
    c = chain.channels
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 2 * FINNEY, collab: 2 * FINNEY})))
    root = c.get_channel(cid).settled_root
    v = sign(chain, voucher(cid, {artist: 3 * FINNEY, collab: 3 * FINNEY}))
    for prev in ((), (2 * FINNEY,), (FINNEY, 3 * FINNEY), (4 * FINNEY, 0), (2 * FINNEY, FINNEY)):
        with reverts("VoucherPrevStateMismatch", channelId=cid, settledRoot=root):
            settle(chain, v, prev)
    # Payees reordered: the settled prefix must be the same payees in the same order.
    swapped = sign(chain, voucher(cid, {collab: 3 * FINNEY, artist: 3 * FINNEY}))
    with reverts("VoucherPrevStateMismatch"):
        settle(chain, swapped, (2 * FINNEY, 2 * FINNEY))
    settle(chain, v, (2 * FINNEY, 2 * FINNEY))
    assert c.get_channel(cid).settled == 6 * FINNEY


def test_settle_revertsIfVoucherNotMonotonic(chain: Chain) -> None:
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * FINNEY, collab: FINNEY})))
    # Higher total, but the second payee's cumulative amount fell.
    v = sign(chain, voucher(cid, {artist: 6 * FINNEY, collab: FINNEY - 1}))
    with reverts("VoucherNotMonotonic", channelId=cid, index=1):
        settle(chain, v, (3 * FINNEY, FINNEY))
    assert chain.channels.get_channel(cid).settled == 4 * FINNEY


def test_settle_revertsIfSignerUnauthorized(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY)
    v = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), "stranger")
    with reverts("VoucherUnauthorizedSigner", channelId=cid, signer=chain.address("stranger")):
        settle(chain, v)
    # The relay cannot sign vouchers for the listener either.
    with reverts("VoucherUnauthorizedSigner", signer=chain.address("relay")):
        settle(chain, sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), "relay"))


def test_settle_revertsIfVoucherFromOtherChain(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    other = Domain(chain_id=c.domain.chain_id + 1, verifying_contract=c.address)
    v = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), domain=other)
    assert v.signer(other) == chain.address("listener")
    with reverts("VoucherUnauthorizedSigner", channelId=cid) as info:
        settle(chain, v)
    assert info.value.error_args["signer"] != chain.address("listener")

    receipt = batch(chain, [entry(v)])
    (skipped,) = events(c.contract, "SettlementSkipped", receipt)
    assert (bytes(skipped.args.channelId), skipped.args.index, bytes(skipped.args.reason)) == (
        cid,
        0,
        selector("VoucherUnauthorizedSigner"),
    )
    assert c.get_channel(cid).settled == 0


def test_settle_revertsIfVoucherForOtherContract(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    other = Domain(chain_id=c.domain.chain_id, verifying_contract=chain.registry.address)
    v = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), domain=other)
    with reverts("VoucherUnauthorizedSigner", channelId=cid) as info:
        settle(chain, v)
    assert info.value.error_args["signer"] != chain.address("listener")
    # Another name or version in the domain is another protocol too.
    renamed = Domain(chain_id=c.domain.chain_id, verifying_contract=c.address, version="2")
    with reverts("VoucherUnauthorizedSigner"):
        settle(chain, sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), domain=renamed))
    assert c.get_channel(cid).settled == 0


def test_settle_revertsIfVoucherReplayedOnOtherChannel(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    first = open_channel(chain, 10 * FINNEY, label="a")
    second = open_channel(chain, 10 * FINNEY, label="b")  # same payer, token and relay; another salt
    v = sign(chain, voucher(first, {artist: 4 * FINNEY}))
    settle(chain, v)
    replay = (second, *entry(v)[1:])
    with reverts("VoucherUnauthorizedSigner", channelId=second):
        settle_raw(chain, replay)
    receipt = batch(chain, [replay])
    assert bytes(events(c.contract, "SettlementSkipped", receipt)[0].args.reason) == selector(
        "VoucherUnauthorizedSigner"
    )
    assert c.get_channel(second).settled == 0
    assert c.claimable(artist) == 4 * FINNEY


def test_settle_revertsIfSignatureIsHighSTwin(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    v = voucher(cid, {artist: FINNEY})
    digest = v.digest(c.domain)

    # A high-s twin that fits EIP-2098 (HALF_N < s < 2^255): made by solving for a session key that signs with it.
    key, high = crafted_high_s_key(digest)
    low = high_s_twin(high)
    assert low.s <= HALF_N < high.s < 2**255
    assert recover(digest, low) == key.address
    with pytest.raises(ProtocolError):
        recover(digest, high)
    c.set_session_key(chain.tx("listener"), cid, key.address, chain.now() + 86_400)

    high_vs = (high.s | ((high.v - 27) << 255)).to_bytes(32, "big")
    high_entry = raw_entry(cid, list(v.payees), list(v.amounts), [], high.r_bytes, high_vs, v.play_hash)
    with reverts("VoucherInvalidSignature", channelId=cid):
        settle_raw(chain, high_entry)
    receipt = batch(chain, [high_entry])
    assert bytes(events(c.contract, "SettlementSkipped", receipt)[0].args.reason) == selector("VoucherInvalidSignature")
    assert c.get_channel(cid).settled == 0
    # The low-s twin (what libsecp256k1 produces) is the one that settles.
    settle(chain, SignedVoucher(v, low))
    assert c.claimable(artist) == FINNEY


def test_settle_revertsIfSignatureIsHighSTwinOfListenerSignature(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    v = voucher(cid, {chain.address("artist"): FINNEY})
    good = sign(chain, v).signature
    twin = high_s_twin(good)
    with pytest.raises(ProtocolError):
        recover(v.digest(c.domain), twin)
    # A random signature's twin has s >= 2^255 (no room for the v bit), so the best an attacker can submit is
    # vs = s_high | (v - 27) << 255: the contract reads a different (s, v) and must not pay either way.
    vs = (twin.s | ((twin.v - 27) << 255)) % 2**256
    twin_entry = raw_entry(cid, list(v.payees), list(v.amounts), [], twin.r_bytes, vs.to_bytes(32, "big"), v.play_hash)
    with pytest.raises(ChainError) as info:
        settle_raw(chain, twin_entry)
    assert info.value.reason in ("VoucherInvalidSignature", "VoucherUnauthorizedSigner")
    if info.value.reason == "VoucherUnauthorizedSigner":
        assert info.value.error_args["signer"] != chain.address("listener")
    assert c.get_channel(cid).settled == 0


def test_settle_revertsIfSignatureMalformed(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY)
    v = voucher(cid, {chain.address("artist"): FINNEY})
    with reverts("VoucherInvalidSignature", channelId=cid):
        settle_raw(chain, raw_entry(cid, list(v.payees), list(v.amounts), [], ZERO_HASH, ZERO_HASH, v.play_hash))


def test_settle_revertsIfLengthsOrAmountsInvalid(chain: Chain) -> None:
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    sig = sign(chain, voucher(cid, {artist: FINNEY})).signature
    with reverts("VoucherLengthMismatch", channelId=cid, payees=2, amounts=1, prevAmounts=0):
        settle_raw(chain, raw_entry(cid, [artist, collab], [FINNEY], [], sig.r_bytes, sig.vs_bytes))
    with reverts("VoucherLengthMismatch", channelId=cid, payees=1, amounts=1, prevAmounts=2):
        settle_raw(chain, raw_entry(cid, [artist], [FINNEY], [0, 0], sig.r_bytes, sig.vs_bytes))
    with reverts("VoucherAmountOverflow", channelId=cid):
        settle_raw(chain, raw_entry(cid, [artist, collab], [1, 2**96], [], sig.r_bytes, sig.vs_bytes))
    unknown = b"\x42" * 32
    with reverts("ChannelNotFound", channelId=unknown):
        settle_raw(chain, raw_entry(unknown, [artist], [FINNEY], [], sig.r_bytes, sig.vs_bytes))


def test_settle_capsAtDepositAndPaysRestAfterTopUp(chain: Chain) -> None:
    c = chain.channels
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    v = sign(chain, voucher(cid, {artist: 6 * FINNEY, collab: 7 * FINNEY}))  # 13 owed, 10 deposited
    assert settle_call(chain, entry(v)) == 10 * FINNEY
    receipt = settle(chain, v)
    (settled_ev,) = events(c.contract, "ChannelSettled", receipt)
    (capped,) = events(c.contract, "SettlementCapped", receipt)
    assert settled_ev.args.settled == 10 * FINNEY
    assert (bytes(capped.args.channelId), list(capped.args.credited)) == (cid, [6 * FINNEY, 4 * FINNEY])
    assert (c.claimable(artist), c.claimable(collab)) == (6 * FINNEY, 4 * FINNEY)
    assert c.get_channel(cid).settled == 10 * FINNEY
    assert c.prev_amounts(cid) == (6 * FINNEY, 4 * FINNEY)  # the client reads SettlementCapped

    # Drained: even a newer voucher is a no-op until a top-up.
    newer = sign(chain, voucher(cid, {artist: 7 * FINNEY, collab: 7 * FINNEY}))
    assert settle_call(chain, entry(newer, (6 * FINNEY, 4 * FINNEY))) == 0

    c.top_up(chain.tx("listener"), cid, 5 * FINNEY)
    with reverts("VoucherPrevStateMismatch"):  # the uncapped amounts were never credited
        settle(chain, v, (6 * FINNEY, 7 * FINNEY))
    assert settle_call(chain, entry(v, (6 * FINNEY, 4 * FINNEY))) == 3 * FINNEY
    receipt = settle(chain, v, (6 * FINNEY, 4 * FINNEY))
    assert events(c.contract, "SettlementCapped", receipt) == []
    assert (c.claimable(artist), c.claimable(collab)) == (6 * FINNEY, 7 * FINNEY)
    assert c.get_channel(cid).settled == 13 * FINNEY
    assert c.prev_amounts(cid) == (6 * FINNEY, 7 * FINNEY)


def test_settle_capPaysPayeesInOrder(chain: Chain) -> None:
    c = chain.channels
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    v = sign(chain, voucher(cid, {artist: 12 * FINNEY, collab: FINNEY}))
    receipt = settle(chain, v)
    (capped,) = events(c.contract, "SettlementCapped", receipt)
    assert list(capped.args.credited) == [10 * FINNEY, 0]
    assert (c.claimable(artist), c.claimable(collab)) == (10 * FINNEY, 0)
    c.top_up(chain.tx("stranger"), cid, 10 * FINNEY)
    settle(chain, v, (10 * FINNEY, 0))
    assert (c.claimable(artist), c.claimable(collab)) == (12 * FINNEY, FINNEY)
    assert c.get_channel(cid).settled == 13 * FINNEY


# -------------------------------------------------------------------------------------- session key settle


def test_settle_acceptsSessionKeyVoucher(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY, session_key=chain.address("session"), session_expiry=chain.now() + 3_600)
    v1 = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), "session")
    settle(chain, v1)
    # Vouchers from the payer and from the session key chain onto each other.
    v2 = sign(chain, voucher(cid, {chain.address("artist"): 2 * FINNEY}), "listener")
    settle(chain, v2, (FINNEY,))
    assert chain.channels.get_channel(cid).settled == 2 * FINNEY


def test_settle_revertsIfSessionKeyExpired(chain: Chain) -> None:
    expiry = chain.now() + 100
    cid = open_channel(chain, 10 * FINNEY, session_key=chain.address("session"), session_expiry=expiry)
    v = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}), "session")
    assert settle_call(chain, entry(v)) == FINNEY  # still valid now
    chain.advance(200)
    with reverts("VoucherUnauthorizedSigner", channelId=cid, signer=chain.address("session")):
        settle(chain, v)
    receipt = batch(chain, [entry(v)])
    assert bytes(events(chain.channels.contract, "SettlementSkipped", receipt)[0].args.reason) == selector(
        "VoucherUnauthorizedSigner"
    )
    # The payer's own signature never expires.
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): FINNEY})))


def test_settle_acceptsRotatedOutKeyOnlyDuringGrace(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    new_key = PrivateKey.generate()
    cid = open_channel(chain, 10 * FINNEY, session_key=chain.address("session"), session_expiry=chain.now() + 86_400)
    old1 = sign(chain, voucher(cid, {artist: FINNEY}), "session")
    old2 = sign(chain, voucher(cid, {artist: 2 * FINNEY}), "session")
    c.set_session_key(chain.tx("listener"), cid, new_key.address, chain.now() + 86_400)

    settle(chain, old1)  # inside the grace
    assert c.get_channel(cid).settled == FINNEY
    _, valid_until = c.contract.functions.retiredSessionKey(cid).call()
    chain.advance(valid_until - chain.now() + 2)
    with reverts("VoucherUnauthorizedSigner", signer=chain.address("session")):
        settle(chain, old2, (FINNEY,))
    # The new key settles.
    settle(chain, sign(chain, voucher(cid, {artist: 3 * FINNEY}), new_key), (FINNEY,))
    assert c.get_channel(cid).settled == 3 * FINNEY


def test_settle_acceptsRevokedKeyOnlyDuringGrace(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY, session_key=chain.address("session"), session_expiry=chain.now() + 86_400)
    v1 = sign(chain, voucher(cid, {artist: FINNEY}), "session")
    v2 = sign(chain, voucher(cid, {artist: 2 * FINNEY}), "session")
    c.set_session_key(chain.tx("listener"), cid, ZERO_ADDRESS, 0)
    settle(chain, v1)
    chain.advance(KEY_ROTATION_GRACE + 2)
    with reverts("VoucherUnauthorizedSigner", signer=chain.address("session")):
        settle(chain, v2, (FINNEY,))


# ------------------------------------------------------------------------------------------- settle batch


def test_settleBatch_settlesManyChannels(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    entries, cids = [], []
    for i in range(12):
        payer = "listener" if i % 2 == 0 else "listener2"
        cid = open_channel(chain, 10 * FINNEY, label=f"batch-{i}", payer=payer)
        cids.append(cid)
        v = voucher(cid, {artist: (i + 1) * 1000, chain.address("collab"): 7})
        entries.append(entry(sign(chain, v, payer)))
    expected = sum((i + 1) * 1000 + 7 for i in range(12))
    assert int(c.contract.functions.settleBatch(entries).call({"from": chain.address("relay")})) == expected
    receipt = batch(chain, entries)
    assert events(c.contract, "SettlementSkipped", receipt) == []
    settled = events(c.contract, "ChannelSettled", receipt)
    assert [bytes(e.args.channelId) for e in settled] == cids
    for i, cid in enumerate(cids):
        assert c.get_channel(cid).settled == (i + 1) * 1000 + 7
    assert c.claimable(artist) == sum((i + 1) * 1000 for i in range(12))
    assert c.claimable(chain.address("collab")) == 7 * 12


def test_settleBatch_skipsInvalidEntriesAndSettlesTheRest(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    a = open_channel(chain, 10 * FINNEY, label="a")
    b = open_channel(chain, 10 * FINNEY, label="b")
    d = open_channel(chain, 10 * FINNEY, label="d")
    closed = open_channel(chain, 10 * FINNEY, label="closed")
    settle(chain, sign(chain, voucher(d, {artist: FINNEY})))
    cooperative_close(chain, closed, None)
    other_chain = Domain(chain_id=c.domain.chain_id + 7, verifying_contract=c.address)
    unknown = b"\x42" * 32

    a_new = sign(chain, voucher(a, {artist: 3 * FINNEY}))
    a_old = sign(chain, voucher(a, {artist: 2 * FINNEY}))
    entries = [
        entry(a_new),  # 0 ok
        entry(a_old),  # 1 stale after 0
        raw_entry(unknown, [artist], [1], [], ZERO_HASH, ZERO_HASH),  # 2 no such channel
        entry(sign(chain, voucher(b, {artist: FINNEY}), domain=other_chain)),  # 3 wrong domain
        entry(sign(chain, voucher(d, {artist: 2 * FINNEY})), (0,)),  # 4 wrong prevAmounts
        entry(sign(chain, voucher(closed, {artist: FINNEY}))),  # 5 closed
        entry(sign(chain, voucher(b, {artist: 4 * FINNEY}), "stranger")),  # 6 unauthorised
        entry(sign(chain, voucher(b, {artist: 4 * FINNEY}))),  # 7 ok
        entry(sign(chain, voucher(d, {artist: 2 * FINNEY})), (FINNEY,)),  # 8 ok
        entry(a_new),  # 9 duplicate of 0
    ]
    assert (
        int(c.contract.functions.settleBatch(entries).call({"from": chain.address("relay")}))
        == 3 * FINNEY + 4 * FINNEY + FINNEY
    )
    receipt = batch(chain, entries)
    skipped = [
        (bytes(e.args.channelId), e.args.index, bytes(e.args.reason))
        for e in events(c.contract, "SettlementSkipped", receipt)
    ]
    assert skipped == [
        (a, 1, selector("VoucherStale")),
        (unknown, 2, selector("ChannelNotFound")),
        (b, 3, selector("VoucherUnauthorizedSigner")),
        (d, 4, selector("VoucherPrevStateMismatch")),
        (closed, 5, selector("ChannelNotSettleable")),
        (b, 6, selector("VoucherUnauthorizedSigner")),
        (a, 9, selector("VoucherStale")),
    ]
    assert [c.get_channel(x).settled for x in (a, b, d, closed)] == [3 * FINNEY, 4 * FINNEY, 2 * FINNEY, 0]
    assert c.claimable(artist) == 9 * FINNEY


def test_settleBatch_clientReadsSettledEntryIfLaterEntryForSameChannelSkipped(chain: Chain) -> None:
    """ChannelsClient.prev_amounts must return what was credited, not a skipped entry's amounts."""
    c = chain.channels
    artist, collab = chain.address("artist"), chain.address("collab")
    a = open_channel(chain, 10 * FINNEY, label="a")
    b = open_channel(chain, 10 * FINNEY, label="b")
    capped = open_channel(chain, 4 * FINNEY, label="capped")
    entries = [
        entry(sign(chain, voucher(a, {artist: 5 * FINNEY}))),
        entry(sign(chain, voucher(a, {artist: 9 * FINNEY}), "stranger")),  # skipped, higher total
        entry(sign(chain, voucher(b, {artist: 3 * FINNEY, collab: 2 * FINNEY}))),
        entry(sign(chain, voucher(b, {artist: FINNEY, collab: 4 * FINNEY}), "stranger")),  # skipped, same total
        entry(sign(chain, voucher(capped, {artist: 3 * FINNEY, collab: 3 * FINNEY}))),  # capped at 4
        entry(sign(chain, voucher(capped, {artist: 3 * FINNEY, collab: 9 * FINNEY}), "stranger")),
    ]
    receipt = batch(chain, entries)
    assert [e.args.index for e in events(c.contract, "SettlementSkipped", receipt)] == [1, 3, 5]
    assert c.prev_amounts(a) == (5 * FINNEY,)
    assert c.prev_amounts(b) == (3 * FINNEY, 2 * FINNEY)
    assert c.prev_amounts(capped) == (3 * FINNEY, FINNEY)
    state = c.settled_state(b)
    assert state is not None and state.payees == (artist, collab)
    # And those prevAmounts are accepted by the contract.
    settle(chain, sign(chain, voucher(a, {artist: 6 * FINNEY})), c.prev_amounts(a))
    settle(chain, sign(chain, voucher(b, {artist: 3 * FINNEY, collab: 3 * FINNEY})), c.prev_amounts(b))
    c.top_up(chain.tx("listener"), capped, 2 * FINNEY)
    settle(chain, sign(chain, voucher(capped, {artist: 3 * FINNEY, collab: 3 * FINNEY})), c.prev_amounts(capped))
    assert [c.get_channel(x).settled for x in (a, b, capped)] == [6 * FINNEY, 6 * FINNEY, 6 * FINNEY]


def test_settleBatch_emptyBatchCreditsNothing(chain: Chain) -> None:
    assert chain.channels.contract.functions.settleBatch([]).call() == 0
    receipt = batch(chain, [])
    assert events(chain.channels.contract, "ChannelSettled", receipt) == []


# ------------------------------------------------------------------------------------------------- closes


def test_cooperativeClose_settlesFinalVoucherAndRefunds(chain: Chain) -> None:
    c = chain.channels
    artist, collab = chain.address("artist"), chain.address("collab")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 2 * FINNEY})))
    final = sign(chain, voucher(cid, {artist: 3 * FINNEY, collab: FINNEY}, play_hash("final")))
    before = chain.balance("listener")
    receipt = cooperative_close(chain, cid, final, (2 * FINNEY,))

    (settled_ev,) = events(c.contract, "ChannelSettled", receipt)
    assert (settled_ev.args.settled, bytes(settled_ev.args.playHash)) == (4 * FINNEY, play_hash("final"))
    (closed,) = events(c.contract, "ChannelClosed", receipt)
    assert (bytes(closed.args.channelId), closed.args.settled, closed.args.refund, closed.args.cooperative) == (
        cid,
        4 * FINNEY,
        6 * FINNEY,
        True,
    )
    assert chain.balance("listener") == before + 6 * FINNEY - gas_cost(receipt)
    state = c.get_channel(cid)
    assert (state.status, state.settled, state.closes_at) == (ChannelStatus.CLOSED, 4 * FINNEY, 1)
    assert (c.claimable(artist), c.claimable(collab)) == (3 * FINNEY, FINNEY)
    assert chain.balance(c.address) == 4 * FINNEY


def test_cooperativeClose_withEmptyVoucherRefundsUnsettled(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 3 * FINNEY})))
    sig = close_signature(chain, cid, None)
    assert sig == chain.key("relay").sign(bytes(c.contract.functions.closeDigest(cid, ZERO_HASH).call()))
    before = chain.balance("listener")
    receipt = chain.tx("listener").transact(
        c.contract.functions.cooperativeClose(empty_entry(cid), sig.r_bytes, sig.vs_bytes), action="cooperativeClose"
    )
    assert events(c.contract, "ChannelSettled", receipt) == []
    (closed,) = events(c.contract, "ChannelClosed", receipt)
    assert (closed.args.settled, closed.args.refund, closed.args.cooperative) == (3 * FINNEY, 7 * FINNEY, True)
    assert chain.balance("listener") == before + 7 * FINNEY - gas_cost(receipt)
    assert c.get_channel(cid).status == ChannelStatus.CLOSED


def test_cooperativeClose_withStaleFinalVoucherOnlyRefunds(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    old = sign(chain, voucher(cid, {artist: FINNEY}))
    settle(chain, sign(chain, voucher(cid, {artist: 2 * FINNEY})))
    receipt = cooperative_close(chain, cid, old)
    (closed,) = events(c.contract, "ChannelClosed", receipt)
    assert (closed.args.settled, closed.args.refund) == (2 * FINNEY, 8 * FINNEY)
    assert c.claimable(artist) == 2 * FINNEY


def test_cooperativeClose_token(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    final = sign(chain, voucher(cid, {chain.address("artist"): 4 * STABLE}))
    before = token.balance_of(chain.address("listener"))
    cooperative_close(chain, cid, final)
    assert token.balance_of(chain.address("listener")) == before + 6 * STABLE
    assert token.balance_of(c.address) == 4 * STABLE
    assert c.claimable(chain.address("artist"), token.address) == 4 * STABLE


def test_cooperativeClose_revertsIfSignatureNotFromRelay(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY)
    final = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}))
    for signer in ("stranger", "listener"):
        sig = close_signature(chain, cid, final.voucher, signer=signer)
        with reverts("CloseInvalidRelaySignature", channelId=cid, signer=chain.address(signer)):
            cooperative_close(chain, cid, final, sig=sig)
    with reverts("CloseInvalidRelaySignature", channelId=cid):
        cooperative_close(chain, cid, None, sig=close_signature(chain, cid, None, signer="stranger"))
    assert chain.channels.get_channel(cid).status == ChannelStatus.OPEN


def test_cooperativeClose_revertsIfRelaySignedAnotherVoucher(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY)
    artist = chain.address("artist")
    agreed = sign(chain, voucher(cid, {artist: 5 * FINNEY}))
    lower = sign(chain, voucher(cid, {artist: FINNEY}))
    sig = close_signature(chain, cid, agreed.voucher)
    with reverts("CloseInvalidRelaySignature", channelId=cid):
        cooperative_close(chain, cid, lower, sig=sig)
    with reverts("CloseInvalidRelaySignature", channelId=cid):  # nor can the payer drop the voucher
        cooperative_close(chain, cid, None, sig=sig)
    other_domain = Domain(chain_id=chain.channels.domain.chain_id + 1, verifying_contract=chain.channels.address)
    with reverts("CloseInvalidRelaySignature", channelId=cid):
        cooperative_close(chain, cid, agreed, sig=close_signature(chain, cid, agreed.voucher, domain=other_domain))
    cooperative_close(chain, cid, agreed, sig=sig)
    assert chain.channels.claimable(artist) == 5 * FINNEY


def test_cooperativeClose_revertsIfVoucherSignatureUsedAsCloseSignature(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    final = sign(chain, voucher(cid, {chain.address("artist"): FINNEY}))
    relay_voucher_sig = sign(chain, final.voucher, "relay").signature  # the relay's key, but the Voucher type
    with reverts("CloseInvalidRelaySignature", channelId=cid) as info:
        cooperative_close(chain, cid, final, sig=relay_voucher_sig)
    assert info.value.error_args["signer"] != chain.address("relay")
    assert c.get_channel(cid).status == ChannelStatus.OPEN


def test_cooperativeClose_revertsIfNotPayerOrNotSettleable(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY)
    with reverts("ChannelNotPayer", channelId=cid, caller=chain.address("relay")):
        cooperative_close(chain, cid, None, by="relay")
    cooperative_close(chain, cid, None)
    with reverts("ChannelNotSettleable", channelId=cid, closesAt=1):
        cooperative_close(chain, cid, None)


def test_cooperativeClose_closesAtOnceDuringChallengeWindow(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    c.request_close(chain.tx("listener"), cid)
    final = sign(chain, voucher(cid, {chain.address("artist"): 2 * FINNEY}))
    receipt = cooperative_close(chain, cid, final)
    (closed,) = events(c.contract, "ChannelClosed", receipt)
    assert (closed.args.refund, closed.args.cooperative) == (8 * FINNEY, True)
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=1):
        c.withdraw(chain.tx("listener"), cid)


def test_requestClose_startsChallengeWindow(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    receipt = c.request_close(chain.tx("listener"), cid)
    ts = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    (ev,) = events(c.contract, "CloseRequested", receipt)
    assert (bytes(ev.args.channelId), ev.args.closesAt) == (cid, ts + CHALLENGE_PERIOD)
    state = c.get_channel(cid)
    assert (state.status, state.closes_at) == (ChannelStatus.CLOSING, ts + CHALLENGE_PERIOD)
    assert c.challenge_period() == CHALLENGE_PERIOD
    with reverts("ChannelNotOpen", channelId=cid, closesAt=ts + CHALLENGE_PERIOD):
        c.request_close(chain.tx("listener"), cid)


def test_requestClose_revertsIfNotPayer(chain: Chain) -> None:
    cid = open_channel(chain, 10 * FINNEY)
    with reverts("ChannelNotPayer", channelId=cid, caller=chain.address("relay")):
        chain.channels.request_close(chain.tx("relay"), cid)
    with reverts("ChannelNotFound"):
        chain.channels.request_close(chain.tx("listener"), b"\x42" * 32)


def test_withdraw_staleCloseBeatenBySettleInsideWindow(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    v1 = sign(chain, voucher(cid, {artist: 2 * FINNEY}))
    settle(chain, v1)
    v2 = sign(chain, voucher(cid, {artist: 5 * FINNEY}))  # held by the relay, not yet settled

    c.request_close(chain.tx("listener"), cid)  # the listener tries to leave at the stale state
    closes_at = c.get_channel(cid).closes_at
    chain.advance(CHALLENGE_PERIOD - 300)
    assert chain.now() < closes_at
    settle(chain, v2, (2 * FINNEY,))
    assert c.get_channel(cid).settled == 5 * FINNEY

    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=closes_at):
        c.withdraw(chain.tx("listener"), cid)
    chain.advance(closes_at - chain.now() + 1)
    newest = sign(chain, voucher(cid, {artist: 6 * FINNEY}))
    with reverts("ChannelNotSettleable", channelId=cid, closesAt=closes_at):
        settle(chain, newest, (5 * FINNEY,))
    receipt = batch(chain, [entry(newest, (5 * FINNEY,))])
    assert bytes(events(c.contract, "SettlementSkipped", receipt)[0].args.reason) == selector("ChannelNotSettleable")

    before = chain.balance("listener")
    receipt = c.withdraw(chain.tx("listener"), cid)
    (closed,) = events(c.contract, "ChannelClosed", receipt)
    assert (closed.args.settled, closed.args.refund, closed.args.cooperative) == (5 * FINNEY, 5 * FINNEY, False)
    assert chain.balance("listener") == before + 5 * FINNEY - gas_cost(receipt)
    assert c.get_channel(cid).status == ChannelStatus.CLOSED
    assert c.claimable(artist) == 5 * FINNEY
    assert chain.balance(c.address) == 5 * FINNEY


def test_withdraw_revertsIfWindowNotOver(chain: Chain) -> None:
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=0):  # no close requested
        c.withdraw(chain.tx("listener"), cid)
    c.request_close(chain.tx("listener"), cid)
    closes_at = c.get_channel(cid).closes_at
    chain.advance(CHALLENGE_PERIOD - 300)
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=closes_at):
        c.withdraw(chain.tx("listener"), cid)
    with reverts("ChannelNotFound"):
        c.withdraw(chain.tx("listener"), b"\x42" * 32)


def test_withdraw_byAnyoneRefundsPayerOnce(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 3 * STABLE})))
    c.request_close(chain.tx("listener"), cid)
    chain.advance(CHALLENGE_PERIOD + 1)
    before = token.balance_of(chain.address("listener"))
    c.withdraw(chain.tx("stranger"), cid)
    assert token.balance_of(chain.address("listener")) == before + 7 * STABLE
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=1):
        c.withdraw(chain.tx("listener"), cid)
    assert token.balance_of(c.address) == 3 * STABLE
