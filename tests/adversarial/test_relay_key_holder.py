"""Attacker: whoever holds the relay's key, or any voucher, Close or Caps message a relay sees.

What they hold: the relay's private key (so every transaction and every signature the relay can make), and
every message listeners sent it (vouchers signed by the payer or its session key, close requests, caps). What
they try: settle a voucher where it was not meant to count (another chain, another deployment of the channels
contract, a channel reopened with the same parameters), settle a signature's high-s twin, pass one signed type
off as another, pay someone the listener did not sign for, or credit more than signed. Expected: the contract
refuses each with a custom error naming the cause and nothing moves; the relay's API refuses the high-s twin.

Real chains throughout: the `chain` fixture (eth-tester and anvil), a second anvil node with another chain id for
the cross-chain replay, and a real in-process relay for the API cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chainstream.chain.contracts import ChannelsClient, ChannelStatus
from chainstream.chain.deploy import deploy_contract
from chainstream.chain.node import AnvilNode
from chainstream.chain.transactions import chain_error_from
from chainstream.errors import ChainError, ProtocolError
from chainstream.protocol import Signature, SignedVoucher, recover
from chainstream.protocol.eip712 import caps_struct_hash, close_struct_hash
from chainstream.protocol.signing import high_s_twin
from chainstream.protocol.types import ZERO_ADDRESS
from tests.integration.conftest import CHALLENGE_PERIOD, KEY_ROTATION_GRACE, Chain, _anvil_or_skip, build_chain
from tests.integration.helpers import (
    FINNEY,
    close_signature,
    cooperative_close,
    entry,
    open_channel,
    raw_channel,
    raw_entry,
    reverts,
    salt,
    settle,
    settle_raw,
    sign,
    voucher,
)
from tests.integration.relay_fixtures import (
    MODEM,
    InProcessRelay,
    RelayChain,
    cid_hex,
    open_listener,
    rejected,
    signed_plays,
)

TWIN_CHAIN_ID = 4_242  # neither eth-tester's nor anvil's default


def _compact(signature: Signature) -> bytes:
    """What an attacker submits as EIP-2098 `vs` for any (s, v): s with v's parity in the top bit, mod 2^256."""
    return ((signature.s | ((signature.v - 27) << 255)) % 2**256).to_bytes(32, "big")


def _with_signature(
    cid: bytes, signed: SignedVoucher, sig: Signature, prev: list[int] | None = None
) -> tuple[Any, ...]:
    v = signed.voucher
    return raw_entry(cid, list(v.payees), list(v.amounts), prev or [], sig.r_bytes, sig.vs_bytes, v.play_hash)


@pytest.fixture(scope="module")
def twin_chain_session() -> Iterator[Chain]:
    """A second chain (anvil, chain id 4242) deployed by the same deployer key at the same nonces: the
    ChainStream contracts sit at the same addresses as on `chain`, as they would on a real second network."""
    _anvil_or_skip()
    with AnvilNode(chain_id=TWIN_CHAIN_ID) as node:
        yield build_chain("twin", node.web3())


@pytest.fixture
def twin_chain(twin_chain_session: Chain) -> Iterator[Chain]:
    snapshot_id = twin_chain_session.snapshot()
    try:
        yield twin_chain_session
    finally:
        twin_chain_session.revert(snapshot_id)


# ------------------------------------------------------------------------------------------------ replay


