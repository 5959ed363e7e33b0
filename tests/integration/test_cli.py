"""The `chainstream listener …` and `chainstream artist …` commands against a real relay and chain.

anvil runs the chain; the relay (FastAPI over HTTP, settler, watchtower) runs in a background thread
connected to anvil over JSON-RPC; the commands run through typer's CliRunner with --rpc-url and the
relay URL, exactly as a person would type them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result
from web3.types import RPCEndpoint

from chainstream.chain.contracts import ChannelsClient, ChannelStatus, RegistryClient
from chainstream.chain.deploy import Deployment, deploy_all
from chainstream.chain.node import AnvilNode, advance_time, anvil_binary
from chainstream.chain.transactions import TxSender, fund
from chainstream.cli import app
from chainstream.config import Settings
from chainstream.errors import ConfigurationError
from chainstream.protocol import PrivateKey
from chainstream.protocol.types import ZERO_ADDRESS
from chainstream.relay.thread import RelayThread
from chainstream.tokens import TokenInfo
from tests.conftest import IN_CI, test_key

pytestmark = [pytest.mark.anvil, pytest.mark.xdist_group("cli")]
ETH = TokenInfo(ZERO_ADDRESS, "ETH", 18)
ETHER = 10**18
CHALLENGE = 3_600


@dataclass
class Env:
    node: AnvilNode
    deployment: Deployment
    deployment_file: Path
    relay_url: str
    keys: dict[str, PrivateKey]
    tmp: Path

    def run(
        self,
        *args: str,
        key: str | None = None,
        artist: str = "artist",
        listener: str = "listener",
        state: str | None = None,
    ) -> Result:
        env = {
            "CHAINSTREAM_RELAY_URL": self.relay_url,
            "CHAINSTREAM_RPC_URL": self.node.url,
            "CHAINSTREAM_ARTIST_KEY": "0x" + self.keys[artist].secret.hex(),
            "CHAINSTREAM_LISTENER_KEY": "0x" + self.keys[listener].secret.hex(),
            "CHAINSTREAM_LISTENER_STATE": str(self.tmp / f"{state or listener}.json"),
        }
        return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    try:
        anvil_binary()
    except ConfigurationError as exc:
        if IN_CI:
            raise
        pytest.skip(f"anvil is not installed ({exc})")
    tmp = tmp_path_factory.mktemp("cli")
    keys = {
        name: test_key(f"cli-{name}")
        for name in ("deployer", "relay", "artist", "collab", "platform", "listener", "quitter", "topper", "poet")
    }
    with AnvilNode() as node:
        w3 = node.web3()
        for k in keys.values():
            fund(w3, k.address, 10 * ETHER)
        d = deploy_all(w3, TxSender(w3, keys["deployer"]), challenge_period=CHALLENGE)
        path = tmp / "deployment.json"
        d.save(path)
        settings = Settings(
            relay_key="0x" + keys["relay"].secret.hex(),
            database=str(tmp / "relay.db"),
            media_dir=tmp / "media",
            rpc_url=node.url,
            settle_interval=0.5,
            poll_interval=0.1,
        )
        relay = RelayThread(settings, w3=node.web3(), deployment=d).start()
        try:
            yield Env(node, d, path, relay.url, keys, tmp)
        finally:
            relay.stop()


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def fails(result: Result, code: str) -> str:
    assert result.exit_code != 0, result.output
    assert f"[{code}]" in result.output, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # one line
    return result.output


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_artist_and_listener_round_trip(env: Env) -> None:
    audio = env.tmp / "tune.wav"
    audio.write_bytes(b"RIFF not really a wav, but bytes with a hash")
    out = ok(
        env.run(
            "artist",
            "register",
            str(audio),
            "--title",
            "Test Tune",
            "--per-play",
            "0.001",
            "--per-second",
            "0.00001",
            "--collaborator",
            f"{env.keys['collab'].address}:2000",
            "--fee",
            f"{env.keys['platform'].address}:500",
            "--deployment",
            str(env.deployment_file),
        )
    )
    assert "registered “Test Tune”" in out
    wait_for(
        lambda: any(t["title"] == "Test Tune" for t in httpx.get(f"{env.relay_url}/api/v1/catalog").json()["tracks"])
    )

    out = ok(env.run("listener", "open", "--deposit", "0.05"))
    assert "opened channel 0x" in out
    assert (env.tmp / "listener.json").exists()
    fails(env.run("listener", "open", "--deposit", "0.05"), "channel_exists")

    out = ok(env.run("listener", "play", "test tune", "--times", "3"))
    assert out.count("paid 0.001 ETH") == 3 and "total 0.003 ETH" in out
    ok(env.run("listener", "listen", "Test Tune", "--seconds", "100"))
    out = ok(env.run("listener", "tip", "0.002", "--track", "Test Tune", "--message", "lovely bridge"))
    assert "total 0.006 ETH" in out

    out = ok(env.run("listener", "status"))
    assert "0.006 ETH" in out and "0.044 ETH" in out
    out = ok(env.run("listener", "history"))
    assert "lovely bridge" in out and "tip" in out and "seconds" in out

    ok(env.run("listener", "caps", "--daily", "0.0065"))
    out = fails(env.run("listener", "play", "Test Tune"), "daily_cap_exceeded")
    assert "402" in out
    ok(env.run("listener", "caps", "--daily", "0"))
    fails(env.run("listener", "play", "No Such Song"), "unknown_track")
    fails(env.run("listener", "tip", "0.001"), "bad_tip")
    fails(env.run("listener", "tip", "abc", "--track", "Test Tune"), "bad_amount")
    fails(env.run("listener", "withdraw"), "channel_open")

    out = ok(env.run("listener", "close"))
    assert "refunded 0.044 ETH" in out
    assert "closed" in ok(env.run("listener", "status"))
    fails(env.run("listener", "play", "Test Tune"), "channel_not_open")
    channels = ChannelsClient(env.node.web3(), env.deployment.channels)
    # 0.006 spent: 5% fee (0.0003) off the top, then 80/20 artist/collaborator
    assert channels.claimable(env.keys["artist"].address, ZERO_ADDRESS) == 4_560_000_000_000_000
    assert channels.claimable(env.keys["platform"].address, ZERO_ADDRESS) == 300_000_000_000_000

    out = ok(env.run("artist", "earnings"))
    assert "Test Tune" in out and "0.00456" in out
    out = ok(env.run("artist", "claim", "--token", "ETH"))
    assert "claimed 0.00456 ETH" in out
    assert channels.claimable(env.keys["artist"].address, ZERO_ADDRESS) == 0
    out = ok(env.run("artist", "claim", "--token", "ETH"))
    assert "nothing to claim in ETH" in out
    fails(env.run("artist", "claim", "--token", "DOGE"), "unknown_token")

    # the state file's channel is closed: a new one may replace it
    out = ok(env.run("listener", "open", "--deposit", "0.01"))
    assert "opened channel 0x" in out


def catalog(env: Env) -> list[dict]:  # type: ignore[type-arg]
    return httpx.get(f"{env.relay_url}/api/v1/catalog").json()["tracks"]  # type: ignore[no-any-return]


def test_unilateral_close_then_withdraw_after_the_window(env: Env) -> None:
    track_id = "0x" + "ab" * 32
    ok(env.run("artist", "register", track_id, "--title", "Late Train", "--per-play", "0.0003"))
    wait_for(lambda: any(t["trackId"] == track_id for t in catalog(env)))
    ok(env.run("listener", "open", "--deposit", "0.01", listener="quitter"))
    ok(env.run("listener", "play", track_id, listener="quitter"))
    out = ok(env.run("listener", "close", "--unilateral", listener="quitter"))
    assert "close requested" in out
    fails(env.run("listener", "withdraw", listener="quitter"), "window_not_over")
    fails(env.run("listener", "play", track_id, listener="quitter"), "channel_not_open")

    w3 = env.node.web3()
    channels = ChannelsClient(w3, env.deployment.channels)
    cid = bytes.fromhex(json.loads((env.tmp / "quitter.json").read_text())["channel_id"][2:])
    price = ETH.units("0.0003")
    wait_for(lambda: channels.get_channel(cid).settled == price)  # settled by the relay (loop or watchtower)
    advance_time(w3, CHALLENGE + 1)
    out = ok(env.run("listener", "withdraw", listener="quitter"))
    assert f"withdrew {ETH.fmt(ETH.units('0.01') - price)}" in out
    assert channels.get_channel(cid).status == ChannelStatus.CLOSED


def test_errors_are_one_line_with_a_code(env: Env, tmp_path: Path) -> None:
    fails(
        CliRunner().invoke(
            app,
            ["listener", "status", "--relay-url", "http://127.0.0.1:9"],
            env={"CHAINSTREAM_LISTENER_KEY": "0x" + "11" * 32},
        ),
        "relay_unreachable",
    )
    fails(
        CliRunner().invoke(
            app,
            ["listener", "status", "--relay-url", env.relay_url, "--rpc-url", env.node.url],
            env={"CHAINSTREAM_LISTENER_KEY": ""},
        ),
        "no_key",
    )
    fails(
        CliRunner().invoke(
            app,
            [
                "listener",
                "status",
                "--relay-url",
                env.relay_url,
                "--rpc-url",
                env.node.url,
                "--state",
                str(tmp_path / "none.json"),
            ],
            env={"CHAINSTREAM_LISTENER_KEY": "0x" + "11" * 32},
        ),
        "no_channel",
    )
    fails(
        CliRunner().invoke(
            app,
            ["artist", "register", "nope.wav", "--relay-url", env.relay_url, "--rpc-url", env.node.url],
            env={"CHAINSTREAM_ARTIST_KEY": "0x" + "22" * 32},
        ),
        "bad_track",
    )


def test_listener_tops_up_an_open_channel(env: Env) -> None:
    ok(env.run("listener", "open", "--deposit", "0.01", listener="topper"))
    cid = bytes.fromhex(json.loads((env.tmp / "topper.json").read_text())["channel_id"][2:])
    channels = ChannelsClient(env.node.web3(), env.deployment.channels)
    out = ok(env.run("listener", "topup", "0.02", listener="topper"))
    assert "topped up 0.02 ETH: deposit 0.03 ETH" in out
    assert channels.get_channel(cid).deposit == ETH.units("0.03")
    fails(env.run("listener", "topup", "0", listener="topper"), "bad_amount")
    fails(env.run("listener", "topup", "lots", listener="topper"), "bad_amount")
    assert channels.get_channel(cid).deposit == ETH.units("0.03")


def test_artist_sets_prices_and_splits_of_an_owned_track_and_the_catalog_finds_it(env: Env) -> None:
    track_id = "0x" + "cd" * 32
    ok(env.run("artist", "register", track_id, "--title", "Price Walk", "--per-play", "0.001"))
    wait_for(lambda: any(t["trackId"] == track_id for t in catalog(env)))
    registry = RegistryClient(env.node.web3(), env.deployment.registry)
    tid = bytes.fromhex(track_id[2:])

    out = ok(env.run("artist", "set-price", "price walk", "--per-play", "0.002", "--download", "0.05"))
    assert "prices: 0.002 ETH/play, 0.05 ETH to download" in out
    terms = registry.get_terms(tid, ZERO_ADDRESS)
    assert (terms.per_play, terms.download) == (ETH.units("0.002"), ETH.units("0.05"))
    fails(env.run("artist", "set-price", "Price Walk"), "free_track")
    fails(env.run("artist", "set-price", "0x" + "99" * 32, "--per-play", "1"), "unknown_track")  # not registered
    fails(env.run("artist", "set-price", "Price Walk", "--per-play", "1", artist="collab"), "not_owner")

    collab = env.keys["collab"].address
    out = ok(env.run("artist", "set-split", track_id, "--collaborator", f"{collab}:3000"))
    assert "split: you 70%" in out and "30%" in out
    assert registry.get_track(tid).split_version == 2
    out = fails(
        env.run(
            "artist", "set-split", track_id, "--collaborator", f"{collab}:7000", "--collaborator", f"{collab}:5000"
        ),
        "bad_split",
    )
    assert "add up to 120%" in out and "12000 bps" in out

    wait_for(
        lambda: any(
            int(t["terms"][ZERO_ADDRESS]["perPlay"]) == ETH.units("0.002")
            for t in catalog(env)
            if t["trackId"] == track_id
        )
    )
    out = ok(env.run("catalog", "walk"))
    assert "Price Walk" in out and "0.002 ETH/play" in out and track_id in out
    assert "no track matches 'zzz-nothing'" in ok(env.run("catalog", "zzz-nothing"))


def test_the_catalog_shows_only_names_the_artist_signed_and_an_address_when_the_relay_rewrites_one(env: Env) -> None:
    """`catalog` verifies each artist's signed profile (as the web player does): the relay's operator edits the
    name in its database and the catalog shows the artist's address, neither the forged nor the signed name."""
    import contextlib
    import sqlite3

    from chainstream.cli_common import short

    poet = env.keys["poet"].address
    track_id = "0x" + "5e" * 32
    ok(env.run("artist", "register", track_id, "--title", "Sonnet Eighteen", "--per-play", "0.001", artist="poet"))
    wait_for(lambda: any(t["trackId"] == track_id for t in catalog(env)))
    assert f"“Sonnet Eighteen” by {short(poet)} ·" in ok(env.run("catalog", "sonnet"))  # no name signed yet

    ok(env.run("artist", "name", "Will Shakespeare", artist="poet"))
    assert "“Sonnet Eighteen” by Will Shakespeare ·" in ok(env.run("catalog", "sonnet"))
    assert track_id in ok(env.run("catalog", "shakespeare"))  # the verified name is searchable

    with contextlib.closing(sqlite3.connect(env.tmp / "relay.db", timeout=30)) as db:
        db.execute("UPDATE profiles SET name = 'Mallory' WHERE artist = ?", (poet,))
        db.commit()
    assert {t["artistName"] for t in catalog(env) if t["trackId"] == track_id} == {"Mallory"}  # the relay lies
    out = ok(env.run("catalog", "sonnet"))
    assert f"“Sonnet Eighteen” by {short(poet)} ·" in out and "Mallory" not in out and "Shakespeare" not in out
    assert "no track matches 'mallory'" in ok(env.run("catalog", "mallory"))


