"""A music player's basics in the web player, in Chromium against the real dev stack: search, artist pages, a queue
with next / previous, seek and volume, keyboard shortcuts, Escape closing dialogs, wallet transactions shown as
pending -> confirmed or failed with the reason, activity with settlement status, and "spent this session"
surviving a reload. Every play here is a real payment the relay accepts (checked in its history)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_player import channel_of, connect, eventually, expect, history, open_page, tile, wait_history

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]


def audio(page: Any, prop: str) -> Any:
    return page.evaluate(f"document.getElementById('audio').{prop}")


def titles(stack: Stack, cid: str) -> list[str]:
    """The tracks of the channel's accepted payments, oldest first, by catalog title."""
    names = {t["trackId"]: t["title"] for t in stack.get("/api/v1/catalog")["tracks"]}
    return [names.get(i["target"], i["target"]) for i in history(stack, cid)]


def test_search_artist_page_queue_seek_volume_keys_transactions_activity(browser: Any, stack: Stack) -> None:
    """A listener searches, visits an artist, queues, skips, seeks, uses the keyboard and sees every transaction."""
    page = open_page(browser, stack, "listener")
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)

    # Search: every word must match a title or an artist.
    search = page.get_by_test_id("catalog-search")
    search.fill("drift")
    expect(page.locator("[data-testid=track]:visible")).to_have_count(1)
    expect(page.locator("[data-testid=track]:visible")).to_have_attribute("data-title", "Per-Second Drift")
    search.fill("no such song")
    expect(page.locator("[data-testid=track]:visible")).to_have_count(0)
    expect(page.get_by_test_id("no-match")).to_contain_text("no such song")
    search.fill("")
    expect(page.locator("[data-testid=track]:visible")).to_have_count(4)

    # A queue: "+ Queue" one track, play another, Next plays the queued one (each play paid).
    tile(page, "Gas Price Blues").get_by_test_id("queue-add").click()
    expect(page.get_by_test_id("player-queue")).to_have_attribute("data-count", "1")
    tile(page, "Morning Modem").get_by_test_id("play").click()
    wait_history(stack, cid, 1)
    expect(page.get_by_test_id("player-title")).to_have_text("Morning Modem")
    page.get_by_test_id("player-next").click()
    expect(page.get_by_test_id("player-title")).to_have_text("Gas Price Blues")
    expect(page.get_by_test_id("player-queue")).to_have_attribute("data-count", "0")
    wait_history(stack, cid, 2)
    assert titles(stack, cid) == ["Morning Modem", "Gas Price Blues"]

    # Seek within the paid play, then Previous (at the start of a track) goes back to the one before.
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "playing", timeout=15_000)
    page.get_by_test_id("player-toggle").click()
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "paused")
    duration = eventually(lambda: (d := audio(page, "duration")) and d == d and d, what="the track's duration")
    page.get_by_test_id("player-seek").fill("500")
    assert audio(page, "currentTime") == pytest.approx(duration / 2, abs=0.5)
    page.get_by_test_id("player-seek").fill("0")
    assert audio(page, "currentTime") == pytest.approx(0, abs=0.3)
    page.get_by_test_id("player-prev").click()
    expect(page.get_by_test_id("player-title")).to_have_text("Morning Modem")
    wait_history(stack, cid, 3)
    assert titles(stack, cid) == ["Morning Modem", "Gas Price Blues", "Morning Modem"]

    # Keyboard: Space pauses and resumes, arrows seek and set the volume (not while typing in a field).
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "playing", timeout=15_000)
    page.locator(".hero h1").click()  # focus the page, not a control
    page.keyboard.press(" ")
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "paused")
    at = audio(page, "currentTime")
    page.keyboard.press("ArrowRight")
    assert audio(page, "currentTime") == pytest.approx(min(at + 5, duration - 0.25), abs=0.3)
    page.keyboard.press("ArrowLeft")
    assert audio(page, "currentTime") == pytest.approx(max(0, min(at + 5, duration - 0.25) - 5), abs=0.3)
    page.get_by_test_id("player-volume").fill("50")
    assert audio(page, "volume") == pytest.approx(0.5)
    page.locator(".hero h1").click()
    page.keyboard.press("ArrowDown")
    assert audio(page, "volume") == pytest.approx(0.4)
    search.click()
    page.keyboard.press(" ")  # typing a space in the search box is not a shortcut
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "paused")
    search.fill("")
    page.locator(".hero h1").click()
    page.keyboard.press(" ")
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "playing", timeout=15_000)
    page.keyboard.press(" ")
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "paused")

    # Escape closes a dialog.
    page.get_by_test_id("player-tip").click()
    expect(page.get_by_test_id("tip-amount")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("tip-amount")).to_have_count(0)

    # Wallet transactions: a rejected top-up is shown failed with the reason, a confirmed one as confirmed.
    page.get_by_test_id("top-up").click()
    page.get_by_test_id("topup-input").fill("0.002")
    page.evaluate("window.__csWallet.rejectNext = true")
    page.get_by_test_id("topup").click()
    failed = page.locator("[data-testid=tx][data-status=failed]", has_text="Top up")
    expect(failed).to_be_visible()
    expect(failed).to_contain_text("you rejected the request in your wallet")
    page.get_by_test_id("topup").click()
    done = page.locator("[data-testid=tx][data-status=confirmed]", has_text="Top up")
    expect(done).to_be_visible()
    expect(done).to_contain_text("0x")
    expect(page.get_by_test_id("remaining")).to_contain_text("0.01")

    # The artist page: the tile's artist link lists the artist's tracks.
    owner = tile(page, "Morning Modem").get_attribute("data-owner")
    tile(page, "Morning Modem").get_by_test_id("artist-link").click()
    expect(page).to_have_url(re.compile(f"#/artist/{owner}$"))
    artist = page.get_by_test_id("artist-page")
    expect(artist).to_have_attribute("data-address", owner)
    mine = [t["title"] for t in stack.get("/api/v1/catalog")["tracks"] if t["owner"] == owner]
    expect(page.get_by_test_id("artist-tracks").get_by_test_id("track")).to_have_count(len(mine))
    expect(page.get_by_test_id("artist-tracks")).to_contain_text("Morning Modem")

    # Activity: every payment with its settlement status; the relay settles them by age (5 s here).
    spent_text = page.get_by_test_id("session-spend").inner_text()
    page.get_by_role("link", name="Activity").click()
    rows = page.get_by_test_id("activity").get_by_test_id("history-item")
    expect(rows).to_have_count(len(history(stack, cid)))
    expect(page.get_by_test_id("activity-session")).to_have_text(spent_text)
    eventually(lambda: stack.get(f"/api/v1/channels/{cid}")["settled"] != "0", 30, "a settlement")
    expect(page.locator("[data-testid=history-item][data-status=settled]").first).to_be_visible(timeout=20_000)

    # "Spent this session" survives a reload of the page (the wallet reconnects by itself).
    page.reload()
    expect(page.get_by_test_id("channel-card").or_(page.get_by_test_id("activity"))).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("session-spend")).to_have_text(spent_text, timeout=30_000)
    assert audio(page, "volume") == pytest.approx(0.4)
    assert not [e for e in page.errors if "402" not in e], page.errors
    page.context.close()


