"""What the `listener` and `artist` commands share: connecting to the relay and the chain, keys from the
environment, amounts and tracks from what people type, and errors as one line with a stable code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from web3 import Web3
from web3.exceptions import Web3Exception

from chainstream.chain.deploy import Deployment
from chainstream.chain.node import connect
from chainstream.errors import ChainError, ChainStreamError, ConfigurationError, RecoverableError
from chainstream.protocol import PrivateKey
from chainstream.protocol.types import ZERO_ADDRESS, to_address
from chainstream.sdk import RelayClient, RelayError
from chainstream.tokens import TokenInfo

console = Console(soft_wrap=True)  # lines stay whole (copyable ids, greppable output); tables still fit
err = Console(stderr=True, soft_wrap=True)

RelayUrl = Annotated[str, typer.Option("--relay-url", envvar="CHAINSTREAM_RELAY_URL", help="the relay's base URL")]
RpcUrl = Annotated[str, typer.Option("--rpc-url", envvar="CHAINSTREAM_RPC_URL", help="JSON-RPC URL of the chain")]
DeploymentOpt = Annotated[
    Path | None,
    typer.Option(
        "--deployment",
        envvar="CHAINSTREAM_DEPLOYMENT_FILE",
        help="deployment file (default: the addresses the relay announces at /api/v1/info)",
    ),
]
DEFAULT_RELAY_URL = "http://127.0.0.1:8700"
DEFAULT_RPC_URL = "http://127.0.0.1:8545"


class CliError(RecoverableError):
    """A user-facing failure that needs no traceback."""


@contextmanager
def errors() -> Iterator[None]:
    """Turn every failure into one line `error [code]: message` on stderr and exit code 1 (2 if unexpected)."""
    try:
        yield
    except typer.Exit:
        raise
    except RelayError as exc:
        text = str(exc).removeprefix(f"{exc.code}: ").strip()
        if exc.code == "http_error" or not text:
            # not the relay's error format: a proxy, another server on that port, or a relay of another version
            text = (
                f"the relay answered HTTP {exc.status} without a reason"
                + (f" ({text[:200]})" if text else "")
                + ": is --relay-url a ChainStream relay?"
            )
        else:
            text = f"{text} (relay answered HTTP {exc.status})"
        _die(exc.code, text)
    except ChainError as exc:
        _die(exc.reason or exc.code, str(exc))
    except ChainStreamError as exc:
        _die(exc.code, str(exc))
    except httpx.ConnectError as exc:
        _die("relay_unreachable", f"cannot reach the relay ({exc})")
    except httpx.HTTPError as exc:
        _die("relay_unreachable", f"relay request failed: {exc}")
    except Web3Exception as exc:
        _die("chain", f"the node refused: {node_message(exc)}")
    except Exception as exc:  # noqa: BLE001 - a CLI prints one line; CHAINSTREAM_DEBUG=1 shows the traceback
        if os.environ.get("CHAINSTREAM_DEBUG"):
            raise
        _die("unexpected", f"{type(exc).__name__}: {exc}", status=2)


def node_message(exc: Exception) -> str:
    """A node's refusal as its words, not a JSON-RPC dict: {'code': -32000, 'message': 'nonce too low'} -> 'nonce too
    low'."""
    first = exc.args[0] if exc.args else str(exc)
    if isinstance(first, dict):
        text = str(first.get("message") or first.get("data") or "no reason given")
    else:
        text = str(first) or type(exc).__name__
    return text.rstrip(".") + "."


def _die(code: str, message: str, status: int = 1) -> None:
    err.print(f"[bold red]error[/] [red]\\[{escape(code)}][/]: {escape(message)}", highlight=False)
    raise typer.Exit(status)


def key_from_env(var: str) -> PrivateKey:
    secret = os.environ.get(var)
    if not secret:
        raise CliError(f"set {var} to your private key (hex)", code="no_key")
    try:
        return PrivateKey(secret.strip())
    except (ChainStreamError, ValueError):
        raise CliError(f"{var} is not a 32-byte hex private key", code="bad_key") from None


