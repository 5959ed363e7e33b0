"""Restart after downtime: how long a relay killed with SIGKILL takes to serve again, and to be ready, when the
chain moved on while it was away (issue 9, fast and safe restart).

What it does:

1. starts anvil, deploys, registers the seed catalog, opens `--channels` ETH channels (relay_throughput.py's
   set-up) and starts the relay (`python -m chainstream relay`, its own process);
2. pays each channel's first voucher (so every channel is known to the relay and holds an unsettled voucher),
   then kills the relay with SIGKILL;
3. while it is down: `--top-ups` top-ups spread over the channels (one event each, each a channel the watcher
   must re-read), one close request (a channel the relay must settle before it serves), then `--empty-blocks`
   empty blocks (anvil_mine);
4. restarts the relay on the same database and measures, from the spawn: the first `/health/live` answer (the
   port is open: serving), the first `/health` with `ok` (ready: the watcher caught up), and the process's CPU
   seconds at each; checks that the closing channel was settled by the time the port opened.

Before/after a change: run it with the old code first on PYTHONPATH (the relay child inherits it), e.g.
`git archive <commit> src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/restart.py`.

Run:  .venv/bin/python benchmarks/restart.py                     (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PROJECT_ROOT, ChainJob, key, machine, sign_chain  # noqa: E402
from relay_throughput import set_up_chain  # noqa: E402

from chainstream.chain.contracts import ChannelsClient  # noqa: E402
from chainstream.chain.node import AnvilNode, free_port  # noqa: E402
from chainstream.chain.transactions import TxSender  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=200, help="channels, each paid once before the kill")
    p.add_argument("--listeners", type=int, default=20, help="funded listener keys the channels are spread over")
    p.add_argument("--top-ups", type=int, default=1_000, help="top-ups made while the relay is down")
    p.add_argument("--empty-blocks", type=int, default=20_000, help="empty blocks mined while the relay is down")
    p.add_argument(
        "--workdir",
        type=Path,
        default=PROJECT_ROOT / "build" / "bench",
        help="where the relay's database, logs and results.json go (a fresh subfolder per run)",
    )
    return p.parse_args()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn_relay(world: Any, workdir: Path, port: int, run: int) -> subprocess.Popen[bytes]:
    log = open(workdir / f"relay-{run}.log", "wb")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "CHAINSTREAM_RELAY_KEY": world.relay_secret, "CHAINSTREAM_LOG_LEVEL": "info"}
    args = ["--rpc-url", world.rpc_url, "--deployment", str(world.deployment_file)]
    args += ["--database", str(workdir / "relay.db"), "--port", str(port), "--settle-interval", "3600"]
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "chainstream", "relay", *args], cwd=workdir, env=env, stdout=log, stderr=log
        )
    finally:
        log.close()


def wait_for(proc: subprocess.Popen[bytes], url: str, ok: Any, timeout: float = 600) -> tuple[float, float]:
    """Poll `url` until `ok(response)`; (seconds since `started`, the process's CPU seconds then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the relay exited with {proc.returncode}")
        try:
            response = httpx.get(url, timeout=5)
            if ok(response):
                return time.monotonic(), cpu_seconds(proc.pid)
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{url} did not answer as expected within {timeout} s")


def main() -> None:
    args = parse_args()
    workdir = args.workdir / time.strftime("restart-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; workdir {workdir}")
    setup = argparse.Namespace(channels=args.channels, listeners=args.listeners)
    with AnvilNode() as node:
        world = set_up_chain(node, setup, 2, workdir, {})
        port = free_port()
        base = f"http://127.0.0.1:{port}/api/v1"
        proc = spawn_relay(world, workdir, port, 1)
        wait_for(proc, f"{base}/health", lambda r: r.json().get("block", -1) >= world.last_block)
        payments = []
        for i, cid in enumerate(world.channel_ids):
            body, _, _ = sign_chain(
                ChainJob(i, cid, world.session_secrets[i], 1, world.chain_id, world.channels_address), world.listings
            )[0]
            payments.append(json.loads(body))
        for first in range(0, len(payments), 500):
            reply = httpx.post(f"{base}/payments/batch", json={"payments": payments[first : first + 500]}, timeout=60)
            reply.raise_for_status()
        proc.kill()
        proc.wait()

        w3 = world.w3
        channels = ChannelsClient(w3, world.channels_address)
        senders = [TxSender(node.web3(), key(f"listener-{i}")) for i in range(args.listeners)]
        hashes = []
        for n in range(args.top_ups):
            i = n % args.channels
            call = channels.contract.functions.topUp(world.channel_ids[i], 1)
            hashes.append(senders[i % args.listeners].send(call, value=1, action="topUp", wait=False))
        closing = world.channel_ids[0]
        hashes.append(
            senders[0].send(channels.contract.functions.requestClose(closing), action="requestClose", wait=False)
        )
        for tx_hash in hashes:
            w3.eth.wait_for_transaction_receipt(tx_hash, timeout=300)
        for first in range(0, args.empty_blocks, 500):  # in steps: a loaded machine mines slowly
            w3.provider.make_request("anvil_mine", [hex(min(500, args.empty_blocks - first))])
        head = int(w3.eth.block_number)
        print(
            f"while down: {args.top_ups} top-ups, 1 close request, {args.empty_blocks} empty blocks; "
            f"head {head}, the relay's cursor was at about block {world.last_block}"
        )

        started = time.monotonic()
        proc = spawn_relay(world, workdir, port, 2)
        try:
            live_at, live_cpu = wait_for(proc, f"{base}/health/live", lambda r: r.status_code == 200)
            settled_at_live = channels.get_channel(closing).settled
            ready_at, ready_cpu = wait_for(proc, f"{base}/health", lambda r: r.json().get("ok") is True)
        finally:
            proc.kill()
            proc.wait()
    results = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "backlog_blocks": head - world.last_block,
        "live_s": round(live_at - started, 2),
        "live_cpu_s": round(live_cpu, 2),
        "ready_s": round(ready_at - started, 2),
        "ready_cpu_s": round(ready_cpu, 2),
        "closing_channel_settled_when_live": settled_at_live > 0,
        "load_average_at_end": os.getloadavg(),
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"restart over {results['backlog_blocks']} blocks: serving (/health/live) after {results['live_s']} s "
        f"({results['live_cpu_s']} CPU s), ready after {results['ready_s']} s ({results['ready_cpu_s']} CPU s); "
        f"closing channel settled before the port opened: {results['closing_channel_settled_when_live']}"
    )


if __name__ == "__main__":
    main()
