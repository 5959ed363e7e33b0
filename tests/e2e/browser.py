"""Debian's Chromium driven by Playwright (never a downloaded browser), and pages with the injected test wallet."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("CHAINSTREAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
WALLET_JS = (Path(__file__).parent / "wallet.js").read_text()
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
OPEN_PAGES: list[Any] = []  # for screenshots when a test fails
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15 sized viewport, in CSS pixels


def missing_reason() -> str | None:
    """Why browser tests cannot run here (None when they can)."""
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (run scripts/install_browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    return None


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def wallet_page(
    browser: Any,
    url: str,
    *,
    rpc_url: str,
    account: str,
    chain_id: int,
    start_chain_id: int | None = None,
    knows_chain: bool = True,
    name: str = "Test Wallet",
    phone: bool = False,
) -> Any:
    """A new browser context whose page has the EIP-6963 test wallet for `account` injected before any script.
    With knows_chain=False the wallet does not know `chain_id` until the page adds it (wallet_addEthereumChain).
    phone=True: a 390x844 touch screen (PHONE) instead of a 1440x900 desktop."""
    if phone:
        context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True, is_mobile=True)
    else:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    config = {
        "rpcUrl": rpc_url,
        "account": account,
        "chainId": hex(chain_id),
        "startChainId": hex(start_chain_id if start_chain_id is not None else chain_id),
        "knowsChain": knows_chain,
        "name": name,
    }
    context.add_init_script(f"window.__csWalletConfig = {json.dumps(config)};")
    context.add_init_script(WALLET_JS)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    OPEN_PAGES.append(page)
    page.goto(url)
    return page


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
