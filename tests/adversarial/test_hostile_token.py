"""Attacker: a hostile token or payee contract.

A token the channels contract pays out in can run code on every transfer (ReentrantToken re-enters `claim` on
each transfer out of the contract); a payee contract can run code when it receives ETH (ReentrantPayee); tokens
may report failure by returning false (FalseReturnToken) or return nothing at all (NoReturnToken, USDT-style).
Expected: a re-entry gets nothing (the guard refuses it, and balances are written before any transfer anyway);
a failed transfer never counts as a payment; a channel in one token never touches the escrow of another; only
the token admin's allowlist decides which tokens a channel may use.

Real contracts on real chains (eth-tester and anvil); the hostile contracts are contracts/mocks/.
"""

from __future__ import annotations

from chainstream.chain.artifacts import load_artifact
from chainstream.chain.contracts import ChannelStatus, TokenClient
from chainstream.chain.deploy import deploy_contract
from chainstream.protocol.types import ZERO_ADDRESS
from tests.integration.conftest import CHALLENGE_PERIOD, STABLE, Chain
from tests.integration.helpers import (
    FINNEY,
    cooperative_close,
    deploy_token,
    open_channel,
    reverts,
    settle,
    sign,
    voucher,
)


def _reentrant_token(chain: Chain) -> TokenClient:
    """A ReentrantToken, allowed, minted to the listener, aimed at the channels contract."""
    token = deploy_token(chain, "ReentrantToken")
    chain.tx("deployer").transact(token.contract.functions.setTarget(chain.channels.address), action="setTarget")
    return token


def _attempts(token: TokenClient) -> tuple[int, int]:
    functions = token.contract.functions
    return int(functions.reentryAttempts().call()), int(functions.reentrySucceeded().call())


def test_reentrantToken_reentersClaimDuringAPayout_andGetsNothing(chain: Chain) -> None:
    """A token that is itself a credited payee re-enters claim() from inside the transfer paying another payee."""
    # Re-entrancy: the token is itself a credited payee and calls claim() again from inside the transfer that pays
    # another payee.
    c = chain.channels
    artist = chain.address("artist")
    token = _reentrant_token(chain)
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    settle(chain, sign(chain, voucher(cid, {artist: 4 * STABLE, token.address: 3 * STABLE})))

    c.claim(chain.tx("artist"), token.address)
    assert _attempts(token) == (1, 0)
    assert token.balance_of(artist) == 4 * STABLE
    assert c.claimable(token.address, token.address) == 3 * STABLE  # still owed, not paid out by the re-entry
    assert token.balance_of(c.address) == 6 * STABLE  # 3 unsettled deposit + 3 owed to the token
    with reverts("NothingToClaim", payee=artist, token=token.address):
        c.claim(chain.tx("artist"), token.address)


def test_reentrantToken_reentersDuringAUnilateralCloseRefund_andGetsNothing(chain: Chain) -> None:
    """The refund transfer of withdraw() after the challenge window re-enters claim()."""
    # Re-entrancy: the refund transfer of withdraw() (after the challenge window, called by anyone) re-enters claim()
    # while the channel is being closed.
    c = chain.channels
    token = _reentrant_token(chain)
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 2 * STABLE, token.address: STABLE})))
    c.request_close(chain.tx("listener"), cid)
    chain.advance(CHALLENGE_PERIOD + 1)
    before = token.balance_of(chain.address("listener"))

    c.withdraw(chain.tx("stranger"), cid)
    assert _attempts(token) == (1, 0)
    assert token.balance_of(chain.address("listener")) == before + 7 * STABLE
    assert c.get_channel(cid).status == ChannelStatus.CLOSED
    assert c.claimable(token.address, token.address) == STABLE
    assert token.balance_of(c.address) == 3 * STABLE  # exactly what payees are still owed
    with reverts("ChannelWindowNotOver", channelId=cid, closesAt=1):  # no second refund
        c.withdraw(chain.tx("stranger"), cid)


def test_reentrantToken_reentersDuringACooperativeCloseRefund_andGetsNothing(chain: Chain) -> None:
    """Re-entrancy: the refund transfer of cooperativeClose() re-enters claim()."""
    c = chain.channels
    token = _reentrant_token(chain)
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    final = sign(chain, voucher(cid, {token.address: 2 * STABLE}))
    before = token.balance_of(chain.address("listener"))

    cooperative_close(chain, cid, final)
    assert _attempts(token) == (1, 0)
    assert token.balance_of(chain.address("listener")) == before + 8 * STABLE
    assert token.balance_of(c.address) == 2 * STABLE == c.claimable(token.address, token.address)


def test_reentrantPayee_reentersClaimFromItsReceiveHook_andIsPaidOnce(chain: Chain) -> None:
    """Re-entrancy: an ETH payee contract whose receive() calls claim() again before the first one returns."""
    c = chain.channels
    payee_address = deploy_contract(chain.tx("deployer"), "ReentrantPayee", c.address)
    payee = chain.w3.eth.contract(address=payee_address, abi=load_artifact("ReentrantPayee").abi)
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {payee_address: 3 * FINNEY, chain.address("artist"): FINNEY})))
    escrow = chain.balance(c.address)

    chain.tx("stranger").transact(payee.functions.claimEth(), action="claimEth")
    assert (payee.functions.reentryAttempts().call(), payee.functions.reentrySucceeded().call()) == (1, 0)
    assert chain.balance(payee_address) == 3 * FINNEY
    assert chain.balance(c.address) == escrow - 3 * FINNEY
    assert c.claimable(payee_address) == 0 and c.claimable(chain.address("artist")) == FINNEY