def test_register_refuses_an_accidental_free_or_untitled_track(env: Env) -> None:
    track_id = "0x" + "ef" * 32
    out = fails(env.run("artist", "register", track_id, "--per-play", "0.001"), "no_title")
    assert "--title" in out
    out = fails(env.run("artist", "register", track_id, "--title", "Gratis"), "free_track")
    assert "--free" in out
    fee = f"{env.keys['platform'].address}:6000"
    out = fails(env.run("artist", "register", track_id, "--title", "Gratis", "--free", "--fee", fee), "bad_split")
    assert "60%" in out and "at most 50%" in out
    ok(env.run("artist", "register", track_id, "--title", "Gratis", "--free"))
    assert (
        RegistryClient(env.node.web3(), env.deployment.registry).get_track(bytes.fromhex(track_id[2:])).title
        == "Gratis"
    )


def test_artist_registers_with_upload_then_a_second_upload_and_a_wrong_file_are_told_apart(env: Env) -> None:
    """`register --upload` publishes the audio; `upload` of the same file says it is already there; a file that is
    not the track's is refused before anything is sent; another artist's upload is refused by the relay."""
    from chainstream.protocol.hashing import keccak
    from chainstream.seed import synthesize
    from tests.integration.media_fixtures import needs_ffmpeg

    needs_ffmpeg()
    song = env.tmp / "night-drive.wav"
    song.write_bytes(synthesize((261.6, 392.0), 4.0))
    out = ok(env.run("artist", "register", str(song), "--per-second", "0.000001", "--upload"))
    assert "audio published: 4.0 s in 2 segments" in out
    track = "0x" + keccak(song.read_bytes()).hex()
    assert "already published" in ok(env.run("artist", "upload", str(song)))
    other = env.tmp / "other.wav"
    other.write_bytes(synthesize((300.0,), 1.0))
    out = fails(env.run("artist", "upload", str(other), "--track", track), "content_mismatch")
    assert "other.wav hashes to" in out
    ok(env.run("artist", "register", str(other), "--per-play", "0.001"))
    out = fails(env.run("artist", "upload", str(other), artist="collab"), "not_track_owner")
    assert "only the track's owner" in out and "(relay answered HTTP 403)" in out


