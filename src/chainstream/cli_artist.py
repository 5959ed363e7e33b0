"""`chainstream artist …`: publish a track with prices and a split, follow earnings, claim on-chain.

The artist's key comes from CHAINSTREAM_ARTIST_KEY.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from chainstream.chain.contracts import ChannelsClient
from chainstream.cli_common import (
    DEFAULT_RELAY_URL,
    DEFAULT_RPC_URL,
    CliError,
    DeploymentOpt,
    RelayUrl,
    RpcUrl,
    console,
    errors,
    key_from_env,
    open_session,
    short,
)
from chainstream.pricing import Model, Split, Terms
from chainstream.protocol.hashing import keccak
from chainstream.protocol.types import ZERO_ADDRESS, to_address
from chainstream.sdk import Artist

KEY_ENV = "CHAINSTREAM_ARTIST_KEY"
app = typer.Typer(
    help="Publish tracks, follow earnings and claim them (key: CHAINSTREAM_ARTIST_KEY).", no_args_is_help=True
)


def _share(text: str, what: str) -> tuple[str, int]:
    """ADDRESS:BPS (basis points: 2500 = 25%)."""
    address, _, bps = text.partition(":")
    try:
        return to_address(address), int(bps)
    except (ValueError, TypeError):
        raise CliError(
            f"{what} must be ADDRESS:BPS (e.g. 0xAbc…:2500 for 25%), got {text!r}", code="bad_split"
        ) from None


def track_id_of(audio: str) -> bytes:
    """The track id: keccak256 of the audio file's bytes, or a 0x-prefixed 32-byte id as given."""
    path = Path(audio)
    if path.is_file():
        return keccak(path.read_bytes())
    if audio.startswith("0x") and len(audio) == 66:
        return bytes.fromhex(audio[2:])
    raise CliError(f"{audio!r} is neither an audio file nor a 0x… track id", code="bad_track")


