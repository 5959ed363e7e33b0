"""The web player on a phone (390x844, touch) against the real dev stack: a navigation that fits, no sideways
scrolling on any screen, tap targets of at least 44 px, a player bar that keeps play/pause, progress and tip, and
one tap on a track plays it (paid by the browser's session key as on a desktop)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import PHONE, wallet_page
from tests.e2e.stack import Stack
from tests.e2e.test_player import channel_of, connect, expect, shot, wait_history

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]

MIN_TAP = 44  # px: Apple's HIG and WCAG 2.5.5's target size

OVERFLOW = """() => {
  const main = document.querySelector('.main');
  return {
    page: [document.scrollingElement.scrollWidth, window.innerWidth],
    main: [main.scrollWidth, main.clientWidth],
    wide: [...document.querySelectorAll('.main *')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 && el.getClientRects().length
        && !el.closest('.tbl-wrap') && getComputedStyle(el).position !== 'fixed')
      .slice(0, 5).map((el) => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right)),
  };
}"""


def phone_page(browser: Any, stack: Stack, role: str, path: str = "/") -> Any:
    return wallet_page(
        browser,
        stack.url + path,
        rpc_url=stack.node.url,
        account=stack.address(role),
        chain_id=stack.deployment.chain_id,
        phone=True,
    )


def assert_fits(page: Any, screen: str) -> None:
    """Nothing on this screen is wider than the phone: neither the page nor the scrolling main column scrolls sideways."""
    page.wait_for_timeout(300)
    got = page.evaluate(OVERFLOW)
    assert got["page"][0] <= got["page"][1], f"{screen}: the page scrolls sideways {got}"
    assert got["main"][0] <= got["main"][1], f"{screen}: the main column scrolls sideways {got}"
    assert not got["wide"], f"{screen}: elements reach past the right edge {got}"


def assert_tappable(locator: Any, what: str) -> None:
    """Visible, wholly inside the viewport, and at least 44x44 px."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None, what
    assert box["x"] >= 0 and box["y"] >= 0, f"{what} starts off screen: {box}"
    assert box["x"] + box["width"] <= PHONE["width"] + 0.5, f"{what} ends past the right edge: {box}"
    assert box["y"] + box["height"] <= PHONE["height"] + 0.5, f"{what} ends below the screen: {box}"
    assert box["width"] >= MIN_TAP and box["height"] >= MIN_TAP, f"{what} is smaller than {MIN_TAP} px: {box}"


def test_phone_navigation_fits_and_every_link_is_a_tap_target(browser: Any, stack: Stack) -> None:
    """Listen, Activity and Studio are each one tap away on a phone, and no screen scrolls sideways."""
    page = phone_page(browser, stack, "newcomer")
    expect(page.get_by_test_id("track")).to_have_count(4)
    nav = page.get_by_role("navigation", name="Main")
    links = nav.get_by_role("link")
    expect(links).to_have_count(3)
    for name in ("Listen", "Activity", "Studio"):
        assert_tappable(nav.get_by_role("link", name=name), f"the {name} tab")
    assert_fits(page, "catalog")
    # the player bar keeps its controls on a phone
    for testid in ("player-toggle", "player-prev", "player-next", "player-tip"):
        assert_tappable(page.get_by_test_id(testid), testid)
    expect(page.get_by_test_id("player-seek")).to_be_attached()
    # a track's play button shows without hover (there is none on a touch screen)
    fab = page.get_by_test_id("track").first.get_by_test_id("play")
    expect(fab).to_have_css("opacity", "1")

    nav.get_by_role("link", name="Activity").tap()
    expect(page.get_by_test_id("activity")).to_be_visible()
    expect(nav.get_by_role("link", name="Activity")).to_have_attribute("aria-current", "page")
    assert_fits(page, "activity")
    nav.get_by_role("link", name="Studio").tap()
    expect(page.get_by_role("heading", name="Your artist studio")).to_be_visible()
    assert_fits(page, "studio")
    nav.get_by_role("link", name="Listen").tap()
    expect(page.get_by_test_id("catalog")).to_be_visible()
    page.get_by_test_id("track").first.get_by_test_id("artist-link").tap()
    expect(page.get_by_test_id("artist-tracks")).to_be_visible()
    assert_fits(page, "artist page")
    page.context.close()


def test_phone_one_tap_plays_after_opening_a_channel(browser: Any, stack: Stack) -> None:
    """On a phone the listener connects, opens a channel and starts a track with a single tap on it."""
    page = phone_page(browser, stack, "listener")
    connect(page)
    assert_fits(page, "catalog, connected")
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").tap()
    cid = channel_of(page)
    assert_fits(page, "catalog with a channel")
    shot(page, "phone-01-catalog")

    page.get_by_test_id("track").first.get_by_test_id("play").tap()
    wait_history(stack, cid, 1)
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "playing", timeout=15_000)
    expect(page.get_by_test_id("player-title")).to_have_text("Morning Modem")
    assert_tappable(page.get_by_test_id("player-toggle"), "play/pause while playing")
    shot(page, "phone-02-now-playing")
    page.get_by_test_id("player-toggle").tap()
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "paused")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Studio").tap()
    expect(page.get_by_test_id("earnings")).to_be_visible(timeout=30_000)
    assert_fits(page, "studio, connected")
    page.context.close()

    # The artist paid for that play (Ada owns Morning Modem) checks her studio on her phone: the earnings table
    # scrolls inside its card, the page does not.
    studio = phone_page(browser, stack, "ada", "/#/studio")
    connect(studio)
    expect(studio.get_by_test_id("earnings-table")).to_be_visible(timeout=30_000)
    assert_fits(studio, "studio with earnings")
    shot(studio, "phone-03-studio")
    studio.context.close()
