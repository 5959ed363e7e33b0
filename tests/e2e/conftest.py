"""Fixtures of the browser tests: one real stack (anvil + contracts + demo catalog + relay) and one headless
Debian Chromium per test module. Outside CI the tests skip with the reason when Chromium or Playwright is
missing; with CI=true they fail instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chainstream.chain.node import anvil_binary
from chainstream.errors import ConfigurationError
from tests.conftest import IN_CI
from tests.e2e.browser import OPEN_PAGES, SCREENSHOTS, launch, missing_reason
from tests.e2e.stack import Stack, start_stack


def _require(reason: str | None) -> None:
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"browser tests must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_available() -> None:
    _require(missing_reason())


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    """Chromium, closed before the stack stops (so no page keeps an event stream of the relay open)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def stack(browser_available: None) -> Iterator[Stack]:
    try:
        anvil_binary()
    except ConfigurationError as exc:
        _require(f"anvil is not installed ({exc})")
    # Settle by age only (5 s after a channel's oldest unsettled payment), so that the artist sees earnings
    # pending first and settled a few seconds later.
    s = start_stack(settle_interval=1.0, settle_min_value=10**30, settle_max_age=5.0)
    try:
        yield s
    finally:
        s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, screenshot every page still open (test-artifacts/screenshots/FAILED-<test>-<n>.png)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for n, page in enumerate(OPEN_PAGES):
            try:
                if not page.is_closed():
                    page.screenshot(path=str(SCREENSHOTS / f"FAILED-{item.name}-{n}.png"))
                    banners = page.locator("[data-testid=banner]").all_inner_texts()
                    report.sections.append(
                        (
                            f"page {n} ({page.url})",
                            "banners: " + repr(banners) + "\nconsole errors: " + repr(getattr(page, "errors", [])),
                        )
                    )
            except Exception as exc:  # a crashed page must not hide the test's own failure
                report.sections.append((f"page {n}", f"no screenshot: {exc}"))
    if report.when == "teardown":
        OPEN_PAGES.clear()
