"""Gas-free onboarding in the web player (issue 13), in a real browser against a real relay and anvil: a wallet
that holds mUSD and no ETH opens, plays, tops up and closes by signatures alone, and the relay's fee shown before
each signature is the fee charged."""

from __future__ import annotations

from typing import Any

import pytest

from chainstream.chain.contracts import ChannelsClient, ChannelStatus, TokenClient
from chainstream.chain.transactions import TxSender
from tests.e2e.stack import Stack
from tests.e2e.test_player import (
    USD,
    channel_of,
    connect,
    eventually,
    expect,
    open_page,
    play,
    wait_history,
    wallet_signatures,
)

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]

GRANT = 100 * USD


def _token_only_wallet(stack: Stack, role: str) -> str:
    """Give `role` GRANT mUSD, then empty its ETH: it can sign, never pay gas."""
    w3 = stack.web3()
    who = stack.address(role)
    TokenClient(w3, stack.deployment.stablecoin).mint(TxSender(w3, stack.keys["deployer"]), who, GRANT)
    w3.provider.make_request("anvil_setBalance", [who, "0x0"])
    assert w3.eth.get_balance(who) == 0
    return who


def test_token_only_wallet_opens_plays_tops_up_and_closes_without_gas(browser: Any, stack: Stack) -> None:
    """A wallet with mUSD and 0 ETH: the player offers the gas-free path, shows the relay's fee, and every step
    (open, play, top-up, close) goes through signatures the relay submits; its ETH stays 0."""
    w3 = stack.web3()
    usd = TokenClient(w3, stack.deployment.stablecoin)
    channels = ChannelsClient(w3, stack.deployment.channels)
    who = _token_only_wallet(stack, "gasfree")
    relay = stack.address("relay")
    relay_before = usd.balance_of(relay)

    page = open_page(browser, stack, "gasfree")
    connect(page)
    page.get_by_test_id("token-mUSD").click()
    # no ETH: the gas-free way is chosen by default, with the relay's fee shown before anything is signed
    expect(page.get_by_test_id("method-gasless")).to_have_class("on")
    note = page.get_by_test_id("gasless-fee")
    expect(note).to_contain_text("no ETH for gas")
    expect(note).to_contain_text("0.01 mUSD")
    shown_fee = int(note.get_attribute("data-fee") or "-1")
    assert shown_fee == 10_000  # the dev relay's gasless_fee, in mUSD units
    assert wallet_signatures(page) == []  # nothing signed before the fee was on screen

    page.get_by_test_id("deposit-input").fill("20")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    assert wallet_signatures(page)[:2] == ["Permit", "OpenChannel"]
    calls = page.evaluate("window.__csWallet.calls")
    assert "eth_sendTransaction" not in calls
    view = channels.get_channel(bytes.fromhex(cid[2:]))
    assert view.payer == who and view.deposit == 20 * USD - shown_fee  # the fee charged is the fee shown
    assert usd.balance_of(who) == GRANT - 20 * USD

    play(page, "Gas Price Blues")
    wait_history(stack, cid, 1)
    expect(page.get_by_test_id("spent")).to_have_text("0.0015")

    page.get_by_test_id("top-up").click()
    expect(page.get_by_test_id("gasless-fee")).to_contain_text("0.01 mUSD")
    page.get_by_test_id("topup-input").fill("5")
    page.locator("[data-testid=channel-card] .inline-form").get_by_role("button", name="Top up").click()
    expect(page.get_by_test_id("deposit")).to_have_text("24.98", timeout=20_000)
    assert channels.get_channel(bytes.fromhex(cid[2:])).deposit == 25 * USD - 2 * shown_fee

    page.get_by_test_id("close-menu").click()
    expect(page.get_by_test_id("gasless-fee")).to_contain_text("0.01 mUSD")
    page.get_by_test_id("close-coop").click()
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("close-fee")).to_have_attribute("data-fee", str(shown_fee))
    spent = 1500
    refund = 25 * USD - 2 * shown_fee - spent - shown_fee
    expect(page.get_by_test_id("refund")).to_have_text("24.9685 mUSD")
    assert channels.get_channel(bytes.fromhex(cid[2:])).status == ChannelStatus.CLOSED
    eventually(lambda: usd.balance_of(who) == GRANT - 25 * USD + refund, what="the refund")

    signatures = wallet_signatures(page)
    assert signatures.count("Permit") == 2 and signatures.count("CloseChannel") == 1
    assert "eth_sendTransaction" not in page.evaluate("window.__csWallet.calls")
    assert w3.eth.get_balance(who) == 0  # never paid gas
    assert usd.balance_of(relay) - relay_before == 3 * shown_fee  # exactly the fee shown, three times
    page.context.close()
