"""The web player end to end, in a real browser (Debian's Chromium via Playwright) against a real relay and anvil.

The listener's wallet is a test wallet injected into the page (EIP-6963 + EIP-1193 over an anvil dev account).
Everything else is the product: the relay serving frontend/, vouchers signed by the browser's session key,
settlement by the relay's settler, the artist's claim and the listener's close, all checked on-chain too.
Screenshots of the main screens go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import time
import wave
from collections.abc import Callable
from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest

from chainstream.chain.contracts import ChannelsClient, ChannelStatus, TokenClient
from chainstream.protocol.hashing import keccak
from tests.e2e.browser import screenshot, wallet_page
from tests.e2e.stack import CHALLENGE_PERIOD, Stack

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]

GWEI = 10**9
USD = 10**6


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    pw_expect.set_options(timeout=15_000)  # transactions are mined at once, but receipts are polled
    return pw_expect(locator)


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def open_page(browser: Any, stack: Stack, role: str, path: str = "/", start_chain_id: int | None = None) -> Any:
    return wallet_page(
        browser,
        stack.url + path,
        rpc_url=stack.node.url,
        account=stack.address(role),
        chain_id=stack.deployment.chain_id,
        start_chain_id=start_chain_id,
    )


def wallet_signatures(page: Any, *, reads: bool = False) -> list[str]:
    """The primaryType of each EIP-712 signature the page asked the wallet for, in order; read tokens
    (ReadAccess, a sign-in to read the account's own data) are left out unless `reads`."""
    types = []
    for request in page.evaluate("window.__csWallet.requests"):
        if request["method"] == "eth_signTypedData_v4":
            document = request["params"][1]
            types.append((json.loads(document) if isinstance(document, str) else document)["primaryType"])
    return types if reads else [t for t in types if t != "ReadAccess"]


def connect(page: Any) -> None:
    """Connect the wallet and wait until the page knows the account's channels (or asks for another network)."""
    page.get_by_test_id("connect-wallet").click()
    if "#/studio" in page.url:
        return
    ready = page.locator(
        "[data-testid=channel-card][data-status=none], [data-testid=channel-card][data-status=open], "
        "[data-testid=channel-card][data-status=closing], [data-testid=channel-card][data-status=closed], "
        "[data-testid=switch-network]"
    )
    expect(ready.first).to_be_visible(timeout=30_000)


def tile(page: Any, title: str) -> Any:
    return page.locator(f"[data-testid=track][data-title='{title}']")


def play(page: Any, title: str) -> None:
    tile(page, title).get_by_test_id("play").click()  # the tile's play button (shown on hover; click scrolls to it)


def history(stack: Stack, channel_id: str) -> list[dict[str, Any]]:
    return list(reversed(stack.get(f"/api/v1/channels/{channel_id}/history?limit=500")["items"]))


def wait_history(stack: Stack, channel_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    return eventually(
        lambda: (h := history(stack, channel_id)) and len(h) >= count and h,
        timeout,  # type: ignore[return-value]
        f"{count} payments on {channel_id}",
    )


def reveal(locator: Any) -> None:
    """Scroll to an element that may be re-rendered meanwhile (retry instead of failing on a detached node)."""
    for _ in range(20):
        try:
            locator.scroll_into_view_if_needed(timeout=2_000)
            return
        except Exception:  # noqa: BLE001 - detached by a re-render: look it up again
            time.sleep(0.2)
    locator.scroll_into_view_if_needed()


def shot(page: Any, name: str, *, top: bool = True) -> None:
    """Screenshot after animations settle; listener screens from the top of the page."""
    if top:
        page.evaluate("document.querySelector('.main').scrollTo(0, 0)")
    page.wait_for_timeout(700)
    screenshot(page, name)


def channel_of(page: Any) -> str:
    card = page.get_by_test_id("channel-card")
    # the open transaction, then the page reads the new channel back from the relay and verifies it (read tokens,
    # history replay, caps): on a loaded 2-core machine this has taken over 30 s (seen as a flaky "Working…")
    expect(card).to_have_attribute("data-status", "open", timeout=90_000)
    return str(card.get_attribute("data-channel-id"))


def eth(text: str) -> int:
    return int(Decimal(text) * 10**18)


def wav_bytes(seconds: float = 1.0, freq: float = 330.0) -> bytes:
    import math
    import struct

    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(int(rate * seconds))
    )
    out = BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def test_listen_tip_cap_settle_claim_and_close(browser: Any, stack: Stack) -> None:
    """Connect (wrong chain first), deposit ETH, play three tracks (one per second), tip, hit the daily cap;
    the relay settles; the artist sees pending -> settled and claims; the listener closes cooperatively."""
    w3 = stack.web3()
    channels = ChannelsClient(w3, stack.deployment.channels)
    listener = stack.address("listener")
    ada = stack.address("ada")

    # The artist (Ada: primary artist of Morning Modem, collaborator on Per-Second Drift) watches her studio.
    studio = open_page(browser, stack, "ada", "/#/studio")
    connect(studio)
    expect(studio.get_by_test_id("earnings")).to_be_visible()
    expect(studio.get_by_test_id("earned-total")).to_have_text("0 ETH")

    # The listener's wallet starts on the wrong chain: the app says so and switches it.
    page = open_page(browser, stack, "listener", start_chain_id=1)
    expect(page.get_by_test_id("track")).to_have_count(4)
    shot(page, "01-catalog")
    connect(page)
    wrong = page.locator("[data-testid=banner][data-code=wrong_network]")
    expect(wrong).to_be_visible()
    expect(page.get_by_test_id("network")).to_contain_text("Wrong network")
    shot(page, "02-wrong-network")
    wrong.get_by_role("button", name=re.compile("Switch to")).click()
    expect(page.get_by_test_id("network")).to_contain_text("31337")
    expect(wrong).to_have_count(0)

    # Open an ETH channel; the browser creates the session key and authorises it in the open call.
    expect(page.get_by_test_id("channel-card")).to_have_attribute("data-status", "none")
    page.get_by_test_id("deposit-input").fill("0.01")
    shot(page, "02b-open-channel")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    state = channels.get_channel(bytes.fromhex(cid[2:]))
    assert state.payer == listener and state.deposit == eth("0.01")
    stored = page.evaluate(f"localStorage.getItem(Object.keys(localStorage).find(k => k.endsWith('{cid}')))")
    assert stored and state.session_key.lower() in stored.lower(), "the session key lives in this browser"
    expect(page.get_by_test_id("remaining")).to_have_text("0.01")

    # Play 1: a flat per-play track, paid at start.
    play(page, "Morning Modem")
    wait_history(stack, cid, 1)
    expect(page.get_by_test_id("spent")).to_have_text("0.00002")
    expect(page.get_by_test_id("history-item").first).to_have_attribute("data-kind", "play")
    # ...and the artist sees it at once, pending settlement
    expect(studio.get_by_test_id("earned-pending")).not_to_have_text("0 ETH", timeout=10_000)
    expect(studio.locator("[data-testid=earnings-row][data-title='Morning Modem']")).to_be_visible()
    shot(studio, "03-studio-pending", top=False)

    # Play 2: stream-to-own (first play at the base price).
    play(page, "Stream to Own")
    wait_history(stack, cid, 2)

    # Play 3: metered per second while it plays (a voucher every 5 s, the rest at the end).
    play(page, "Per-Second Drift")
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "playing", timeout=10_000)
    page.wait_for_timeout(6_500)
    shot(page, "04-playing-per-second")
    flow = page.get_by_test_id("money-flow")
    expect(flow).to_contain_text("Per-Second Drift")
    expect(flow).to_contain_text("Platform fee")
    reveal(flow)
    shot(page, "04b-money-flow", top=False)
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "ended", timeout=30_000)
    items = wait_history(stack, cid, 4)
    eventually(
        lambda: sum(i["units"] for i in history(stack, cid) if i["kind"] == "seconds") >= 10,
        10,
        "the last seconds voucher",
    )
    items = history(stack, cid)
    seconds = [i for i in items if i["kind"] == "seconds"]
    assert len(seconds) >= 2 and 10 <= sum(i["units"] for i in seconds) <= 12, seconds
    assert all(int(i["amount"]) == 2_000 * GWEI * i["units"] for i in seconds)
    # The audio came from the relay through MSE, segment by segment against the grants of those payments.
    (drift,) = [t for t in stack.get(f"/api/v1/channels/{cid}/deliveries")["tracks"] if t["secondsPaid"]]
    assert drift["secondsDeliveredMetered"] == pytest.approx(12.0, abs=0.1), drift
    assert drift["secondsPaid"] == sum(i["units"] for i in seconds)
    # ...and the artist's dashboard (ada: a collaborator on the track) shows seconds paid next to seconds delivered
    drift_row = studio.locator("[data-testid=earnings-row][data-title='Per-Second Drift']")
    expect(drift_row.get_by_test_id("seconds-paid")).to_have_text(str(drift["secondsPaid"]))
    expect(drift_row.get_by_test_id("seconds-delivered")).to_have_text(re.compile(r"^12(\.0)?$"))

    # A tip with a message, split like a play.
    tile(page, "Morning Modem").get_by_test_id("tip").click()
    page.get_by_test_id("tip-amount").fill("0.0005")
    page.get_by_test_id("tip-message").fill("Great set! 🎶")
    shot(page, "05-tip", top=False)
    page.get_by_test_id("tip-send").click()
    tip = wait_history(stack, cid, len(items) + 1)[-1]
    assert tip["kind"] == "tip" and tip["memo"] == "Great set! 🎶" and tip["amount"] == str(eth("0.0005"))
    expect(page.get_by_test_id("history-item").first).to_have_attribute("data-kind", "tip")

    # The spend meters agree with the relay.
    summary = stack.get(f"/api/v1/channels/{cid}")
    spent = sum(int(i["amount"]) for i in history(stack, cid))
    assert int(summary["spent"]) == spent == int(summary["spentToday"])
    expect(page.get_by_test_id("spent")).to_have_text(
        format(Decimal(spent).scaleb(-18).normalize(), "f")[:8].rstrip("0")
    )

    # A daily cap just above today's spending: the next play is refused, with the relay's reason shown.
    cap = spent + 10_000 * GWEI  # Morning Modem costs 20,000 gwei
    page.get_by_test_id("set-cap").click()
    page.get_by_test_id("cap-input").fill(format(Decimal(cap).scaleb(-18).normalize(), "f"))
    page.get_by_test_id("cap-save").click()
    expect(page.get_by_test_id("daily-cap")).to_contain_text("daily cap")
    assert stack.get(f"/api/v1/channels/{cid}")["dailyCap"] == str(cap)
    play(page, "Morning Modem")
    refused = page.locator("[data-testid=banner][data-code=daily_cap_exceeded]")
    expect(refused).to_be_visible()
    expect(refused).to_contain_text("Daily spending cap reached")
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "paused")
    shot(page, "06-cap-reached")
    assert len(history(stack, cid)) == len(items) + 1, "the refused play was not accepted"
    # Every voucher was signed in the browser by the session key: the wallet never had to sign one.
    calls = page.evaluate("window.__csWallet.calls")
    assert not wallet_signatures(page) and calls.count("eth_sendTransaction") == 1, calls
    # Reads of the channel were signed by the session key too: the wallet signed one read token, at connect
    # (no session key in this browser yet), to list the account's channels.
    assert wallet_signatures(page, reads=True).count("ReadAccess") <= 1

    # The relay settles on its own; the artist's earnings move from pending to settled.
    eventually(lambda: stack.get(f"/api/v1/channels/{cid}")["settled"] == str(spent), 30, "settlement")
    assert channels.get_channel(bytes.fromhex(cid[2:])).settled == spent
    expect(studio.get_by_test_id("earned-pending")).to_have_text("0 ETH", timeout=15_000)
    expect(studio.get_by_test_id("earned-settled")).not_to_have_text("0 ETH")
    claimable = channels.contract.functions.claimable(ada, "0x" + "00" * 20).call()
    assert claimable > 0
    reveal(studio.get_by_test_id("claimable-ETH"))
    expect(studio.get_by_test_id("claim-ETH")).to_be_enabled(timeout=10_000)
    shot(studio, "07-studio-settled", top=False)

    # The CSV export link serves the same per-track earnings.
    import httpx

    expect(studio.get_by_test_id("csv-export")).to_have_attribute("href", re.compile("readToken="))
    csv_href = studio.get_by_test_id("csv-export").get_attribute("href")
    csv_text = httpx.get(stack.url + csv_href, timeout=10).text
    assert csv_text.splitlines()[0].startswith("date,channel,seq,track,title,kind,units,amount,token,status")
    assert "Morning Modem" in csv_text and "Per-Second Drift" in csv_text

    # Ada claims on-chain.
    before = w3.eth.get_balance(ada)
    studio.get_by_test_id("claim-ETH").click()
    expect(studio.get_by_test_id("claim-result-ETH")).to_contain_text("Claimed")
    assert channels.contract.functions.claimable(ada, "0x" + "00" * 20).call() == 0
    assert w3.eth.get_balance(ada) > before + claimable - 10**15  # minus gas
    expect(studio.get_by_test_id("earned-claimed")).not_to_have_text("0 ETH", timeout=15_000)
    shot(studio, "08-studio-claimed", top=False)

    # The listener closes cooperatively and gets the remainder back at once.
    before = w3.eth.get_balance(listener)
    page.get_by_test_id("close-menu").click()
    page.get_by_test_id("close-coop").click()
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    final = channels.get_channel(bytes.fromhex(cid[2:]))
    assert final.status == ChannelStatus.CLOSED and final.settled == spent
    refund = eth("0.01") - spent
    gained = w3.eth.get_balance(listener) - before
    assert refund - 10**15 < gained <= refund
    expect(page.get_by_test_id("refund")).to_contain_text(format(Decimal(refund).scaleb(-18).normalize(), "f")[:6])
    shot(page, "09-closed")
    page.get_by_role("link", name="Activity").click()
    expect(page.get_by_test_id("activity").get_by_test_id("history-item")).to_have_count(len(items) + 1)
    shot(page, "09b-activity")
    assert not [e for e in page.errors + studio.errors if "402" not in e], page.errors + studio.errors
    page.context.close()
    studio.context.close()