@app.command()
def register(
    audio: Annotated[str, typer.Argument(help="the audio file (its keccak256 is the track id) or a 0x… track id")],
    title: Annotated[str | None, typer.Option(help="default: the file name")] = None,
    token: Annotated[str, typer.Option(help="price in ETH, mUSD or a token address")] = "ETH",
    per_play: Annotated[str, typer.Option(help="price of a play, in whole tokens")] = "0",
    per_second: Annotated[str, typer.Option(help="price of a second of listening")] = "0",
    download: Annotated[str, typer.Option(help="price to buy the track outright (0: not for sale)")] = "0",
    own_after: Annotated[int, typer.Option(help="stream-to-own: owned after this many plays, each price doubling")] = 0,
    collaborator: Annotated[list[str] | None, typer.Option(help="ADDRESS:BPS, repeatable; you get the rest")] = None,
    fee: Annotated[str | None, typer.Option(help="platform fee ADDRESS:BPS, taken off the top")] = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Register a track with its prices and revenue split in the on-chain TrackRegistry."""
    with errors():
        key = key_from_env(KEY_ENV)
        with open_session(relay_url, rpc_url, deployment) as session:
            t = session.token(token)
            track_id = track_id_of(audio)
            name = title or Path(audio).stem
            terms = Terms(
                per_play=t.units(per_play),
                per_second=t.units(per_second),
                download=t.units(download),
                model=Model.STREAM_TO_OWN if own_after else Model.FLAT,
                own_after=own_after,
            )
            shares = [_share(c, "--collaborator") for c in collaborator or []]
            fee_to, fee_bps = _share(fee, "--fee") if fee else (ZERO_ADDRESS, 0)
            split = Split(
                (key.address, *(a for a, _ in shares)),
                (10_000 - sum(b for _, b in shares), *(b for _, b in shares)),
                fee_to,
                fee_bps,
            )
            artist = Artist(key, w3=session.w3, deployment=session.deployment, relay=session.relay)
            with console.status(f"registering “{name}”"):
                artist.register_track(track_id, name, terms, split, token=t.address)
            console.print(f"registered “{escape(name)}” as [bold]0x{track_id.hex()}[/]", highlight=False)
            prices = [
                f"{t.fmt(terms.per_play)}/play" if terms.per_play else "",
                f"{t.fmt(terms.per_second)}/second" if terms.per_second else "",
                f"{t.fmt(terms.download)} to download" if terms.download else "",
                f"owned after {own_after} plays" if own_after else "",
            ]
            console.print("prices: " + (", ".join(p for p in prices if p) or "free"), highlight=False)
            parts = [f"you {split.bps[0] / 100:g}%", *(f"{short(a)} {b / 100:g}%" for a, b in shares)]
            if fee_bps:
                parts.append(f"fee {fee_bps / 100:g}% to {short(fee_to)}")
            console.print("split: " + ", ".join(parts), highlight=False)


@app.command()
def earnings(
    address: Annotated[
        str | None,
        typer.Option(help="whose earnings: the key's own address (the relay shows earnings to the artist only)"),
    ] = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Earnings per token and per track (relay), and what is claimable now (chain)."""
    with errors():
        key = key_from_env(KEY_ENV)
        payee = to_address(address) if address else key.address
        if payee != key.address:
            raise CliError(
                f"the relay shows earnings only to the artist itself: set {KEY_ENV} to the key of {payee}",
                code="not_your_earnings",
            )
        with open_session(relay_url, rpc_url, deployment) as session:
            data = Artist(key, w3=session.w3, deployment=session.deployment, relay=session.relay).earnings()
            channels = ChannelsClient(session.w3, session.deployment.channels)
            totals = Table(title=f"earnings of {payee}")
            for col in ("token", "earned", "pending", "settled", "claimed", "claimable now"):
                totals.add_column(col, justify="left" if col == "token" else "right")
            for t in session.tokens:
                row = data["tokens"].get(t.address, {})
                totals.add_row(
                    t.symbol,
                    *(t.num(int(row.get(k, 0))) for k in ("total", "pending", "settled", "claimed")),
                    t.num(channels.claimable(payee, t.address)),
                )
            console.print(totals)
            if data["tracks"]:
                tracks = Table(title="per track")
                for col in ("track", "token", "plays", "seconds", "downloads", "tips", "earned"):
                    tracks.add_column(col, justify="left" if col in ("track", "token") else "right")
                for r in sorted(data["tracks"], key=lambda r: (r["token"], -int(r["earned"]))):
                    t = session.token_at(r["token"])
                    title = escape(r["title"]) if r["title"] else short(r["target"])
                    tracks.add_row(
                        title,
                        t.symbol,
                        str(r["plays"]),
                        str(r["seconds"]),
                        str(r["downloads"]),
                        t.num(int(r["tips"])),
                        t.num(int(r["earned"])),
                    )
                console.print(tracks)


@app.command()
def claim(
    token: Annotated[str | None, typer.Option(help="ETH, mUSD or a token address (default: every token)")] = None,
    to: Annotated[str | None, typer.Option(help="send to this address instead")] = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Withdraw everything settled to you."""
    with errors():
        key = key_from_env(KEY_ENV)
        with open_session(relay_url, rpc_url, deployment) as session:
            artist = Artist(key, w3=session.w3, deployment=session.deployment, relay=session.relay)
            tokens = [session.token(token)] if token else session.tokens
            total_claims = 0
            for t in tokens:
                amount = artist.claim(t.address, to=to_address(to) if to else None)
                total_claims += amount
                console.print(
                    f"claimed [bold]{t.fmt(amount)}[/]" if amount else f"nothing to claim in {t.symbol}",
                    highlight=False,
                )
            if token and total_claims == 0:
                pending = artist.earnings()["tokens"].get(tokens[0].address)
                if pending and int(pending.get("pending", 0)):
                    console.print(
                        f"({tokens[0].fmt(int(pending['pending']))} earned but not settled yet: "
                        "the relay settles in batches)",
                        highlight=False,
                    )
