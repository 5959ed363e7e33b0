"""scripts/deploy.py deploys to a real node and writes a deployment file the relay and SDK can read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainstream.chain.contracts import ChannelsClient
from chainstream.chain.deploy import Deployment
from chainstream.chain.node import AnvilNode, anvil_binary
from chainstream.errors import ConfigurationError
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anvil() -> AnvilNode:
    try:
        anvil_binary()
    except ConfigurationError as exc:
        if IN_CI:
            raise
        pytest.skip(f"anvil is not installed ({exc})")
    with AnvilNode() as node:
        yield node


@pytest.mark.anvil
def test_deployScript_writesAddressesWithCode_andSettingsTakeEffect(anvil: AnvilNode, tmp_path: Path) -> None:
    out = tmp_path / "local.json"
    env = {k: v for k, v in os.environ.items() if k != "CHAINSTREAM_DEPLOYER_KEY"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "deploy.py"),
            "--rpc-url",
            anvil.url,
            "--out",
            str(out),
            "--challenge-period",
            "7200",
            "--key-rotation-grace",
            "600",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    deployment = Deployment.load(out)
    w3 = anvil.web3()
    assert deployment.chain_id == w3.eth.chain_id == anvil.chain_id
    for address in (deployment.channels, deployment.registry, deployment.stablecoin):
        assert address is not None and len(w3.eth.get_code(address)) > 0
    channels = ChannelsClient(w3, deployment.channels)
    assert channels.challenge_period() == 7200
    assert channels.contract.functions.keyRotationGrace().call() == 600
    assert channels.contract.functions.tokenIdOf(deployment.stablecoin).call() == 1


def test_deployScript_unreachableNode_failsWithOneLineMessage(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "deploy.py"),
            "--rpc-url",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach an Ethereum node" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.json").exists()
