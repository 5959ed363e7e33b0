"""`chainstream listener …`: open a channel once, then pay plays, seconds and tips from the terminal.

The wallet key comes from CHAINSTREAM_LISTENER_KEY. `open` creates a session key and keeps it, with the
channel id, in a small JSON state file (default ~/.chainstream/listener-<address>.json, mode 0600); every
later command signs its vouchers with that session key, so no command but open/close/withdraw sends a
transaction.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from chainstream.chain.contracts import ChannelStatus
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
from chainstream.protocol import PrivateKey
from chainstream.protocol.types import ZERO_ADDRESS, to_address
from chainstream.sdk import Listener, Paid
from chainstream.tokens import TokenInfo

KEY_ENV = "CHAINSTREAM_LISTENER_KEY"
app = typer.Typer(
    help="Pay for music from a payment channel (wallet key: CHAINSTREAM_LISTENER_KEY).", no_args_is_help=True
)

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state",
        envvar="CHAINSTREAM_LISTENER_STATE",
        help="state file with the channel id and session key (default ~/.chainstream/listener-<address>.json)",
    ),
]
#: open, topup and close can each be sent gas-free through the relay, within a fee the listener bounds
GaslessOpt = Annotated[
    bool, typer.Option(help="no ETH needed: sign, and the relay submits and keeps its fee in the token")
]
MaxFeeOpt = Annotated[
    str | None,
    typer.Option(help="with --gasless: the most the relay may keep, in whole tokens (default: its quote)"),
]


@dataclass
class ListenerState:
    address: str
    chain_id: int
    channels: str
    channel_id: str
    token: str
    session_key: str  # the session key's secret: it can only sign vouchers for this channel, until it expires
    session_expiry: int
    relay_url: str

    @classmethod
    def load(cls, path: Path) -> ListenerState:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise CliError(
                f"no channel yet ({path} does not exist): run `chainstream listener open`", code="no_channel"
            ) from None
        except (ValueError, TypeError) as exc:
            raise CliError(f"{path} is not a listener state file: {exc}", code="bad_state") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(self), indent=2) + "\n")


def state_path(state: Path | None, address: str) -> Path:
    return state or Path.home() / ".chainstream" / f"listener-{address}.json"


class Ctx:
    """The wallet, the relay and chain, the state file and (once attached) the channel."""

    def __init__(self, relay_url: str, rpc_url: str, deployment: Path | None, state: Path | None) -> None:
        self.wallet = key_from_env(KEY_ENV)
        self.path = state_path(state, self.wallet.address)
        self.session: Session = open_session(relay_url, rpc_url, deployment)
        self.relay_url = relay_url

    def listener(self) -> tuple[Listener, ListenerState, TokenInfo]:
        """The listener attached to the channel in the state file (its ledger resynchronised from the relay)."""
        st = ListenerState.load(self.path)
        d = self.session.deployment
        if st.address != self.wallet.address:
            raise CliError(
                f"{self.path} belongs to {st.address}, not to {self.wallet.address} ({KEY_ENV})", code="bad_state"
            )
        if st.chain_id != d.chain_id or to_address(st.channels) != d.channels:
            raise CliError(
                f"{self.path} is for another deployment (chain {st.chain_id}, {st.channels})", code="bad_state"
            )
        listener = Listener(
            self.wallet,
            w3=self.session.w3,
            deployment=d,
            relay=self.session.relay,
            session_key=PrivateKey(st.session_key),
        )
        listener.attach(bytes.fromhex(st.channel_id.removeprefix("0x")))
        return listener, st, self.session.token_at(st.token)

    def __enter__(self) -> Ctx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


def _paid_line(what: str, paid: Paid, token: TokenInfo) -> str:
    return (
        f"{what}: paid [bold]{token.fmt(paid.amount)}[/] · voucher seq {paid.seq}, total {token.fmt(paid.total)}"
        f" · remaining {token.fmt(paid.remaining)}"
    )


def _ts(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC") if unix else "—"


def _require_token(t: TokenInfo) -> None:
    if t.address == ZERO_ADDRESS:
        raise CliError("--gasless takes a token channel (an ETH payer has gas): use --token mUSD", code="bad_token")


def _max_fee(t: TokenInfo, text: str | None) -> int | None:
    if text is None:
        return None
    value = t.units(text)
    if value < 0:
        raise CliError("--max-fee must not be negative", code="bad_amount")
    return value


def _refuse_if_still_open(ctx: Ctx) -> None:
    """CliError if the state file names a channel of this deployment that is still open or closing: opening
    another would overwrite the only copy of its session key."""
    old = ListenerState.load(ctx.path)
    listener = Listener(ctx.wallet, w3=ctx.session.w3, deployment=ctx.session.deployment)
    listener.channel_id = bytes.fromhex(old.channel_id.removeprefix("0x"))
    if old.channels == ctx.session.deployment.channels and listener.chain_state().status in (
        ChannelStatus.OPEN,
        ChannelStatus.CLOSING,
    ):
        raise CliError(
            f"channel {old.channel_id} in {ctx.path} is still open: close it first (or --force, or another --state)",
            code="channel_exists",
        )


@app.command("open")
def open_(
    deposit: Annotated[str, typer.Option(help="amount to escrow, in whole tokens (e.g. 0.01)")],
    token: Annotated[str, typer.Option(help="ETH, mUSD or a token address")] = "ETH",
    permit: Annotated[bool, typer.Option(help="approve with an EIP-2612 permit in the same transaction")] = False,
    session_days: Annotated[float, typer.Option(help="how long the session key may sign")] = 7.0,
    force: Annotated[bool, typer.Option(help="replace the state file even if its channel is still open")] = False,
    gasless: GaslessOpt = False,
    max_fee: MaxFeeOpt = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Escrow a deposit once and authorise a fresh session key to sign every payment."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        if ctx.path.exists() and not force:
            _refuse_if_still_open(ctx)
        t = ctx.session.token(token)
        amount = t.units(deposit)
        if amount <= 0:
            raise CliError("the deposit must be positive", code="bad_amount")
        listener = Listener(ctx.wallet, w3=ctx.session.w3, deployment=ctx.session.deployment, relay=ctx.session.relay)
        if gasless:
            _require_token(t)
            with console.status(f"signing for a gas-free channel of {t.fmt(amount)} (the relay submits it)"):
                cid = listener.open_gasless(
                    amount, token=t.address, max_fee=_max_fee(t, max_fee), session_ttl=int(session_days * 86_400)
                )
        else:
            with console.status(f"opening a channel with {t.fmt(amount)}"):
                cid = listener.open_channel(
                    amount, token=t.address, permit=permit, session_ttl=int(session_days * 86_400)
                )
        chain = listener.chain_state()
        ListenerState(
            ctx.wallet.address,
            ctx.session.deployment.chain_id,
            ctx.session.deployment.channels,
            "0x" + cid.hex(),
            t.address,
            "0x" + listener.session_key.secret.hex(),
            chain.session_expiry,
            ctx.relay_url,
        ).save(ctx.path)
        console.print(f"opened channel [bold]0x{cid.hex()}[/] with {t.fmt(chain.deposit)}", highlight=False)
        if gasless:
            console.print(f"the relay kept {t.fmt(amount - chain.deposit)} for the gas", highlight=False)
        console.print(f"session key {listener.session_key.address} signs until {_ts(chain.session_expiry)}")
        console.print(f"state saved to {ctx.path}")


@app.command()
def topup(
    amount: Annotated[str, typer.Argument(help="how much to add to the deposit, in whole tokens (e.g. 0.01)")],
    gasless: GaslessOpt = False,
    max_fee: MaxFeeOpt = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Add to the channel's deposit (one transaction; a token channel approves the contract first if needed)."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        value = t.units(amount)
        if value <= 0:
            raise CliError("the top-up must be more than zero", code="bad_amount")
        if listener.chain_state().status != ChannelStatus.OPEN:
            raise CliError(
                "the channel is not open: open a new one with `chainstream listener open`", code="channel_not_open"
            )
        if gasless:
            _require_token(t)
            with console.status(f"signing a gas-free top-up of {t.fmt(value)} (the relay submits it)"):
                listener.top_up_gasless(value, max_fee=_max_fee(t, max_fee))
        else:
            with console.status(f"adding {t.fmt(value)} to the deposit"):
                listener.top_up(value)
        chain = listener.chain_state()
        if listener.state is None:  # attach() always sets it (resynced from the relay); this narrows the Optional
            raise CliError("the channel's payment state could not be read from the relay", code="bad_state")
        console.print(
            f"topped up [bold]{t.fmt(value)}[/]: deposit {t.fmt(chain.deposit)}, "
            f"not yet spent {t.fmt(chain.deposit - listener.state.voucher.total)}",
            highlight=False,
        )


@app.command()
def play(
    track: Annotated[str, typer.Argument(help="title (or part of it) or track id")],
    times: Annotated[int, typer.Option(min=1, max=1000, help="play it this many times")] = 1,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Pay for plays of a track (one voucher each)."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        track_id, title = ctx.session.track(track, listener.token)
        for _ in range(times):
            console.print(_paid_line(f"♪ “{escape(title)}”", listener.play(track_id), t), highlight=False)


@app.command()
def listen(
    track: Annotated[str, typer.Argument(help="title (or part of it) or track id")],
    seconds: Annotated[int, typer.Option(min=1, max=3600, help="seconds listened")],
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Pay for seconds of listening at the track's per-second price."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        track_id, title = ctx.session.track(track, listener.token)
        paid = listener.listen(track_id, seconds)
        console.print(_paid_line(f"♪ {seconds} s of “{escape(title)}”", paid, t), highlight=False)


@app.command()
def download(
    track: Annotated[str, typer.Argument(help="title (or part of it) or track id")],
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Buy a track outright: later plays are free."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        track_id, title = ctx.session.track(track, listener.token)
        console.print(_paid_line(f"⬇ “{escape(title)}”", listener.download(track_id), t), highlight=False)


@app.command()
def tip(
    amount: Annotated[str, typer.Argument(help="in whole tokens, e.g. 0.001")],
    track: Annotated[str | None, typer.Option(help="tip a track (its split applies)")] = None,
    artist: Annotated[str | None, typer.Option(help="tip an artist's address directly")] = None,
    message: Annotated[str, typer.Option(help="a message for the artist")] = "",
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Tip a track or an artist, with an optional message."""
    with errors():
        if (track is None) == (artist is None):
            raise CliError("tip either --track or --artist", code="bad_tip")
        with Ctx(relay_url, rpc_url, deployment, state) as ctx:
            listener, _, t = ctx.listener()
            units = t.units(amount)
            if track is not None:
                track_id, title = ctx.session.track(track, listener.token)
                paid = listener.tip(units, track_id=track_id, message=message)
                what = f"♥ tip to “{escape(title)}”"
            else:
                paid = listener.tip(units, artist=to_address(artist or ""), message=message)
                what = f"♥ tip to {artist}"
            console.print(_paid_line(what, paid, t), highlight=False)


