"""`chainstream dev`, as a newcomer runs it: one command starts a local chain, the contracts, the demo catalog and a
relay serving the web player, prints what to do, and a browser wallet set up as printed opens a channel and plays.
SIGTERM stops all of it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainstream.chain.deploy import Deployment
from chainstream.chain.node import free_port
from tests.e2e.browser import launch, missing_reason, screenshot, wallet_page

pytestmark = [pytest.mark.browser, pytest.mark.anvil]


def _read_instructions(process: subprocess.Popen[str], timeout: float = 120.0) -> str:
    """stdout up to the last instruction line ('Stop with Ctrl-C'), or fail with what the command said."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                pytest.fail(f"chainstream dev exited {process.returncode}:\n{''.join(lines)}")
            continue
        lines.append(line)
        if line.startswith("Stop with Ctrl-C"):
            return "".join(lines)
    pytest.fail(f"chainstream dev printed no instructions within {timeout:.0f} s:\n{''.join(lines)}")


@pytest.fixture
def dev_command(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "deployments" / "local.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "chainstream", "dev", "--port", str(free_port()), "--rpc-port", str(free_port())]
        + ["--deployment-out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    try:
        yield process, _read_instructions(process), out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _field(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    assert found, f"the instructions do not say {pattern!r}:\n{text}"
    return found.group(1)


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_dev_command_serves_a_player_a_wallet_can_use_as_printed(dev_command: Any) -> None:
    """Set up the wallet exactly as printed (RPC URL, chain id, the listener's key), open a channel, play."""
    from playwright.sync_api import expect, sync_playwright

    from chainstream.protocol import PrivateKey

    process, text, deployment_file = dev_command
    url = _field(text, r"Web player and artist studio:\s+(\S+)")
    rpc_url = _field(text, r"RPC URL\s+(\S+)")
    chain_id = int(_field(text, r"Chain ID\s+(\d+)"))
    address = _field(text, r"listener\s+(0x[0-9a-fA-F]{40})")
    key = _field(text, r"listener\s+0x[0-9a-fA-F]{40}\s+key\s+(0x[0-9a-f]{64})")
    assert PrivateKey(key).address == address, "the printed key is the printed listener's"
    assert Deployment.load(deployment_file).chain_id == chain_id, "the deployment file is written for the CLI"

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = wallet_page(browser, url + "/", rpc_url=rpc_url, account=address, chain_id=chain_id)
            expect(page.get_by_test_id("track")).to_have_count(4, timeout=20_000)
            page.get_by_test_id("connect-wallet").click()
            expect(page.get_by_test_id("network")).to_contain_text(str(chain_id), timeout=15_000)
            page.get_by_test_id("deposit-input").fill("0.01")
            page.get_by_test_id("open-channel").click()
            card = page.get_by_test_id("channel-card")
            expect(card).to_have_attribute("data-status", "open", timeout=30_000)
            page.locator("[data-testid=track][data-title='Morning Modem']").get_by_test_id("play").click()
            expect(page.get_by_test_id("spent")).to_have_text("0.00002", timeout=20_000)
            screenshot(page, "dev-command-player")
        finally:
            browser.close()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, "SIGTERM stops the dev stack cleanly"
    assert not _port_open(url) and not _port_open(rpc_url), "the relay and the chain are gone"
