"""`chainstream demo`: the whole product on a real chain with a real relay, told as a story.

1. start a chain (the embedded py-evm chain, or any node with --rpc-url) and deploy the contracts;
2. publish the demo catalog (artists, collaborators, a label, a platform fee; audio made by code);
3. start the relay over HTTP (uvicorn in a background thread), with its settler and watchtower;
4. listeners open channels (ETH, the stablecoin, one with an EIP-2612 permit) and pay plays, seconds of
   listening, a download, the stream-to-own track and tips, each with an off-chain voucher sent over HTTP;
5. a daily cap refuses one payment; the relay settles in a batch; every payee claims;
6. some listeners close cooperatively; one closes unilaterally on a stale voucher and the watchtower
   settles the latest one inside the challenge window;
7. a reconciliation per token, read only from the chain, accounts for every wei.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from web3 import Web3

from chainstream import seed as demo_seed
from chainstream.audit import PayeeBalance, TokenReconciliation, reconcile, reconciliation_table
from chainstream.chain.contracts import ChannelsClient, RegistryClient, TokenClient
from chainstream.chain.deploy import Deployment, deploy_all
from chainstream.chain.node import advance_time, connect, embedded_web3
from chainstream.chain.transactions import TxSender, fund
from chainstream.config import Settings
from chainstream.errors import ChainError, ChainStreamError, ConfigurationError
from chainstream.pricing import Model
from chainstream.protocol import PrivateKey, SignedVoucher
from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from chainstream.relay.thread import RelayThread
from chainstream.sdk import Artist, Listener, RelayClient, RelayError
from chainstream.tokens import TokenInfo

ETHER = 10**18
USD = demo_seed.USD
CHALLENGE_PERIOD = 86_400
LISTENER_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
TIP_MESSAGES = (
    "that bassline!",
    "played it on repeat all morning",
    "for the next album",
    "thank you for this",
    "saw you live in Lisbon",
    "the bridge at 1:12",
    "more of this please",
    "my commute is better now",
)
# Unlimited in practice: in the demo the relay settles when asked (a round, or its watchtower), so the story
# is deterministic. With --keep-serving the normal policy (settle what is due and worth its gas) is restored.
ON_DEMAND = 10**36


class DemoFailed(ChainStreamError):
    code = "demo_failed"


# ------------------------------------------------------------------------------------------ formatting
def short(value: str | bytes, keep: int = 6) -> str:
    text = "0x" + value.hex() if isinstance(value, bytes) else value
    return f"{text[: keep + 2]}…{text[-4:]}"


def derive_key(seed: int | None, name: str) -> PrivateKey:
    if seed is None:
        return PrivateKey.generate()
    return PrivateKey(hashlib.sha256(f"chainstream-demo:{seed}:{name}".encode()).digest())


def derive_salt(seed: int | None, name: str) -> bytes:
    if seed is None:
        return os.urandom(32)
    return hashlib.sha256(f"chainstream-demo-salt:{seed}:{name}".encode()).digest()


# ------------------------------------------------------------------------------------------ the demo
@dataclass
class StaleClose:
    listener: str
    token: TokenInfo
    deposit: int
    stale_seq: int
    stale_total: int
    latest_seq: int
    latest_total: int
    settled_by_listener: int
    settled_after_watchtower: int
    watchtower_tx_from: str
    refund: int

    @property
    def defeated(self) -> bool:
        return self.settled_after_watchtower == self.latest_total and self.refund == self.deposit - self.latest_total


@dataclass
class DemoResult:
    reconciliation: list[TokenReconciliation]
    payees: list[PayeeBalance]
    stale_close: StaleClose
    cap_rejection: str
    payments: int
    relay_url: str
    seconds: float

    @property
    def balanced(self) -> bool:
        return all(r.balanced for r in self.reconciliation) and self.stale_close.defeated


@dataclass
class Actor:
    name: str
    index: int
    listener: Listener
    token: TokenInfo
    deposit: int
    opened_with: str = ""
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    payments: int = 0
    plays: int = 0
    seconds: int = 0
    tips: int = 0
    free: int = 0
    notes: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)


def plan_actions(rng: random.Random, index: int, count: int, plays: int) -> list[tuple[Any, ...]]:
    """A listener's session: `plays` plays and per-second listens, plus a download, a binge and a tip."""
    actions: list[tuple[Any, ...]] = []
    for _ in range(plays):
        if rng.random() < 0.6:
            actions.append(("play", rng.choice(("Morning Modem", "Gas Price Blues", "Stream to Own"))))
        else:
            actions.append(("listen", rng.choice(("Per-Second Drift", "Morning Modem")), rng.randint(15, 180)))
    if index == 0:
        actions.insert(0, ("download", "Gas Price Blues"))
    if index == 1 % count:
        own_after = next(s for s in demo_seed.CATALOG if s.title == "Stream to Own").eth.own_after
        actions.extend([("play", "Stream to Own")] * (own_after + 1))
    if index == 2 % count and count > 2:
        actions.append(("tip-artist", "cleo", rng.choice(TIP_MESSAGES)))
    else:
        actions.append(("tip", rng.choice([s.title for s in demo_seed.CATALOG]), rng.choice(TIP_MESSAGES)))
    return actions


