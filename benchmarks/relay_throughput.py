"""Relay throughput and latency on a real chain (anvil), with the relay in its own process.

What it does, in order (only the measurement phases are timed as results):

1. starts anvil, deploys the contracts, registers the seed catalog;
2. funds `--listeners` listener keys and opens `--channels` ETH channels round-robin over them, each with its
   own session key (transactions sent without waiting for each receipt, then all receipts awaited);
3. pre-signs, for every channel, a chain of play vouchers computed with the shared ledger
   (LedgerState.opened -> charge_play -> apply, signed by the session key over voucher.digest(domain));
4. measures the machine's signature-recovery ceiling on one core (chainstream.protocol.recover);
5. starts the relay as a separate process (`python -m chainstream relay`), waits until it has seen every
   channel, and warms each channel up with its first voucher;
6. phase "ws": sustained accepted vouchers/s at maximum offered load over WS /api/v1/payments/stream
   (several connections, each owning a disjoint set of channels, pipelined with a bounded window);
7. phase "batch": the same over POST /api/v1/payments/batch (several connections, one batch in flight each);
8. phase "latency": a paced open-loop load (default 2,000 vouchers/s over every channel) over the stream,
   once per rate given to --rate (e.g. --rate 2000,1000 for the target and a load the machine sustains),
   latency = client send -> durable ack;
9. kills the relay with SIGKILL and checks that every acknowledged voucher is in its database.

The store: the SQLite default (one relay process), or `--store postgres`: a throwaway PostgreSQL server (the
Debian packages, as tests/store/postgres_server.py starts it; `make postgres`) with `--instances N` relay
processes on its one database (distinct CHAINSTREAM_INSTANCE names). The load is split between the instances by
channel (connection k talks to instance k mod N, and owns a disjoint set of channels), as a load balancer routing
by channel id would; the CPU of every relay process and of the PostgreSQL server is recorded per phase.

Run:  .venv/bin/python benchmarks/relay_throughput.py            (about 2-3 minutes)
      .venv/bin/python benchmarks/relay_throughput.py --quick    (a smoke run: 100 channels, short phases)
      .venv/bin/python benchmarks/relay_throughput.py --store postgres --instances 2
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from benchlib import (  # noqa: E402
    PROJECT_ROOT,
    ChainJob,
    ProcessCpu,
    channel_id_for,
    eth_listings,
    key,
    machine,
    play_chain_cost,
    process_tree_cpu,
    sign_chain,
    summarize_ms,
    timed,
    with_id,
)

from chainstream.chain.contracts import ChannelsClient, RegistryClient  # noqa: E402
from chainstream.chain.deploy import deploy_all  # noqa: E402
from chainstream.chain.node import AnvilNode, free_port  # noqa: E402
from chainstream.chain.transactions import TxSender, fund  # noqa: E402
from chainstream.protocol import Signature, recover  # noqa: E402
from chainstream.protocol.types import ZERO_ADDRESS  # noqa: E402
from chainstream.seed import ARTISTS, register_catalog  # noqa: E402

ETH = 10**18
ID_STRIDE = 1_000_000  # stream id = channel index * ID_STRIDE + seq


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=1_000, help="channels to open (default 1000)")
    p.add_argument("--listeners", type=int, default=50, help="funded listener keys the channels are spread over")
    p.add_argument("--ws-per-channel", type=int, default=100, help="vouchers per channel for the ws phase")
    p.add_argument("--batch-per-channel", type=int, default=100, help="vouchers per channel for the batch phase")
    p.add_argument("--duration", type=float, default=15.0, help="max seconds for each max-load phase")
    p.add_argument("--ws-connections", type=int, default=4)
    p.add_argument("--ws-window", type=int, default=1_000, help="max unacknowledged messages per connection")
    p.add_argument("--batch-connections", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=500, help="payments per batch request (max 1000)")
    p.add_argument(
        "--rate",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[2_000.0],
        help="paced load(s) of the latency phase, vouchers/s, comma-separated (default 2000)",
    )
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--latency-connections", type=int, default=4)
    p.add_argument(
        "--settle-interval",
        type=float,
        default=3_600.0,
        help="the relay's settlement interval (default: no settlement round during the run)",
    )
    p.add_argument("--sign-procs", type=int, default=os.cpu_count() or 1, help="processes that pre-sign vouchers")
    p.add_argument("--recover-seconds", type=float, default=3.0, help="how long to measure the recovery ceiling")
    p.add_argument(
        "--workdir",
        type=Path,
        default=PROJECT_ROOT / "build" / "bench",
        help="where the relay's database, logs and results.json go (a fresh subfolder per run)",
    )
    p.add_argument(
        "--skip", action="append", default=[], choices=["ws", "batch", "latency"], help="skip a phase (repeatable)"
    )
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite", help="the relay's database")
    p.add_argument(
        "--instances", type=int, default=1, help="relay processes on the one database (more than 1: --store postgres)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 100 channels, 10 listeners, short phases")
    args = p.parse_args()
    if args.instances > 1 and args.store != "postgres":
        p.error("several instances need --store postgres (SQLite is one relay per database)")
    for name in ("ws_connections", "batch_connections", "latency_connections"):
        if getattr(args, name) % args.instances:
            p.error(f"--{name.replace('_', '-')} must be a multiple of --instances (each channel has one instance)")
    if args.quick:
        args.channels, args.listeners = 100, 10
        args.ws_per_channel = args.batch_per_channel = 20
        args.duration, args.latency_seconds, args.rate, args.recover_seconds = 5.0, 3.0, [500.0], 1.0
    return args


# --------------------------------------------------------------------------------------------- chain set-up
@dataclass
class World:
    w3: Web3
    chain_id: int
    channels_address: str
    deployment_file: Path
    relay_secret: str
    channel_ids: list[bytes]
    session_secrets: list[bytes]
    listings: list[Any]
    last_block: int
    rpc_url: str


def set_up_chain(
    node: AnvilNode, args: argparse.Namespace, plays: int, workdir: Path, timings: dict[str, float]
) -> World:
    w3 = node.web3()
    deployer, relay = key("deployer"), key("relay")
    artists = {name: key(f"artist-{name}") for name in ARTISTS}
    platform = key("platform")
    listeners = [key(f"listener-{i}") for i in range(args.listeners)]
    with timed("fund + deploy + catalog", timings):
        for k in (deployer, relay, platform, *artists.values()):
            fund(w3, k.address, 100 * ETH)
        for k in listeners:
            fund(w3, k.address, 1_000 * ETH)
        d = deploy_all(w3, TxSender(w3, deployer))
        deployment_file = workdir / "deployment.json"
        d.save(deployment_file)
        registry = RegistryClient(w3, d.registry)
        ids = register_catalog(registry, artists, platform.address, d.stablecoin)
    listings = eth_listings(ids, {n: k.address for n, k in artists.items()}, platform.address)
    deposit = play_chain_cost(listings, plays)

    channels = ChannelsClient(w3, d.channels)
    chain_id = w3.eth.chain_id
    expiry = int(w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    sessions = [key(f"session-{i}").secret for i in range(args.channels)]
    salts = [i.to_bytes(32, "big") for i in range(args.channels)]
    senders = [TxSender(node.web3(), k) for k in listeners]

    def open_call(i: int) -> Any:
        from chainstream.protocol import PrivateKey

        session = PrivateKey(sessions[i])
        return channels.contract.functions.open(relay.address, ZERO_ADDRESS, deposit, salts[i], session.address, expiry)

    with timed("open channels", timings):
        gas = int(senders[0].build(open_call(0), value=deposit)["gas"] * 1.3)

        def open_all(listener: int) -> list[Any]:
            sender = senders[listener]
            return [
                sender.send(open_call(i), value=deposit, gas=gas, action="open", wait=False)
                for i in range(listener, args.channels, args.listeners)
            ]

        with ThreadPoolExecutor(8) as pool:
            hashes = [h for batch in pool.map(open_all, range(args.listeners)) for h in batch]
        last_block = 0
        for tx_hash in hashes:
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
            if receipt["status"] != 1:
                raise SystemExit(f"channel open reverted: {tx_hash.hex()}")
            last_block = max(last_block, receipt["blockNumber"])
    channel_ids = [
        channel_id_for(
            chain_id, d.channels, listeners[i % args.listeners].address, ZERO_ADDRESS, relay.address, salts[i]
        )
        for i in range(args.channels)
    ]
    assert channels.get_channel(channel_ids[-1]).deposit == deposit, "local channel id does not match the contract's"
    return World(
        w3,
        chain_id,
        d.channels,
        deployment_file,
        "0x" + relay.secret.hex(),
        channel_ids,
        sessions,
        listings,
        last_block,
        node.url,
    )


def presign(world: World, plays: int, procs: int) -> list[list[tuple[str, bytes, bytes]]]:
    jobs = [
        ChainJob(i, cid, world.session_secrets[i], plays, world.chain_id, world.channels_address)
        for i, cid in enumerate(world.channel_ids)
    ]
    work = partial(sign_chain, listings=world.listings)
    if procs <= 1:
        return [work(job) for job in jobs]
    with ProcessPoolExecutor(procs) as pool:
        return list(pool.map(work, jobs, chunksize=max(1, len(jobs) // (procs * 8))))


def recovery_ceiling(chains: list[list[tuple[str, bytes, bytes]]], seconds: float) -> float:
    """chainstream.protocol.recover on pre-made signatures, one thread: recoveries per second."""
    pairs = [(digest, Signature.from_bytes(sig)) for chain in chains[:200] for _, digest, sig in chain[:50]]
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for digest, sig in pairs[:2_000]:
            recover(digest, sig)
        done += min(len(pairs), 2_000)
    return done / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------- the relay
INSTANCE_NAMES = "abcdefghijklmnopqrstuvwxyz"


def start_relay(
    world: World, workdir: Path, args: argparse.Namespace, database: str, instance: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log_file = workdir / f"relay-{instance}.log"
    log = open(log_file, "wb")  # noqa: SIM115 - handed to the child
    env = {
        **os.environ,
        "CHAINSTREAM_RELAY_KEY": world.relay_secret,
        "CHAINSTREAM_LOG_LEVEL": "warning",
        "CHAINSTREAM_INSTANCE": instance,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chainstream",
            "relay",
            "--rpc-url",
            world.rpc_url,
            "--deployment",
            str(world.deployment_file),
            "--database",
            database,
            "--port",
            str(port),
            "--settle-interval",
            str(args.settle_interval),
        ],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    import httpx

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the relay exited with {proc.returncode}; see {log_file}")
        try:
            health = httpx.get(f"{base}/api/v1/health", timeout=2).json()
            if health.get("block") is not None and health["block"] >= world.last_block:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the relay did not become ready within 120 s")


@dataclass
class Stack:
    """The relay processes under test, their base URLs and their one database (a file, or a postgresql:// URL)."""

    procs: list[subprocess.Popen[bytes]]
    bases: list[str]
    database: str
    server_pid: int | None  # the PostgreSQL postmaster, if any

    def kill(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def start_stack(world: World, workdir: Path, args: argparse.Namespace, server: Any) -> Stack:
    """args.instances relay processes on the SQLite file, or on one database of the PostgreSQL `server`."""
    if server is None:
        database, server_pid = str(workdir / "relay.db"), None
    else:
        database = server.create_database()
        server_pid = int((server.data / "postmaster.pid").read_text().split()[0])
    stack = Stack([], [], database, server_pid)
    try:
        for name in INSTANCE_NAMES[: args.instances]:
            proc, base = start_relay(world, workdir, args, database, name)
            stack.procs.append(proc)
            stack.bases.append(base)
    except BaseException:
        stack.kill()
        raise
    return stack


class GroupCpu:
    """ProcessCpu over every relay process (thread names prefixed by the instance when there are several) and,
    over the same interval, the CPU of the database server (all its processes; `db_used`, set by `used`)."""

    def __init__(self, pids: list[int], server_pid: int | None) -> None:
        self.relays = [ProcessCpu(pid) for pid in pids]
        self.server_pid = server_pid
        self._db0 = self._db()
        self.db_used = 0.0

    def _db(self) -> float:
        return process_tree_cpu(self.server_pid) if self.server_pid else 0.0

    def reset(self) -> None:
        for relay in self.relays:
            relay.reset()
        self._db0 = self._db()

    def used(self) -> dict[str, float]:
        self.db_used = self._db() - self._db0
        if len(self.relays) == 1:
            return self.relays[0].used()
        merged = {
            f"{name}:{thread}": seconds
            for name, relay in zip(INSTANCE_NAMES, self.relays, strict=False)
            for thread, seconds in relay.used().items()
        }
        return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------------------------------------ the load
@dataclass
class Load:
    """Per-channel pre-signed messages and how far each channel has been sent."""

    channel_ids: list[bytes]
    messages: list[list[str]]  # [channel][seq - 1] -> JSON without id
    next_seq: list[int]
    acked: set[tuple[int, int]] = field(default_factory=set)

    def take(self, channel: int) -> tuple[int, str]:
        seq = self.next_seq[channel]
        self.next_seq[channel] = seq + 1
        return seq, with_id(self.messages[channel][seq - 1], channel * ID_STRIDE + seq)


@dataclass
class PhaseResult:
    name: str
    sent: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    relay_cpu: dict[str, float] = field(default_factory=dict)
    db_cpu: float = 0.0  # the PostgreSQL server's processes (0 on SQLite: the store runs in the relay)
    client_cpu: float = 0.0
    latency_ms: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_voucher(self) -> float:
        """Relay CPU (all threads) per accepted voucher: robust to other processes taking CPU time."""
        return sum(self.relay_cpu.values()) / self.accepted * 1e6 if self.accepted else float("nan")

    @property
    def loop_capacity(self) -> float:
        """Vouchers/s one event-loop thread could accept with a core of its own (its CPU per voucher, inverted):
        what this phase's rate would have been if other processes had not taken CPU time from the relay (with
        several instances: per instance, the event loops' CPU summed)."""
        main = sum(v for k, v in self.relay_cpu.items() if k == "main" or k.endswith(":main"))
        return self.accepted / main if main else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "seconds": round(self.seconds, 3),
            "accepted_per_s": round(self.rate, 1),
            "relay_cpu_us_per_voucher": _finite(self.cpu_us_per_voucher, 1),
            "loop_capacity_per_s": _finite(self.loop_capacity, 0),
            "relay_cpu_s": {k: round(v, 2) for k, v in self.relay_cpu.items()},
            "db_cpu_s": round(self.db_cpu, 2),
            "client_cpu_s": round(self.client_cpu, 2),
            "latency_ms": self.latency_ms,
            **self.extra,
        }


def _finite(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _record(result: PhaseResult, load: Load, reply: dict[str, Any]) -> int:
    ident = reply.get("id")
    if reply.get("ok") and reply.get("status") == "accepted":
        result.accepted += 1
        load.acked.add(divmod(ident, ID_STRIDE))  # type: ignore[arg-type]
    else:
        result.rejected[reply.get("error", {}).get("code", reply.get("status", "?"))] += 1
    return ident  # type: ignore[no-any-return]


def _partition(channels: int, parts: int) -> list[list[int]]:
    return [list(range(c, channels, parts)) for c in range(parts)]


def _stream_urls(bases: list[str]) -> list[str]:
    return [base.replace("http", "ws", 1) + "/api/v1/payments/stream" for base in bases]


async def ws_phase(
    bases: list[str], load: Load, per_channel: int, args: argparse.Namespace, cpu: GroupCpu
) -> PhaseResult:
    """Max offered load over the stream: each connection pipelines up to --ws-window messages."""
    result = PhaseResult("ws")
    urls = _stream_urls(bases)
    limit = [s + per_channel for s in load.next_seq]
    stop_at = [0.0]

    async def connection(session: aiohttp.ClientSession, mine: list[int], url: str) -> None:
        window = asyncio.Semaphore(args.ws_window)
        in_flight = [0]
        done_sending = asyncio.Event()
        async with session.ws_connect(url, max_msg_size=0, compress=0) as ws:

            async def receive() -> None:
                async for msg in ws:
                    _record(result, load, json.loads(msg.data))
                    in_flight[0] -= 1
                    window.release()
                    if done_sending.is_set() and in_flight[0] == 0:
                        return

            receiver = asyncio.create_task(receive())
            for _ in range(per_channel):
                for ch in mine:
                    if load.next_seq[ch] >= limit[ch] or time.perf_counter() > stop_at[0]:
                        continue
                    await window.acquire()
                    _, message = load.take(ch)
                    in_flight[0] += 1
                    result.sent += 1
                    await ws.send_str(message)
            done_sending.set()
            if in_flight[0] == 0:
                receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    parts = _partition(len(load.messages), args.ws_connections)
    async with aiohttp.ClientSession() as session:
        cpu.reset()
        client0 = time.process_time()
        start = time.perf_counter()
        stop_at[0] = start + args.duration
        await asyncio.gather(*(connection(session, mine, urls[k % len(urls)]) for k, mine in enumerate(parts)))
        result.seconds = time.perf_counter() - start
        result.client_cpu = time.process_time() - client0
        result.relay_cpu = cpu.used()
    return result


async def batch_phase(
    bases: list[str], load: Load, per_channel: int, args: argparse.Namespace, cpu: GroupCpu
) -> PhaseResult:
    """Max offered load over the batch endpoint: each connection has one batch in flight at a time."""
    result = PhaseResult("batch")
    limit = [s + per_channel for s in load.next_seq]
    urls = [base + "/api/v1/payments/batch" for base in bases]
    batches = [0]

    async def connection(mine: list[int], deadline: float, url: str) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            while time.perf_counter() < deadline:
                items: list[str] = []
                while len(items) < args.batch_size:
                    before = len(items)
                    for ch in mine:
                        if load.next_seq[ch] < limit[ch] and len(items) < args.batch_size:
                            items.append(load.take(ch)[1])
                    if len(items) == before:
                        break
                if not items:
                    return
                result.sent += len(items)
                body = '{"payments":[' + ",".join(items) + "]}"
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    data = await resp.json(loads=json.loads)
                if resp.status != 200:
                    result.rejected[f"http_{resp.status}"] += len(items)
                    continue
                batches[0] += 1
                for reply in data["results"]:
                    _record(result, load, reply)

    parts = _partition(len(load.messages), args.batch_connections)
    cpu.reset()
    client0 = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(
        *(connection(mine, start + args.duration, urls[k % len(urls)]) for k, mine in enumerate(parts))
    )
    result.seconds = time.perf_counter() - start
    result.client_cpu = time.process_time() - client0
    result.relay_cpu = cpu.used()
    result.extra["batches"] = batches[0]
    return result


async def latency_phase(
    bases: list[str], load: Load, rate: float, args: argparse.Namespace, cpu: GroupCpu
) -> PhaseResult:
    """Open-loop paced load: vouchers are sent on schedule whatever the replies do; latency = send -> ack."""
    result = PhaseResult(f"lat@{rate:,.0f}")
    urls = _stream_urls(bases)
    channels = len(load.messages)
    total = int(rate * args.latency_seconds)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    lag_max = [0.0]
    owner = [ch % args.latency_connections for ch in range(channels)]

    async with aiohttp.ClientSession() as session:
        sockets = [
            await session.ws_connect(urls[k % len(urls)], max_msg_size=0, compress=0)
            for k in range(args.latency_connections)
        ]
        all_sent = asyncio.Event()
        all_answered = asyncio.Event()

        async def receive(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                now = time.perf_counter()
                ident = _record(result, load, json.loads(msg.data))
                latencies.append(now - sent_at.pop(ident))
                if all_sent.is_set() and not sent_at:
                    all_answered.set()

        receivers = [asyncio.create_task(receive(ws)) for ws in sockets]
        cpu.reset()
        client0 = time.process_time()
        start = time.perf_counter()
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                ch = i % channels
                seq, message = load.take(ch)
                ident = ch * ID_STRIDE + seq
                lag_max[0] = max(lag_max[0], time.perf_counter() - (start + i / rate))
                sent_at[ident] = time.perf_counter()
                await sockets[owner[ch]].send_str(message)
                result.sent += 1
                i += 1
            await asyncio.sleep(0.0005)
        all_sent.set()
        if sent_at:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_answered.wait(), timeout=30)
        result.seconds = time.perf_counter() - start
        result.client_cpu = time.process_time() - client0
        result.relay_cpu = cpu.used()
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*receivers, return_exceptions=True)
    result.latency_ms = {k: round(v, 2) for k, v in summarize_ms(latencies).items()}
    result.extra["client_send_lag_max_ms"] = round(lag_max[0] * 1000, 2)
    result.extra["rate"] = rate
    result.extra["unanswered"] = len(sent_at)
    return result


async def warm_up(bases: list[str], load: Load) -> PhaseResult:
    """The first voucher of every channel, on the instance that owns it (loads each channel into its relay);
    not measured."""
    result = PhaseResult("warm-up")
    start = time.perf_counter()
    for instance, url in enumerate(_stream_urls(bases)):
        async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
            for ch in range(instance, len(load.messages), len(bases)):
                await ws.send_str(load.take(ch)[1])
                result.sent += 1
            async for msg in ws:
                _record(result, load, json.loads(msg.data))
                if result.accepted + sum(result.rejected.values()) == result.sent:
                    break
    result.seconds = time.perf_counter() - start
    return result


async def run_load(stack: Stack, load: Load, args: argparse.Namespace) -> list[PhaseResult]:
    cpu = GroupCpu([proc.pid for proc in stack.procs], stack.server_pid)
    bases = stack.bases
    phases = [await warm_up(bases, load)]
    runs: list[tuple[str, Any]] = [
        ("ws", lambda: ws_phase(bases, load, args.ws_per_channel, args, cpu)),
        ("batch", lambda: batch_phase(bases, load, args.batch_per_channel, args, cpu)),
    ]
    runs += [("latency", partial(latency_phase, bases, load, rate, args, cpu)) for rate in args.rate]
    for name, run in runs:
        if name not in args.skip:
            print(f"phase {name} ...", flush=True)
            phase = await run()
            phase.db_cpu = cpu.db_used
            phases.append(phase)
    return phases


def check_durability(database: str, load: Load) -> dict[str, Any]:
    """After SIGKILL: every acknowledged (channel, seq) must be a row of the payments table."""
    query = "SELECT channel_id, seq FROM payments"
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as pg:
            rows = pg.execute(query).fetchall()
    else:
        conn = sqlite3.connect(database)
        rows = conn.execute(query).fetchall()
        conn.close()
    index = {cid: i for i, cid in enumerate(load.channel_ids)}
    stored = {(index[bytes(cid)], seq) for cid, seq in rows}
    missing = load.acked - stored
    return {
        "acknowledged": len(load.acked),
        "rows": len(rows),
        "missing": len(missing),
        "examples_missing": sorted(missing)[:5],
    }


@contextlib.contextmanager
def database_server(store: str) -> Iterator[Any]:
    """None for SQLite; for PostgreSQL a throwaway server (tests/store/postgres_server.py: fsync on), stopped and
    removed at the end."""
    if store != "postgres":
        yield None
        return
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.store.postgres_server import PostgresServer, missing_reason, server_bindir

    bindir = server_bindir()
    if bindir is None or missing_reason() is not None:
        raise SystemExit(f"no PostgreSQL server to run: {missing_reason()}")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


def main() -> None:
    args = parse_args()
    workdir = args.workdir / time.strftime("throughput-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    latency_per_channel = sum(-(-int(rate * args.latency_seconds) // args.channels) for rate in args.rate)
    plays = 1 + args.ws_per_channel + args.batch_per_channel + latency_per_channel
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (other processes compete for the CPUs)")
    print(
        f"{args.channels} channels over {args.listeners} listeners, {plays} pre-signed vouchers per channel; "
        f"{args.instances} relay process(es) on {args.store}; workdir {workdir}"
    )
    run_start = time.perf_counter()
    with AnvilNode() as node:
        world = set_up_chain(node, args, plays, workdir, timings)
        print(f"chain ready: {timings}")
        with timed("pre-sign", timings):
            chains = presign(world, plays, args.sign_procs)
        n_vouchers = sum(len(c) for c in chains)
        print(
            f"pre-signed {n_vouchers} vouchers in {timings['pre-sign']:.1f}s "
            f"({n_vouchers / timings['pre-sign']:.0f}/s over {args.sign_procs} processes)"
        )
        ceiling = recovery_ceiling(chains, args.recover_seconds)
        print(f"signature-recovery ceiling (chainstream.protocol.recover, one core): {ceiling:,.0f} recoveries/s")

        load = Load(world.channel_ids, [[m for m, _, _ in chain] for chain in chains], [1] * len(chains))
        del chains
        # The load generator must not pause: keep its big, long-lived data out of the cyclic GC's full scans
        # (otherwise a collection stalls sending and receiving for tens of ms and shows up as relay latency).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        with database_server(args.store) as server:
            with timed("relay start", timings):
                stack = start_stack(world, workdir, args, server)
            try:
                phases = asyncio.run(run_load(stack, load, args))
            finally:
                stack.kill()
            durability = check_durability(stack.database, load)

    results = {
        "machine": machine(),
        "store": args.store,
        "instances": args.instances,
        "args": {k: str(v) for k, v in vars(args).items()},
        "setup_s": timings,
        "recoveries_per_s": round(ceiling),
        "phases": [p.as_dict() for p in phases],
        "durability": durability,
        "total_s": round(time.perf_counter() - run_start, 1),
        "load_average_at_end": os.getloadavg(),
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(
        f"{'phase':<8} {'sent':>7} {'accepted':>8} {'seconds':>7} {'accepted/s':>10} {'/ceiling':>8} "
        f"{'CPU us/v':>8} {'loop cap/s':>10}  relay CPU s by thread"
    )
    for p in phases:
        cpu_text = ", ".join(f"{k}={v:.1f}" for k, v in list(p.relay_cpu.items())[: 3 * args.instances])
        if args.store == "postgres":
            cpu_text += f", postgres={p.db_cpu:.1f}"
        print(
            f"{p.name:<8} {p.sent:>7} {p.accepted:>8} {p.seconds:>7.2f} {p.rate:>10,.0f} {p.rate / ceiling:>8.2f} "
            f"{p.cpu_us_per_voucher:>8.0f} {p.loop_capacity:>10,.0f}  {cpu_text}  (client CPU {p.client_cpu:.1f}s)"
        )
        if p.rejected:
            print(f"         rejected: {dict(p.rejected)}")
        if p.latency_ms:
            lat = p.latency_ms
            print(
                f"         latency ms at {p.extra['rate']:,.0f}/s: p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  "
                f"p99 {lat['p99']:.2f}  p99.9 {lat['p99.9']:.2f}  max {lat['max']:.2f}  "
                f"(client send lag max {p.extra['client_send_lag_max_ms']} ms)"
            )
    print(
        "(CPU us/v: relay CPU per accepted voucher, all threads; loop cap/s: accepted vouchers per second of the "
        "event loop's own CPU time)"
    )
    print(
        f"durability after SIGKILL: {durability['acknowledged']} acknowledged, {durability['rows']} rows, "
        f"{durability['missing']} missing"
    )
    print(
        f"total run time {results['total_s']}s; load average now {os.getloadavg()[0]:.2f}; "
        f"results in {workdir / 'results.json'}"
    )
    if durability["missing"]:
        raise SystemExit("an acknowledged voucher is not in the database")


if __name__ == "__main__":
    main()