def test_hostileTokenChannel_neverTouchesAnotherTokensEscrow(chain: Chain) -> None:
    """A re-entering token's payouts try to reach the ETH and stablecoin escrow of the same payee."""
    # Isolation: a payee credited in ETH and in the stablecoin is also credited in a re-entering token; the token's
    # payouts and re-entries leave the ETH and stablecoin balances (escrow and credits) exactly as they were.
    c = chain.channels
    artist = chain.address("artist")
    stable = chain.token
    eth_cid = open_channel(chain, 10 * FINNEY, label="eth")
    stable_cid = open_channel(chain, 10 * STABLE, label="stable", token=stable.address)
    settle(chain, sign(chain, voucher(eth_cid, {artist: 2 * FINNEY})))
    settle(chain, sign(chain, voucher(stable_cid, {artist: 5 * STABLE})))
    eth_escrow, stable_escrow = chain.balance(c.address), stable.balance_of(c.address)

    token = _reentrant_token(chain)
    cid = open_channel(chain, 10 * STABLE, label="hostile", token=token.address)
    settle(chain, sign(chain, voucher(cid, {artist: STABLE, token.address: STABLE})))
    c.claim(chain.tx("artist"), token.address)
    cooperative_close(chain, cid, None)
    assert _attempts(token) == (2, 0)

    assert chain.balance(c.address) == eth_escrow and stable.balance_of(c.address) == stable_escrow
    assert c.claimable(artist) == 2 * FINNEY and c.claimable(artist, stable.address) == 5 * STABLE
    assert c.claimable(artist, token.address) == 0


def test_falseReturningToken_failedPullsOpenNothingAndAddNothing(chain: Chain) -> None:
    """A token's transferFrom returns false instead of reverting, in open() and topUp()."""
    # False success: a token whose transferFrom returns false (no allowance, no balance) instead of reverting; an open
    # or a top-up must not count a deposit that never arrived.
    c = chain.channels
    token = deploy_token(chain, "FalseReturnToken", mint_to=("listener",))
    call = c.contract.functions.open(chain.address("relay"), token.address, 10 * STABLE, b"\x01" * 32, ZERO_ADDRESS, 0)
    with reverts("SafeERC20FailedOperation", token=token.address):  # no allowance
        chain.tx("listener").transact(call, action="open")
    token.approve(chain.tx("stranger"), c.address, 10 * STABLE)
    with reverts("SafeERC20FailedOperation", token=token.address):  # allowance, no balance
        chain.tx("stranger").transact(call, action="open")
    assert (
        c.get_channel(
            c.channel_id_for(chain.address("stranger"), token.address, chain.address("relay"), b"\x01" * 32)
        ).status
        == ChannelStatus.NONE
    )

    cid = open_channel(chain, 10 * STABLE, token=token.address)
    with reverts("SafeERC20FailedOperation", token=token.address):
        chain.tx("stranger").transact(c.contract.functions.topUp(cid, STABLE), action="topUp")
    assert c.get_channel(cid).deposit == 10 * STABLE == token.balance_of(c.address)
    # A voucher for more than arrived pays out only what arrived.
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 11 * STABLE})))
    assert c.claimable(chain.address("artist"), token.address) == 10 * STABLE


def test_noReturnToken_worksEndToEnd_andAFailedPullReverts(chain: Chain) -> None:
    """Missing return value: a USDT-style token (no bool) must neither break payouts nor let a failed pull pass."""
    c = chain.channels
    artist = chain.address("artist")
    token = deploy_token(chain, "NoReturnToken", mint_to=("listener",))
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    settle(chain, sign(chain, voucher(cid, {artist: 4 * STABLE})))
    c.claim(chain.tx("artist"), token.address)
    cooperative_close(chain, cid, None)
    assert token.balance_of(artist) == 4 * STABLE and token.balance_of(c.address) == 0

    token.approve(chain.tx("stranger"), c.address, 10 * STABLE)  # allowance, but the stranger holds none
    call = c.contract.functions.open(chain.address("relay"), token.address, 10 * STABLE, b"\x02" * 32, ZERO_ADDRESS, 0)
    with reverts(None):  # the token's own require(), not one of our errors
        chain.tx("stranger").transact(call, action="open")
    assert token.balance_of(c.address) == 0


def test_tokenNotOnTheAllowlist_cannotBeUsed_andOnlyTheTokenAdminAllowsOne(chain: Chain) -> None:
    """Allowlist: a stranger deploys a hostile token and tries to open a channel in it, or to allow it."""
    c = chain.channels
    token = deploy_token(chain, "ReentrantToken", allow=False)
    with reverts("TokenNotAllowed", token=token.address):
        open_channel(chain, STABLE, token=token.address)
    with reverts("NotTokenAdmin", caller=chain.address("stranger")):
        c.allow_token(chain.tx("stranger"), token.address)
    with reverts("NotTokenAdmin", caller=chain.address("relay")):
        c.allow_token(chain.tx("relay"), token.address)