@pytest.mark.anvil  # the second chain is an anvil node, whichever chain `chain` is
def test_voucherReplayedOnAnotherChain_atTheSameContractAddress_isRefused(chain: Chain, twin_chain: Chain) -> None:
    """A settled voucher is replayed on another chain where the same contract address has the same channel."""
    # Replay: a voucher settled on one chain is submitted on another chain where the same contract address holds a
    # channel opened by the same payer, to the same relay, with the same salt.
    artist = chain.address("artist")
    assert twin_chain.channels.address == chain.channels.address  # the realistic case: one deployer, two chains
    assert twin_chain.w3.eth.chain_id != chain.w3.eth.chain_id
    here = open_channel(chain, 10 * FINNEY, label="twin")
    there = open_channel(twin_chain, 10 * FINNEY, label="twin")
    assert here != there  # the channel id binds the chain id
    signed = sign(chain, voucher(here, {artist: 4 * FINNEY}))
    settle(chain, signed)

    with reverts("ChannelNotFound", channelId=here):  # as signed: no such channel over there
        settle(twin_chain, signed)
    with reverts("VoucherUnauthorizedSigner", channelId=there) as info:  # rebound to the twin's channel id
        settle_raw(twin_chain, (there, *entry(signed)[1:]))
    assert info.value.error_args["signer"] != chain.address("listener")
    # Even a voucher naming the twin's channel id, signed in this chain's domain, recovers to a stranger there.
    misdomained = sign(chain, voucher(there, {artist: 4 * FINNEY}))
    with reverts("VoucherUnauthorizedSigner", channelId=there):
        settle(twin_chain, misdomained)
    # And this chain's relay Close signature cannot close the twin's channel.
    with reverts("CloseInvalidRelaySignature", channelId=there):
        cooperative_close(twin_chain, there, None, sig=close_signature(chain, there, None))

    assert twin_chain.channels.get_channel(there).settled == 0
    assert twin_chain.channels.claimable(artist) == 0
    assert twin_chain.channels.get_channel(there).status == ChannelStatus.OPEN


def test_voucherReplayedOnAnotherChannelsContract_isRefused(chain: Chain) -> None:
    """A voucher is replayed on a second deployment of the channels contract holding the same channel."""
    # Replay: the same payer opens the same channel (relay, token, salt) on a second deployment of the channels contract
    # on the same chain; the relay key holder settles the first deployment's voucher there.
    artist = chain.address("artist")
    second = ChannelsClient(
        chain.w3,
        deploy_contract(
            chain.tx("deployer"), "ChainStreamChannels", CHALLENGE_PERIOD, KEY_ROTATION_GRACE, chain.address("deployer")
        ),
    )
    first_cid = open_channel(chain, 10 * FINNEY, label="deployments")
    second_cid, _ = second.open(
        chain.tx("listener"), relay=chain.address("relay"), amount=10 * FINNEY, salt=salt("deployments")
    )
    assert first_cid != second_cid  # the channel id binds the contract address
    signed = sign(chain, voucher(first_cid, {artist: 4 * FINNEY}))
    settle(chain, signed)

    with pytest.raises(ChainError) as info:
        second.settle(chain.tx("relay"), signed, ())
    assert info.value.reason == "ChannelNotFound"
    replay = (second_cid, *entry(signed)[1:])
    with pytest.raises(ChainError) as info:
        chain.tx("relay").transact(second.contract.functions.settle(replay), action="settle")
    assert info.value.reason == "VoucherUnauthorizedSigner"
    assert second.get_channel(second_cid).settled == 0
    assert second.claimable(artist) == 0


def test_channelReopenedWithTheSameParameters_isRefused_andOldVouchersNeverSettleOnItsSuccessor(chain: Chain) -> None:
    """A closed channel is reopened with the same parameters and its old vouchers are replayed."""
    # Replay: after a channel closed, its payer opens again with the same relay, token and salt (the same id) or a new
    # salt, and the relay key holder replays the closed channel's vouchers.
    artist = chain.address("artist")
    old = open_channel(chain, 10 * FINNEY, label="reopen")
    first = sign(chain, voucher(old, {artist: 4 * FINNEY}))
    final = sign(chain, voucher(old, {artist: 5 * FINNEY}))
    settle(chain, first)
    cooperative_close(chain, old, final, (4 * FINNEY,))
    closed = raw_channel(chain, old)

    # Same parameters, same id: the id of a closed channel is never reused, so its vouchers can never revive.
    with reverts("ChannelExists", channelId=old):
        open_channel(chain, 10 * FINNEY, label="reopen")
    with reverts("ChannelNotSettleable", channelId=old, closesAt=1):
        settle(chain, final, (5 * FINNEY,))
    successor = open_channel(chain, 10 * FINNEY, label="reopen-2")
    for signed in (first, final):
        with reverts("VoucherUnauthorizedSigner", channelId=successor):
            settle_raw(chain, (successor, *entry(signed)[1:]))
    assert raw_channel(chain, old) == closed
    assert chain.channels.get_channel(successor).settled == 0
    assert chain.channels.claimable(artist) == 5 * FINNEY


