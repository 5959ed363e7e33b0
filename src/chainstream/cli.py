"""The `chainstream` command line: run a relay, deploy contracts, the full demo (demo.py), and the listener and
artist commands (cli_listener.py, cli_artist.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from chainstream.errors import ChainStreamError

if TYPE_CHECKING:
    from web3 import Web3

    from chainstream.protocol import PrivateKey

app = typer.Typer(
    help="ChainStream: pay-per-play music over Ethereum payment channels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(1)


@app.command()
def audit(
    rpc_url: Annotated[str, typer.Option(envvar="CHAINSTREAM_RPC_URL", help="JSON-RPC URL")] = "http://127.0.0.1:8545",
    deployment: Annotated[Path, typer.Option(envvar="CHAINSTREAM_DEPLOYMENT_FILE")] = Path("deployments/local.json"),
) -> None:
    """Reconcile a deployment from the chain alone: per token, deposits = paid to payees + refunded + escrowed,
    and the contract holds exactly what it owes. Exits 1 if any token does not balance."""
    from chainstream.audit import deployment_tokens, reconcile, reconciliation_table
    from chainstream.chain.deploy import Deployment
    from chainstream.chain.node import connect

    try:
        w3 = connect(rpc_url)
        d = Deployment.load(deployment)
        recs, _ = reconcile(w3, d, {}, deployment_tokens(w3, d))
    except ChainStreamError as exc:
        raise fail(str(exc)) from exc
    for rec in recs:
        console.print(reconciliation_table(rec))
    if not all(rec.balanced for rec in recs):
        raise fail("the deployment does not balance: see the rows marked ✗")


@app.command()
def relay(
    rpc_url: Annotated[str, typer.Option(envvar="CHAINSTREAM_RPC_URL", help="JSON-RPC URL")] = "http://127.0.0.1:8545",
    deployment: Annotated[Path, typer.Option(envvar="CHAINSTREAM_DEPLOYMENT_FILE")] = Path("deployments/local.json"),
    database: Annotated[
        str, typer.Option(envvar="CHAINSTREAM_DATABASE", help="SQLite file, or postgresql://user@host/db")
    ] = "chainstream-relay.db",
    host: Annotated[str, typer.Option(envvar="CHAINSTREAM_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CHAINSTREAM_PORT")] = 8700,
    settle_interval: Annotated[float, typer.Option(envvar="CHAINSTREAM_SETTLE_INTERVAL")] = 5.0,
) -> None:
    """Run the relay: verify and store vouchers, settle in batches, watch the chain. Key: CHAINSTREAM_RELAY_KEY."""
    from chainstream.config import Settings
    from chainstream.relay.logs import configure_logging, key_secrets
    from chainstream.relay.server import build_served_app, serve

    try:
        settings = Settings(
            rpc_url=rpc_url,
            deployment_file=deployment,
            database=database,
            host=host,
            port=port,
            settle_interval=settle_interval,
        )
        if settings.relay_key is None:
            raise fail("set CHAINSTREAM_RELAY_KEY to the relay's private key (hex)")
        configure_logging(settings.log_level, key_secrets(settings.relay_key.get_secret_value()))  # JSON lines, no key
        api = build_served_app(settings)
    except ChainStreamError as exc:
        raise fail(str(exc)) from exc
    console.print(f"relay on http://{host}:{port}  (API schema: http://{host}:{port}/openapi.json)")
    serve(api, settings, host=host, port=port, log_level=settings.log_level)


@app.command()
def deploy(
    rpc_url: Annotated[str, typer.Option(envvar="CHAINSTREAM_RPC_URL")] = "http://127.0.0.1:8545",
    out: Annotated[
        Path,
        typer.Option(
            envvar="CHAINSTREAM_DEPLOYMENT_FILE",
            help="deployment file to write: where `relay`, `audit` and the listener/artist commands look by default",
        ),
    ] = Path("deployments/local.json"),
    challenge_period: int = 86_400,
    key_rotation_grace: int = 3_600,
    stablecoin: Annotated[
        bool | None,
        typer.Option(
            "--stablecoin/--no-stablecoin",
            help="deploy the mock stablecoin (anyone can mint it); default: only on development chains",
            show_default=False,
        ),
    ] = None,
    token_admin: Annotated[
        str | None,
        typer.Option(
            envvar="CHAINSTREAM_TOKEN_ADMIN",
            help="the address that may allowlist ERC-20s (default: the deployer key's; "
            "required without CHAINSTREAM_DEPLOYER_KEY except on development chains)",
        ),
    ] = None,
    fund_from_node: Annotated[bool, typer.Option(help="fund the deployer from the node's unlocked account")] = False,
) -> None:
    """Deploy the contracts (deployer key: CHAINSTREAM_DEPLOYER_KEY, else a fresh key funded by the node)."""
    from chainstream.chain.deploy import deploy_all
    from chainstream.chain.node import connect
    from chainstream.chain.transactions import TxSender
    from chainstream.protocol.types import is_address

    if token_admin is not None and not is_address(token_admin):
        raise fail(f"--token-admin {token_admin!r} is not an address (0x and 40 hex digits)")
    try:
        w3 = connect(rpc_url)
        key, token_admin = _deployer(w3, token_admin, fund_from_node)
        d = deploy_all(
            w3,
            TxSender(w3, key),
            challenge_period=challenge_period,
            key_rotation_grace=key_rotation_grace,
            with_stablecoin=stablecoin,
            token_admin=token_admin,
        )
    except ChainStreamError as exc:
        raise fail(f"deploy failed: {exc}") from exc
    path = out
    d.save(path)
    console.print(f"ChainStreamChannels [bold]{d.channels}[/]\nTrackRegistry       [bold]{d.registry}[/]")
    console.print(f"token admin         [bold]{d.token_admin}[/]")
    if d.stablecoin:
        console.print(f"MockStablecoin      [bold]{d.stablecoin}[/] (a mock anyone can mint)")
    console.print(f"written to {path}")


def _deployer(w3: Web3, token_admin: str | None, fund_from_node: bool) -> tuple[PrivateKey, str | None]:
    """The deployer key (CHAINSTREAM_DEPLOYER_KEY, else a fresh key funded by the node) and the token admin (on a
    development chain without a deployer key: the node's own account)."""
    from chainstream.chain.deploy import is_dev_chain
    from chainstream.chain.transactions import fund
    from chainstream.protocol import PrivateKey

    secret = os.environ.get("CHAINSTREAM_DEPLOYER_KEY")
    if not secret and token_admin is None:
        # A generated deployer key is thrown away after the deploy: it must not be the token admin.
        if not is_dev_chain(w3.eth.chain_id):
            raise fail(
                "without CHAINSTREAM_DEPLOYER_KEY the deployer key is generated and discarded: pass "
                "--token-admin ADDRESS (the operator's address that may allowlist tokens)"
            )
        token_admin = w3.eth.accounts[0]  # the development node's own account, which funds the deployer
    key = PrivateKey(secret) if secret else PrivateKey.generate()
    if not secret or fund_from_node:
        fund(w3, key.address, 10 * 10**18)
    return key, token_admin


@app.command()
def demo(
    listeners: Annotated[int, typer.Option(min=1, max=100, help="how many listeners")] = 5,
    plays: Annotated[int, typer.Option(min=1, max=1000, help="plays and per-second listens per listener")] = 20,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            help="use this node (anvil, ...) instead of the embedded chain; actors are funded from its unlocked account"
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="derive every key, salt and choice from this seed")] = None,
    keep_serving: Annotated[bool, typer.Option(help="leave the relay (and web player) running afterwards")] = False,
    port: Annotated[int, typer.Option(help="relay port (0: any free port)")] = 0,
) -> None:
    """The whole product on a real chain and relay, ending in a reconciliation of every wei (exit 1 if off)."""
    from chainstream.demo import run_demo

    try:
        result = run_demo(
            listeners=listeners,
            plays=plays,
            rpc_url=rpc_url,
            seed=seed,
            keep_serving=keep_serving,
            port=port,
            console=console,
        )
    except ChainStreamError as exc:
        raise fail(f"demo failed [{exc.code}]: {exc}") from exc
    except KeyboardInterrupt:
        raise fail("interrupted") from None
    if not result.balanced:
        raise typer.Exit(1)


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="port of the relay and web player")] = 8700,
    rpc_port: Annotated[int, typer.Option(help="port of the local chain (anvil) a browser wallet connects to")] = 8545,
    host: Annotated[str, typer.Option(help="interface to serve the web player on")] = "127.0.0.1",
    deployment_out: Annotated[
        Path, typer.Option(help="also write the deployment here, for `chainstream relay/listener/artist` commands")
    ] = Path("deployments/local.json"),
) -> None:
    """A local stack for the web player: anvil, the contracts, the demo catalog and a relay serving the page, with
    funded dev keys to import into a browser wallet. Runs until Ctrl-C."""
    import signal
    import time

    from chainstream.devstack import instructions, start_stack
    from chainstream.relay.server import restore_recursion_limit

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        with console.status(
            "starting anvil, deploying the contracts, registering the demo catalog, starting the relay"
        ):
            stack = start_stack(port=port, rpc_port=rpc_port, host=host, deployment_out=deployment_out)
        restore_recursion_limit()  # as `chainstream relay`: the dev stack's chain is anvil, not the embedded one
    except ChainStreamError as exc:
        raise fail(f"the dev stack did not start: {exc}") from exc
    except KeyboardInterrupt:
        raise fail("interrupted") from None
    try:
        console.print(instructions(stack), highlight=False, soft_wrap=True)
        console.print(f"Deployment written to {deployment_out}", highlight=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        stack.stop()


@app.command()
def catalog(
    query: Annotated[str, typer.Argument(help="words to find in titles and artist names (default: every track)")] = "",
    relay_url: Annotated[str, typer.Option("--relay-url", envvar="CHAINSTREAM_RELAY_URL")] = "http://127.0.0.1:8700",
) -> None:
    """Search the relay's catalog: titles, artists, prices in every token the track takes, and track ids."""
    from chainstream.cli_common import catalog_rows, errors, verified_names
    from chainstream.cli_common import console as out
    from chainstream.sdk import RelayClient

    with errors():
        relay = RelayClient(relay_url, timeout=30)
        try:
            info, tracks = relay.info(), relay.get("/catalog")["tracks"]
            names = verified_names(relay, tracks)
        finally:
            relay.close()
        rows = catalog_rows(info, tracks, query, names)
        if not rows:
            out.print(f"no track matches {query!r}" if query else "the catalog is empty", highlight=False)
            return
        out.print(f"{len(rows)} track{'s' if len(rows) != 1 else ''}" + (f" matching {query!r}" if query else ""))
        for title, artist, prices, track_id in rows:
            out.print(f"“{escape(title)}” by {escape(artist)} · {prices} · {track_id}", highlight=False)


def _add_user_commands() -> None:
    from chainstream.cli_artist import app as artist_app
    from chainstream.cli_listener import app as listener_app

    app.add_typer(listener_app, name="listener")
    app.add_typer(artist_app, name="artist")


_add_user_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
