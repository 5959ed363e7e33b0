"""Real relays for the relay integration tests (no mocks).

* `InProcessRelay`: the FastAPI app under uvicorn in a background thread, on the embedded eth-tester chain the
  test also drives (one `Web3`, serialised by `LockedTesterProvider`). Fast: most cases run here.
* `RelayProcess`: `chainstream relay ...` as a real child process on an anvil node, for what needs a process
  (kill -9 and restart, the watchtower, time travel, block confirmations).

Both chains carry the demo catalog (`seed.register_catalog`) and are reverted to a snapshot after each test.
A pytest plugin (tests/conftest.py's `pytest_plugins`): a test names the fixtures it uses, nothing imports them.
The chains and the shared relays are module-scoped: every test module has its own, so no module sees another's
channels, relays or keys.
Conditions are awaited with `wait_until` (a deadline, never a fixed sleep).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from chainstream.chain.node import AnvilNode, embedded_web3, free_port
from chainstream.chain.transactions import fund
from chainstream.config import Settings
from chainstream.ledger import Charge, apply
from chainstream.protocol import Domain, PrivateKey, Signature
from chainstream.protocol.read_token import sign_read_token
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH
from chainstream.relay.app import Relay, create_app
from chainstream.sdk import Listener, RelayClient, payment_body
from chainstream.seed import ARTISTS, register_catalog
from tests.conftest import test_key
from tests.integration.conftest import Chain, _anvil_or_skip, build_chain

T = TypeVar("T")
ETH = ZERO_ADDRESS
GWEI = 10**9
FINNEY = 10**15
# Demo catalog titles (seed.CATALOG) and what the tests rely on about them.
MODEM = "Morning Modem"  # ETH: 20_000 gwei per play, 1_000 gwei per second; split ada/ben + platform fee
BLUES = "Gas Price Blues"  # ETH: 15_000 gwei per play, 2_000_000 gwei download; no per-second price
OWN = "Stream to Own"  # stream-to-own, 2_000 gwei doubling, owned after 9 plays
DRIFT = "Per-Second Drift"  # ETH: 2_000 gwei per second only (no per-play price)
PLAY_PRICE = 20_000 * GWEI  # one play of MODEM
STABLE_TERMS_UNIT = 10**6  # one dollar of the 6-decimals mock stablecoin


def wait_until(predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `predicate` until it returns something truthy (returned); AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except (httpx.TransportError, sqlite3.OperationalError) as exc:  # a relay that is (re)starting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last: {last!r}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------ chains


@dataclass
class RelayChain:
    """A deployed ChainStream with the demo catalog registered, its artists' keys among the chain's actors."""

    chain: Chain
    tracks: dict[str, bytes]  # title -> track id
    node: AnvilNode | None = None
    deployment_file: Path | None = None

    @property
    def w3(self) -> Any:
        return self.chain.w3

    def track(self, title: str) -> bytes:
        return self.tracks[title]


def _build(name: str, w3: Any) -> RelayChain:
    chain = build_chain(name, w3)
    artists = {a: test_key(f"artist-{a}") for a in ARTISTS}
    artists["relay2"] = test_key("relay2")  # a second relay (another operator)
    for actor, key in artists.items():
        chain.keys[actor] = key
        fund(w3, key.address, 100 * 10**18)
    del artists["relay2"]
    tracks = register_catalog(chain.registry, artists, chain.address("platform"), chain.deployment.stablecoin)
    return RelayChain(chain, tracks)


def _snapshot_each_test(rc: RelayChain) -> Iterator[RelayChain]:
    snapshot_id = rc.chain.snapshot()
    try:
        yield rc
    finally:
        rc.chain.revert(snapshot_id)


@pytest.fixture(scope="module")
def relay_chain(tmp_path_factory: pytest.TempPathFactory) -> RelayChain:
    """The embedded chain, deployed, with the demo catalog (once per test module).

    Never reverted: the module's in-process relays live as long as it (as a relay does), and every test opens
    channels of its own (the SDK draws a random salt), so tests do not see each other's payments.
    """
    return _build("embedded", embedded_web3())


@pytest.fixture(scope="module")
def anvil_relay_chain_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayChain]:
    """An anvil node, deployed, with the demo catalog and a deployment file for `chainstream relay` (once per
    test module; `anvil_relay_chain` reverts it after each test)."""
    _anvil_or_skip()
    with AnvilNode() as node:
        rc = _build("anvil", node.web3())
        rc.node = node
        rc.deployment_file = tmp_path_factory.mktemp("deployment") / "deployment.json"
        rc.chain.deployment.save(rc.deployment_file)
        yield rc


@pytest.fixture
def anvil_relay_chain(anvil_relay_chain_module: RelayChain) -> Iterator[RelayChain]:
    yield from _snapshot_each_test(anvil_relay_chain_module)


# ------------------------------------------------------------------------------------------------ relays


def relay_key_hex(rc: RelayChain, actor: str = "relay") -> str:
    return "0x" + rc.chain.key(actor).secret.hex()


#: every key the harness made (new_wallet), so reads can be signed as a channel's or a payee's owner
KNOWN_KEYS: dict[str, PrivateKey] = {}


class _RelayBase:
    url: str
    database: Path
    rc: RelayChain
    _clients: list[Any]

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self) -> RelayClient:
        client = RelayClient(self.url)
        self._clients.append(client)
        return client

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.api, timeout=30)
        self._clients.append(client)
        return client

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the relay's SQLite file directly (a separate read-only connection; WAL allows it)."""
        conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def payment_rows(self, channel_id: bytes) -> list[sqlite3.Row]:
        return self.rows("SELECT seq, total, digest FROM payments WHERE channel_id=? ORDER BY seq", (channel_id,))

    def owner_key(self, address: str) -> PrivateKey:
        """The harness's key of `address` (a chain actor, or a wallet made by new_wallet)."""
        for key in (*self.rc.chain.keys.values(), *KNOWN_KEYS.values()):
            if key.address == address:
                return key
        raise KeyError(f"the harness has no key of {address}")

    def read_token(
        self,
        key: PrivateKey,
        account: str | None = None,
        channel_id: bytes = ZERO_HASH,
        *,
        valid_for: int = 300,
        relay_address: str | None = None,
    ) -> str:
        """A read token signed by `key` for `account` (default: the key's address), valid for `valid_for` s on the
        relay's clock (negative: already expired), for this relay (or `relay_address`)."""
        info = httpx.get(f"{self.api}/info", timeout=30).json()
        domain = Domain(info["domain"]["chainId"], info["domain"]["verifyingContract"])
        now = info.get("time", int(time.time()))  # (relays before read tokens did not publish their clock)
        token = sign_read_token(
            key,
            domain,
            relay_address or info["relay"],
            account=account or key.address,
            channel_id=channel_id,
            not_after=now + valid_for,
        )
        return token.encode()

    def owner_headers(self, channel_id: bytes | None = None, *, payee: str | None = None) -> dict[str, str]:
        """Authorization headers of the owner's read token: a channel's payer (its wallet), or a payee."""
        if channel_id is not None:
            payer = self.rc.chain.channels.get_channel(channel_id).payer
            token = self.read_token(self.owner_key(payer))
        else:
            assert payee is not None
            token = self.read_token(self.owner_key(payee))
        return {"Authorization": f"ChainStream-Read {token}"}

    def channel(self, channel_id: bytes) -> dict[str, Any]:
        """The channel's summary, read as its payer."""
        response = httpx.get(
            f"{self.api}/channels/0x{channel_id.hex()}", headers=self.owner_headers(channel_id), timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/health", timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def _close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


class InProcessRelay(_RelayBase):
    """create_app(...) served by uvicorn in a thread, sharing the test's embedded chain."""

    def __init__(
        self,
        rc: RelayChain,
        database: Path | str,
        *,
        relay_actor: str = "relay",
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> None:
        """`database`: a SQLite file, or a PostgreSQL URL (then `rows` cannot read it); `clock`: the relay's
        wall clock."""
        self.rc = rc
        self.database = database  # type: ignore[assignment]
        self.address = rc.chain.address(relay_actor)
        options: dict[str, Any] = {"settle_interval": 0.5, "poll_interval": 0.1, **settings}
        if "media_dir" not in options:  # the content store next to the database (or a temporary one)
            is_file = "://" not in str(database)
            options["media_dir"] = Path(database).parent / f"{relay_actor}-media" if is_file else tempfile.mkdtemp()
        self.settings = Settings(relay_key=SecretStr(relay_key_hex(rc, relay_actor)), database=str(database), **options)
        self.relay = Relay(self.settings, w3=rc.w3, deployment=rc.chain.deployment, clock=clock)
        self.app = create_app(self.settings, relay=self.relay)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=5)
        )
        self.thread = threading.Thread(target=self.server.run, name=f"relay-{self.port}", daemon=True)
        self._clients = []
        self.actor = relay_actor
        self.loop: Any = None

    def start(self) -> InProcessRelay:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout=60, what="uvicorn start")
        if not self.server.started:
            raise RuntimeError("the in-process relay did not start (see the log above)")
        self.loop = self.relay._tasks[0].get_loop()
        return self

    def stop(self) -> None:
        self._close_clients()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the in-process relay did not stop"

    @property
    def service(self) -> Any:
        return self.relay.service

    def settle_now(self, *channel_ids: bytes) -> None:
        """Ask the settler to settle these channels in its next round (what the watchtower does), thread-safely;
        channels asked for together are settled in one round, so in one settleBatch transaction."""
        settler = self.relay.settler
        self.loop.call_soon_threadsafe(lambda: [settler.request(c) for c in channel_ids])