class Demo:
    def __init__(
        self,
        *,
        listeners: int = 5,
        plays: int = 20,
        rpc_url: str | None = None,
        seed: int | None = None,
        keep_serving: bool = False,
        port: int = 0,
        console: Console | None = None,
    ) -> None:
        if listeners < 1 or plays < 1:
            raise ConfigurationError("need at least one listener and one play")
        self.n = listeners
        self.plays = plays
        self.rpc_url = rpc_url
        self.seed = seed
        self.keep_serving = keep_serving
        self.port = port
        self.console = console or Console()
        self.rng = random.Random(seed)
        self.keys: dict[str, PrivateKey] = {}
        self.names: dict[Address, str] = {}
        self.relay: RelayThread | None = None
        self.client: RelayClient | None = None

    # ------------------------------------------------------------------ helpers
    def key(self, name: str) -> PrivateKey:
        if name not in self.keys:
            self.keys[name] = derive_key(self.seed, name)
            self.names[self.keys[name].address] = name
        return self.keys[name]

    def step(self, title: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{title}")

    @contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        with self.console.status(text, spinner="dots"):
            yield

    def progress(self) -> Progress:
        return Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    # --------------------------------------------------------------------- run
    def run(self) -> DemoResult:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="chainstream-demo-") as tmp:
            try:
                result = self._run(Path(tmp), started)
                if self.keep_serving:
                    self._serve_forever()
                return result
            finally:
                if self.client is not None:
                    self.client.close()
                if self.relay is not None:
                    with self.spinner("stopping the relay"):
                        self.relay.stop()

    def _run(self, tmp: Path, started: float) -> DemoResult:
        self.console.print(
            Panel.fit(
                "[bold]ChainStream[/] — pay-per-play music over Ethereum payment channels\n"
                f"{self.n} listeners × {self.plays} plays, real chain, real relay over HTTP, "
                "vouchers signed off-chain by session keys",
                border_style="cyan",
            )
        )
        self.step("1 · Chain and contracts")
        w3, d = self._chain_scene()
        assert d.stablecoin is not None
        eth = TokenInfo(ZERO_ADDRESS, "ETH", 18)
        usd = TokenInfo(d.stablecoin, "mUSD", 6)
        self.step("2 · Catalog")
        self._catalog_scene(w3, d, eth, usd)
        self.step("3 · Relay")
        self._relay_scene(tmp, w3, d)
        self.step("4 · Listeners open channels (one transaction each, then no gas per play)")
        actors = self._open_channels(w3, d, eth, usd)
        self.step("5 · Listening: every play, second and tip is an off-chain voucher")
        self._listen(actors)
        self.step("6 · Spending cap")
        rejection = self._cap_scene(actors)
        self.step("7 · Batch settlement")
        self._settlement_scene(w3, d, actors)
        self.step("8 · Artists, collaborators, label and platform claim")
        self._claims(w3, d, [eth, usd])
        cheater = actors[-1]
        closers = [a for a in actors[:-1] if a.index % 4 in (0, 3)]  # some of each token
        self.step("9 · Cooperative closes (relay co-signs, deposit back at once)")
        self._cooperative_closes(closers)
        self.step("10 · A unilateral close on stale state, and the watchtower")
        stale = self._stale_close(w3, d, cheater)
        self.step("11 · Reconciliation (read from the chain only)")
        return self._reconciliation_scene(w3, d, [eth, usd], actors, stale, rejection, started)

    # ------------------------------------------------------------------ scenes
    def _chain_scene(self) -> tuple[Web3, Deployment]:
        """Start the chain (or connect to `rpc_url`), fund the demo's keys and deploy the contracts."""
        with self.spinner("starting the chain and deploying"):
            w3 = connect(self.rpc_url) if self.rpc_url else embedded_web3()
            for name in ("deployer", "relay", "platform", *demo_seed.ARTISTS):
                fund(w3, self.key(name).address, 10 * ETHER)
            deployer = TxSender(w3, self.key("deployer"))
            # The demo's own mock stablecoin, explicitly (the demo funds its keys from the node: a dev node).
            d = deploy_all(w3, deployer, challenge_period=CHALLENGE_PERIOD, with_stablecoin=True)
        grid = Table.grid(padding=(0, 2))
        grid.add_row("chain", f"[bold]{self.rpc_url or 'embedded py-evm chain'}[/] (id {d.chain_id})")
        grid.add_row("ChainStreamChannels", f"[bold]{d.channels}[/]")
        grid.add_row("TrackRegistry", f"[bold]{d.registry}[/]")
        grid.add_row("MockStablecoin", f"[bold]{d.stablecoin}[/] (mUSD: 6 decimals, EIP-2612 permit)")
        grid.add_row("challenge window", f"{CHALLENGE_PERIOD // 3600} h")
        self.console.print(grid)
        return w3, d

    def _catalog_scene(self, w3: Web3, d: Deployment, eth: TokenInfo, usd: TokenInfo) -> None:
        """Register the demo catalog's tracks (audio synthesised by code) and show it."""
        assert d.stablecoin is not None
        with self.spinner("synthesising audio and registering tracks"):
            artists = {name: self.key(name) for name in demo_seed.ARTISTS}
            self.ids = demo_seed.register_catalog(
                RegistryClient(w3, d.registry), artists, self.key("platform").address, d.stablecoin
            )
        self.console.print(self._catalog_table(eth, usd))

    def _relay_scene(self, tmp: Path, w3: Web3, d: Deployment) -> None:
        """Start the relay in this process and publish the catalog's audio on it, signed by each artist."""
        relay_w3 = connect(self.rpc_url) if self.rpc_url else w3
        settings = Settings(
            relay_key=SecretStr(self.key("relay").secret.hex()),
            database=str(tmp / "relay.db"),
            media_dir=tmp / "media",
            rpc_url=self.rpc_url or "embedded",
            settle_interval=0.5,
            poll_interval=0.2,
            settle_min_value=ON_DEMAND,
            settle_max_age=float(ON_DEMAND),
        )
        with self.spinner("starting the relay (HTTP API, settler, watchtower)"):
            self.relay = RelayThread(settings, w3=relay_w3, deployment=d, port=self.port).start()
        self.client = RelayClient(self.relay.url)
        with self.spinner("uploading the catalog's audio (signed by each artist; transcoded by the relay)"):
            demo_seed.publish_catalog_audio(self.client, {name: self.key(name) for name in demo_seed.ARTISTS})
        info = self.client.info()
        self.console.print(
            f"relay [bold]{info['relay']}[/] serving [link={self.relay.url}]{self.relay.url}[/link] "
            f"— {len(self.client.get('/catalog')['tracks'])} tracks in its catalog"
        )

    def _settlement_scene(self, w3: Web3, d: Deployment, actors: list[Actor]) -> None:
        """The relay settles every channel's latest voucher in batch transactions; show what the chain holds."""
        assert self.relay is not None
        channels = ChannelsClient(w3, d.channels)
        self.console.print(
            "[dim]one settleBatch transaction carries every channel's latest voucher (in this demo the relay "
            "settles when asked, so the story is repeatable; by default its loop settles on a timer)"
        )
        with self.spinner("the relay settles every channel's latest voucher"):
            count = self.relay.settle_now()
        table = Table(title=f"settled {count} channels in {self.relay.relay.settler.batches_sent} batch transaction(s)")
        for col in ("listener", "latest voucher", "settled on chain", "still escrowed"):
            table.add_column(col, justify="right" if col != "listener" else "left", no_wrap=True)
        for a in actors:
            st = channels.get_channel(a.listener._cid())
            table.add_row(
                a.name, f"seq {a.listener._state().seq}", a.token.fmt(st.settled), a.token.fmt(st.deposit - st.settled)
            )
        self.console.print(table)

    def _reconciliation_scene(
        self,
        w3: Web3,
        d: Deployment,
        tokens: list[TokenInfo],
        actors: list[Actor],
        stale: StaleClose,
        rejection: str,
        started: float,
    ) -> DemoResult:
        """Reconcile every token to the wei from the chain alone, and give the verdict."""
        assert self.relay is not None
        c = self.console
        with self.spinner("reading events and balances"):
            recs, payees = reconcile(w3, d, self.names, tokens)
        c.print(self._payee_table(payees, tokens))
        for rec in recs:
            c.print(reconciliation_table(rec))
        elapsed = time.monotonic() - started
        result = DemoResult(recs, payees, stale, rejection, sum(a.payments for a in actors), self.relay.url, elapsed)
        verdict = "[bold green]balanced: yes[/]" if result.balanced else "[bold red]balanced: NO[/]"
        channel_count = sum(r.channels for r in recs)
        c.print(
            Panel.fit(
                f"{verdict} — {result.payments} payments by {self.n} listener{_s(self.n)}, "
                f"{channel_count} channel{_s(channel_count)}, every wei accounted for; "
                f"stale close defeated: {'yes' if stale.defeated else 'NO'}; {elapsed:.1f} s",
                border_style="green" if result.balanced else "red",
            )
        )
        return result

    def _catalog_table(self, eth: TokenInfo, usd: TokenInfo) -> Table:
        table = Table(title="demo catalog (track id = keccak256 of its audio)")
        for col in ("track / id", "split", "fee", "ETH", "mUSD"):
            table.add_column(col)
        for spec in demo_seed.CATALOG:
            others = sum(b for _, b in spec.collaborators)
            split = "\n".join(
                [f"{spec.artist} {(10_000 - others) / 100:g}%", *(f"{n} {b / 100:g}%" for n, b in spec.collaborators)]
            )
            table.add_row(
                f"{spec.title}\n[dim]{short(self.ids[spec.title])}[/]",
                split,
                f"{spec.fee_bps / 100:g}%",
                _terms_text(spec.eth, eth),
                _terms_text(spec.usd, usd),
                end_section=True,
            )
        return table

    def _open_channels(self, w3: Web3, d: Deployment, eth: TokenInfo, usd: TokenInfo) -> list[Actor]:
        assert self.client is not None
        actors: list[Actor] = []
        permit_done = False
        with self.progress() as progress:
            task = progress.add_task("opening channels", total=self.n)
            for i in range(self.n):
                name = LISTENER_NAMES[i] if i < len(LISTENER_NAMES) else f"listener{i + 1}"
                wallet = self.key(name)
                session = derive_key(self.seed, f"{name}-session")
                fund(w3, wallet.address, 2 * ETHER)
                listener = Listener(wallet, w3=w3, deployment=d, relay=self.client, session_key=session)
                token = eth if i % 2 == 0 else usd
                if token is eth:
                    deposit = eth.units("0.01") + self.plays * eth.units("0.0005")
                    how = "ETH value"
                else:
                    deposit = usd.units("3") + self.plays * usd.units("0.05")
                    TokenClient(w3, usd.address).mint(listener.tx, wallet.address, deposit + 100 * USD)
                    how = "approve + open" if permit_done else "EIP-2612 permit"
                listener.open_channel(
                    deposit,
                    token=token.address,
                    permit=token is usd and not permit_done,
                    salt=derive_salt(self.seed, name),
                )
                permit_done = permit_done or token is usd
                actor = Actor(name, i, listener, token, deposit, how)
                actor.actions = plan_actions(self.rng, i, self.n, self.plays)
                actors.append(actor)
                progress.advance(task)
        table = Table()
        for col in ("listener", "deposit", "opened with", "channel", "session key"):
            table.add_column(col, justify="right" if col == "deposit" else "left", no_wrap=True)
        for a in actors:
            table.add_row(
                a.name,
                a.token.fmt(a.deposit),
                a.opened_with,
                short(a.listener._cid(), 4),
                short(a.listener.session_key.address, 4),
            )
        self.console.print(table)
        return actors

    def _listen(self, actors: list[Actor]) -> None:
        c = self.console
        total = sum(len(a.actions) for a in actors)
        tips: list[str] = []
        with self.progress() as progress:
            task = progress.add_task("payments to the relay", total=total)
            for step in range(max(len(a.actions) for a in actors)):
                for a in actors:
                    if step < len(a.actions):
                        tip = self._act(a, a.actions[step])
                        if tip:
                            tips.append(tip)
                        progress.advance(task)
        table = Table(title="listening sessions (the relay's view, GET /channels/{id})")
        for col in ("listener", "payments", "plays", "free", "seconds", "spent", "remaining"):
            table.add_column(col, justify="left" if col == "listener" else "right", no_wrap=True)
        for a in actors:
            s = a.listener.spending()
            table.add_row(
                a.name,
                str(a.payments),
                str(a.plays),
                str(a.free),
                str(a.seconds),
                a.token.fmt(int(s["spent"])),
                a.token.fmt(int(s["remaining"])),
            )
        c.print(table)
        for note in [n for a in actors for n in a.notes] + tips:
            c.print(note)

    def _act(self, a: Actor, action: tuple[Any, ...]) -> str | None:
        listener = a.listener
        kind = action[0]
        if kind == "play":
            title = action[1]
            paid = listener.play(self.ids[title])
            a.plays += 1
            if paid.amount == 0:
                a.free += 1
                owned = title == "Stream to Own"
                paid_plays = listener._state().plays_of(self.ids[title]) - 1
                note = (
                    f"[magenta]♪ {a.name} owns “{title}” after {paid_plays} paid plays: later plays are free"
                    if owned
                    else f"[magenta]♪ {a.name} bought “{title}”: its plays are free"
                )
                if (title, "free") not in a.seen:
                    a.seen.add((title, "free"))
                    a.notes.append(note)
        elif kind == "listen":
            listener.listen(self.ids[action[1]], action[2])
            a.seconds += action[2]
        elif kind == "download":
            paid = listener.download(self.ids[action[1]])
            a.notes.append(f"[magenta]⬇ {a.name} downloaded “{action[1]}” for {a.token.fmt(paid.amount)}")
        elif kind in ("tip", "tip-artist"):
            amount = a.token.units("0.0005") if a.token.symbol == "ETH" else a.token.units("0.25")
            if kind == "tip":
                listener.tip(amount, track_id=self.ids[action[1]], message=action[2])
                target = f"“{action[1]}” (split applies)"
            else:
                listener.tip(amount, artist=self.key(action[1]).address, message=action[2])
                target = f"{action[1]} directly"
            a.tips += 1
            a.payments += 1
            return f"[yellow]♥ {a.name} tipped {target} {a.token.fmt(amount)}: “{action[2]}”"
        a.payments += 1
        return None

    def _cap_scene(self, actors: list[Actor]) -> str:
        a = actors[1 % len(actors)]
        track = self.ids["Morning Modem"]
        price = a.listener.listing(track).terms.per_play
        spent = int(a.listener.spending()["spentToday"])
        cap = spent + price - 1
        a.listener.set_caps(daily=cap)
        self.console.print(
            f"{a.name} signs a daily cap of [bold]{a.token.fmt(cap)}[/] with the session key "
            f"(spent today: {a.token.fmt(spent)}), then plays “Morning Modem” "
            f"({a.token.fmt(price)})…"
        )
        try:
            a.listener.play(track)
        except RelayError as exc:
            reason = f"{exc.code}: {str(exc).split(': ', 1)[-1]}"
            self.console.print(f"[bold red]✗ rejected by the relay[/] (HTTP {exc.status}) [red]{reason}[/]")
        else:
            raise DemoFailed("the relay accepted a payment past the daily cap")
        a.listener.set_caps(daily=0)
        self.console.print(f"{a.name} lifts the cap again (a newer signed caps message replaces the old one)")
        return reason

    def _claims(self, w3: Web3, d: Deployment, tokens: list[TokenInfo]) -> None:
        assert self.client is not None
        table = Table()
        table.add_column("payee")
        table.add_column("role")
        for t in tokens:
            table.add_column(f"claimed {t.symbol}", justify="right", no_wrap=True)
        roles = {"ada": "artist", "ben": "artist", "cleo": "artist", "label": "label", "platform": "platform fee"}
        with self.progress() as progress:
            task = progress.add_task("claims", total=len(roles) * len(tokens))
            for name, role in roles.items():
                artist = Artist(self.key(name), w3=w3, deployment=d, relay=self.client)
                amounts = []
                for t in tokens:
                    amounts.append(t.num(artist.claim(t.address)))
                    progress.advance(task)
                table.add_row(name, role, *amounts)
        self.console.print(table)
        earnings = Artist(self.key("ada"), w3=w3, deployment=d, relay=self.client).earnings()
        rows = sorted(earnings["tracks"], key=lambda r: -int(r["earned"]))
        if rows:
            e = Table(title="ada's earnings, as the relay reports them (GET /artists/{address}/earnings)")
            for col in ("track", "plays", "seconds", "tips", "earned"):
                e.add_column(col, justify="left" if col == "track" else "right", no_wrap=col != "track")
            by_address = {t.address: t for t in tokens}
            for r in rows:
                t = by_address.get(to_address(r["token"]), tokens[0])
                e.add_row(
                    f"{r['title'] or short(r['target'])} [dim]({t.symbol})",
                    str(r["plays"]),
                    str(r["seconds"]),
                    t.num(int(r["tips"])),
                    t.num(int(r["earned"])),
                )
            self.console.print(e)

    def _cooperative_closes(self, closers: list[Actor]) -> None:
        if not closers:
            self.console.print("[dim](no listener closes cooperatively with this few listeners)")
            return
        table = Table()
        for col in ("listener", "one more song", "final voucher", "settled", "refund"):
            table.add_column(col, justify="left" if col == "listener" else "right", no_wrap=True)
        for a in closers:
            paid = a.listener.play(self.ids["Morning Modem"])
            a.payments += 1
            refund = a.listener.close_cooperatively()
            st = a.listener.chain_state()
            table.add_row(
                a.name, a.token.fmt(paid.amount), f"seq {paid.seq}", a.token.fmt(st.settled), a.token.fmt(refund)
            )
        self.console.print(table)

    def _stale_close(self, w3: Web3, d: Deployment, a: Actor) -> StaleClose:
        c = self.console
        listener = a.listener
        settled_before = listener.chain_state().settled
        stale, stale_seq = self._play_past_the_batch(a)
        latest = listener._state()
        c.print(
            f"{a.name} plays {max(3, self.plays // 2)} more songs after the batch (vouchers up to seq {latest.seq}, "
            f"total {a.token.fmt(latest.voucher.total)}; settled so far {a.token.fmt(settled_before)})."
        )
        c.print(
            f"{a.name} then tries to pay less: settles the [bold]stale[/] voucher seq {stale_seq} "
            f"({a.token.fmt(stale.voucher.total)}) on-chain and requests a unilateral close."
        )
        try:
            listener.settle_self(stale)
        except ChainError as exc:  # only the relay settles an open channel
            c.print(f"[green]✓ contract[/]: {exc}")
        else:
            raise DemoFailed("the contract let the listener settle a stale voucher on an open channel")
        settled_by_listener = listener.chain_state().settled
        closes_at = listener.request_close()
        who, settled_after = self._watchtower_settles(w3, d, a, closes_at)
        with self.spinner("advancing the chain clock past the challenge window"):
            advance_time(w3, CHALLENGE_PERIOD + 1)
        deposit = listener.chain_state().deposit
        listener.withdraw()
        closed = (
            ChannelsClient(w3, d.channels)
            .contract.events.ChannelClosed()
            .get_logs(from_block=d.deploy_block, argument_filters={"channelId": listener._cid()})[-1]
        )
        result = StaleClose(
            a.name,
            a.token,
            deposit,
            stale_seq,
            stale.voucher.total,
            latest.seq,
            latest.voucher.total,
            settled_by_listener,
            settled_after,
            who,
            int(closed["args"]["refund"]),
        )
        c.print(_stale_close_table(result))
        return result

    def _play_past_the_batch(self, a: Actor) -> tuple[SignedVoucher, int]:
        """`a` plays on after the batch settlement; the voucher of the first of these plays (the stale one) and
        its seq."""
        listener = a.listener
        track = self.ids["Morning Modem"]
        stale: SignedVoucher | None = None
        stale_seq = 0
        for i in range(max(3, self.plays // 2)):
            listener.play(track)
            a.payments += 1
            if i == 0:
                state = listener._state()
                stale, stale_seq = SignedVoucher(state.voucher, listener.signatures[state.seq]), state.seq
        assert stale is not None
        return stale, stale_seq

    def _watchtower_settles(self, w3: Web3, d: Deployment, a: Actor, closes_at: int) -> tuple[str, int]:
        """Wait for the relay's watchtower to settle `a`'s latest voucher after the close request; who sent that
        settlement ("the relay" or an address) and what the channel has settled since."""
        assert self.relay is not None
        listener = a.listener
        latest = listener._state()
        with self.spinner("the relay's watchtower sees CloseRequested and settles the latest voucher"):
            deadline = time.monotonic() + 60
            while listener.chain_state().settled < latest.voucher.total:
                if time.monotonic() > deadline:
                    raise DemoFailed("the watchtower did not settle the latest voucher within 60 s")
                time.sleep(0.1)
        log = (
            ChannelsClient(w3, d.channels)
            .contract.events.ChannelSettled()
            .get_logs(from_block=d.deploy_block, argument_filters={"channelId": listener._cid()})[-1]
        )
        sender = to_address(w3.eth.get_transaction(log["transactionHash"])["from"])
        block_time = int(w3.eth.get_block(log["blockNumber"])["timestamp"])
        settled_after = listener.chain_state().settled
        who = "the relay" if sender == self.key("relay").address else sender
        self.console.print(
            f"[green]✓ watchtower[/]: {who} settled seq {latest.seq} ({a.token.fmt(settled_after)}) in block "
            f"{log['blockNumber']}, {(closes_at - block_time) / 3600:.1f} h before the window closes."
        )
        return who, settled_after

    def _payee_table(self, payees: list[PayeeBalance], tokens: list[TokenInfo]) -> Table:
        table = Table(title="payees (Claimed events + claimable())")
        table.add_column("payee")
        table.add_column("role")
        for t in tokens:
            table.add_column(f"claimed\n{t.symbol}", justify="right", no_wrap=True)
            table.add_column(f"claimable\n{t.symbol}", justify="right", no_wrap=True)
        for p in payees:
            cells = []
            for t in tokens:
                cells += [t.num(p.claimed.get(t.address, 0)), t.num(p.claimable.get(t.address, 0))]
            table.add_row(p.name, "fee" if p.role == "platform" else "split", *cells)
        return table

    def _serve_forever(self) -> None:
        assert self.relay is not None
        settings = self.relay.relay.settings
        settings.settle_min_value, settings.settle_max_age = 1, 300.0
        self.console.print()
        self.console.print(
            Panel.fit(
                f"relay still serving: open [bold link={self.relay.url}/]{self.relay.url}/[/] for the web player\n"
                f"API schema: {self.relay.url}/openapi.json — press Ctrl-C to stop",
                border_style="cyan",
            )
        )

        def interrupt(*_: Any) -> None:
            raise KeyboardInterrupt

        previous = (
            signal.signal(signal.SIGTERM, interrupt) if threading.current_thread() is threading.main_thread() else None
        )
        try:
            while self.relay.thread.is_alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.console.print("stopping…")
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _terms_text(terms: Any, token: TokenInfo) -> str:
    parts = []
    if terms.model == Model.STREAM_TO_OWN:
        parts.append(f"{token.num(terms.per_play)}/play, doubling;\nowned after {terms.own_after} plays")
    elif terms.per_play:
        parts.append(f"{token.num(terms.per_play)}/play")
    if terms.per_second:
        parts.append(f"{token.num(terms.per_second)}/second")
    if terms.download:
        parts.append(f"{token.num(terms.download)} to download")
    return "\n".join(parts)


def run_demo(
    *,
    listeners: int = 5,
    plays: int = 20,
    rpc_url: str | None = None,
    seed: int | None = None,
    keep_serving: bool = False,
    port: int = 0,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole demo; returns the chain-read reconciliation and the stale-close outcome."""
    return Demo(
        listeners=listeners,
        plays=plays,
        rpc_url=rpc_url,
        seed=seed,
        keep_serving=keep_serving,
        port=port,
        console=console,
    ).run()


def _stale_close_table(r: StaleClose) -> Table:
    """The stale-close scene's outcome: what was deposited, signed, settled and refunded."""
    table = Table(title=f"{r.listener}'s unilateral close (chain time +{CHALLENGE_PERIOD // 3600} h)")
    table.add_column("")
    table.add_column(r.token.symbol, justify="right")
    table.add_row("deposit", r.token.fmt(r.deposit))
    table.add_row(f"stale voucher seq {r.stale_seq} ({r.listener}'s settle refused)", r.token.fmt(r.stale_total))
    table.add_row(
        f"latest voucher seq {r.latest_seq} (settled by the watchtower)", r.token.fmt(r.settled_after_watchtower)
    )
    table.add_row("refund withdrawn (ChannelClosed)", r.token.fmt(r.refund))
    table.add_row("expected: deposit − latest total", r.token.fmt(r.deposit - r.latest_total))
    table.add_row("stale close defeated", "[bold green]yes[/]" if r.defeated else "[bold red]NO[/]")
    return table
