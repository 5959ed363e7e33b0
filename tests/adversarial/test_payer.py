"""The attacker is the payer: it signed vouchers (itself or through its session key) and wants its money back.

Finding 1 of the security review (issue 8): a payer voided its session key's unsettled vouchers by revoking the
key and setting it again with a tiny expiry (S -> 0 -> S): the contract then judged S by the new expiry alone
and forgot its rotation grace. The rule now enforced: once a key K was authorised with validity V, vouchers
signed by K settle at least until min(V, t + keyRotationGrace), t being the time of any later change. Each
variant below is one way to try to break it: in one block, over several blocks, through a contract wallet in
one transaction, rotating twice. Then the classic payer attacks: a stale close, an early withdraw, and closing
a channel with another channel's voucher.

Real chains (eth-tester and anvil, `chain`) and a real relay (`relay`, for the watchtower).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from web3.contract.contract import ContractFunction

from chainstream.chain.artifacts import load_artifact
from chainstream.chain.deploy import deploy_contract
from chainstream.chain.node import is_embedded
from chainstream.errors import ChainError
from chainstream.protocol import PrivateKey, SignedVoucher
from chainstream.protocol.types import ZERO_ADDRESS
from tests.integration.conftest import CHALLENGE_PERIOD, KEY_ROTATION_GRACE, Chain
from tests.integration.helpers import (
    FINNEY,
    call_reverts,
    close_signature,
    cooperative_close,
    new_address,
    open_channel,
    reverts,
    salt,
    settle,
    sign,
    voucher,
)
from tests.integration.relay_fixtures import (
    LAZY,
    MODEM,
    PLAY_PRICE,
    InProcessRelay,
    RelayChain,
    new_wallet,
    open_listener,
    wait_until,
)

DAY = 86_400
ARTIST = new_address("payer-artist")


# ------------------------------------------------------------------------------------------------ helpers


def in_one_block(chain: Chain, sends: list[tuple[str, ContractFunction]]) -> list[Any]:
    """Mine these transactions (actor, call) together in one block, in order; returns their receipts.

    Gas is given explicitly so that nothing is estimated against the state between them. Anvil only: eth-tester
    cannot queue two transactions of one sender (the contract-wallet tests cover one block on both chains)."""
    w3 = chain.w3
    if is_embedded(w3):
        pytest.skip("eth-tester validates a queued transaction's nonce against the mined state")
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        hashes = [chain.tx(actor).send(call, gas=300_000, wait=False) for actor, call in sends]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    receipts = [w3.eth.get_transaction_receipt(h) for h in hashes]
    assert len({r["blockNumber"] for r in receipts}) == 1, "the transactions did not share a block"
    return receipts


def session_channel(chain: Chain, key: PrivateKey, *, label: str, deposit: int = 10 * FINNEY) -> bytes:
    """A channel of `listener` whose session key `key` is valid for a week."""
    return open_channel(chain, deposit, label=label, session_key=key.address, session_expiry=chain.now() + 7 * DAY)


def set_key(chain: Chain, cid: bytes, key: str, expiry: int) -> ContractFunction:
    return chain.channels.contract.functions.setSessionKey(cid, key, expiry)


def deploy_wallet(chain: Chain, owner: str = "listener") -> Any:
    """A WalletPayer (test contract wallet) owned by `owner`."""
    address = deploy_contract(chain.tx(owner), "WalletPayer")
    return chain.w3.eth.contract(address=address, abi=load_artifact("WalletPayer").abi)


def wallet_call(chain: Chain, fn: ContractFunction, value: int = 0) -> tuple[str, int, bytes]:
    return (chain.channels.address, value, bytes.fromhex(fn._encode_transaction_data()[2:]))


# ------------------------------------------------------------------ finding 1: voiding the session key


def test_revokeThenReaddSameKeyInOneBlock_unsettledVoucherStillSettles(chain: Chain) -> None:
    """S -> 0 -> S with a 2-second expiry, in one block: S's unsettled voucher must settle through its grace."""
    key = PrivateKey.generate()
    cid = session_channel(chain, key, label="void-1")
    signed = sign(chain, voucher(cid, {ARTIST: 4 * FINNEY}), key)
    now = chain.now()
    receipts = in_one_block(
        chain,
        [
            ("listener", set_key(chain, cid, ZERO_ADDRESS, 0)),
            ("listener", set_key(chain, cid, key.address, now + 10)),
        ],
    )
    assert [r["status"] for r in receipts] == [1, 1]
    t = int(chain.w3.eth.get_block(receipts[0]["blockNumber"])["timestamp"])
    assert chain.channels.get_channel(cid).session_expiry <= t + 10  # the payer did shorten the current key
    chain.advance(60)  # a block later and past the new expiry: only the grace can still honour S
    settle(chain, signed)
    assert chain.channels.contract.functions.sessionKeyValidUntil(cid, key.address).call() == t + KEY_ROTATION_GRACE
    assert chain.channels.get_channel(cid).settled == 4 * FINNEY
    assert chain.channels.claimable(ARTIST) == 4 * FINNEY


