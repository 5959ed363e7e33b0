"""Real chains for integration tests: the embedded eth-tester (py-evm) chain and an anvil node.

`chain` is parametrized over both; each test runs on a snapshot that is reverted afterwards, so tests are
independent and the deployment is paid once per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from web3 import Web3

from chainstream.chain.contracts import ChannelsClient, RegistryClient, TokenClient
from chainstream.chain.deploy import Deployment, deploy_all
from chainstream.chain.node import AnvilNode, advance_time, anvil_binary, embedded_web3, is_embedded
from chainstream.chain.transactions import TxSender, fund
from chainstream.errors import ConfigurationError
from chainstream.protocol import PrivateKey
from tests.conftest import IN_CI, test_key

ACTORS = ("deployer", "relay", "listener", "listener2", "artist", "collab", "label", "platform", "stranger", "session")
CHALLENGE_PERIOD = 86_400
KEY_ROTATION_GRACE = 3_600
STABLE = 10**6  # one dollar of the 6-decimals mock stablecoin


@dataclass
class Chain:
    """A deployed ChainStream on a real chain, with funded actors."""

    name: str
    w3: Web3
    deployment: Deployment
    channels: ChannelsClient
    registry: RegistryClient
    token: TokenClient
    keys: dict[str, PrivateKey]
    _senders: dict[str, TxSender] = field(default_factory=dict)

    def key(self, actor: str) -> PrivateKey:
        return self.keys[actor]

    def address(self, actor: str) -> str:
        return self.keys[actor].address

    def tx(self, actor: str) -> TxSender:
        """A transaction sender for the actor (nonces re-read after every snapshot revert)."""
        if actor not in self._senders:
            self._senders[actor] = TxSender(self.w3, self.keys[actor])
        return self._senders[actor]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        advance_time(self.w3, seconds)

    def balance(self, actor_or_address: str) -> int:
        address = self.keys[actor_or_address].address if actor_or_address in self.keys else actor_or_address
        return int(self.w3.eth.get_balance(address))  # type: ignore[arg-type]

    def snapshot(self) -> Any:
        if is_embedded(self.w3):
            return self.w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snapshot_id: Any) -> None:
        if is_embedded(self.w3):
            self.w3.provider.ethereum_tester.revert_to_snapshot(snapshot_id)  # type: ignore[attr-defined]
        else:
            self.w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]
        for sender in self._senders.values():
            sender.reset_nonce()


def build_chain(name: str, w3: Web3) -> Chain:
    keys = {actor: test_key(actor) for actor in ACTORS}
    for key in keys.values():
        fund(w3, key.address, 1_000 * 10**18)
    deployer = TxSender(w3, keys["deployer"])
    deployment = deploy_all(
        w3, deployer, challenge_period=CHALLENGE_PERIOD, key_rotation_grace=KEY_ROTATION_GRACE, with_stablecoin=True
    )
    assert deployment.stablecoin is not None
    chain = Chain(
        name=name,
        w3=w3,
        deployment=deployment,
        channels=ChannelsClient(w3, deployment.channels),
        registry=RegistryClient(w3, deployment.registry),
        token=TokenClient(w3, deployment.stablecoin),
        keys=keys,
    )
    for actor in ("listener", "listener2", "stranger"):
        chain.token.mint(chain.tx(actor), chain.address(actor), 1_000_000 * STABLE)
    return chain


def _anvil_or_skip() -> None:
    try:
        anvil_binary()
    except ConfigurationError as exc:
        if IN_CI:
            raise
        pytest.skip(f"anvil is not installed ({exc}); `make test` installs it")


@pytest.fixture(scope="session", params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain_session(request: pytest.FixtureRequest) -> Iterator[Chain]:
    if request.param == "embedded":
        yield build_chain("embedded", embedded_web3())
        return
    _anvil_or_skip()
    with AnvilNode() as node:
        yield build_chain("anvil", node.web3())


@pytest.fixture
def chain(chain_session: Chain) -> Iterator[Chain]:
    snapshot_id = chain_session.snapshot()
    try:
        yield chain_session
    finally:
        chain_session.revert(snapshot_id)


@pytest.fixture(scope="session")
def embedded_chain_session() -> Chain:
    """Only the embedded chain (for slow property tests that need not run twice)."""
    return build_chain("embedded", embedded_web3())


@pytest.fixture
def embedded_chain(embedded_chain_session: Chain) -> Iterator[Chain]:
    snapshot_id = embedded_chain_session.snapshot()
    try:
        yield embedded_chain_session
    finally:
        embedded_chain_session.revert(snapshot_id)
