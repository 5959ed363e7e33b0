"""Gas-free onboarding and scheduled payouts in the web player (issue 13), in a real browser against a real relay
and anvil: a wallet that holds mUSD and no ETH opens, plays, tops up and closes by signatures alone, and the relay's
fee shown before each signature is the fee charged; an artist opts in to payouts in the studio by one signature,
is paid by the relay without sending a transaction, sees each payout with its transaction, and opts out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from chainstream.chain.contracts import ChannelsClient, ChannelStatus, TokenClient
from chainstream.chain.gasless import payouts_to
from chainstream.chain.transactions import TxSender
from tests.e2e.stack import Stack, start_stack
from tests.e2e.test_player import (
    USD,
    channel_of,
    connect,
    eventually,
    expect,
    open_page,
    play,
    reveal,
    shot,
    tile,
    wait_history,
    wallet_signatures,
)

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]

GRANT = 100 * USD
PAYOUT_FEE = 1_000  # the dev relay's payout_fee (Settings), in mUSD units


@pytest.fixture(scope="module")
def stack(browser_available: None) -> Iterator[Stack]:
    """The browser tests' stack (tests/e2e/conftest.py) with the relay pushing scheduled payouts every second."""
    s = start_stack(settle_interval=1.0, settle_min_value=10**30, settle_max_age=5.0, payout_interval=1.0)
    try:
        yield s
    finally:
        s.stop()


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
    shot(page, "20-gas-free-open")
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

    # a relay understating the fee it kept: the page reads the fee from the transaction's AuthorizationUsed event
    def understate(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "fee": "0"})

    page.route(re.compile(r".*/api/v1/onboard/close$"), understate)
    page.get_by_test_id("close-menu").click()
    expect(page.get_by_test_id("gasless-fee")).to_contain_text("0.01 mUSD")
    page.get_by_test_id("close-coop").click()
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("close-fee")).to_have_attribute("data-fee", str(shown_fee))
    spent = 1500
    refund = 25 * USD - 2 * shown_fee - spent - shown_fee
    expect(page.get_by_test_id("refund")).to_have_text("24.9685 mUSD")
    shot(page, "21-gas-free-closed")
    assert channels.get_channel(bytes.fromhex(cid[2:])).status == ChannelStatus.CLOSED
    eventually(lambda: usd.balance_of(who) == GRANT - 25 * USD + refund, what="the refund")

    signatures = wallet_signatures(page)
    assert signatures.count("Permit") == 2 and signatures.count("CloseChannel") == 1
    assert "eth_sendTransaction" not in page.evaluate("window.__csWallet.calls")
    assert w3.eth.get_balance(who) == 0  # never paid gas
    assert usd.balance_of(relay) - relay_before == 3 * shown_fee  # exactly the fee shown, three times
    page.context.close()