def test_artist_name_signs_the_name_and_a_bad_one_is_told_in_a_sentence(env: Env) -> None:
    """`artist name` publishes a signed profile (renaming replaces it); a name with a control character is refused
    before anything is signed, in a sentence."""
    import httpx

    out = ok(env.run("artist", "name", "Ada Lovelace", artist="quitter"))
    assert "is now “Ada Lovelace”" in out
    ok(env.run("artist", "name", "Ada King", artist="quitter"))
    address = env.keys["quitter"].address
    assert httpx.get(f"{env.relay_url}/api/v1/artists/{address}/profile", timeout=30).json()["name"] == "Ada King"
    out = fails(env.run("artist", "name", "Ada\u202eKing", artist="quitter"), "bad_name")
    assert "printable text only (U+202E is not)" in out


def test_a_server_that_is_not_a_relay_is_named_in_a_sentence(env: Env) -> None:
    """A 404 without the relay's error format (another server on the port) is explained, not echoed empty."""
    import http.server
    import threading

    class NotARelay(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotARelay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = fails(CliRunner().invoke(app, ["catalog", "--relay-url", url]), "http_error")
        assert "HTTP 404 without a reason" in out and "ChainStream relay" in out
    finally:
        server.shutdown()


def test_audit_reconciles_the_deployment_from_the_chain_and_fails_on_a_wrong_start_block(env: Env) -> None:
    """`chainstream audit` balances every token after the other tests' channels; read from a start block after
    the first channels opened, their deposits are missing and it says so, exiting 1."""
    ok(env.run("listener", "open", "--deposit", "0.02", listener="topper", state="audit"))
    out = ok(env.run("audit", "--deployment", str(env.deployment_file)))
    assert out.count("RECONCILIATION") == 2 and "ETH" in out and "mUSD" in out  # ETH and the allowed stablecoin
    assert out.count("yes") == 2 and "NO" not in out

    late = env.tmp / "late-deployment.json"
    w3 = env.node.web3()
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])  # a start block after every open, the one above included
    Deployment(**{**vars(env.deployment), "deploy_block": w3.eth.block_number}).save(late)
    result = env.run("audit", "--deployment", str(late))
    assert result.exit_code == 1 and "does not balance" in result.output and "Traceback" not in result.output


