"""The artist studio in Chromium against the dev stack: an untitled track is refused next to its field before any
wallet prompt, collaborator shares always add up to 100 % (join with an equal share, edit one and the others
rebalance, leave and give it back; the platform fee stays off the top), and the registration goes through the
artist model with its transaction shown confirmed, the split on chain exactly as shown."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_player import _track, connect, eventually, expect, open_page, reveal

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]


def pcts(split: Any) -> list[str]:
    return [i.input_value() for i in split.get_by_test_id("split-pct").all()]


def test_untitled_refused_and_shares_rebalance_to_100_percent(browser: Any, stack: Stack) -> None:
    """An artist registers a track with two collaborators and a fee, after the studio refused it untitled."""
    cleo, ben, label, platform = (stack.address(r) for r in ("cleo", "ben", "label", "platform"))
    page = open_page(browser, stack, "cleo", "/#/studio")
    connect(page)
    register = page.get_by_test_id("register")
    expect(register).to_be_visible()
    reveal(register)
    track_id = "0x" + os.urandom(32).hex()
    register.get_by_test_id("content-hash").fill(track_id)
    register.get_by_test_id("price-play").fill("0.00001")

    # Untitled: refused next to the title, nothing sent to the wallet.
    sent_before = page.evaluate("window.__csWallet.calls").count("eth_sendTransaction")
    register.get_by_test_id("register-track").click()
    problem = register.get_by_test_id("title-problem")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("Give the track a title")
    expect(register.get_by_test_id("track-title")).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("window.__csWallet.calls").count("eth_sendTransaction") == sent_before
    register.get_by_test_id("track-title").fill("Tidal Locks")
    expect(problem).to_be_hidden()

    # Collaborators: equal shares on joining, proportional rebalancing on editing and leaving.
    split = register.get_by_test_id("split-editor")
    status = split.get_by_test_id("split-status")
    split.get_by_test_id("add-collaborator").click()
    assert pcts(split) == ["50", "50"]
    split.get_by_test_id("add-collaborator").click()
    assert pcts(split) == ["33.34", "33.33", "33.33"]
    split.get_by_test_id("split-pct").nth(1).fill("50")  # a collaborator's share: the primary takes the rest
    assert pcts(split) == ["16.67", "50", "33.33"]
    expect(status).to_contain_text("10000 / 10000 bps")
    split.get_by_test_id("remove-collaborator").nth(1).click()  # the second collaborator leaves
    assert pcts(split) == ["25", "75"]
    split.get_by_test_id("add-collaborator").click()
    assert pcts(split) == ["16.67", "50", "33.33"]
    split.get_by_test_id("split-pct").nth(0).fill("40")  # the primary's share: the others rebalance in proportion
    assert pcts(split) == ["40", "36", "24"]
    # a share that is not a percentage is flagged, and the others are left alone
    split.get_by_test_id("split-pct").nth(2).fill("abc")
    expect(status).to_have_attribute("data-valid", "false")
    assert pcts(split)[:2] == ["40", "36"]
    split.get_by_test_id("split-pct").nth(2).fill("30")
    assert pcts(split) == ["34", "36", "30"]
    split.get_by_test_id("split-pct").nth(1).fill("30")
    assert pcts(split) == ["40", "30", "30"]
    split.get_by_test_id("split-address").nth(1).fill(ben)
    split.get_by_test_id("split-address").nth(2).fill(label)
    # the platform fee is off the top: turning it on leaves the shares at 100 %
    split.get_by_test_id("fee-toggle").check()
    split.get_by_test_id("fee-address").fill(platform)
    split.get_by_test_id("fee-pct").fill("5")
    assert pcts(split) == ["40", "30", "30"]
    expect(status).to_have_attribute("data-valid", "true")
    expect(status).to_contain_text("10000 / 10000 bps")

    register.get_by_test_id("register-track").click()
    expect(page.locator("[data-testid=tx][data-status=confirmed]", has_text="Register “Tidal Locks”")).to_be_visible()
    track = eventually(lambda: _track(stack, track_id), 20, "the relay to see the new track")
    assert track["title"] == "Tidal Locks" and track["owner"] == cleo
    assert track["split"] == {
        "recipients": [cleo, ben, label],
        "bps": [4000, 3000, 3000],
        "feeRecipient": platform,
        "feeBps": 500,
    }
    expect(page.locator("[data-testid=my-track][data-title='Tidal Locks']")).to_be_visible(timeout=15_000)
    assert not page.errors, page.errors
    page.context.close()
