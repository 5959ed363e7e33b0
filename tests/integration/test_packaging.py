"""The package installs like one: a wheel built from this checkout (`pip wheel .`, not editable), installed
into a fresh virtualenv, runs `chainstream demo` and serves the web player from `chainstream relay` in a
directory outside the checkout (nothing reached through the repository's paths).

Slow (a virtualenv with every dependency, from the package index or pip's cache), so marked `slow`; CI runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainstream.chain.node import AnvilNode, free_port
from chainstream.chain.transactions import fund
from tests.conftest import test_key
from tests.integration.relay_fixtures import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.anvil, pytest.mark.xdist_group("packaging")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the wheel built from this checkout installed (not editable); yields its bin/."""
    tmp = tmp_path_factory.mktemp("packaging")
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # Built from a copy of the checkout's files (as git sees them, with its node_modules linked in), so a build/
    # directory left in the checkout by an earlier build cannot break or leak into this one.
    source = tmp / "checkout"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    (source / "node_modules").symlink_to(ROOT / "node_modules")
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "-w", str(wheels)], check=True, cwd=tmp)
    (wheel,) = wheels.glob("chainstream-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    bin_dir = tmp / "venv" / "bin"
    subprocess.run([str(bin_dir / "pip"), "--disable-pip-version-check", "-q", "install", str(wheel)], check=True)
    yield bin_dir


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on any path (no PYTHONPATH, no CHAINSTREAM_* of the test run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CHAINSTREAM_")}
    return {**env, **extra}


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """The wheel's chainstream is imported (not src/), and it carries the web player and the ethers build."""
    code = (
        "import chainstream, chainstream.resources as r; "
        "print(chainstream.__file__); print(r.CHECKOUT); print(r.web_dir()); print(r.vendor_file('ethers.js'))"
    )
    out = subprocess.run(
        [str(installed / "python"), "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    module, checkout, web, ethers = out.stdout.splitlines()
    site = str(installed.parent / "lib")
    assert module.startswith(site) and checkout == "None"
    assert web.startswith(site) and ethers.startswith(site)


def test_demo_runs_from_another_directory(installed: Path, tmp_path: Path) -> None:
    """`chainstream demo` (embedded chain, real relay, ffmpeg) ends balanced, run outside the checkout."""
    out = subprocess.run(
        [str(installed / "chainstream"), "demo", "--listeners", "1", "--plays", "2"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "balanced: yes" in out.stdout


def test_relay_serves_the_api_and_the_web_player_from_another_directory(installed: Path, tmp_path: Path) -> None:
    """`chainstream deploy` then `chainstream relay` against anvil, outside the checkout: the API, the page and
    the ethers build the page imports are all served."""
    deployer, relay_key = test_key("packaging-deployer"), test_key("packaging-relay")
    with AnvilNode() as node:
        w3 = node.web3()
        for key in (deployer, relay_key):
            fund(w3, key.address, 10**20)
        deploy = subprocess.run(
            [str(installed / "chainstream"), "deploy", "--rpc-url", node.url, "--out", "deployment.json"],
            cwd=tmp_path,
            env=clean_env(CHAINSTREAM_DEPLOYER_KEY="0x" + deployer.secret.hex()),
            capture_output=True,
            text=True,
        )
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        port = free_port()
        args = [str(installed / "chainstream"), "relay", "--rpc-url", node.url, "--deployment", "deployment.json"]
        env = clean_env(CHAINSTREAM_RELAY_KEY="0x" + relay_key.secret.hex())
        with open(tmp_path / "relay.log", "wb") as log:
            proc = subprocess.Popen(
                [*args, "--port", str(port), "--database", "relay.db"], cwd=tmp_path, env=env, stdout=log, stderr=log
            )
        try:
            url = f"http://127.0.0.1:{port}"

            def health() -> bool:
                assert proc.poll() is None, (tmp_path / "relay.log").read_text()
                try:
                    return httpx.get(url + "/api/v1/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(health, timeout=60, what="the installed relay to answer")
            page = httpx.get(url + "/")
            assert page.status_code == 200 and '<script type="importmap"' in page.text
            assert httpx.get(url + "/app.js").status_code == 200
            ethers = httpx.get(url + "/vendor/ethers.js")
            assert ethers.status_code == 200 and len(ethers.content) > 100_000
        finally:
            proc.terminate()
            proc.wait(timeout=30)