# ------------------------------------------------------------------------------------ signature malleability


def test_highSTwinOfTheRelaysCloseSignature_cannotCloseTheChannel(chain: Chain) -> None:
    """The high-s twin of the relay's Close signature is offered to cooperativeClose."""
    # Malleability: the twin of the relay's Close signature. A real key's twin has s >= 2^255, so the best encoding an
    # attacker has reads as another (s, v); it must not recover to the relay.
    cid = open_channel(chain, 10 * FINNEY)
    good = close_signature(chain, cid, None)
    twin = high_s_twin(good)
    with pytest.raises(ProtocolError):
        recover(chain.channels.domain.digest(close_struct_hash(cid, b"\0" * 32)), twin)
    call = chain.channels.contract.functions.cooperativeClose(
        (cid, [], [], b"\0" * 32, [], b"\0" * 32, b"\0" * 32), twin.r_bytes, _compact(twin)
    )
    with reverts("CloseInvalidRelaySignature", channelId=cid) as info:
        chain.tx("listener").transact(call, action="cooperativeClose")
    assert info.value.error_args["signer"] != chain.address("relay")
    assert chain.channels.get_channel(cid).status == ChannelStatus.OPEN


def test_highSTwinOfAPaymentSignature_isRefusedByTheRelay_andNeverStored(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A payment is sent to the relay with the high-s twin of its signature, before and after the original."""
    # Malleability at the relay: a payment sent with the twin of its signature (which a relay deduplicating by signature
    # would take as a new payment) is refused as a bad signature, before and after the original is accepted; the
    # original sent again is a duplicate (by digest), stored once, with the low-s signature.
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    twin = {**play.body, "signature": high_s_twin(play.signature).to_hex()}
    rejected(http.post(f"/channels/{cid}/payments", json=twin), 422, "bad_signature")
    assert relay.payment_rows(listener.channel_id) == []  # type: ignore[arg-type]
    accepted = http.post(f"/channels/{cid}/payments", json=play.body).json()
    assert accepted["status"] == "accepted"
    # The signature is checked before anything else (a duplicate is answered only to the channel's own signers),
    # so the twin stays refused after the original is accepted: nothing new is stored, nothing credited twice.
    rejected(http.post(f"/channels/{cid}/payments", json=twin), 422, "bad_signature")
    again = http.post(f"/channels/{cid}/payments", json=play.body).json()
    assert again["status"] == "duplicate" and again["amount"] == "0" and again["digest"] == accepted["digest"]
    rows = relay.rows(
        "SELECT seq, signature FROM payments WHERE channel_id=?",
        (listener.channel_id,),  # type: ignore[arg-type]
    )
    assert [(r["seq"], bytes(r["signature"])) for r in rows] == [(1, play.signature.to_bytes())]


# ------------------------------------------------------------------------------------------ type confusion


def test_payersCloseRequestOrCapsSignature_usedAsVoucherSignature_isRefused(chain: Chain) -> None:
    """The payer's Close request and Caps signatures, which the relay holds, are submitted as a voucher's."""
    # Type confusion: the relay holds messages the payer signed that are not vouchers (its Close request, its Caps) and
    # submits those signatures as a voucher's.
    c = chain.channels
    cid = open_channel(chain, 10 * FINNEY)
    v = voucher(cid, {chain.address("artist"): 9 * FINNEY})
    signed = SignedVoucher(v, sign(chain, v).signature)
    close_request = chain.key("listener").sign(c.domain.digest(close_struct_hash(cid, v.digest(c.domain))))
    caps = chain.key("listener").sign(c.domain.digest(caps_struct_hash(cid, 9 * FINNEY, 0, chain.now())))
    for foreign in (close_request, caps):
        with reverts("VoucherUnauthorizedSigner", channelId=cid) as info:
            settle_raw(chain, _with_signature(cid, signed, foreign))
        assert info.value.error_args["signer"] != chain.address("listener")
    assert c.get_channel(cid).settled == 0


# ---------------------------------------------------------------------------------- paying more, or others


def test_relayRewritesAVouchersPayees_toPayItself_isRefused(chain: Chain) -> None:
    """The relay keeps the listener's signature but names itself as a payee."""
    # Redirect: the relay keeps the listener's signature and amounts but names itself (or appends itself) as a payee.
    c = chain.channels
    artist, thief = chain.address("artist"), chain.address("relay")
    cid = open_channel(chain, 10 * FINNEY)
    signed = sign(chain, voucher(cid, {artist: 3 * FINNEY}))
    sig = signed.signature
    for payees, amounts in (([thief], [3 * FINNEY]), ([artist, thief], [3 * FINNEY, 2 * FINNEY])):
        with reverts("VoucherUnauthorizedSigner", channelId=cid):
            settle_raw(chain, raw_entry(cid, payees, amounts, [], sig.r_bytes, sig.vs_bytes, signed.voucher.play_hash))
    assert c.get_channel(cid).settled == 0 and c.claimable(thief) == 0
    # The relay's own key signing a voucher that pays itself is not the payer's signature either.
    with reverts("VoucherUnauthorizedSigner", channelId=cid, signer=thief):
        settle(chain, sign(chain, voucher(cid, {thief: 3 * FINNEY}), "relay"))
    assert c.claimable(thief) == 0


def test_payeeAddressWithDirtyUpperBits_creditsNobody(chain: Chain) -> None:
    """The relay re-encodes a signed payee's ABI word with dirty upper bits (the same low 20 bytes)."""
    # The contract hashes the words as sent, so the digest is not the one signed; no balance may appear under a
    # dirty-bit alias of the payee, and a batch skips the entry.
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    signed = sign(chain, voucher(cid, {artist: FINNEY}))
    clean = bytes(12) + bytes.fromhex(artist[2:])
    for function, args in (("settle", [entry(signed)]), ("settleBatch", [[entry(signed)]])):
        data = bytes.fromhex(c.contract.encode_abi(function, args=args)[2:])
        assert data.count(clean) == 1
        dirty = data.replace(clean, b"\xff" * 12 + clean[12:])
        call = {"from": chain.address("relay"), "to": c.address, "data": dirty}
        if function == "settle":
            with pytest.raises(Exception) as info:  # noqa: B017 - eth-tester and web3 raise different types
                chain.w3.eth.call(call)  # type: ignore[arg-type]
            assert chain_error_from(info.value, function).reason == "VoucherUnauthorizedSigner"
        else:
            assert int.from_bytes(chain.w3.eth.call(call), "big") == 0  # type: ignore[arg-type]  # credited
    assert c.claimable(artist) == 0 and c.get_channel(cid).settled == 0
    settle(chain, signed)  # the clean encoding of the same voucher settles
    assert c.claimable(artist) == FINNEY


def test_relaySettlesMoreThanSigned_isRefused(chain: Chain) -> None:
    """The relay raises an amount, understates prevAmounts, or settles past the deposit."""
    # Inflate: raise a signed amount; or understate what was already credited (prevAmounts) so that the contract pays a
    # payee's cumulative amount a second time; or settle past the deposit.
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    first = sign(chain, voucher(cid, {artist: 4 * FINNEY}))
    settle(chain, first)
    second = sign(chain, voucher(cid, {artist: 6 * FINNEY}))
    sig = second.signature

    with reverts("VoucherUnauthorizedSigner", channelId=cid):  # amounts the listener did not sign
        settle_raw(chain, raw_entry(cid, [artist], [9 * FINNEY], [4 * FINNEY], sig.r_bytes, sig.vs_bytes))
    for prev in ([0], [], [3 * FINNEY]):  # credit 6 (or 3) instead of the 2 owed
        with reverts("VoucherPrevStateMismatch", channelId=cid):
            settle(chain, second, prev)
    assert c.get_channel(cid).settled == 4 * FINNEY == c.claimable(artist)

    settle(chain, second, (4 * FINNEY,))
    assert c.claimable(artist) == 6 * FINNEY
    # A voucher for more than the deposit pays the deposit, never more; the rest stays owed.
    settle(chain, sign(chain, voucher(cid, {artist: 25 * FINNEY})), (6 * FINNEY,))
    assert c.get_channel(cid).settled == 10 * FINNEY == c.claimable(artist)


def test_relayKeyHolder_cannotCloseClaimOrSettleForOthers(chain: Chain) -> None:
    """With the relay key: close a listener's channel, claim an artist's balance, settle another relay's channel."""
    # Reach: with the relay key, close a listener's channel, claim an artist's balance, or settle a channel served by
    # another relay.
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 4 * FINNEY})))
    with reverts("ChannelNotPayer", channelId=cid, caller=chain.address("relay")):
        cooperative_close(chain, cid, None, by="relay")
    with reverts("ChannelNotPayer", channelId=cid, caller=chain.address("relay")):
        c.request_close(chain.tx("relay"), cid)
    with reverts("NothingToClaim", payee=chain.address("relay"), token=ZERO_ADDRESS):
        c.claim(chain.tx("relay"), to=chain.address("relay"))
    with reverts("ChannelWindowNotOver", channelId=cid):
        c.withdraw(chain.tx("relay"), cid)

    others = open_channel(chain, 10 * FINNEY, label="other-relay", relay="stranger")
    with reverts("SettleNotAllowed", channelId=others, caller=chain.address("relay")):
        settle(chain, sign(chain, voucher(others, {artist: FINNEY})))
    assert c.claimable(artist) == 4 * FINNEY and c.get_channel(others).settled == 0