def test_listener_without_eth_opens_tops_up_and_closes_gas_free_and_artist_schedules_payouts(env: Env) -> None:
    """`--gasless`: a listener holding only mUSD signs, the relay submits; the artist opts in to payouts by signing."""
    from chainstream.chain.contracts import TokenClient

    env.keys["nogas"] = key = test_key("cli-nogas")  # never funded with ETH
    w3 = env.node.web3()
    assert env.deployment.stablecoin is not None
    TokenClient(w3, env.deployment.stablecoin).mint(TxSender(w3, env.keys["deployer"]), key.address, 10**8)
    fails(env.run("listener", "open", "--deposit", "1", "--gasless", listener="nogas"), "bad_token")  # ETH
    fails(
        env.run(
            "listener", "open", "--deposit", "1", "--token", "mUSD", "--gasless", "--max-fee", "0.001", listener="nogas"
        ),
        "fee_above_max",
    )  # the relay's default fee is 0.01
    out = ok(env.run("listener", "open", "--deposit", "5", "--token", "mUSD", "--gasless", listener="nogas"))
    assert "with 4.99 mUSD" in out and "the relay kept 0.01 mUSD for the gas" in out
    out = ok(env.run("listener", "topup", "1", "--gasless", listener="nogas"))
    assert "deposit 5.98 mUSD" in out
    out = ok(env.run("listener", "close", "--gasless", listener="nogas"))
    assert "refunded 5.97 mUSD" in out
    assert w3.eth.get_balance(key.address) == 0
    out = ok(env.run("artist", "payouts", "--token", "mUSD", "--threshold", "1"))
    assert "the relay pays out your mUSD once it reaches 1 mUSD" in out
    fails(env.run("artist", "payouts", "--token", "mUSD"), "bad_schedule")
    ok(env.run("artist", "payouts", "--token", "mUSD", "--off"))
