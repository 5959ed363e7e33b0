"""Attacker: a hostile token or payee contract.

A token the channels contract pays out in can run code on every transfer (ReentrantToken re-enters `claim` on
each transfer out of the contract); a payee contract can run code when it receives ETH (ReentrantPayee); tokens
may report failure by returning false (FalseReturnToken) or return nothing at all (NoReturnToken, USDT-style).
Expected: a re-entry gets nothing (the guard refuses it, and balances are written before any transfer anyway);
a failed transfer never counts as a payment; a channel in one token never touches the escrow of another.

Only what tests/integration/test_claims_and_tokens.py does not already cover is here: re-entry from claim() and
cooperativeClose() (test_claim_reentrantTokenCannotReenter), a re-entering ETH payee
(test_claim_reentrantPayeeCannotReenter), no-return and false-return tokens in open(), and the token allowlist
(test_allowToken_onlyTokenAdmin) are tested there.

Real contracts on real chains (eth-tester and anvil); the hostile contracts are contracts/mocks/.
"""

from __future__ import annotations

from chainstream.chain.contracts import ChannelStatus, TokenClient
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


def test_falseReturningToken_failedTopUpAddsNothing_andAVoucherBeyondWhatArrivedPaysOnlyThat(chain: Chain) -> None:
    """A token's transferFrom returns false instead of reverting in topUp(); a voucher then claims more."""
    # False success: a top-up whose transferFrom returns false (the stranger holds none) must not count a deposit that
    # never arrived, so a voucher for more than arrived pays out only what arrived. (A false-returning open():
    # tests/integration/test_claims_and_tokens.py, test_falseReturnToken_revertsIfTransferFails.)
    c = chain.channels
    token = deploy_token(chain, "FalseReturnToken", mint_to=("listener",))
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    with reverts("SafeERC20FailedOperation", token=token.address):
        chain.tx("stranger").transact(c.contract.functions.topUp(cid, STABLE), action="topUp")
    assert c.get_channel(cid).deposit == 10 * STABLE == token.balance_of(c.address)
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 11 * STABLE})))
    assert c.claimable(chain.address("artist"), token.address) == 10 * STABLE