def test_stolenRelayKey_letsAPayerCloseBeforeUnsettledVouchers_butPaysTheThiefNothing(chain: Chain) -> None:
    """A relay key thief co-signs a Close at the settled state for a payer who owes more."""
    # The limit of the key: a thief co-signs a Close at the settled state for a payer who owes more. The accepted-but-
    # unsettled voucher is lost to its artist (the relay's loss, as documented), and nothing at all reaches the thief:
    # the refund goes to the payer only.
    c = chain.channels
    artist, thief = chain.address("artist"), chain.address("stranger")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 2 * FINNEY})))
    unsettled = sign(chain, voucher(cid, {artist: 7 * FINNEY}))  # accepted by the relay, not yet settled
    thief_balance = chain.balance(thief)
    payer_balance = chain.balance("listener")

    cooperative_close(chain, cid, None, sig=close_signature(chain, cid, None))  # the relay key, in a thief's hands
    state = c.get_channel(cid)
    assert state.status == ChannelStatus.CLOSED and state.settled == 2 * FINNEY
    assert chain.balance("listener") > payer_balance + 7 * FINNEY  # 8 back, less the close's gas
    assert chain.balance(thief) == thief_balance
    with reverts("ChannelNotSettleable", channelId=cid, closesAt=1):
        settle(chain, unsettled, (2 * FINNEY,))
    assert c.claimable(artist) == 2 * FINNEY