def test_stablecoin_permit_then_unilateral_close(browser: Any, stack: Stack) -> None:
    """mUSD with one EIP-2612 permit signature (openWithPermit), a play, then requestClose with the challenge
    window counting down, time passes on the chain, and withdraw returns the rest."""
    w3 = stack.web3()
    usd = TokenClient(w3, stack.deployment.stablecoin)
    channels = ChannelsClient(w3, stack.deployment.channels)
    who = stack.address("listener2")
    start_balance = usd.balance_of(who)

    page = open_page(browser, stack, "listener2")
    connect(page)
    page.get_by_test_id("token-mUSD").click()
    expect(page.get_by_test_id("wallet-token-balance")).to_contain_text("mUSD")
    expect(page.get_by_test_id("method-permit")).to_have_class(re.compile("on"))
    page.get_by_test_id("deposit-input").fill("20")
    shot(page, "10a-open-with-permit")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    calls = page.evaluate("window.__csWallet.calls")
    assert wallet_signatures(page) == ["Permit"] and calls.count("eth_sendTransaction") == 1, "one permit + one tx"
    assert usd.balance_of(who) == start_balance - 20 * USD
    expect(page.get_by_test_id("catalog-token")).to_contain_text("mUSD")

    play(page, "Gas Price Blues")
    item = wait_history(stack, cid, 1)[0]
    assert item["amount"] == "1500"  # $0.0015
    expect(page.get_by_test_id("spent")).to_have_text("0.0015")

    # A second tab of the same browser (same session key) pays too; the first tab's ledger is now behind the
    # relay's, so its next voucher is refused as stale, it resynchronises from the relay's state and retries.
    tab = page.context.new_page()
    tab.goto(stack.url)
    expect(tab.get_by_test_id("channel-card")).to_have_attribute("data-channel-id", cid, timeout=20_000)
    play(tab, "Stream to Own")
    wait_history(stack, cid, 2)
    tab.close()
    play(page, "Morning Modem")
    items = wait_history(stack, cid, 3)
    assert [i["title"] for i in items] == ["Gas Price Blues", "Stream to Own", "Morning Modem"]
    expect(page.get_by_test_id("spent")).to_have_text("0.0037")
    expect(page.locator("[data-testid=banner][data-code]")).to_have_count(0)

    # Another browser without the session key: vouchers are signed by the wallet itself (eth_signTypedData_v4).
    other = open_page(browser, stack, "listener2")
    connect(other)
    expect(other.get_by_test_id("channel-card")).to_have_attribute("data-channel-id", cid, timeout=20_000)
    expect(other.get_by_test_id("channel-card")).to_contain_text("not in this browser")
    play(other, "Gas Price Blues")
    wait_history(stack, cid, 4)
    assert wallet_signatures(other) == ["Voucher"]
    other.context.close()

    # Top up (approve + topUp) before closing.
    page.get_by_test_id("top-up").click()
    page.locator("[data-testid=channel-card] .inline-form input").fill("5")
    page.locator("[data-testid=channel-card] .inline-form").get_by_role("button", name="Top up").click()
    expect(page.get_by_test_id("deposit")).to_have_text("25", timeout=20_000)
    spent = sum(int(i["amount"]) for i in history(stack, cid))
    assert spent == 1500 + 200 + 2000 + 1500

    page.get_by_test_id("close-menu").click()
    page.get_by_test_id("request-close").click()
    card = page.get_by_test_id("channel-card")
    expect(card).to_have_attribute("data-status", "closing", timeout=20_000)
    expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^00:5\d:\d\d$"))
    expect(page.get_by_test_id("withdraw")).to_be_disabled()
    shot(page, "10-challenge-window")
    # the relay's watchtower settles the latest voucher inside the window
    eventually(
        lambda: channels.get_channel(bytes.fromhex(cid[2:])).settled == spent, 30, "settlement inside the window"
    )

    stack.advance(CHALLENGE_PERIOD + 5)
    expect(page.get_by_test_id("countdown")).to_have_text("Window over", timeout=15_000)
    expect(page.get_by_test_id("withdraw")).to_be_enabled()
    page.get_by_test_id("withdraw").click()
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=20_000)
    expect(page.get_by_test_id("refund")).to_have_text("24.9948 mUSD")
    assert channels.get_channel(bytes.fromhex(cid[2:])).status == ChannelStatus.CLOSED
    assert usd.balance_of(who) == start_balance - spent
    shot(page, "11-withdrawn")
    page.context.close()


