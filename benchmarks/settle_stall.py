"""Does settling stall serving? `/health` and payment-acknowledgement latency (p50/p99/max) of a relay under a
paced payment load, without settlement and then while it settles all its channels in one 100-entry settleBatch
every few seconds (and its watcher reads each of those batches back).

The same anvil chain, relay process and database for both runs (the relay is restarted between them with
another settlement interval), the channels and pre-signed vouchers of `relay_throughput.py`.

Run:  .venv/bin/python benchmarks/settle_stall.py             (about 2 minutes)
      .venv/bin/python benchmarks/settle_stall.py --seconds 10 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PROJECT_ROOT, ProcessCpu, machine, summarize_ms, timed  # noqa: E402
from relay_throughput import Load, latency_phase, presign, set_up_chain, start_relay, warm_up  # noqa: E402

from chainstream.chain.node import AnvilNode  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=100, help="channels (all settled in one batch per round)")
    p.add_argument("--listeners", type=int, default=10)
    p.add_argument("--rate", type=float, default=200.0, help="paced vouchers/s during each run")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    p.add_argument("--settle-every", type=float, default=4.0, help="settlement interval of the settling run (s)")
    p.add_argument("--health-every", type=float, default=0.02, help="seconds between /health probes")
    p.add_argument("--sign-procs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workdir", type=Path, default=PROJECT_ROOT / "build" / "bench")
    return p.parse_args()


async def probe_health(base: str, every: float, stop: asyncio.Event) -> list[float]:
    """GET /health every `every` seconds until `stop`; the latency of each."""
    out: list[float] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            start = time.perf_counter()
            async with session.get(f"{base}/api/v1/health") as response:
                await response.read()
            out.append(time.perf_counter() - start)
            await asyncio.sleep(every)
    return out


async def run(base: str, load: Load, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    lat_args = argparse.Namespace(latency_seconds=args.seconds, latency_connections=4)
    stop = asyncio.Event()
    prober = asyncio.create_task(probe_health(base, args.health_every, stop))
    phase = await latency_phase(base, load, args.rate, lat_args, ProcessCpu(pid))
    stop.set()
    health = await prober
    return {
        "ack_ms": phase.latency_ms,
        "health_ms": {k: round(v, 2) for k, v in summarize_ms(health).items()},
        "accepted": phase.accepted,
        "rejected": dict(phase.rejected),
        "unanswered": phase.extra["unanswered"],
        "relay_cpu_s": {k: round(v, 2) for k, v in phase.relay_cpu.items()},
    }


def settlements(database: Path) -> dict[str, int]:
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall()
    finally:
        conn.close()
    return {status: count for status, count in rows}


def main() -> None:
    args = parse_args()
    workdir = args.workdir / time.strftime("settle-stall-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    per_run = -(-int(args.rate * args.seconds) // args.channels)
    plays = 1 + 2 * per_run + 2
    setup = argparse.Namespace(channels=args.channels, listeners=args.listeners)
    timings: dict[str, float] = {}
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; workdir {workdir}")
    results: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    # Every due channel is settled, whatever its gas costs, 100 to a transaction.
    os.environ.update(
        {
            "CHAINSTREAM_SETTLE_MIN_VALUE": "1",
            "CHAINSTREAM_SETTLE_MAX_GAS_FRACTION": "1e12",
            "CHAINSTREAM_SETTLE_BATCH_SIZE": str(args.channels),
        }
    )
    with AnvilNode() as node:
        world = set_up_chain(node, setup, plays, workdir, timings)
        chains = presign(world, plays, args.sign_procs)
        load = Load(world.channel_ids, [[m for m, _, _ in chain] for chain in chains], [1] * len(chains))
        del chains
        for name, interval in (("without settlement", 3600.0), ("settling", args.settle_every)):
            relay_args = argparse.Namespace(settle_interval=interval)
            with timed(f"relay start ({name})", timings):
                proc, base, database = start_relay(world, workdir, relay_args)
            try:
                before = settlements(database)
                if name == "without settlement":
                    asyncio.run(warm_up(base, load))
                print(f"run: {name} ...", flush=True)
                outcome = asyncio.run(run(base, load, args, proc.pid))
                outcome["outbox_before"], outcome["outbox_after"] = before, settlements(database)
                results[name] = outcome
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    results["setup_s"] = timings
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(
        f"{'run':<20} {'ack p50':>8} {'ack p99':>8} {'ack max':>8} {'health p50':>10} {'health p99':>10} {'health max':>10} "
        f"{'loop CPU s':>10}"
    )
    for name in ("without settlement", "settling"):
        ack, health = results[name]["ack_ms"], results[name]["health_ms"]
        print(
            f"{name:<20} {ack['p50']:>8} {ack['p99']:>8} {ack['max']:>8} "
            f"{health['p50']:>10} {health['p99']:>10} {health['max']:>10} {results[name]['relay_cpu_s']['main']:>10}"
        )
    print(f"settlement transactions in the settling run: {results['settling']['outbox_after']}")


if __name__ == "__main__":
    main()
