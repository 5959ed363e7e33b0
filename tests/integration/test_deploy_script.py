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
from chainstream.protocol import PrivateKey
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


@pytest.mark.anvil
def test_deploy_withoutOut_writesTheFileTheOtherCommandsReadByDefault(anvil: AnvilNode, tmp_path: Path) -> None:
    """`chainstream deploy` with no --out writes deployments/local.json, the default of `relay`, `audit` and the
    listener and artist commands (it wrote deployments/<chainId>.json, which none of them read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSTREAM_")}
    deploy = [sys.executable, "-m", "chainstream", "deploy", "--rpc-url", anvil.url]
    result = subprocess.run(deploy, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    assert [p.name for p in (tmp_path / "deployments").iterdir()] == ["local.json"]
    audit = [sys.executable, "-m", "chainstream", "audit", "--rpc-url", anvil.url]  # reads it by default
    result = subprocess.run(audit, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    assert result.returncode == 0 and "balanced" in result.stdout, result.stderr + result.stdout


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


def run_deploy(url: str, out: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CHAINSTREAM_DEPLOYER_KEY", "CHAINSTREAM_TOKEN_ADMIN")}
    if key is not None:
        env["CHAINSTREAM_DEPLOYER_KEY"] = key
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "deploy.py"), "--rpc-url", url, "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.anvil
def test_deployScript_withoutDeployerKey_tokenAdminIsTheDevNodesAccount_notAThrownAwayKey(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    out = tmp_path / "local.json"
    result = run_deploy(anvil.url, out)
    assert result.returncode == 0, result.stderr + result.stdout
    w3 = anvil.web3()
    d = Deployment.load(out)
    admin = ChannelsClient(w3, d.channels).contract.functions.tokenAdmin().call()
    assert admin == w3.eth.accounts[0]  # the node's own account, whose key the operator has
    assert d.token_admin == admin
    assert d.stablecoin is not None  # a development chain: the mock is there, allowlisted by that account
    assert ChannelsClient(w3, d.channels).contract.functions.tokenIdOf(d.stablecoin).call() == 1


@pytest.fixture
def public_anvil() -> AnvilNode:
    """An anvil node posing as a public chain (chain id 11155111, Sepolia's): not a development chain."""
    try:
        anvil_binary()
    except ConfigurationError as exc:
        if IN_CI:
            raise
        pytest.skip(f"anvil is not installed ({exc})")
    with AnvilNode(chain_id=11_155_111) as node:
        yield node


@pytest.mark.anvil
def test_deployScript_nonDevChain_noMockStablecoinByDefault_adminIsTheOperator(
    public_anvil: AnvilNode, tmp_path: Path
) -> None:
    operator = PrivateKey.generate().address
    deployer = PrivateKey.generate()
    out = tmp_path / "public.json"
    args = ("--fund-from-node", "--token-admin", operator)
    result = run_deploy(public_anvil.url, out, *args, key="0x" + deployer.secret.hex())
    assert result.returncode == 0, result.stderr + result.stdout
    d = Deployment.load(out)
    assert d.stablecoin is None  # nobody can mint free "dollars" on a real chain
    w3 = public_anvil.web3()
    assert ChannelsClient(w3, d.channels).contract.functions.tokenAdmin().call() == operator == d.token_admin


@pytest.mark.anvil
def test_deployScript_nonDevChain_withoutDeployerKeyOrAdmin_refusesWithOneLine(
    public_anvil: AnvilNode, tmp_path: Path
) -> None:
    out = tmp_path / "public.json"
    result = run_deploy(public_anvil.url, out)
    assert result.returncode == 1
    assert "--token-admin" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    # an explicit --stablecoin still deploys the mock on a non-development chain (a deliberate testnet demo)
    deployer = PrivateKey.generate()
    result = run_deploy(public_anvil.url, out, "--fund-from-node", "--stablecoin", key="0x" + deployer.secret.hex())
    assert result.returncode == 0, result.stderr + result.stdout
    assert Deployment.load(out).stablecoin is not None