def test_artist_registers_a_track_and_changes_price_and_split(browser: Any, stack: Stack) -> None:
    """Register with a content hash computed in the browser from a chosen file, a split with a collaborator and
    a platform fee (validated to 100%), then change the price and publish a new split."""
    ben, label, platform = stack.address("ben"), stack.address("label"), stack.address("platform")
    audio = wav_bytes()
    track_id = "0x" + keccak(audio).hex()

    page = open_page(browser, stack, "ben", "/#/studio")
    connect(page)
    register = page.get_by_test_id("register")
    reveal(register)
    register.get_by_test_id("audio-file").set_input_files(
        {"name": "night-bus.wav", "mimeType": "audio/wav", "buffer": audio}
    )
    expect(register.get_by_test_id("content-hash")).to_have_value(track_id)
    expect(register.get_by_test_id("track-title")).to_have_value("night bus")
    register.get_by_test_id("track-title").fill("Night Bus")
    register.get_by_test_id("price-play").fill("0.00003")
    register.get_by_test_id("price-second").fill("0.000001")

    split = register.get_by_test_id("split-editor")
    expect(split.get_by_test_id("split-address").first).to_have_value(ben)
    split.get_by_test_id("split-pct").first.fill("60")
    status = split.get_by_test_id("split-status")
    expect(status).to_have_attribute("data-valid", "false")
    expect(status).to_contain_text("6000 / 10000 bps")
    split.get_by_test_id("add-collaborator").click()
    # the collaborator joins with an equal share and the split stays at 100 %; setting one share rebalances the other
    expect(split.get_by_test_id("split-pct").nth(0)).to_have_value("50")
    expect(split.get_by_test_id("split-pct").nth(1)).to_have_value("50")
    split.get_by_test_id("split-address").nth(1).fill(label)
    split.get_by_test_id("split-pct").nth(1).fill("40")
    expect(split.get_by_test_id("split-pct").nth(0)).to_have_value("60")
    expect(status).to_contain_text("10000 / 10000 bps")
    expect(status).to_have_attribute("data-valid", "true")
    split.get_by_test_id("fee-toggle").check()
    expect(status).to_have_attribute("data-valid", "false")  # a fee needs a recipient
    split.get_by_test_id("fee-address").fill(platform)
    split.get_by_test_id("fee-pct").fill("2.5")
    expect(status).to_have_attribute("data-valid", "true")
    expect(split.get_by_test_id("split-preview")).to_contain_text("Platform")
    reveal(split)
    shot(page, "12-register-track", top=False)
    register.get_by_test_id("register-track").click()
    expect(page.locator("[data-testid=toast]").filter(has_text="registered")).to_be_visible(timeout=20_000)
    # ...and the chosen file goes to the relay (signed by the owner, with progress), which makes it playable.
    expect(register.get_by_test_id("upload-progress")).to_have_attribute("data-state", "published", timeout=30_000)
    manifest = stack.get(f"/api/v1/tracks/{track_id}/media")
    assert manifest["original"]["bytes"] == len(audio) and manifest["segments"]

    track = eventually(lambda: _track(stack, track_id), 20, "the relay to see the new track")
    assert track["title"] == "Night Bus" and track["owner"] == ben
    assert track["split"] == {"recipients": [ben, label], "bps": [6000, 4000], "feeRecipient": platform, "feeBps": 250}
    eth_terms = track["terms"]["0x0000000000000000000000000000000000000000"]
    assert eth_terms["perPlay"] == str(30_000 * GWEI) and eth_terms["perSecond"] == str(1_000 * GWEI)

    mine = page.locator("[data-testid=my-track][data-title='Night Bus']")
    expect(mine).to_be_visible(timeout=15_000)
    mine.get_by_test_id("edit-track").click()
    editor = mine.get_by_test_id("track-editor")
    editor.get_by_test_id("price-play").fill("0.00004")
    editor.get_by_test_id("save-terms").click()
    eventually(
        lambda: (
            (t := _track(stack, track_id))
            and t["terms"]["0x0000000000000000000000000000000000000000"]["perPlay"] == str(40_000 * GWEI)
        ),
        20,
        "the new price",
    )
    # The page closes the editor once its own wait for the receipt ends, which can be after the relay saw the
    # new terms: wait for that, or the next click on "Edit" lands on "Done" and the editor closes under us.
    expect(editor).to_be_hidden(timeout=20_000)

    mine.get_by_test_id("edit-track").click()
    editor = mine.get_by_test_id("track-editor")
    esplit = editor.get_by_test_id("split-editor")
    esplit.get_by_test_id("split-pct").first.fill("50")
    expect(esplit.get_by_test_id("split-pct").nth(1)).to_have_value("50")
    expect(esplit.get_by_test_id("split-status")).to_have_attribute("data-valid", "true")
    editor.get_by_test_id("save-split").click()
    updated = eventually(lambda: (t := _track(stack, track_id)) and t["splitVersion"] == 2 and t, 20, "split v2")
    assert updated["split"]["bps"] == [5000, 5000] and updated["split"]["feeBps"] == 250
    reveal(page.get_by_test_id("my-tracks"))
    shot(page, "13-my-tracks", top=False)
    assert not page.errors, page.errors
    page.context.close()