def test_revokeThenReaddKeyBlocksLater_graceHoldsUntilItsEndAndNoLonger(chain: Chain) -> None:
    """S -> 0, then S again in a later block with an expiry already close: the grace from the revocation holds."""
    key = PrivateKey.generate()
    cid = session_channel(chain, key, label="void-2")
    signed = sign(chain, voucher(cid, {ARTIST: 3 * FINNEY}), key)
    receipt = chain.channels.set_session_key(chain.tx("listener"), cid, ZERO_ADDRESS, 0)
    revoked_at = int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    chain.advance(120)
    chain.channels.set_session_key(chain.tx("listener"), cid, key.address, chain.now() + 10)
    chain.advance(revoked_at + KEY_ROTATION_GRACE - chain.now() - 30)  # shortly before the grace ends
    settle(chain, signed)
    assert chain.channels.contract.functions.sessionKeyValidUntil(cid, key.address).call() == (
        revoked_at + KEY_ROTATION_GRACE
    )
    assert chain.channels.get_channel(cid).settled == 3 * FINNEY
    # ...and no longer: a newer voucher of S after the grace is refused.
    later = sign(chain, voucher(cid, {ARTIST: 5 * FINNEY}), key)
    chain.advance(60)
    with reverts("VoucherUnauthorizedSigner", channelId=cid, signer=key.address):
        settle(chain, later, [3 * FINNEY])


def test_contractWalletVoidsKeyAndClosesAtomically_relaySettlesAndPayerGetsOnlyTheRest(chain: Chain) -> None:
    """A contract-wallet payer runs S -> 0 -> S(now + 2) and requestClose in one transaction: S still settles."""
    wallet = deploy_wallet(chain)
    key = PrivateKey.generate()
    deposit = 10 * FINNEY
    c = chain.channels.contract
    expiry = chain.now() + 7 * DAY
    open_fn = c.functions.open(chain.address("relay"), ZERO_ADDRESS, deposit, salt("wallet"), key.address, expiry)
    chain.tx("listener").transact(
        wallet.functions.execute([wallet_call(chain, open_fn, deposit)]), value=deposit, action="open via wallet"
    )
    cid = chain.channels.channel_id_for(wallet.address, ZERO_ADDRESS, chain.address("relay"), salt("wallet"))
    assert chain.channels.get_channel(cid).payer == wallet.address
    signed = sign(chain, voucher(cid, {ARTIST: 6 * FINNEY}), key)

    now = chain.now()
    sequence = [
        wallet_call(chain, set_key(chain, cid, ZERO_ADDRESS, 0)),
        wallet_call(chain, set_key(chain, cid, key.address, now + 10)),
        wallet_call(chain, c.functions.requestClose(cid)),
    ]
    chain.tx("listener").transact(wallet.functions.execute(sequence), action="void the key atomically")
    chain.advance(60)
    settle(chain, signed)  # the relay (its watchtower) settles within the grace
    chain.advance(CHALLENGE_PERIOD)
    before = chain.balance(wallet.address)
    chain.channels.withdraw(chain.tx("stranger"), cid)
    assert chain.balance(wallet.address) - before == deposit - 6 * FINNEY
    assert chain.channels.claimable(ARTIST) == 6 * FINNEY


def test_rotateAwayAndBackInOneTransaction_secondRotationReverts_oldKeyKeepsSettling(chain: Chain) -> None:
    """A -> B -> A and A -> B -> C in one transaction (rotated twice): refused while A's grace is pending."""
    wallet = deploy_wallet(chain)
    a, b, c_key = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    c = chain.channels.contract
    open_fn = c.functions.open(
        chain.address("relay"), ZERO_ADDRESS, 10 * FINNEY, salt("twice"), a.address, chain.now() + 7 * DAY
    )
    chain.tx("listener").transact(
        wallet.functions.execute([wallet_call(chain, open_fn, 10 * FINNEY)]), value=10 * FINNEY, action="open"
    )
    cid = chain.channels.channel_id_for(wallet.address, ZERO_ADDRESS, chain.address("relay"), salt("twice"))
    signed = sign(chain, voucher(cid, {ARTIST: 2 * FINNEY}), a)
    soon = chain.now() + 10
    for third in (a, c_key):
        sequence = [
            wallet_call(chain, set_key(chain, cid, b.address, soon)),
            wallet_call(chain, set_key(chain, cid, third.address, soon)),
        ]
        with pytest.raises(ChainError) as info:
            chain.tx("listener").transact(wallet.functions.execute(sequence), action="rotate twice")
        assert info.value.reason == "SessionKeyRotationPending"
    chain.tx("listener").transact(
        wallet.functions.execute([wallet_call(chain, set_key(chain, cid, b.address, soon))]), action="rotate once"
    )
    chain.advance(60)
    settle(chain, signed)  # A, retired, still inside its grace
    assert chain.channels.get_channel(cid).settled == 2 * FINNEY


