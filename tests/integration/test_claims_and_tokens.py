"""Claims, the token allowlist, non-standard and hostile tokens and payees, split rounding through real
settlements, and escrow accounting (the contract holds exactly what it owes)."""

from __future__ import annotations

from typing import Any

import pytest

from chainstream.chain.artifacts import load_artifact
from chainstream.chain.contracts import ChannelStatus
from chainstream.chain.deploy import deploy_contract
from chainstream.errors import ChainError
from chainstream.pricing import TOTAL_BPS, Split
from chainstream.protocol.types import ZERO_ADDRESS
from tests.integration.conftest import CHALLENGE_PERIOD, STABLE, Chain
from tests.integration.helpers import (
    ETH,
    FINNEY,
    batch,
    call_reverts,
    cooperative_close,
    deploy_token,
    entry,
    events,
    gas_cost,
    new_address,
    open_channel,
    reverts,
    settle,
    sign,
    voucher,
)

# ------------------------------------------------------------------------------------------------- claim


def test_claim_eth_paysCreditedBalance(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * FINNEY})))
    assert c.contract.functions.claim(ETH, artist).call({"from": artist}) == 3 * FINNEY

    before = chain.balance("artist")
    receipt = c.claim(chain.tx("artist"))
    (ev,) = events(c.contract, "Claimed", receipt)
    assert (ev.args.payee, ev.args.token, ev.args.to, ev.args.amount) == (artist, ETH, artist, 3 * FINNEY)
    assert chain.balance("artist") == before + 3 * FINNEY - gas_cost(receipt)
    assert c.claimable(artist) == 0
    assert chain.balance(c.address) == 7 * FINNEY


def test_claim_toAnotherAddress(chain: Chain) -> None:
    c = chain.channels
    artist, cold = chain.address("artist"), new_address("cold-wallet")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 2 * FINNEY})))
    before = chain.balance("artist")
    receipt = c.claim(chain.tx("artist"), ETH, cold)
    assert chain.balance(cold) == 2 * FINNEY
    assert chain.balance("artist") == before - gas_cost(receipt)
    (ev,) = events(c.contract, "Claimed", receipt)
    assert (ev.args.payee, ev.args.to) == (artist, cold)


def test_claim_token_paysCreditedBalance(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    settle(chain, sign(chain, voucher(cid, {artist: 4 * STABLE})))
    eth_before = chain.balance("artist")
    receipt = c.claim(chain.tx("artist"), token.address)
    (ev,) = events(c.contract, "Claimed", receipt)
    assert (ev.args.token, ev.args.amount) == (token.address, 4 * STABLE)
    assert token.balance_of(artist) == 4 * STABLE
    assert token.balance_of(c.address) == 6 * STABLE
    assert chain.balance("artist") == eth_before - gas_cost(receipt)  # no ETH moved
    assert c.claimable(artist, token.address) == 0


def test_claim_revertsIfClaimedTwice(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * FINNEY})))
    c.claim(chain.tx("artist"))
    balance, escrow = chain.balance("artist"), chain.balance(c.address)
    with reverts("NothingToClaim", payee=artist, token=ETH):
        c.claim(chain.tx("artist"))
    assert (chain.balance("artist"), chain.balance(c.address)) == (balance, escrow)

    # Credited again later: claimable again, exactly the new credit.
    settle(chain, sign(chain, voucher(cid, {artist: 5 * FINNEY})), (3 * FINNEY,))
    assert c.claimable(artist) == 2 * FINNEY
    receipt = c.claim(chain.tx("artist"))
    assert chain.balance("artist") == balance + 2 * FINNEY - gas_cost(receipt)