def _track(stack: Stack, track_id: str) -> dict[str, Any] | None:
    import httpx

    response = httpx.get(f"{stack.url}/api/v1/tracks/{track_id}", timeout=10)
    return response.json() if response.status_code == 200 else None


ETH_TOKEN = "0x0000000000000000000000000000000000000000"


def _earned(stack: Stack, payee: str, track_id: str) -> dict[str, Any]:
    """The payee's ETH earnings row for one track (zeros when it has none yet)."""
    rows = [
        r
        for r in stack.get(f"/api/v1/artists/{payee}/earnings")["tracks"]
        if r["token"].lower() == ETH_TOKEN and r["target"].lower() == track_id.lower()
    ]
    return rows[0] if rows else {"earned": "0", "downloads": 0, "plays": 0}


def test_buy_a_track_then_its_plays_are_free(browser: Any, stack: Stack) -> None:
    """Buy Gas Price Blues outright from its tile (one download voucher at its download price, split like a
    play); the tile says it is owned, the relay stores the purchase and the ownership, and the next play is
    accepted at no charge; the artists' earnings and the on-chain settlement count the purchase once."""
    w3 = stack.web3()
    channels = ChannelsClient(w3, stack.deployment.channels)
    ben, label, platform = stack.address("ben"), stack.address("label"), stack.address("platform")
    track_id = "0x" + stack.track_ids["Gas Price Blues"].hex()
    price = 2_000_000 * GWEI  # the track's ETH download price (seed catalog): 0.002 ETH
    fee = price * 500 // 10_000  # 5% platform fee off the top, then ben 80% / label 20%
    shares = {platform: fee, ben: (price - fee) * 8_000 // 10_000, label: (price - fee) * 2_000 // 10_000}
    before = {who: _earned(stack, who, track_id) for who in shares}
    claimable_before = {who: channels.contract.functions.claimable(who, ETH_TOKEN).call() for who in shares}

    page = open_page(browser, stack, "buyer")
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    gas = tile(page, "Gas Price Blues")
    expect(gas).to_contain_text("buy 0.002 ETH")
    buy = gas.get_by_role("button", name="Buy")
    expect(buy).to_be_visible()
    reveal(buy)
    buy.click()
    expect(page.get_by_test_id("toast").filter(has_text="You own “Gas Price Blues” now")).to_be_visible()
    expect(tile(page, "Gas Price Blues")).to_contain_text("Owned · plays free")
    expect(tile(page, "Gas Price Blues").get_by_role("button", name="Buy")).to_have_count(0)
    expect(page.get_by_test_id("spent")).to_have_text("0.002")
    latest = page.get_by_test_id("history-item").first
    expect(latest).to_have_attribute("data-kind", "download")
    expect(latest).to_contain_text("Purchase")
    shot(page, "14-bought", top=False)

    (bought,) = wait_history(stack, cid, 1)
    assert bought["kind"] == "download" and bought["target"] == track_id and bought["title"] == "Gas Price Blues"
    assert int(bought["amount"]) == price and bought["units"] == 1
    assert {k: int(v) for k, v in bought["payments"].items()} == shares
    summary = stack.get(f"/api/v1/channels/{cid}")
    assert summary["owned"] == [track_id] and int(summary["spent"]) == price

    # Owned: the play is paid by a voucher that adds nothing, and the page calls it free.
    play(page, "Gas Price Blues")
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-status", "playing", timeout=10_000)
    free = wait_history(stack, cid, 2)[-1]
    assert free["kind"] == "play" and free["target"] == track_id and free["amount"] == "0" and not free["payments"]
    assert int(free["total"]) == price
    expect(page.get_by_test_id("history-item").first).to_have_attribute("data-kind", "play")
    expect(page.get_by_test_id("history-item").first).to_contain_text("free")
    expect(page.get_by_test_id("spent")).to_have_text("0.002")
    summary = stack.get(f"/api/v1/channels/{cid}")
    assert int(summary["spent"]) == price and summary["plays"] == {track_id: 1}

    # The artists earned the purchase once (the free play added nothing), pending then settled on-chain.
    for who, share in shares.items():
        row = _earned(stack, who, track_id)
        assert int(row["earned"]) - int(before[who]["earned"]) == share, (who, row)
        assert row["downloads"] - before[who]["downloads"] == 1, (who, row)
    eventually(lambda: channels.get_channel(bytes.fromhex(cid[2:])).settled == price, 30, "settlement of the purchase")
    for who, share in shares.items():
        assert channels.contract.functions.claimable(who, ETH_TOKEN).call() - claimable_before[who] == share, who
    calls = page.evaluate("window.__csWallet.calls")
    assert calls.count("eth_sendTransaction") == 1 and not wallet_signatures(page), calls
    assert not page.errors, page.errors
    page.context.close()


def _stored_session_key(page: Any, channel_id: str) -> str:
    """The address of the session key this browser keeps for the channel (localStorage)."""
    raw = page.evaluate(
        f"localStorage.getItem(Object.keys(localStorage).find(k => k.endsWith('{channel_id.lower()}')))"
    )
    assert raw, "no session key stored in this browser"
    return str(json.loads(raw)["address"])


def test_authorise_a_new_session_key_from_another_browser(browser: Any, stack: Stack) -> None:
    """A channel opened in one browser, then used from a second browser that lacks its key: 'Authorise this
    browser' replaces the session key with one wallet transaction (setSessionKey); the chain and the relay see the
    new key, the next payment is signed by it without the wallet and accepted, the first browser no longer holds
    the channel's key, and the cooperative close carries the new key's signature on the latest voucher."""
    from chainstream.protocol.signing import Signature, recover

    w3 = stack.web3()
    channels = ChannelsClient(w3, stack.deployment.channels)

    first = open_page(browser, stack, "rotator")
    connect(first)
    first.get_by_test_id("deposit-input").fill("0.01")
    first.get_by_test_id("open-channel").click()
    cid = channel_of(first)
    old_key = channels.get_channel(bytes.fromhex(cid[2:])).session_key
    assert _stored_session_key(first, cid) == old_key
    play(first, "Morning Modem")
    wait_history(stack, cid, 1)

    # The same listener in another browser: the channel is there, its key is not.
    page = open_page(browser, stack, "rotator")
    connect(page)
    card = page.get_by_test_id("channel-card")
    expect(card).to_have_attribute("data-channel-id", cid, timeout=20_000)
    expect(card).to_contain_text("not in this browser")
    authorise = card.get_by_role("button", name="Authorise this browser")
    shot(page, "15-authorise-session", top=False)
    authorise.click()
    expect(card).not_to_contain_text("not in this browser", timeout=20_000)
    expect(authorise).to_have_count(0)

    new_key = _stored_session_key(page, cid)
    assert new_key != old_key
    state = channels.get_channel(bytes.fromhex(cid[2:]))
    assert state.session_key == new_key and state.payer == stack.address("rotator")
    eventually(
        lambda: stack.get(f"/api/v1/channels/{cid}")["sessionKey"] == new_key, 20, "the relay to see the new key"
    )
    expect(card).to_contain_text(f"{new_key[:6]}…{new_key[-4:]}")
    assert page.evaluate("window.__csWallet.calls").count("eth_sendTransaction") == 1  # setSessionKey, nothing else

    # Paid from the new key: no wallet signature, accepted by the relay.
    play(page, "Stream to Own")
    items = wait_history(stack, cid, 2)
    assert items[-1]["kind"] == "play" and items[-1]["title"] == "Stream to Own"
    expect(page.get_by_test_id("history-item").first).to_contain_text("Stream to Own")
    assert not wallet_signatures(page)

    # The first browser's key is no longer the channel's: it says so once it reloads the channel (every 3 s).
    expect(first.get_by_test_id("channel-card")).to_contain_text("not in this browser", timeout=20_000)
    expect(first.get_by_test_id("channel-card").get_by_role("button", name="Authorise this browser")).to_be_visible()
    first.context.close()

    # Close cooperatively from the new browser; the relay's answer carries the latest voucher with its signature,
    # which recovers to the new key over the digest the relay recorded; the contract accepts it.
    spent = sum(int(i["amount"]) for i in items)
    page.get_by_test_id("close-menu").click()
    with page.expect_response(
        lambda r: r.url.endswith(f"/channels/{cid}/close") and r.request.method == "POST"
    ) as answer:
        page.get_by_test_id("close-coop").click()
    voucher = answer.value.json()["voucher"]
    assert recover(bytes.fromhex(items[-1]["digest"][2:]), Signature.from_hex(voucher["signature"])) == new_key
    expect(page.get_by_test_id("closed-summary")).to_be_visible(timeout=30_000)
    final = channels.get_channel(bytes.fromhex(cid[2:]))
    assert final.status == ChannelStatus.CLOSED and final.settled == spent
    assert not page.errors, page.errors
    page.context.close()


def test_wallet_without_the_chain_adds_it_then_plays(browser: Any, stack: Stack) -> None:
    """The wallet starts on mainnet and does not know the relay's chain: 'Switch' gets error 4902, so the page
    adds the chain with the relay's /player-config.json (wallet_addEthereumChain: chain id, name, RPC URL), then
    switches; the wallet talks to the chain only through the added RPC URL, and a channel opens and pays."""
    config = stack.get("/player-config.json")
    assert config["rpcUrls"] == [stack.node.url]  # a loopback node is published
    page = wallet_page(
        browser,
        stack.url + "/",
        rpc_url=stack.node.url,
        account=stack.address("newcomer"),
        chain_id=stack.deployment.chain_id,
        start_chain_id=1,
        knows_chain=False,
    )
    connect(page)
    wrong = page.locator("[data-testid=banner][data-code=wrong_network]")
    expect(wrong).to_be_visible()
    expect(page.get_by_test_id("network")).to_contain_text("Wrong network · 1")
    wrong.get_by_role("button", name="Switch to Anvil (local)").click()
    expect(page.get_by_test_id("network")).to_contain_text("31337")
    expect(wrong).to_have_count(0)
    expect(page.locator("[data-testid=banner][data-code]")).to_have_count(0)

    requests = [r for r in page.evaluate("window.__csWallet.requests") if r["method"].startswith("wallet_")]
    chain = hex(stack.deployment.chain_id)
    assert [r["method"] for r in requests] == [
        "wallet_switchEthereumChain",
        "wallet_addEthereumChain",
        "wallet_switchEthereumChain",
    ]
    assert requests[0]["params"] == [{"chainId": chain}] == requests[2]["params"]
    (added,) = requests[1]["params"]
    assert added["chainId"] == chain and added["rpcUrls"] == config["rpcUrls"]
    assert added["chainName"] == (config["chainName"] or "Anvil (local)")
    assert added["nativeCurrency"] == {"name": "Ether", "symbol": "ETH", "decimals": 18}

    # On the added chain the player works: open a channel and pay for a play.
    expect(page.get_by_test_id("channel-card")).to_have_attribute("data-status", "none")
    page.get_by_test_id("deposit-input").fill("0.005")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    channels = ChannelsClient(stack.web3(), stack.deployment.channels)
    assert channels.get_channel(bytes.fromhex(cid[2:])).payer == stack.address("newcomer")
    play(page, "Morning Modem")
    (paid,) = wait_history(stack, cid, 1)
    assert paid["kind"] == "play" and paid["amount"] == str(20_000 * GWEI)
    expect(page.get_by_test_id("spent")).to_have_text("0.00002")
    shot(page, "16-added-chain")
    assert not page.errors, page.errors
    page.context.close()


def test_the_player_signs_nothing_a_lying_relay_makes_up(browser: Any, stack: Stack) -> None:
    """The page prices from the relay's catalog and builds on the relay's channel state, but checks both: a
    catalog whose price differs from the TrackRegistry is refused before anything is signed, and a channel
    state whose voucher the listener's keys did not sign is not adopted. (The lies are made in the browser, on
    the relay's real answers: what a compromised relay or a man in the middle would send.)"""
    page = open_page(browser, stack, "skeptic")

    def inflate(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for track in body["tracks"]:
            if track["title"] == "Gas Price Blues":
                for terms in track["terms"].values():
                    terms["perPlay"] = str(int(terms["perPlay"]) * 10)
        route.fulfill(response=response, json=body)

    page.route(re.compile(r".*/api/v1/catalog.*"), inflate)
    page.reload()
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    play(page, "Morning Modem")
    wait_history(stack, cid, 1)
    signatures = len(wallet_signatures(page))
    play(page, "Gas Price Blues")
    expect(page.locator("[data-testid=banner][data-code=untrusted_catalog]")).to_be_visible()
    assert len(history(stack, cid)) == 1  # nothing was paid
    assert len(wallet_signatures(page)) == signatures
    page.unroute(re.compile(r".*/api/v1/catalog.*"))

    def forge(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        voucher = body["voucher"]
        body["voucher"] = {
            **voucher,
            "payees": [*voucher["payees"], "0x000000000000000000000000000000000000dEaD"],
            "amounts": [*voucher["amounts"], "1"],
        }
        route.fulfill(response=response, json=body)

    summary_path = re.compile(r".*/api/v1/channels/0x[0-9a-fA-F]{64}$")
    page.route(summary_path, forge)
    page.reload()
    expect(page.locator("[data-testid=banner][data-code=untrusted_state]")).to_be_visible()
    page.unroute(summary_path)
    page.reload()
    expect(page.get_by_test_id("channel-card")).to_have_attribute("data-channel-id", cid, timeout=20_000)
    play(page, "Morning Modem")
    items = wait_history(stack, cid, 2)
    assert [i["title"] for i in items] == ["Morning Modem", "Morning Modem"]
    page.context.close()


def test_the_player_refuses_a_relay_lying_about_plays_or_owned(browser: Any, stack: Stack) -> None:
    """Plays and owned tracks decide prices (stream-to-own steps, downloads): a relay whose channel state claims
    other counts than the receipts behind the listener's signed voucher — a bought track hidden so that the page
    sells it again, plays inflated up a price curve — is refused (untrusted_state) and nothing is signed; the
    honest state is adopted, its counters replayed from the relay's history and the TrackRegistry."""
    page = open_page(browser, stack, "doubter")
    connect(page)
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    gas = tile(page, "Gas Price Blues")
    buy = gas.get_by_role("button", name="Buy")
    expect(buy).to_be_visible()
    reveal(buy)
    buy.click()
    expect(tile(page, "Gas Price Blues")).to_contain_text("Owned · plays free")
    play(page, "Morning Modem")
    wait_history(stack, cid, 2)
    track_id = "0x" + stack.track_ids["Gas Price Blues"].hex()
    modem_id = "0x" + stack.track_ids["Morning Modem"].hex()
    summary_path = re.compile(r".*/api/v1/channels/0x[0-9a-fA-F]{64}$")

    def lie(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], None]:
        def handler(route: Any) -> None:
            response = route.fetch()
            body = response.json()
            change(body)
            route.fulfill(response=response, json=body)

        return handler

    lies: list[Callable[[dict[str, Any]], None]] = [
        lambda body: body.update(owned=[]),  # sell the track again
        lambda body: body.update(plays={**body["plays"], modem_id: 9}),  # a later, dearer play
    ]
    for change in lies:
        page.route(summary_path, lie(change))
        page.reload()
        expect(page.locator("[data-testid=banner][data-code=untrusted_state]")).to_be_visible()
        expect(tile(page, "Gas Price Blues")).not_to_contain_text("Owned")  # nothing adopted
        page.unroute(summary_path)
    assert len(history(stack, cid)) == 2  # nothing was paid on a lie

    page.reload()
    expect(page.get_by_test_id("channel-card")).to_have_attribute("data-channel-id", cid, timeout=20_000)
    expect(tile(page, "Gas Price Blues")).to_contain_text("Owned · plays free")  # from the receipts
    play(page, "Gas Price Blues")
    free = wait_history(stack, cid, 3)[-1]
    assert free["target"] == track_id and free["amount"] == "0"
    assert not page.errors, page.errors
    page.context.close()


def test_renew_an_expired_session_key(browser: Any, stack: Stack) -> None:
    """A one-day session key expires (chain time moves a day on): the relay refuses the browser's next voucher as
    signed by an expired key, the page says so and offers to renew the key; one setSessionKey later the relay
    knows the new key and the next play is paid by it without the wallet. (Moves this stack's chain a day on.)"""
    channels = ChannelsClient(stack.web3(), stack.deployment.channels)
    page = open_page(browser, stack, "renewer")
    connect(page)
    page.get_by_label("Session key valid for").select_option("1")
    page.get_by_test_id("deposit-input").fill("0.01")
    page.get_by_test_id("open-channel").click()
    cid = channel_of(page)
    old_key = channels.get_channel(bytes.fromhex(cid[2:])).session_key
    play(page, "Morning Modem")
    wait_history(stack, cid, 1)

    stack.advance(86_400 + 60)
    mined = stack.web3().eth.block_number
    eventually(lambda: stack.get("/api/v1/health")["block"] >= mined, 15, "the relay to see the day-later block")
    play(page, "Stream to Own")
    expired = page.locator("[data-testid=banner][data-code=session_key_expired]")
    expect(expired).to_be_visible()
    card = page.get_by_test_id("channel-card")
    expect(card).to_contain_text("expired")
    renew = card.get_by_role("button", name="Renew this browser's key")
    shot(page, "17-session-key-expired", top=False)
    assert len(history(stack, cid)) == 1, "the expired key's voucher was refused"
    renew.click()
    # the page holds the new key once the relay reports it as the channel's (it polls the relay after the tx)
    expect(card).not_to_contain_text("expired", timeout=20_000)
    expect(renew).to_have_count(0)
    new_key = _stored_session_key(page, cid)
    state = channels.get_channel(bytes.fromhex(cid[2:]))
    assert new_key != old_key and state.session_key == new_key
    assert stack.get(f"/api/v1/channels/{cid}")["sessionKey"] == new_key

    play(page, "Stream to Own")
    items = wait_history(stack, cid, 2)
    assert items[-1]["title"] == "Stream to Own" and items[-1]["amount"] == str(2_000 * GWEI)
    calls = page.evaluate("window.__csWallet.calls")
    assert calls.count("eth_sendTransaction") == 2 and not wallet_signatures(page), calls
    # the only console errors are Chromium's notes of the refused payment (HTTP 403) and, at most once, of a read
    # token the expired key signed before the page saw the chain's day-later clock (HTTP 401: the page re-reads
    # the chain's time and reads with the wallet's token instead)
    assert [e for e in page.errors if "status of 403" not in e and "status of 401" not in e] == [], page.errors
    assert sum("status of 401" in e for e in page.errors) <= 1, page.errors
    page.context.close()
