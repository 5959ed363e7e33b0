"""The web player under its Content-Security-Policy, and where its session keys live (review issue 8, finding 7).

Real stack (anvil, contracts, relay serving frontend/) and Debian's Chromium, like test_player.py; a module of
its own so that its chain and roles are fresh.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from chainstream.chain.contracts import ChannelsClient
from tests.e2e.stack import Stack
from tests.e2e.test_player import channel_of, connect, eth, eventually, expect, open_page, play, wait_history

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]

SESSION_KEYS_JS = "Object.keys(localStorage).filter(k => k.startsWith('chainstream.session.'))"


def test_session_keys_are_short_lived_capped_and_deleted_on_disconnect_and_close_under_the_csp(
    browser: Any, stack: Stack
) -> None:
    """Whoever copies the browser profile gets the session keys in localStorage: they last a day by default, may
    sign at most the opening deposit, and are gone after a disconnect or a close; the page runs with the CSP on."""
    page = open_page(browser, stack, "newcomer")
    policy = page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
    assert "script-src 'self' 'sha256-" in policy and "frame-ancestors 'none'" in policy
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    channels = ChannelsClient(stack.web3(), stack.deployment.channels)
    state = channels.get_channel(bytes.fromhex(cid[2:]))
    assert abs(state.session_expiry - (stack.web3().eth.get_block("latest")["timestamp"] + 86_400)) < 600, "one day"
    eventually(lambda: stack.get(f"/api/v1/channels/{cid}")["sessionCap"] == str(eth("0.01")), 20, "session cap")
    play(page, "Morning Modem")
    wait_history(stack, cid, 1)
    assert len(page.evaluate(SESSION_KEYS_JS)) == 1

    # Disconnect: no key stays behind.
    page.get_by_test_id("wallet-button").click()
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_test_id("connect-wallet")).to_be_visible()
    assert page.evaluate(SESSION_KEYS_JS) == []

    # Back again: the channel needs a new key for this browser (one transaction); closing deletes that one too.
    connect(page)
    card = page.get_by_test_id("channel-card")
    expect(card).to_contain_text("not in this browser", timeout=20_000)
    card.get_by_role("button", name="Authorise this browser").click()
    expect(card).not_to_contain_text("not in this browser", timeout=20_000)
    assert len(page.evaluate(SESSION_KEYS_JS)) == 1
    page.get_by_test_id("close-menu").click()
    page.get_by_test_id("close-coop").click()
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    deadline = time.monotonic() + 10
    while page.evaluate(SESSION_KEYS_JS) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert page.evaluate(SESSION_KEYS_JS) == []
    # No CSP violation (Chromium logs "Refused to …" as a console error) and no other error on the way.
    assert not page.errors, page.errors
    page.context.close()