class RelayProcess(_RelayBase):
    """`chainstream relay` as a child process on the anvil node (kill -9 with `kill()`, then `start()` again)."""

    def __init__(self, rc: RelayChain, workdir: Path, *, settle_interval: float = 0.5, **env: str) -> None:
        assert rc.node is not None and rc.deployment_file is not None
        self.rc = rc
        self.workdir = workdir
        self.database = workdir / "relay.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settle_interval = settle_interval
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._clients = []

    @property
    def log(self) -> str:
        logs = sorted(self.workdir.glob("relay-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs)

    def start(self, **env: str) -> RelayProcess:
        """Start (or restart) the process on the same database and port; returns once /health answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.env.update(env)
        self.starts += 1
        executable = Path(sys.executable).parent / "chainstream"
        args = [
            str(executable),
            "relay",
            "--rpc-url",
            self.rc.node.url,  # type: ignore[union-attr]
            "--deployment",
            str(self.rc.deployment_file),
            "--database",
            str(self.database),
            "--port",
            str(self.port),
            "--settle-interval",
            str(self.settle_interval),
        ]
        environment = {
            **os.environ,
            "CHAINSTREAM_RELAY_KEY": relay_key_hex(self.rc),
            "CHAINSTREAM_POLL_INTERVAL": "0.1",
            "CHAINSTREAM_LOG_LEVEL": "warning",
            **self.env,
        }
        log = open(self.workdir / f"relay-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            self.proc = subprocess.Popen(args, env=environment, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the relay exited with {self.proc.returncode}:\n{self.log}")
            return bool(self.health().get("ok"))

        wait_until(up, timeout=60, interval=0.1, what="the relay process to answer /health")
        return self

    def kill(self) -> None:
        """kill -9: no shutdown hook runs (what a crash or a power cut does to the process)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self._close_clients()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture
def make_relay(relay_chain: RelayChain, tmp_path: Path) -> Iterator[Callable[..., InProcessRelay]]:
    """Start in-process relays with particular settings (keyword arguments); stopped after the test."""
    started: list[InProcessRelay] = []

    def make(*, actor: str | None = None, eth: int = 10 * 10**18, **settings: Any) -> InProcessRelay:
        """A relay with a key of its own (two relays settling with one key would race for its nonces), funded
        with `eth`; pass the `actor` of an earlier one to restart it on the same key and database."""
        if actor is None:
            actor = f"relay-{os.urandom(4).hex()}"
            relay_chain.chain.keys[actor] = new_wallet(relay_chain, eth)
        relay = InProcessRelay(relay_chain, tmp_path / f"{actor}.db", relay_actor=actor, **settings).start()
        started.append(relay)
        return relay

    yield make
    for relay in reversed(started):
        if relay.thread.is_alive():
            relay.stop()


LAZY = {"settle_min_value": 10**30, "settle_max_age": 10**9}
#: a relay that settles whatever the gas costs (gas valued up to 10^12 times what a settlement pays out)
SPENDTHRIFT = {"settle_max_gas_fraction": 1e12}


@pytest.fixture(scope="module")
def relay(relay_chain: RelayChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRelay]:
    """The test module's in-process relay. It settles only on request (`settle_now`) or as the watchtower, so a
    test decides when money moves on chain."""
    server = InProcessRelay(relay_chain, tmp_path_factory.mktemp("relay") / "relay.db", **LAZY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def eager_relay(relay_chain: RelayChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRelay]:
    """A second in-process relay (another key, another database) that settles everything every half second."""
    server = InProcessRelay(
        relay_chain, tmp_path_factory.mktemp("eager") / "relay.db", relay_actor="relay2", **SPENDTHRIFT
    ).start()
    yield server
    server.stop()


@pytest.fixture
def relay_process(anvil_relay_chain: RelayChain, tmp_path: Path) -> Iterator[RelayProcess]:
    """A `chainstream relay` process on anvil (not started: call `.start(**env)`); killed afterwards."""
    process = RelayProcess(anvil_relay_chain, tmp_path)
    try:
        yield process
    finally:
        process.stop()


# ------------------------------------------------------------------------------------------------ listeners


def new_wallet(rc: RelayChain, eth: int = 10 * 10**18) -> PrivateKey:
    key = PrivateKey.generate()
    fund(rc.w3, key.address, eth)
    KNOWN_KEYS[key.address] = key
    return key


def open_listener(
    rc: RelayChain,
    relay: _RelayBase,
    *,
    wallet: PrivateKey | str = "listener",
    deposit: int = 10**17,
    token: str = ETH,
    session_ttl: int | None = None,
    relay_address: str | None = None,
    permit: bool = False,
) -> Listener:
    """A Listener SDK on a freshly opened channel served by `relay` (wallet: an actor name or a key)."""
    key = rc.chain.key(wallet) if isinstance(wallet, str) else wallet
    listener = Listener(key, w3=rc.w3, deployment=rc.chain.deployment, relay=relay.client())
    kwargs: dict[str, Any] = {"token": token, "relay_address": relay_address, "permit": permit}
    if session_ttl is not None:
        kwargs["session_ttl"] = session_ttl
    listener.open_channel(deposit, **kwargs)
    return listener


@dataclass
class Signed:
    """A payment body ready to POST, and the ledger state it leads to."""

    body: dict[str, Any]
    state: Any
    signature: Signature
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return int(self.state.seq)


def sign_charge(
    listener: Listener, charge: Charge, spec: dict[str, Any], *, key: PrivateKey | None = None, state: Any = None
) -> Signed:
    """The next voucher for `charge` after `state` (default: the SDK's state), signed by `key` (default: session key)."""
    nxt, _ = apply(state if state is not None else listener.state, charge)
    signature = (key or listener.session_key).sign(nxt.voucher.digest(listener.channels.domain))
    return Signed(payment_body(nxt, spec, signature), nxt, signature)


def play_spec(track_id: bytes) -> dict[str, Any]:
    return {"kind": "play", "trackId": "0x" + track_id.hex()}


def cid_hex(listener: Listener) -> str:
    assert listener.channel_id is not None
    return "0x" + listener.channel_id.hex()


def signed_plays(listener: Listener, track_id: bytes, count: int, *, state: Any = None) -> list[Signed]:
    """`count` consecutive plays of one track, each voucher built on the previous one (nothing is sent)."""
    from chainstream.ledger import charge_play

    out: list[Signed] = []
    current = state if state is not None else listener.state
    listing = listener.listing(track_id)
    for _ in range(count):
        signed = sign_charge(listener, charge_play(current, listing), play_spec(track_id), state=current)
        out.append(signed)
        current = signed.state
    return out


def rejected(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an error reply with this HTTP status and stable code; returns the body."""
    assert response.status_code == status, f"expected {status} {code}, got {response.status_code}: {response.text}"
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    assert isinstance(body["error"]["details"], dict), body  # always present: {} when there is nothing
    return body  # type: ignore[no-any-return]
