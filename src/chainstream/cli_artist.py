"""`chainstream artist …`: publish a track with prices and a split, sign your name, follow earnings, claim on-chain.

The artist's key comes from CHAINSTREAM_ARTIST_KEY.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from chainstream.chain.contracts import ChannelsClient, RegistryClient
from chainstream.cli_common import (
    DEFAULT_RELAY_URL,
    DEFAULT_RPC_URL,
    CliError,
    DeploymentOpt,
    RelayUrl,
    RpcUrl,
    Session,
    console,
    errors,
    key_from_env,
    open_session,
    short,
)
from chainstream.pricing import MAX_FEE_BPS, Model, Split, Terms
from chainstream.protocol import PrivateKey
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from chainstream.sdk import Artist
from chainstream.sdk.artist import file_keccak as keccak_file
from chainstream.tokens import TokenInfo

KEY_ENV = "CHAINSTREAM_ARTIST_KEY"
app = typer.Typer(
    help="Publish tracks, follow earnings and claim them (key: CHAINSTREAM_ARTIST_KEY).", no_args_is_help=True
)


@contextmanager
def _artist(
    relay_url: str, rpc_url: str, deployment: Path | None, key: PrivateKey | None = None
) -> Iterator[tuple[Artist, Session]]:
    """The artist client of `key` (default: the one in CHAINSTREAM_ARTIST_KEY) on a session with the relay and
    its chain, closed on the way out."""
    key = key if key is not None else key_from_env(KEY_ENV)
    with open_session(relay_url, rpc_url, deployment) as session:
        yield Artist(key, w3=session.w3, deployment=session.deployment, relay=session.relay), session


def _share(text: str, what: str) -> tuple[Address, int]:
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
        return keccak_file(path)
    if audio.startswith("0x") and len(audio) == 66:
        return bytes.fromhex(audio[2:])
    raise CliError(f"{audio!r} is neither an audio file nor a 0x… track id", code="bad_track")


def _pct(bps: int) -> str:
    return f"{bps / 100:g}%"


def _split(owner: Address, collaborators: list[str] | None, fee: str | None) -> Split:
    """The owner takes what the collaborators leave; every share and the fee checked with the numbers stated."""
    shares = [_share(c, "--collaborator") for c in collaborators or []]
    given = sum(b for _, b in shares)
    if any(b <= 0 for _, b in shares):
        raise CliError("every collaborator's share must be more than 0 bps", code="bad_split")
    if given >= 10_000:
        listed = " + ".join(f"{b}" for _, b in shares)
        raise CliError(
            f"the collaborators' shares add up to {_pct(given)} ({listed} = {given} bps): they must leave you "
            "more than 0% (at most 9,999 bps in all)",
            code="bad_split",
        )
    if owner in (a for a, _ in shares):
        raise CliError(f"{owner} is you: your share is what the collaborators leave", code="bad_split")
    fee_to, fee_bps = _share(fee, "--fee") if fee else (ZERO_ADDRESS, 0)
    if fee and not 0 < fee_bps <= MAX_FEE_BPS:
        raise CliError(
            f"the fee is {_pct(fee_bps)} ({fee_bps} bps): it must be more than 0 and at most {_pct(MAX_FEE_BPS)}",
            code="bad_split",
        )
    return Split((owner, *(a for a, _ in shares)), (10_000 - given, *(b for _, b in shares)), fee_to, fee_bps)


def _terms(
    t: TokenInfo, per_play: str, per_second: str, download: str, own_after: int, *, free: bool, to: str
) -> Terms:
    """The prices typed; every price 0 is refused unless `free` says so (a track published free by accident)."""
    terms = Terms(
        per_play=t.units(per_play),
        per_second=t.units(per_second),
        download=t.units(download),
        model=Model.STREAM_TO_OWN if own_after else Model.FLAT,
        own_after=own_after,
    )
    if not (terms.per_play or terms.per_second or terms.download) and not free:
        raise CliError(
            f"every price is 0: set --per-play, --per-second or --download, or pass --free to {to}", code="free_track"
        )
    return terms


def _print_terms(t: TokenInfo, terms: Terms) -> None:
    prices = [
        f"{t.fmt(terms.per_play)}/play" if terms.per_play else "",
        f"{t.fmt(terms.per_second)}/second" if terms.per_second else "",
        f"{t.fmt(terms.download)} to download" if terms.download else "",
        f"owned after {terms.own_after} plays" if terms.own_after else "",
    ]
    console.print("prices: " + (", ".join(p for p in prices if p) or "free"), highlight=False)


def _print_split(split: Split) -> None:
    parts = [
        f"you {_pct(split.bps[0])}",
        *(f"{short(a)} {_pct(b)}" for a, b in zip(split.recipients[1:], split.bps[1:], strict=True)),
    ]
    if split.fee_bps:
        parts.append(f"fee {_pct(split.fee_bps)} to {short(split.fee_recipient)} (off the top)")
    console.print("split: " + ", ".join(parts), highlight=False)


def _owned_track(session: Session, key_address: str, spec: str) -> tuple[bytes, str]:
    """A track (0x… id, or a title or unique part of one in the relay's catalog) that this key owns on chain."""
    if spec.startswith("0x"):
        track_id = track_id_of(spec)
    else:
        tracks = session.relay.get("/catalog")["tracks"]
        matches = [t for t in tracks if t["title"].lower() == spec.lower()] or [
            t for t in tracks if spec.lower() in t["title"].lower()
        ]
        mine = [t for t in matches if to_address(t["owner"]) == key_address] or matches
        if not mine:
            raise CliError(f"no track in the catalog matches {spec!r}", code="unknown_track")
        if len(mine) > 1:
            titles = ", ".join(f"“{t['title']}”" for t in mine[:5])
            raise CliError(f"{spec!r} matches several tracks: {titles}; give its 0x… id", code="ambiguous_track")
        track_id = bytes.fromhex(mine[0]["trackId"][2:])
    info = RegistryClient(session.w3, session.deployment.registry).find_track(track_id)
    if info is None:
        raise CliError(f"track 0x{track_id.hex()} is not registered", code="unknown_track")
    if to_address(info.owner) != key_address:
        raise CliError(
            f"“{info.title or short(track_id)}” belongs to {info.owner}, not to {key_address} ({KEY_ENV})",
            code="not_owner",
        )
    return track_id, info.title or short(track_id)


@app.command()
def register(
    audio: Annotated[str, typer.Argument(help="the audio file (its keccak256 is the track id) or a 0x… track id")],
    title: Annotated[str | None, typer.Option(help="default: the file name (required with a 0x… track id)")] = None,
    token: Annotated[str, typer.Option(help="price in ETH, mUSD or a token address")] = "ETH",
    per_play: Annotated[str, typer.Option(help="price of a play, in whole tokens")] = "0",
    per_second: Annotated[str, typer.Option(help="price of a second of listening")] = "0",
    download: Annotated[str, typer.Option(help="price to buy the track outright (0: not for sale)")] = "0",
    own_after: Annotated[int, typer.Option(help="stream-to-own: owned after this many plays, each price doubling")] = 0,
    collaborator: Annotated[list[str] | None, typer.Option(help="ADDRESS:BPS, repeatable; you get the rest")] = None,
    fee: Annotated[str | None, typer.Option(help="platform fee ADDRESS:BPS, taken off the top")] = None,
    free: Annotated[bool, typer.Option(help="publish with every price 0 (listeners pay nothing)")] = False,
    upload: Annotated[bool, typer.Option(help="then upload the audio file to the relay (it streams it)")] = False,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Register a track with its prices and revenue split in the on-chain TrackRegistry (and, with --upload,
    publish its audio on the relay)."""
    with errors():
        key = key_from_env(KEY_ENV)
        track_id = track_id_of(audio)
        if title is None and not Path(audio).is_file():
            raise CliError(
                "give the track a --title (a 0x… track id has no file name to take it from)", code="no_title"
            )
        name = (title if title is not None else Path(audio).stem).strip()
        if upload and not Path(audio).is_file():
            raise CliError("--upload needs the audio file, not a track id", code="no_file")
        if not name:
            raise CliError("the title is empty: give the track a --title", code="no_title")
        with _artist(relay_url, rpc_url, deployment, key) as (artist, session):
            t = session.token(token)
            terms = _terms(t, per_play, per_second, download, own_after, free=free, to="publish it free")
            split = _split(key.address, collaborator, fee)
            with console.status(f"registering “{name}”"):
                artist.register_track(track_id, name, terms, split, token=t.address)
            console.print(f"registered “{escape(name)}” as [bold]0x{track_id.hex()}[/]", highlight=False)
            _print_terms(t, terms)
            _print_split(split)
            if upload:
                _upload(artist, Path(audio), track_id)


def _upload(artist: Artist, path: Path, track_id: bytes) -> None:
    with console.status(f"uploading {path.name} (the relay transcodes it)"):
        manifest = artist.upload(path, track_id)
    state = "published" if manifest["status"] == "published" else "already published"
    console.print(
        f"audio {state}: {manifest['duration']:.1f} s in {len(manifest['segments'])} segments, "
        f"served per payment at {manifest['trackId']}",
        highlight=False,
    )


@app.command()
def upload(
    audio: Annotated[Path, typer.Argument(help="the audio file registered as the track (its keccak256 is the id)")],
    track: Annotated[str | None, typer.Option(help="the 0x… track id (default: the file's keccak256)")] = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Publish a registered track's audio on the relay (signed as the track's owner; the relay checks the
    owner on chain and that the file's keccak256 is the track id, then transcodes it for streaming)."""
    with errors():
        key = key_from_env(KEY_ENV)
        if not audio.is_file():
            raise CliError(f"{audio} is not a file", code="no_file")
        file_id = keccak_file(audio)
        track_id = track_id_of(track) if track else file_id
        if track_id != file_id:
            raise CliError(
                f"{audio.name} hashes to 0x{file_id.hex()}, not the track 0x{track_id.hex()}: the relay takes only "
                "the very file the track was registered with",
                code="content_mismatch",
            )
        with _artist(relay_url, rpc_url, deployment, key) as (artist, _):
            _upload(artist, audio, track_id)


@app.command()
def name(
    new_name: Annotated[
        str, typer.Argument(metavar="NAME", help="the name players show for your address (1-64 characters)")
    ],
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Sign and publish your name (a profile you sign: players verify it, the relay cannot alter it)."""
    with errors():
        with _artist(relay_url, rpc_url, deployment) as (artist, _):
            reply = artist.set_name(new_name)
        console.print(f"{short(artist.address)} is now “{escape(reply['name'])}”", highlight=False)


@app.command("set-price")
def set_price(
    track: Annotated[str, typer.Argument(help="title (or part of it) or 0x… track id of a track you own")],
    token: Annotated[str, typer.Option(help="the prices' token: ETH, mUSD or a token address")] = "ETH",
    per_play: Annotated[str, typer.Option(help="price of a play, in whole tokens")] = "0",
    per_second: Annotated[str, typer.Option(help="price of a second of listening")] = "0",
    download: Annotated[str, typer.Option(help="price to buy the track outright (0: not for sale)")] = "0",
    own_after: Annotated[int, typer.Option(help="stream-to-own: owned after this many plays, each price doubling")] = 0,
    free: Annotated[bool, typer.Option(help="set every price to 0 (listeners pay nothing)")] = False,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """New prices for a track in one token; they apply to plays priced from now on."""
    with errors(), _artist(relay_url, rpc_url, deployment) as (artist, session):
        track_id, name = _owned_track(session, artist.address, track)
        t = session.token(token)
        terms = _terms(t, per_play, per_second, download, own_after, free=free, to="make it free")
        with console.status(f"setting the {t.symbol} prices of “{name}”"):
            artist.set_terms(track_id, terms, token=t.address)
        console.print(f"new {t.symbol} prices for “{escape(name)}”", highlight=False)
        _print_terms(t, terms)


@app.command("set-split")
def set_split(
    track: Annotated[str, typer.Argument(help="title (or part of it) or 0x… track id of a track you own")],
    collaborator: Annotated[list[str] | None, typer.Option(help="ADDRESS:BPS, repeatable; you get the rest")] = None,
    fee: Annotated[str | None, typer.Option(help="platform fee ADDRESS:BPS, taken off the top")] = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """A new revenue split for a track (a new version: plays already signed keep paying the old one)."""
    with errors(), _artist(relay_url, rpc_url, deployment) as (artist, session):
        track_id, name = _owned_track(session, artist.address, track)
        split = _split(artist.address, collaborator, fee)
        with console.status(f"setting the split of “{name}”"):
            artist.set_split(track_id, split)
        console.print(f"new split for “{escape(name)}”", highlight=False)
        _print_split(split)


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
        with _artist(relay_url, rpc_url, deployment, key) as (artist, session):
            data = artist.earnings()
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
    with errors(), _artist(relay_url, rpc_url, deployment) as (artist, session):
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


@app.command()
def payouts(
    token: Annotated[str, typer.Option(help="ETH, mUSD or a token address")] = "mUSD",
    threshold: Annotated[str, typer.Option(help="pay out once the balance reaches this, in whole tokens")] = "0",
    period_days: Annotated[float, typer.Option(help="at most one payout per this many days (0: no waiting)")] = 0.0,
    max_fee: Annotated[
        str | None, typer.Option(help="the most the relay may keep per payout, in whole tokens (default: its quote)")
    ] = None,
    to: Annotated[str | None, typer.Option(help="pay out to this address instead of yours")] = None,
    off: Annotated[bool, typer.Option(help="stop scheduled payouts (claims keep working)")] = False,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
) -> None:
    """Have the relay push your balance to you (no transaction, no gas: you sign, the relay submits)."""
    with errors(), _artist(relay_url, rpc_url, deployment) as (artist, session):
        t = session.token(token)
        minimum, period = t.units(threshold), int(period_days * 86_400)
        if not off and minimum <= 0 and period <= 0:
            raise CliError("give a --threshold or a --period-days (or --off)", code="bad_schedule")
        fee = t.units(max_fee) if max_fee is not None else None
        artist.schedule_payouts(
            t.address,
            threshold=minimum,
            period=period,
            max_fee=fee,
            recipient=to_address(to) if to else ZERO_ADDRESS,
            enabled=not off,
        )
        if off:
            console.print(f"scheduled payouts of {t.symbol} stopped", highlight=False)
        else:
            when = f"once it reaches {t.fmt(minimum)}" if minimum else "whenever there is any"
            every = f", at most every {period_days:g} days" if period else ""
            console.print(
                f"the relay pays out your {t.symbol} {when}{every}, to {to or artist.address}", highlight=False
            )
