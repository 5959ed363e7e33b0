"""Deploy ChainStream's contracts and record where they are, in a JSON file the relay and SDK read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from web3 import Web3

from chainstream.chain.artifacts import load_artifact
from chainstream.chain.transactions import TxSender
from chainstream.errors import ConfigurationError
from chainstream.protocol.types import Address, to_address

DEFAULT_CHALLENGE_PERIOD = 24 * 3600
DEFAULT_KEY_ROTATION_GRACE = 3600


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    channels: Address
    registry: Address
    stablecoin: Address | None
    deploy_block: int
    challenge_period: int
    key_rotation_grace: int

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigurationError(f"no deployment file at {path}: run `chainstream deploy` first") from exc
        return cls(**data)


def deploy_contract(sender: TxSender, name: str, *args: object) -> Address:
    artifact = load_artifact(name)
    factory = sender.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = sender.transact(factory.constructor(*args), action=f"deploy {name}")
    return to_address(receipt["contractAddress"])


def deploy_all(
    w3: Web3,
    deployer: TxSender,
    *,
    challenge_period: int = DEFAULT_CHALLENGE_PERIOD,
    key_rotation_grace: int = DEFAULT_KEY_ROTATION_GRACE,
    with_stablecoin: bool = True,
) -> Deployment:
    """Deploy the channels contract, the track registry and (for local chains) the mock stablecoin."""
    start_block = w3.eth.block_number
    channels = deploy_contract(deployer, "ChainStreamChannels", challenge_period, key_rotation_grace, deployer.address)
    registry = deploy_contract(deployer, "TrackRegistry")
    stablecoin = None
    if with_stablecoin:
        stablecoin = deploy_contract(deployer, "MockStablecoin")
        contract = w3.eth.contract(address=channels, abi=load_artifact("ChainStreamChannels").abi)
        deployer.transact(contract.functions.allowToken(stablecoin), action="allowToken")
    return Deployment(
        chain_id=w3.eth.chain_id,
        channels=channels,
        registry=registry,
        stablecoin=stablecoin,
        deploy_block=start_block,
        challenge_period=challenge_period,
        key_rotation_grace=key_rotation_grace,
    )
