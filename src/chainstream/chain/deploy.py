"""Deploy ChainStream's contracts and record where they are, in a JSON file the relay and SDK read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from web3 import Web3
from web3.exceptions import Web3RPCError

from chainstream.chain.artifacts import load_artifact
from chainstream.chain.transactions import TxSender
from chainstream.errors import ChainError, ConfigurationError
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address

DEFAULT_CHALLENGE_PERIOD = 24 * 3600
DEFAULT_KEY_ROTATION_GRACE = 3600

#: Local development chains, the only ones where the mock stablecoin (anyone can mint it) is deployed by default:
#: anvil and Hardhat (31337), geth --dev and Ganache (1337), eth-tester / py-evm (131277322940537).
DEV_CHAIN_IDS = frozenset({1337, 31337, 131277322940537})


def is_dev_chain(chain_id: int) -> bool:
    """Whether `chain_id` is a local development chain (DEV_CHAIN_IDS)."""
    return chain_id in DEV_CHAIN_IDS


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    channels: Address
    registry: Address
    stablecoin: Address | None
    deploy_block: int
    challenge_period: int
    key_rotation_grace: int
    token_admin: Address | None = None  # who may allowlist ERC-20s (None in files written before it was recorded)

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
    # TxSender.transact only calls build_transaction, which a constructor has too; its annotation says
    # ContractFunction until chain/transactions.py (another branch this round) widens it to ContractConstructor.
    receipt = sender.transact(factory.constructor(*args), action=f"deploy {name}")
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deploy {name}: the receipt has no contract address (tx {receipt['transactionHash'].hex()})")
    return to_address(address)


def deploy_all(
    w3: Web3,
    deployer: TxSender,
    *,
    challenge_period: int = DEFAULT_CHALLENGE_PERIOD,
    key_rotation_grace: int = DEFAULT_KEY_ROTATION_GRACE,
    with_stablecoin: bool | None = None,
    token_admin: str | None = None,
) -> Deployment:
    """Deploy the channels contract, the track registry and, on development chains, the mock stablecoin.

    `with_stablecoin`: None (the default) deploys and allowlists the mock stablecoin only on a development chain
    (DEV_CHAIN_IDS): anyone can mint it, so on a real chain it would let anyone "pay" with free money. True
    deploys it anyway (an explicit choice, e.g. a public testnet demo); False never.
    `token_admin`: the address that may allowlist ERC-20s, immutable in the contract (default: the deployer).
    The mock stablecoin is allowlisted by the deployer when it is the admin, else by the admin only if it is an
    account the node holds unlocked (a development node); otherwise ConfigurationError before anything is sent.
    """
    chain_id = w3.eth.chain_id
    if with_stablecoin is None:
        with_stablecoin = is_dev_chain(chain_id)
    deployer_address = to_address(deployer.address)
    admin = to_address(token_admin) if token_admin else deployer_address
    if admin == ZERO_ADDRESS:
        raise ConfigurationError("the token admin cannot be the zero address")
    admin_unlocked = admin != deployer_address and admin in {to_address(a) for a in _node_accounts(w3)}
    if with_stablecoin and admin != deployer_address and not admin_unlocked:
        raise ConfigurationError(
            f"the mock stablecoin must be allowlisted by the token admin {admin}, whose key this deploy does not "
            "hold: deploy without it (--no-stablecoin) and allowlist tokens from the admin's wallet"
        )
    start_block = w3.eth.block_number
    channels = deploy_contract(deployer, "ChainStreamChannels", challenge_period, key_rotation_grace, admin)
    registry = deploy_contract(deployer, "TrackRegistry")
    stablecoin = None
    if with_stablecoin:
        stablecoin = deploy_contract(deployer, "MockStablecoin")
        contract = w3.eth.contract(
            address=Web3.to_checksum_address(channels), abi=load_artifact("ChainStreamChannels").abi
        )
        if admin == deployer_address:
            deployer.transact(contract.functions.allowToken(stablecoin), action="allowToken")
        else:  # the development node's own account (it holds the key): the node signs
            tx_hash = contract.functions.allowToken(stablecoin).transact({"from": admin})
            if w3.eth.wait_for_transaction_receipt(tx_hash)["status"] != 1:
                raise ConfigurationError(f"allowToken from the token admin {admin} reverted")
    return Deployment(
        chain_id=w3.eth.chain_id,
        channels=channels,
        registry=registry,
        stablecoin=stablecoin,
        deploy_block=start_block,
        challenge_period=challenge_period,
        key_rotation_grace=key_rotation_grace,
        token_admin=admin,
    )


def _node_accounts(w3: Web3) -> list[str]:
    """The accounts the node holds unlocked (development nodes); none on a public endpoint."""
    try:
        return list(w3.eth.accounts)
    except (ValueError, Web3RPCError):  # eth_accounts refused or unsupported
        return []
