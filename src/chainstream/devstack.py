"""A local ChainStream a browser wallet can use: anvil, the contracts, the demo catalog and a relay serving the web
player — what `chainstream dev` (and `make dev`) runs, and what the browser tests run against.

Every actor is one of anvil's well-known dev accounts (the public test mnemonic "test test ... junk"), funded only on
this local chain: a developer imports the listener's key into a browser wallet pointed at the printed RPC URL, and the
browser tests' injected wallet forwards eth_sendTransaction and eth_signTypedData_v4 to anvil, which keeps them
unlocked.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from chainstream.chain.contracts import ChannelsClient, RegistryClient, TokenClient
from chainstream.chain.deploy import Deployment, deploy_all
from chainstream.chain.node import AnvilNode, advance_time, free_port
from chainstream.chain.transactions import TxSender
from chainstream.config import Settings
from chainstream.errors import ConfigurationError
from chainstream.protocol import Domain, PrivateKey
from chainstream.protocol.read_token import sign_read_token
from chainstream.protocol.types import to_address
from chainstream.relay.thread import RelayThread
from chainstream.sdk.client import RelayClient
from chainstream.seed import ARTISTS, publish_catalog_audio, register_catalog

# anvil's default dev keys (mnemonic "test test ... junk"): public test keys, funded only on local chains
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    "0xf214f2b2cd398c806f84e317254e0f0b801d0643303237d97a22a48e01628897",
    "0x701b615bbdfb9de65240bc28bd21bbc0d996645a3dd57e7b12bc2bdf6f192c82",
    "0xa267530f49f8280200edf313ee7af6b827f2a8bce2897751d06a843f644967b1",
    "0x47c99abed3324a2707c28affff1267e45918ec8c3f20b8aa892e8b065d2942dd",
    "0xc526ee95bf44d8fc405a158bb884d9d1238d99f0612e9f33d006bb0789009aaa",
    "0x8166f546bab6da521a8369cab06c5d2b9e46670292d85c875ee9ec20e84ffb61",
)
ROLES = {
    "deployer": 0,
    "relay": 1,
    "listener": 2,
    "ada": 3,
    "ben": 4,
    "cleo": 5,
    "label": 6,
    "platform": 7,
    "listener2": 8,
    "buyer": 9,
    "rotator": 10,
    "newcomer": 11,
    "renewer": 12,
    "skeptic": 13,
    "doubter": 14,
    "gasfree": 15,  # the gas-free browser test empties its ETH: it holds only mUSD
}  # from buyer on: one listener per browser test
LISTENERS = ("listener", "listener2")
CHALLENGE_PERIOD = 3_600
STABLECOIN_GRANT = 1_000 * 10**6  # mUSD minted to each listener (6 decimals)


@dataclass
class Stack:
    """A running local stack; `stop()` ends the relay, then anvil."""

    node: AnvilNode
    deployment: Deployment
    url: str
    keys: dict[str, PrivateKey]
    track_ids: dict[str, bytes]
    _relay: RelayThread | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def address(self, role: str) -> str:
        return self.keys[role].address

    def web3(self) -> Any:
        return self.node.web3()

    def advance(self, seconds: int) -> None:
        advance_time(self.node.web3(), seconds)

    def get(self, path: str) -> Any:
        """GET a relay path; a private read (a channel's, a listener's or an artist's) as its owner, with a read
        token signed by the owner's key (docs/API.md, read tokens)."""
        response = httpx.get(self.url + path, headers=self.owner_headers(path), timeout=10)
        response.raise_for_status()
        return response.json()

    def owner_headers(self, path: str) -> dict[str, str]:
        channel = re.match(r"^/api/v1/channels/(0x[0-9a-fA-F]{64})(?:/history|/deliveries)?(?:\?.*)?$", path)
        account = re.match(r"^/api/v1/(?:listeners|artists)/(0x[0-9a-fA-F]{40})/", path)
        if channel:
            owner = (
                ChannelsClient(self.web3(), self.deployment.channels).get_channel(bytes.fromhex(channel[1][2:])).payer
            )
        elif account:
            owner = to_address(account[1])
        else:
            return {}
        key = next(k for k in self.keys.values() if k.address == owner)
        info = httpx.get(self.url + "/api/v1/info", timeout=10).json()
        domain = Domain(info["domain"]["chainId"], info["domain"]["verifyingContract"])
        token = sign_read_token(key, domain, info["relay"], account=owner, not_after=info["time"] + 300)
        return {"Authorization": f"ChainStream-Read {token.encode()}"}

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
        self.node.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def start_stack(
    *,
    port: int | None = None,
    rpc_port: int | None = None,
    host: str = "127.0.0.1",
    settle_interval: float = 1.0,
    settle_min_value: int = 1,
    settle_max_age: float = 300.0,
    settle_max_gas_fraction: float = 1e12,
    challenge_period: int = CHALLENGE_PERIOD,
    deployment_out: Path | None = None,
    payout_interval: float = 0.0,
) -> Stack:
    """Start anvil (on `rpc_port`, else a free port), deploy, register the demo catalog, mint mUSD to the listeners,
    and serve the relay and web player on `port` (else a free port). `deployment_out` also writes the deployment
    file there, for `chainstream relay` / `listener` / `artist` commands pointed at this chain.

    The relay settles due channels whatever the gas costs (`settle_max_gas_fraction`: test ETH), the stablecoin
    valued at 1 wei a unit, so the player and studio show settlement as soon as a channel is due. With
    `payout_interval` > 0 the relay also pushes scheduled payouts that often (seconds)."""
    node = AnvilNode(port=rpc_port, accounts=len(ANVIL_KEYS)).start()
    try:
        w3 = node.web3()
        keys = {role: PrivateKey(ANVIL_KEYS[i]) for role, i in ROLES.items()}
        deployer = TxSender(w3, keys["deployer"])
        deployment = deploy_all(w3, deployer, challenge_period=challenge_period, key_rotation_grace=600)
        if deployment.stablecoin is None:
            raise ConfigurationError("the dev stack needs the mock stablecoin")
        if deployment_out is not None:
            deployment.save(deployment_out)
        track_ids = register_catalog(
            RegistryClient(w3, deployment.registry),
            {name: keys[name] for name in ARTISTS},
            keys["platform"].address,
            deployment.stablecoin,
        )
        token = TokenClient(w3, deployment.stablecoin)
        for role in LISTENERS:
            token.mint(TxSender(w3, keys[role]), keys[role].address, STABLECOIN_GRANT)
        tmp = tempfile.TemporaryDirectory(prefix="chainstream-dev-")
        settings = _relay_settings(
            keys["relay"],
            node,
            deployment,
            Path(tmp.name),
            (settle_interval, settle_min_value, settle_max_age, settle_max_gas_fraction),
            payout_interval,
        )
        relay = RelayThread(
            settings, w3=node.web3(), deployment=deployment, host=host, port=port or free_port(), graceful_timeout=2
        ).start()
        # The demo catalog's audio enters like any artist's: uploaded to the relay, signed by each track's owner.
        with RelayClient(relay.url) as relay_client:
            publish_catalog_audio(relay_client, {name: keys[name] for name in ARTISTS})
        return Stack(node, deployment, relay.url, keys, track_ids, relay, tmp)
    except BaseException:
        node.stop()
        raise


def _relay_settings(
    relay_key: PrivateKey,
    node: AnvilNode,
    deployment: Deployment,
    data_dir: Path,
    settle: tuple[float, int, float, float],
    payout_interval: float = 0.0,
) -> Settings:
    interval, min_value, max_age, max_gas_fraction = settle
    return Settings(
        relay_key=SecretStr(relay_key.secret.hex()),
        database=str(data_dir / "relay.db"),
        media_dir=data_dir / "media",
        settle_interval=interval,
        settle_min_value=min_value,
        settle_max_age=max_age,
        settle_max_gas_fraction=max_gas_fraction,
        settle_token_prices={deployment.stablecoin: 1.0} if deployment.stablecoin else {},
        poll_interval=0.5,
        rpc_url=node.url,
        payout_interval=payout_interval,
    )


def instructions(stack: Stack) -> str:
    """What a developer does next, as plain text: open the page, add the chain, import a funded key."""
    d = stack.deployment
    listener, artist = stack.keys["listener"], stack.keys["ada"]
    return "\n".join(
        [
            f"Web player and artist studio:  {stack.url}",
            f"API schema (OpenAPI):          {stack.url}/openapi.json",
            "",
            "In your browser wallet (MetaMask, Rabby, ...), add this network:",
            "  Network name  ChainStream local",
            f"  RPC URL       {stack.node.url}",
            f"  Chain ID      {d.chain_id}",
            "  Currency      ETH",
            "",
            "Then import a funded dev account (anvil's public test keys: never use them on a real chain):",
            f"  listener  {listener.address}  key {ANVIL_KEYS[ROLES['listener']]}",
            f"            100,000 ETH and {STABLECOIN_GRANT // 10**6:,} mUSD (token {d.stablecoin})",
            f"  artist    {artist.address}  key {ANVIL_KEYS[ROLES['ada']]}",
            "            owns some of the demo tracks: open Studio to see earnings, change prices and splits",
            "",
            f"Contracts: ChainStreamChannels {d.channels}, TrackRegistry {d.registry}",
            "Stop with Ctrl-C (the chain and the relay's database are thrown away).",
        ]
    )