def test_claim_revertsIfNothingCreditedOrBadArguments(chain: Chain) -> None:
    c = chain.channels
    stranger = chain.address("stranger")
    with reverts("NothingToClaim", payee=stranger, token=ETH):
        c.claim(chain.tx("stranger"))
    with reverts("NothingToClaim", payee=stranger, token=chain.token.address):
        c.claim(chain.tx("stranger"), chain.token.address)
    with reverts("ClaimToZero"):
        chain.tx("stranger").transact(c.contract.functions.claim(ETH, ZERO_ADDRESS), action="claim")
    unlisted = chain.registry.address
    with reverts("TokenNotAllowed", token=unlisted):
        c.claim(chain.tx("stranger"), unlisted)


def test_claim_revertsIfEthRecipientRefuses(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {artist: 3 * FINNEY})))
    no_receive = chain.registry.address  # a contract without receive()
    with reverts("PayoutFailed", to=no_receive, amount=3 * FINNEY):
        c.claim(chain.tx("artist"), ETH, no_receive)
    assert c.claimable(artist) == 3 * FINNEY  # nothing lost: the whole claim rolled back
    c.claim(chain.tx("artist"))
    assert c.claimable(artist) == 0


def test_claim_keepsEachTokenSeparate(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    artist = chain.address("artist")
    eth_cid = open_channel(chain, 10 * FINNEY, label="eth")
    usd_cid = open_channel(chain, 10 * STABLE, label="usd", token=token.address)
    batch(
        chain,
        [
            entry(sign(chain, voucher(eth_cid, {artist: 2 * FINNEY}))),
            entry(sign(chain, voucher(usd_cid, {artist: 3 * STABLE}))),
        ],
    )
    assert (c.claimable(artist, ETH), c.claimable(artist, token.address)) == (2 * FINNEY, 3 * STABLE)

    c.claim(chain.tx("artist"), ETH)
    assert (c.claimable(artist, ETH), c.claimable(artist, token.address)) == (0, 3 * STABLE)
    assert token.balance_of(artist) == 0
    assert chain.balance(c.address) == 8 * FINNEY
    assert token.balance_of(c.address) == 10 * STABLE

    c.claim(chain.tx("artist"), token.address)
    assert (c.claimable(artist, ETH), c.claimable(artist, token.address)) == (0, 0)
    assert token.balance_of(artist) == 3 * STABLE
    assert token.balance_of(c.address) == 7 * STABLE
    assert chain.balance(c.address) == 8 * FINNEY
    with reverts("NothingToClaim"):
        c.claim(chain.tx("artist"), token.address)


# ------------------------------------------------------------------------------------------- token admin


def test_allowToken_onlyTokenAdmin(chain: Chain) -> None:
    c = chain.channels
    assert c.contract.functions.tokenAdmin().call() == chain.address("deployer")
    token = deploy_token(chain, "MockStablecoin", allow=False)
    for actor in ("stranger", "relay", "listener"):
        with reverts("NotTokenAdmin", caller=chain.address(actor)):
            c.allow_token(chain.tx(actor), token.address)
    call_reverts(c.contract.functions.tokenIdOf(token.address), "TokenNotAllowed")

    count = c.contract.functions.tokenCount().call()
    receipt = c.allow_token(chain.tx("deployer"), token.address)
    (ev,) = events(c.contract, "TokenAllowed", receipt)
    assert (ev.args.token, ev.args.tokenId) == (token.address, count + 1)
    assert c.contract.functions.tokenIdOf(token.address).call() == count + 1
    assert c.contract.functions.tokenCount().call() == count + 1
    assert c.contract.functions.tokenIdOf(ETH).call() == 0
    assert c.contract.functions.tokenIdOf(chain.token.address).call() == 1

    with reverts("TokenAlreadyAllowed", token=token.address):
        c.allow_token(chain.tx("deployer"), token.address)
    with reverts("TokenNotAllowed", token=ZERO_ADDRESS):
        c.allow_token(chain.tx("deployer"), ZERO_ADDRESS)
    # Once allowed, channels can be opened in it.
    cid = open_channel(chain, 5 * STABLE, token=token.address)
    assert c.get_channel(cid).token == token.address


# ------------------------------------------------------------------------------------ hostile tokens/payees


def test_claim_reentrantTokenCannotReenter(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    token = deploy_token(chain, "ReentrantToken")
    attack = token.contract.functions
    chain.tx("deployer").transact(attack.setTarget(c.address), action="setTarget")
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    # The token contract itself is a payee, so a re-entered claim() by it would have something to take.
    settle(chain, sign(chain, voucher(cid, {artist: 4 * STABLE, token.address: 3 * STABLE})))
    assert c.claimable(token.address, token.address) == 3 * STABLE

    c.claim(chain.tx("artist"), token.address)
    assert attack.reentryAttempts().call() == 1
    assert attack.reentrySucceeded().call() == 0
    assert token.balance_of(artist) == 4 * STABLE
    assert c.claimable(token.address, token.address) == 3 * STABLE
    assert token.balance_of(c.address) == 6 * STABLE

    # The refund transfer re-enters too, and gets nothing either.
    before = token.balance_of(chain.address("listener"))
    cooperative_close(chain, cid, None)
    assert attack.reentryAttempts().call() == 2
    assert attack.reentrySucceeded().call() == 0
    assert token.balance_of(chain.address("listener")) == before + 3 * STABLE
    assert token.balance_of(c.address) == 3 * STABLE == c.claimable(token.address, token.address)


def test_claim_reentrantPayeeCannotReenter(chain: Chain) -> None:
    c = chain.channels
    payee_address = deploy_contract(chain.tx("deployer"), "ReentrantPayee", c.address)
    payee = chain.w3.eth.contract(address=payee_address, abi=load_artifact("ReentrantPayee").abi)
    cid = open_channel(chain, 10 * FINNEY)
    settle(chain, sign(chain, voucher(cid, {payee_address: 3 * FINNEY, chain.address("artist"): FINNEY})))
    escrow = chain.balance(c.address)

    chain.tx("stranger").transact(payee.functions.claimEth(), action="claimEth")
    assert payee.functions.reentryAttempts().call() == 1
    assert payee.functions.reentrySucceeded().call() == 0
    assert chain.balance(payee_address) == 3 * FINNEY
    assert chain.balance(c.address) == escrow - 3 * FINNEY
    assert c.claimable(payee_address) == 0
    assert c.claimable(chain.address("artist")) == FINNEY
    with reverts("NothingToClaim", payee=payee_address):
        chain.tx("stranger").transact(payee.functions.claimEth(), action="claimEth")


def test_noReturnToken_openSettleClaimAndRefundWork(chain: Chain) -> None:
    c = chain.channels
    artist = chain.address("artist")
    token = deploy_token(chain, "NoReturnToken", mint_to=("listener", "stranger"))
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    c.top_up(chain.tx("stranger"), cid, 2 * STABLE, token=token.address)
    assert token.balance_of(c.address) == 12 * STABLE
    settle(chain, sign(chain, voucher(cid, {artist: 5 * STABLE})))
    c.claim(chain.tx("artist"), token.address)
    assert token.balance_of(artist) == 5 * STABLE
    before = token.balance_of(chain.address("listener"))
    cooperative_close(chain, cid, None)
    assert token.balance_of(chain.address("listener")) == before + 7 * STABLE
    assert token.balance_of(c.address) == 0


def test_noReturnToken_revertsIfTransferFromFails(chain: Chain) -> None:
    token = deploy_token(chain, "NoReturnToken", mint_to=())
    c = chain.channels
    token.approve(chain.tx("listener"), c.address, 10 * STABLE)
    call = c.contract.functions.open(chain.address("relay"), token.address, 10 * STABLE, b"\x01" * 32, ZERO_ADDRESS, 0)
    with pytest.raises(ChainError) as info:  # the token's own require(), not one of our custom errors
        chain.tx("listener").transact(call, action="open")
    assert info.value.reason is None
    assert token.balance_of(c.address) == 0


def test_falseReturnToken_revertsIfTransferFails(chain: Chain) -> None:
    c = chain.channels
    token = deploy_token(chain, "FalseReturnToken", mint_to=("listener",))
    relay = chain.address("relay")
    # No allowance: transferFrom returns false, SafeERC20 turns it into a revert.
    call = c.contract.functions.open(relay, token.address, 10 * STABLE, b"\x01" * 32, ZERO_ADDRESS, 0)
    with reverts("SafeERC20FailedOperation", token=token.address):
        chain.tx("listener").transact(call, action="open")
    # Allowance but no balance: same.
    token.approve(chain.tx("stranger"), c.address, 10 * STABLE)
    with reverts("SafeERC20FailedOperation", token=token.address):
        chain.tx("stranger").transact(call, action="open")
    assert token.balance_of(c.address) == 0

    # A funded, approved FalseReturnToken channel works end to end.
    cid = open_channel(chain, 10 * STABLE, token=token.address)
    with reverts("SafeERC20FailedOperation", token=token.address):  # top-up without balance
        chain.tx("stranger").transact(c.contract.functions.topUp(cid, STABLE), action="topUp")
    settle(chain, sign(chain, voucher(cid, {chain.address("artist"): 4 * STABLE})))
    c.claim(chain.tx("artist"), token.address)
    assert token.balance_of(chain.address("artist")) == 4 * STABLE
    cooperative_close(chain, cid, None)
    assert token.balance_of(c.address) == 0
    assert c.get_channel(cid).deposit == 10 * STABLE


# -------------------------------------------------------------------------------------------- split math


def _splits(chain: Chain) -> list[Split]:
    a, b, d, p = (chain.address(x) for x in ("artist", "collab", "label", "platform"))
    return [
        Split((a, b, d), (3_333, 3_333, 3_334), p, 250),
        Split(tuple(new_address(f"r{i}") for i in range(16)), (625,) * 16, p, 5_000),
        Split((a, b), (1, 9_999), p, 1),
        Split((a, b), (9_999, 1)),
        Split((a,), (10_000,), p, 4_999),
        Split(tuple(new_address(f"s{i}") for i in range(7)), (1, 1, 1, 1, 1, 1, 9_994), p, 333),
    ]


def test_settle_splitRoundingPaysExactlyTheSettledAmount(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    amounts = [1, 9_999, 123_456_789, 2**96 - 1]
    token.mint(chain.tx("listener"), chain.address("listener"), 2**96 * 6)
    token.approve(chain.tx("listener"), c.address, 2**256 - 1)
    cases: list[tuple[bytes, Split, int, dict[str, int]]] = []
    entries = []
    for i, split in enumerate(_splits(chain)):
        for j, amount in enumerate(amounts):
            # Fresh payees per case so that claimable() reads one case's shares.
            fresh = {
                old: new_address(f"case-{i}-{j}-{k}") for k, old in enumerate((*split.recipients, split.fee_recipient))
            }
            case_split = Split(
                tuple(fresh[r] for r in split.recipients),
                split.bps,
                fresh[split.fee_recipient] if split.fee_bps else ZERO_ADDRESS,
                split.fee_bps,
            )
            shares = case_split.apply(amount)
            cid = open_channel(chain, amount, label=f"split-{i}-{j}", token=token.address)
            entries.append(entry(sign(chain, voucher(cid, list(shares.items())))))
            cases.append((cid, case_split, amount, shares))
    receipt = batch(chain, entries)
    assert events(c.contract, "SettlementSkipped", receipt) == []

    for cid, split, amount, shares in cases:
        assert c.get_channel(cid).settled == amount
        paid = {
            payee: c.claimable(payee, token.address)
            for payee in (*split.recipients, split.fee_recipient)
            if payee != ZERO_ADDRESS
        }
        assert sum(paid.values()) == amount
        assert {p: v for p, v in paid.items() if v} == shares
        fee = amount * split.fee_bps // TOTAL_BPS
        rest = amount - fee
        if split.fee_bps:
            assert paid[split.fee_recipient] == fee
        for recipient, bps in zip(split.recipients[1:], split.bps[1:], strict=True):
            assert paid[recipient] == rest * bps // TOTAL_BPS
        dust = paid[split.recipients[0]] - rest * split.bps[0] // TOTAL_BPS
        assert 0 <= dust < len(split.recipients), (split, amount, dust)


# ---------------------------------------------------------------------------------------------- escrow


def _sum_args(contract: Any, name: str, start: int, field: str, **filters: Any) -> int:
    logs = getattr(contract.events, name)().get_logs(from_block=start)
    return sum(int(log.args[field]) for log in logs if all(log.args[k] == v for k, v in filters.items()))


def test_escrow_holdsExactlyDepositsMinusRefundsAndClaims(chain: Chain) -> None:
    c, token = chain.channels, chain.token
    artist, collab = chain.address("artist"), chain.address("collab")
    start = chain.w3.eth.block_number + 1
    eth_before, usd_before = chain.balance(c.address), token.balance_of(c.address)

    ch1 = open_channel(chain, 10 * FINNEY, label=1)
    ch2 = open_channel(chain, 8 * FINNEY, label=2, payer="listener2")
    ch3 = open_channel(chain, 5 * FINNEY, label=3)
    ch4 = open_channel(chain, 20 * STABLE, label=4, token=token.address)
    c.top_up(chain.tx("stranger"), ch3, 2 * FINNEY)
    c.top_up(chain.tx("listener"), ch4, 5 * STABLE, token=token.address)

    batch(
        chain,
        [
            entry(sign(chain, voucher(ch1, {artist: 3 * FINNEY, collab: FINNEY}))),
            entry(sign(chain, voucher(ch2, {artist: 9 * FINNEY}), "listener2")),  # capped at 8
            entry(sign(chain, voucher(ch3, {collab: 2 * FINNEY}))),
            entry(sign(chain, voucher(ch4, {artist: 5 * STABLE, collab: STABLE}))),
        ],
    )
    c.claim(chain.tx("artist"))
    c.claim(chain.tx("collab"), token.address)
    cooperative_close(chain, ch1, sign(chain, voucher(ch1, {artist: 4 * FINNEY, collab: FINNEY})), (3 * FINNEY, FINNEY))
    c.request_close(chain.tx("listener"), ch3)
    chain.advance(CHALLENGE_PERIOD + 1)
    c.withdraw(chain.tx("stranger"), ch3)
    cooperative_close(chain, ch4, None)
    c.claim(chain.tx("artist"), token.address)

    for tkn, balance, before in (
        (ETH, chain.balance(c.address), eth_before),
        (token.address, token.balance_of(c.address), usd_before),
    ):
        deposits = _sum_args(c.contract, "ChannelOpened", start, "deposit", token=tkn)
        top_ups = sum(
            int(log.args.amount)
            for log in c.contract.events.ChannelToppedUp().get_logs(from_block=start)
            if c.get_channel(bytes(log.args.channelId)).token == tkn
        )
        refunds = sum(
            int(log.args.refund)
            for log in c.contract.events.ChannelClosed().get_logs(from_block=start)
            if c.get_channel(bytes(log.args.channelId)).token == tkn
        )
        claims = _sum_args(c.contract, "Claimed", start, "amount", token=tkn)
        assert balance - before == deposits + top_ups - refunds - claims
        # And it is exactly what is still owed: open channels' unspent deposits plus unclaimed credits.
        unspent = sum(
            c.get_channel(x).remaining
            for x in (ch1, ch2, ch3, ch4)
            if c.get_channel(x).token == tkn and c.get_channel(x).status != ChannelStatus.CLOSED
        )
        owed = c.claimable(artist, tkn) + c.claimable(collab, tkn)
        assert balance - before == unspent + owed

    # By hand: ETH 25 in, 5 + 5 refunded, 11 claimed; tokens 25 in, 19 refunded, 6 claimed.
    assert chain.balance(c.address) - eth_before == 4 * FINNEY
    assert token.balance_of(c.address) - usd_before == 0