@app.command()
def status(
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Deposit, spent, settled, remaining, today's spend and caps (relay) next to the chain's view."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, st, t = ctx.listener()
        s = listener.spending()
        chain = listener.chain_state()
        table = Table(title=f"channel {short(st.channel_id)} ({t.symbol})", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        status_text = chain.status.name.lower()
        if chain.status == ChannelStatus.CLOSING:
            status_text += f" (window ends {_ts(chain.closes_at)})"
        rows = [
            ("status", status_text),
            ("deposit", t.fmt(chain.deposit)),
            ("spent (vouchers signed)", t.fmt(int(s["spent"]))),
            ("settled on chain", t.fmt(chain.settled)),
            ("remaining", t.fmt(int(s["remaining"]))),
            ("spent today", t.fmt(int(s["spentToday"]))),
            ("daily cap", t.fmt(int(s["dailyCap"])) if s["dailyCap"] else "none"),
            ("session cap", t.fmt(int(s["sessionCap"])) if s["sessionCap"] else "none"),
            ("payments", str(s["seq"])),
            ("session key", chain.session_key),
            ("session key valid until", _ts(chain.session_expiry)),
        ]
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)


@app.command()
def history(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """The channel's latest payments, as the relay stored them."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        items = listener.history(limit)
        table = Table(title=f"last {len(items)} payments")
        for col in ("seq", "kind", "track / payee", "units", "amount", "total", "message"):
            table.add_column(col, justify="right" if col in ("seq", "units", "amount", "total") else "left")
        for i in items:
            target = escape(i["title"]) if i["title"] else short(i["target"])
            table.add_row(
                str(i["seq"]),
                i["kind"],
                target,
                str(i["units"]),
                t.num(int(i["amount"])),
                t.num(int(i["total"])),
                escape(i["memo"] or ""),
            )
        console.print(table)


@app.command()
def caps(
    daily: Annotated[str | None, typer.Option(help="refuse payments past this much per UTC day (0: no cap)")] = None,
    session: Annotated[str | None, typer.Option(help="refuse payments past this much in total (0: no cap)")] = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Show or set spending caps (signed by the session key, enforced by the relay)."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        s = listener.spending()
        if daily is not None or session is not None:
            current_daily = int(s["dailyCap"] or 0)
            current_session = int(s["sessionCap"] or 0)
            s = listener.set_caps(
                daily=t.units(daily) if daily is not None else current_daily,
                session=t.units(session) if session is not None else current_session,
            )
        console.print(
            f"daily cap: {t.fmt(int(s['dailyCap'])) if s['dailyCap'] else 'none'} "
            f"(spent today {t.fmt(int(s['spentToday']))}) · "
            f"session cap: {t.fmt(int(s['sessionCap'])) if s['sessionCap'] else 'none'} "
            f"(spent {t.fmt(int(s['spent']))})",
            highlight=False,
        )


@app.command()
def close(
    unilateral: Annotated[bool, typer.Option(help="close without the relay: start the challenge window")] = False,
    gasless: GaslessOpt = False,
    max_fee: MaxFeeOpt = None,
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """Close the channel: cooperatively (refund now) or unilaterally (refund after the challenge window)."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        if unilateral:
            with console.status("requesting close"):
                closes_at = listener.request_close()
            console.print(
                f"close requested: the relay may settle your latest voucher until {_ts(closes_at)}; "
                "then run `chainstream listener withdraw`"
            )
        else:
            with console.status("asking the relay to co-sign the close"):
                if gasless:
                    _require_token(t)
                    refund = listener.close_gasless(max_fee=_max_fee(t, max_fee))
                else:
                    refund = listener.close_cooperatively()
            chain = listener.chain_state()
            console.print(f"closed: settled {t.fmt(chain.settled)}, refunded [bold]{t.fmt(refund)}[/]", highlight=False)


@app.command()
def withdraw(
    relay_url: RelayUrl = DEFAULT_RELAY_URL,
    rpc_url: RpcUrl = DEFAULT_RPC_URL,
    deployment: DeploymentOpt = None,
    state: StateOpt = None,
) -> None:
    """After a unilateral close's challenge window: take back the unspent deposit."""
    with errors(), Ctx(relay_url, rpc_url, deployment, state) as ctx:
        listener, _, t = ctx.listener()
        chain = listener.chain_state()
        now = int(ctx.session.w3.eth.get_block("latest")["timestamp"])
        if chain.status == ChannelStatus.OPEN:
            raise CliError(
                "the channel is open: `chainstream listener close --unilateral` first, or close cooperatively",
                code="channel_open",
            )
        if chain.status == ChannelStatus.CLOSED:
            raise CliError("the channel is already closed", code="channel_closed")
        if now < chain.closes_at:
            raise CliError(
                f"the challenge window is open until {_ts(chain.closes_at)} "
                f"({(chain.closes_at - now) / 3600:.1f} h left)",
                code="window_not_over",
            )
        refund = listener.withdraw()
        console.print(f"withdrew [bold]{t.fmt(refund)}[/] (settled {t.fmt(chain.settled)})", highlight=False)