@dataclass
class Session:
    """A relay and the chain it serves, checked to agree."""

    relay: RelayClient
    w3: Web3
    deployment: Deployment
    info: dict[str, Any]

    @property
    def tokens(self) -> list[TokenInfo]:
        return [TokenInfo(to_address(t["address"]), t["symbol"], int(t["decimals"])) for t in self.info["tokens"]]

    def token(self, spec: str) -> TokenInfo:
        """A token by symbol (ETH, mUSD) or address."""
        for t in self.tokens:
            if spec.lower() in (t.symbol.lower(), t.address.lower()):
                return t
        known = ", ".join(t.symbol for t in self.tokens)
        raise CliError(f"unknown token {spec!r} (this relay takes {known})", code="unknown_token")

    def token_at(self, address: str) -> TokenInfo:
        address = to_address(address)
        for t in self.tokens:
            if t.address == address:
                return t
        return TokenInfo(address, address[:8], 18)

    def track(self, spec: str, token: str = ZERO_ADDRESS) -> tuple[bytes, str]:
        """A track by id (0x…) or title (exact, else a unique case-insensitive substring) offered in `token`."""
        tracks = self.relay.get("/catalog", token=token)["tracks"]
        if spec.startswith("0x") and len(spec) == 66:
            for t in tracks:
                if t["trackId"].lower() == spec.lower():
                    return bytes.fromhex(spec[2:]), t["title"]
            raise CliError(f"track {spec} is not offered in {self.token_at(token).symbol}", code="unknown_track")
        exact = [t for t in tracks if t["title"].lower() == spec.lower()]
        matches = exact or [t for t in tracks if spec.lower() in t["title"].lower()]
        if len(matches) == 1:
            return bytes.fromhex(matches[0]["trackId"][2:]), matches[0]["title"]
        if not matches:
            raise CliError(f"no track matching {spec!r} in {self.token_at(token).symbol}", code="unknown_track")
        titles = ", ".join(f"“{t['title']}”" for t in matches[:5])
        raise CliError(f"{spec!r} matches several tracks: {titles}", code="ambiguous_track")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.relay.close()


def open_session(relay_url: str, rpc_url: str, deployment_file: Path | None) -> Session:
    relay = RelayClient(relay_url, timeout=30)
    try:
        info = relay.info()
    except httpx.HTTPError as exc:
        relay.close()
        raise CliError(f"cannot reach the relay at {relay_url} ({exc})", code="relay_unreachable") from None
    try:
        w3 = connect(rpc_url)
    except ConfigurationError as exc:
        relay.close()
        raise CliError(str(exc), code="chain_unreachable") from None
    if w3.eth.chain_id != int(info["chainId"]):
        relay.close()
        raise CliError(
            f"the relay serves chain {info['chainId']} but {rpc_url} is chain {w3.eth.chain_id}", code="wrong_chain"
        )
    if deployment_file is not None:
        deployment = Deployment.load(deployment_file)
        if deployment.channels != to_address(info["channels"]):
            relay.close()
            raise CliError(
                f"{deployment_file} names channels contract {deployment.channels}, the relay uses {info['channels']}",
                code="wrong_deployment",
            )
    else:
        deployment = Deployment(
            chain_id=int(info["chainId"]),
            channels=to_address(info["channels"]),
            registry=to_address(info["registry"]),
            stablecoin=to_address(info["stablecoin"]) if info.get("stablecoin") else None,
            deploy_block=0,
            challenge_period=int(info["challengePeriod"]),
            key_rotation_grace=int(info["keyRotationGrace"]),
        )
    return Session(relay, w3, deployment, info)


def short(value: str | bytes, keep: int = 6) -> str:
    text = "0x" + value.hex() if isinstance(value, bytes) else value
    return f"{text[: keep + 2]}…{text[-4:]}"


def verified_names(relay: RelayClient, tracks: list[dict[str, Any]]) -> dict[str, str]:
    """The names of the tracks' owners that the owners signed, by checksummed address. A catalog entry's
    ``artistName`` is only the relay's word: each owner it names is looked up with RelayClient.artist_profile,
    which verifies the artist's signed ArtistProfile, and an owner whose profile is missing, does not verify or
    cannot be fetched has no name (shown as its address) — what the web player does (frontend/lib/profiles.js)."""
    names: dict[str, str] = {}
    for owner in {to_address(t["owner"]) for t in tracks if t.get("artistName") is not None}:
        try:
            signed = relay.artist_profile(owner)
        except (ChainStreamError, httpx.HTTPError):  # untrusted_state / untrusted_relay, a refusal, the network
            continue
        if signed is not None:
            names[owner] = signed.profile.name
    return names


def catalog_rows(
    info: dict[str, Any], tracks: list[dict[str, Any]], query: str, names: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    """(title, artist, prices, id) of the catalog's tracks whose title or artist contains every word of `query`;
    the artist is its verified name in `names` (see verified_names), else its shortened address."""
    tokens = {
        to_address(t["address"]): TokenInfo(to_address(t["address"]), t["symbol"], int(t["decimals"]))
        for t in info["tokens"]
    }
    words = query.lower().split()
    rows = []
    for track in tracks:
        name = names.get(to_address(track["owner"]))
        haystack = f"{track['title']} {name or ''} {track['owner']}".lower()
        if not all(w in haystack for w in words):
            continue
        prices = []
        for address, terms in track["terms"].items():
            t = tokens.get(to_address(address)) or TokenInfo(to_address(address), short(address), 18)
            parts = [
                f"{t.fmt(int(terms['perPlay']))}/play" if int(terms["perPlay"]) else "",
                f"{t.fmt(int(terms['perSecond']))}/s" if int(terms["perSecond"]) else "",
                f"buy {t.fmt(int(terms['download']))}" if int(terms["download"]) else "",
            ]
            prices.append(", ".join(p for p in parts if p) or f"free in {t.symbol}")
        rows.append(
            (track["title"] or "(untitled)", name or short(track["owner"]), "; ".join(prices), track["trackId"])
        )
    return rows