def test_artist_opts_in_to_payouts_by_signature_is_paid_without_a_transaction_and_opts_out(
    browser: Any, stack: Stack
) -> None:
    """ben schedules mUSD payouts in the studio (one PayoutSchedule signature, a maximum fee below the relay's),
    a listener plays his track and closes, the relay pushes ben's balance; the studio lists each payout with its
    transaction, as on chain, and ben opts out again; ben never sends a transaction."""
    w3 = stack.web3()
    usd = TokenClient(w3, stack.deployment.stablecoin)
    channels = ChannelsClient(w3, stack.deployment.channels)
    ben = stack.address("ben")
    ben_before = usd.balance_of(ben)

    studio = open_page(browser, stack, "ben", "/#/studio")
    connect(studio)
    studio.get_by_test_id("payout-token-mUSD").click()
    card = studio.get_by_test_id("payouts")
    expect(studio.get_by_test_id("payout-status")).to_have_text("off")
    expect(studio.get_by_test_id("payout-fee-quote")).to_have_attribute("data-fee", str(PAYOUT_FEE))
    studio.get_by_test_id("payout-threshold-input").fill("0.001")
    studio.get_by_test_id("payout-max-fee-input").fill("0.0005")  # below the relay's 0.001: the signed cap wins
    studio.get_by_test_id("payout-opt-in").click()
    expect(studio.get_by_test_id("payout-status")).to_have_text("on", timeout=20_000)
    expect(card).to_have_attribute("data-enabled", "true")
    expect(studio.get_by_test_id("payout-threshold")).to_have_text("0.001 mUSD")
    expect(studio.get_by_test_id("payout-max-fee")).to_have_text("0.0005 mUSD")
    expect(studio.get_by_test_id("payout-next")).to_contain_text("as soon as your balance reaches 0.001 mUSD")
    assert "PayoutSchedule" in wallet_signatures(studio)

    # a listener (with ETH: the ordinary permit path) plays one of ben's tracks and closes; the close settles it
    listener = open_page(browser, stack, "listener")
    connect(listener)
    listener.get_by_test_id("token-mUSD").click()
    expect(listener.get_by_test_id("method-permit")).to_have_class("on")  # a wallet with ETH keeps the usual way
    listener.get_by_test_id("deposit-input").fill("5")
    listener.get_by_test_id("open-channel").click()
    cid = channel_of(listener)
    expect(tile(listener, "Gas Price Blues")).to_be_visible()
    play(listener, "Gas Price Blues")
    wait_history(stack, cid, 1)
    listener.get_by_test_id("close-menu").click()
    expect(listener.get_by_test_id("gasless-fee")).to_have_count(0)  # has ETH: closes by its own transaction
    listener.get_by_test_id("close-coop").click()
    expect(listener.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    listener.context.close()

    # the relay pushes ben's whole balance, keeping at most the fee ben signed
    eventually(
        lambda: channels.claimable(ben, stack.deployment.stablecoin) == 0 and usd.balance_of(ben) > ben_before,
        30,
        "ben's payout",
    )
    events = payouts_to(channels, ben)  # (transaction, payout), decoded from the PaidOutBatch records
    assert events and all(p.fee == 500 and p.to == ben for _, p in events)
    assert usd.balance_of(ben) - ben_before == sum(p.amount for _, p in events)
    rows = studio.get_by_test_id("payout-row")
    expect(rows).to_have_count(len(events), timeout=20_000)
    shown = {rows.nth(i).get_attribute("data-tx") for i in range(len(events))}
    reveal(card)
    shot(studio, "22-studio-payouts", top=False)
    assert shown == {tx for tx, _ in events}

    studio.get_by_test_id("payout-opt-out").click()
    expect(studio.get_by_test_id("payout-status")).to_have_text("off", timeout=20_000)
    expect(studio.get_by_test_id("payout-next")).to_have_text("—")
    assert wallet_signatures(studio).count("PayoutSchedule") == 2
    shot(studio, "22-studio-payouts-off", top=False)
    assert "eth_sendTransaction" not in studio.evaluate("window.__csWallet.calls")
    studio.context.close()


def test_a_relay_raising_its_fee_after_showing_it_gets_nothing_signed(browser: Any, stack: Stack) -> None:
    """The relay quotes 0.01 mUSD, then asks more when the listener presses Open: the page refuses before any
    signature (the signed maxFee is the fee that was shown) and no channel is opened."""
    w3 = stack.web3()
    usd = TokenClient(w3, stack.deployment.stablecoin)
    who = stack.address("listener2")
    before = usd.balance_of(who)
    page = open_page(browser, stack, "listener2")
    raised = {"on": False}

    def quote(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        route.fulfill(response=response, json={**body, "fee": str(int(body["fee"]) * 50)} if raised["on"] else body)

    page.route(re.compile(r".*/api/v1/onboard/quote$"), quote)
    page.reload()
    connect(page)
    page.get_by_test_id("token-mUSD").click()
    page.get_by_test_id("method-gasless").click()  # a wallet with ETH may choose the gas-free way too
    expect(page.get_by_test_id("gasless-fee")).to_contain_text("0.01 mUSD")
    expect(page.get_by_test_id("gasless-fee")).not_to_contain_text("no ETH")
    raised["on"] = True
    page.get_by_test_id("deposit-input").fill("20")
    page.get_by_test_id("open-channel").click()
    expect(page.locator("[data-testid=banner][data-code=fee_above_max]")).to_be_visible()
    assert wallet_signatures(page) == []
    assert usd.balance_of(who) == before
    assert stack.get(f"/api/v1/listeners/{who}/channels")["channels"] == []
    page.context.close()