def test_refused_tip_keeps_the_message_and_relay_down_is_said_as_relay_down(browser: Any, stack: Stack) -> None:
    """A tip the relay refuses leaves the dialog open with the typed message; a relay that stops answering is
    named as such (not as a track without audio), and that banner goes once the relay answers again."""
    page = open_page(browser, stack, "buyer")
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.005")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)

    tile(page, "Morning Modem").get_by_test_id("tip").click()
    page.get_by_test_id("tip-amount").fill("1")  # more than the channel holds
    page.get_by_test_id("tip-message").fill("for the bridge at 2:10")
    page.get_by_test_id("tip-send").click()
    problem = page.get_by_test_id("tip-error")
    expect(problem).to_be_visible()
    expect(problem).to_have_attribute("data-code", "insufficient_deposit")
    expect(problem).to_contain_text("Not enough left in your channel")
    expect(page.get_by_test_id("tip-message")).to_have_value("for the bridge at 2:10")
    page.get_by_test_id("tip-amount").fill("0.0001")
    page.get_by_test_id("tip-send").click()
    expect(page.get_by_test_id("tip-message")).to_have_count(0)
    tip = wait_history(stack, cid, 1)[-1]
    assert tip["kind"] == "tip" and tip["memo"] == "for the bridge at 2:10"

    # The relay stops answering (the browser's requests to it fail at the network level).
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    tile(page, "Gas Price Blues").get_by_test_id("play").click()
    down = page.locator("[data-testid=banner][data-code=relay_unreachable]")
    expect(down).to_be_visible()
    expect(down).to_contain_text("The relay is unreachable")
    expect(page.locator("[data-testid=banner]", has_text="No audio")).to_have_count(0)
    expect(page.locator("[data-testid=banner]", has_text="Could not load the audio")).to_have_count(0)
    page.unroute("**/api/v1/**")
    expect(down).to_have_count(0, timeout=15_000)  # the next answer from the relay clears it
    tile(page, "Gas Price Blues").get_by_test_id("play").click()
    wait_history(stack, cid, 2)
    page.context.close()


def test_a_pending_cooperative_close_is_not_shown_as_a_unilateral_one(browser: Any, stack: Stack) -> None:
    """The listener rejects the cooperative close transaction after the relay co-signed: the card says the close
    is cooperative and pending (no challenge window), and sending it again closes the channel."""
    page = open_page(browser, stack, "listener2")
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.005")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    tile(page, "Morning Modem").get_by_test_id("play").click()
    wait_history(stack, cid, 1)

    page.get_by_test_id("close-menu").click()
    page.evaluate("window.__csWallet.rejectNext = true")
    page.get_by_test_id("close-coop").click()
    expect(page.locator("[data-testid=tx][data-status=failed]", has_text="Close channel")).to_be_visible()
    card = page.get_by_test_id("channel-card")
    expect(card).to_have_attribute("data-status", "closing", timeout=15_000)  # the relay stopped taking payments
    expect(page.get_by_test_id("coop-pending")).to_be_visible()
    expect(page.get_by_test_id("countdown")).to_have_count(0)
    expect(page.get_by_test_id("withdraw")).to_have_count(0)
    page.get_by_test_id("coop-retry").click()
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("closed-summary")).to_contain_text("cooperative")
    page.context.close()