def test_revokeThenReaddKeyWhileRelayIsAway_relaySettlesWithinTheGrace(
    make_relay: Callable[..., InProcessRelay], relay_chain: RelayChain
) -> None:
    """S -> 0 -> S(short) while the relay is away: back, it must judge S by the grace (the contract's rule), not
    by S's new expiry, and settle what S signed instead of dropping it as unsettleable."""
    relay = make_relay(**LAZY)
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    track = relay_chain.track(MODEM)
    listener.play(track)
    listener.play(track)
    relay.stop()

    chain = relay_chain.chain
    cid: bytes = listener.channel_id  # type: ignore[assignment]
    key = listener.session_key.address
    receipt = chain.channels.set_session_key(listener.tx, cid, ZERO_ADDRESS, 0)
    revoked_at = int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    chain.channels.set_session_key(listener.tx, cid, key, chain.now() + 10)
    chain.advance(120)  # past the key's new expiry, well inside its grace

    back = make_relay(actor=relay.actor, **LAZY)
    wait_until(
        lambda: back.channel(cid)["sessionExpiry"] == revoked_at + KEY_ROTATION_GRACE,
        what="the relay to take the key's validity from the contract's rule",
    )
    back.settle_now(cid)
    wait_until(lambda: listener.chain_state().settled == 2 * PLAY_PRICE, what="S's vouchers to be settled")


@pytest.mark.parametrize("offset", [0, -1])
def test_setKeyWithExpiryNowOrPast_reverts(chain: Chain, offset: int) -> None:
    """Setting a key that expires at the latest block's time (or before) is refused; nothing changes."""
    key = PrivateKey.generate()
    cid = session_channel(chain, key, label=f"now-{offset}")
    before = chain.channels.get_channel(cid)
    expiry = chain.now() + offset  # any block that could include the call is at least this late
    payer = {"from": chain.address("listener")}
    err = call_reverts(set_key(chain, cid, key.address, expiry), "SessionKeyExpiryInPast", **payer)
    assert err.error_args == {"expiry": expiry}
    assert chain.channels.get_channel(cid) == before


# --------------------------------------------------------------------------------- classic payer attacks


def test_staleUnilateralClose_watchtowerSettlesLatestVoucher_payerRefundedOnlyTheRest(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The payer asks to close hoping the relay is not watching: the watchtower settles the latest voucher."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain), deposit=10**17)
    track = relay_chain.track(MODEM)
    listener.play(track)
    old = SignedVoucher(listener.state.voucher, listener.signatures[1])  # type: ignore[union-attr]
    for _ in range(3):
        listener.play(track)
    latest = listener.state.voucher  # type: ignore[union-attr]
    with pytest.raises(ChainError) as info:  # the payer cannot settle its old voucher itself first
        listener.settle_self(old)
    assert info.value.reason == "SettleNotAllowed"
    listener.request_close()
    wait_until(lambda: listener.chain_state().settled == latest.total, what="the watchtower to settle")
    relay_chain.chain.advance(CHALLENGE_PERIOD + 1)
    assert listener.withdraw() == 10**17 - 4 * PLAY_PRICE


def test_withdrawBeforeWindowEnds_reverts_atWindowEnd_refunds(chain: Chain) -> None:
    """The payer withdraws one second before its close window ends: refused; at its end: refunded once."""
    cid = open_channel(chain, 5 * FINNEY, label="early")
    receipt = chain.channels.request_close(chain.tx("listener"), cid)
    closes_at = int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]) + CHALLENGE_PERIOD
    chain.advance(closes_at - chain.now() - 30)  # shortly before the end
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=closes_at):
        chain.channels.withdraw(chain.tx("listener"), cid)
    chain.advance(30)  # the next block is past the window's end
    chain.channels.withdraw(chain.tx("listener"), cid)
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=1):
        chain.channels.withdraw(chain.tx("listener"), cid)


def test_closeWithAnotherChannelsVoucher_reverts(chain: Chain) -> None:
    """The payer closes channel B presenting channel A's small voucher and the relay's consent for A: refused."""
    small = open_channel(chain, 10 * FINNEY, label="A")
    big = open_channel(chain, 10 * FINNEY, label="B")
    a_voucher = sign(chain, voucher(small, {ARTIST: 9 * FINNEY}))
    b_voucher = sign(chain, voucher(big, {ARTIST: 2 * FINNEY}))
    settle(chain, b_voucher)
    consent_for_a = close_signature(chain, small, a_voucher.voucher)
    # A's voucher with B's channel id: the relay never consented to that close...
    moved = SignedVoucher(voucher(big, {ARTIST: 9 * FINNEY}, a_voucher.voucher.play_hash), a_voucher.signature)
    with reverts("CloseInvalidRelaySignature", channelId=big):
        cooperative_close(chain, big, moved, [2 * FINNEY], consent_for_a)
    # ...and as a settlement the payer's signature does not match the moved voucher (its digest binds channel A).
    chain.channels.request_close(chain.tx("listener"), big)
    chain.advance(CHALLENGE_PERIOD // 2 + 1)
    with pytest.raises(ChainError) as info:
        settle(chain, moved, [2 * FINNEY], by="listener")
    assert info.value.reason in ("VoucherUnauthorizedSigner", "VoucherInvalidSignature")
    assert chain.channels.get_channel(big).settled == 2 * FINNEY
