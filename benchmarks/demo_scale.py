"""The demo at scale, end to end on the embedded chain: 100 listeners x 1,000 plays through a real relay over
HTTP, then settle everything and claim. Target: <= 60 s of wall time in all.

- the chain is embedded (eth-tester / py-evm, in this process), so the relay runs in this process too:
  uvicorn on uvloop in a background thread, with its settler and watchtower, exactly as `chainstream relay`;
- listeners are `--client-procs` separate processes (so that their signing does not take the relay's GIL):
  each signs its listeners' plays with the shared ledger (charge_play -> apply -> session-key signature)
  batch by batch, and POSTs them to /api/v1/payments/batch while it signs the next batch;
- then one forced settlement round (settleBatch transactions of `settle_batch_size` channels) and a claim by
  every payee, and a reconciliation: what each payee claimed equals what the listeners' last vouchers owe it.

Run:  .venv/bin/python benchmarks/demo_scale.py                 (100 x 1,000)
      .venv/bin/python benchmarks/demo_scale.py --listeners 10 --plays 100   (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PROJECT_ROOT, ProcessCpu, channel_id_for, eth_listings, key, machine, play_chain_cost  # noqa: E402

from chainstream.chain.contracts import ChannelsClient, RegistryClient  # noqa: E402
from chainstream.chain.deploy import Deployment, deploy_all  # noqa: E402
from chainstream.chain.node import embedded_web3, free_port  # noqa: E402
from chainstream.chain.transactions import TxSender, fund  # noqa: E402
from chainstream.config import Settings  # noqa: E402
from chainstream.ledger import LedgerState, Listing, apply, charge_play  # noqa: E402
from chainstream.protocol import Domain, PrivateKey  # noqa: E402
from chainstream.protocol.types import ZERO_ADDRESS  # noqa: E402
from chainstream.relay.app import Relay, create_app  # noqa: E402
from chainstream.seed import ARTISTS, register_catalog  # noqa: E402

ETH = 10**18


class RelayServer:
    """The relay app served by uvicorn on uvloop from a background thread (the embedded chain is in-process)."""

    def __init__(self, settings: Settings, w3: Any, deployment: Deployment) -> None:
        self.relay = Relay(settings, w3=w3, deployment=deployment)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, relay=self.relay),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            log_config=None,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(self.server.serve()), daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.server.started and httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SystemExit("the relay did not start")

    def call(self, coro: Any, timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        # Not waited for: the settler only notices the stop after its current sleep (settle_interval).
        self.server.should_exit = True
        self.thread.join(timeout=5)


@dataclass(frozen=True)
class ClientJob:
    url: str
    chain_id: int
    channels: str
    listings: list[Listing]
    channel_ids: list[bytes]
    sessions: list[bytes]
    plays: int
    batch_size: int


def client_main(job: ClientJob, out: Any, go: Any) -> None:
    """One listeners' process: sign each round of plays for its channels, POST it while signing the next."""
    out.put("ready")
    go.wait()
    uvloop.run(_client(job, out))


async def _client(job: ClientJob, out: Any) -> None:
    domain = Domain(job.chain_id, job.channels)
    keys = [PrivateKey(s) for s in job.sessions]
    states = [LedgerState.opened(cid) for cid in job.channel_ids]
    hexes = ["0x" + cid.hex() for cid in job.channel_ids]
    n = len(job.channel_ids)
    sign_s = 0.0
    accepted = 0
    errors: dict[str, int] = {}
    rounds_per_batch = max(1, job.batch_size // n)

    def sign_round(play: int) -> list[str]:
        items = []
        for i in range(n):
            listing = job.listings[(i + play) % len(job.listings)]
            states[i], receipt = apply(states[i], charge_play(states[i], listing))
            v = states[i].voucher
            items.append(
                json.dumps(
                    {
                        "channelId": hexes[i],
                        "seq": receipt.seq,
                        "charge": {"kind": "play", "trackId": "0x" + listing.track_id.hex()},
                        "voucher": {
                            "payees": list(v.payees),
                            "amounts": [str(a) for a in v.amounts],
                            "playHash": "0x" + v.play_hash.hex(),
                        },
                        "signature": keys[i].sign(v.digest(domain)).to_hex(),
                    },
                    separators=(",", ":"),
                )
            )
        return items

    async def post(session: aiohttp.ClientSession, body: str) -> None:
        nonlocal accepted
        async with session.post(
            job.url + "/api/v1/payments/batch", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            data = await resp.json()
        if resp.status != 200:
            errors[f"http_{resp.status}"] = errors.get(f"http_{resp.status}", 0) + 1
            return
        for r in data["results"]:
            if r.get("ok") and r.get("status") == "accepted":
                accepted += 1
            else:
                code = r.get("error", {}).get("code", "?")
                errors[code] = errors.get(code, 0) + 1

    start = time.perf_counter()
    # One connection: a batch is sent only once the previous one is answered, so a channel's vouchers arrive
    # in order; the next batch is signed while the relay works on the current one.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        in_flight: asyncio.Task[None] | None = None
        play = 0
        while play < job.plays:
            t = time.perf_counter()
            items = []
            for _ in range(min(rounds_per_batch, job.plays - play)):
                items.extend(sign_round(play))
                play += 1
            sign_s += time.perf_counter() - t
            body = '{"payments":[' + ",".join(items) + "]}"
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.create_task(post(session, body))
            await asyncio.sleep(0)  # let the request go out before signing the next batch
        if in_flight is not None:
            await in_flight
    finals = {
        cid: (list(s.voucher.payees), list(s.voucher.amounts)) for cid, s in zip(job.channel_ids, states, strict=True)
    }
    out.put(
        {
            "accepted": accepted,
            "errors": errors,
            "sign_s": sign_s,
            "wall_s": time.perf_counter() - start,
            "cpu_s": time.process_time(),
            "finals": finals,
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listeners", type=int, default=100)
    p.add_argument("--plays", type=int, default=1_000, help="plays per listener")
    p.add_argument("--client-procs", type=int, default=2, help="listener processes")
    p.add_argument("--batch-size", type=int, default=1_000, help="payments per batch request (max 1000)")
    p.add_argument("--target", type=float, default=60.0, help="seconds")
    p.add_argument("--workdir", type=Path, default=PROJECT_ROOT / "build" / "bench")
    args = p.parse_args()
    workdir = args.workdir / time.strftime("demo-scale-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"{args.listeners} listeners x {args.plays} plays = {args.listeners * args.plays:,} vouchers, embedded chain")
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(label: str, since: float) -> float:
        now = time.perf_counter()
        times[label] = now - since
        print(f"  {label:<34} {times[label]:6.1f} s", flush=True)
        return now

    # ------------------------------------------------------------------------------------- chain set-up
    t = t0
    w3 = embedded_web3()
    deployer, relay_key, platform = key("deployer"), key("relay"), key("platform")
    artists = {name: key(f"artist-{name}") for name in ARTISTS}
    listeners = [key(f"listener-{i}") for i in range(args.listeners)]
    sessions = [key(f"session-{i}") for i in range(args.listeners)]
    for k in (deployer, relay_key, platform, *artists.values()):
        fund(w3, k.address, 100 * ETH)
    d = deploy_all(w3, TxSender(w3, deployer))
    ids = register_catalog(RegistryClient(w3, d.registry), artists, platform.address, d.stablecoin)
    address_of = {n: k.address for n, k in artists.items()}
    listings = eth_listings(ids, address_of, platform.address)
    t = lap("deploy + register catalog", t)

    deposit = play_chain_cost(listings, args.plays)
    for k in listeners:
        fund(w3, k.address, deposit + ETH // 10)
    t = lap(f"fund {args.listeners} listeners", t)
    channels = ChannelsClient(w3, d.channels)
    expiry = int(w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    channel_ids = []
    for i, k in enumerate(listeners):
        salt = i.to_bytes(32, "big")
        call = channels.contract.functions.open(
            relay_key.address, ZERO_ADDRESS, deposit, salt, sessions[i].address, expiry
        )
        TxSender(w3, k).send(call, value=deposit, gas=250_000, action="open")
        channel_ids.append(
            channel_id_for(w3.eth.chain_id, d.channels, k.address, ZERO_ADDRESS, relay_key.address, salt)
        )
    assert channels.get_channel(channel_ids[-1]).deposit == deposit
    t = lap(f"open {args.listeners} channels", t)

    settings = Settings(
        relay_key="0x" + relay_key.secret.hex(),
        database=str(workdir / "relay.db"),
        media_dir=workdir / "media",
        settle_interval=3_600,
    )
    server = RelayServer(settings, w3, d)
    server.start()
    t = lap("relay start (watcher sees every channel)", t)

    # -------------------------------------------------------------------------------------------- plays
    procs = max(1, min(args.client_procs, args.listeners))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    workers = []
    for c in range(procs):
        mine = list(range(c, args.listeners, procs))
        job = ClientJob(
            server.url,
            w3.eth.chain_id,
            d.channels,
            listings,
            [channel_ids[i] for i in mine],
            [sessions[i].secret for i in mine],
            args.plays,
            args.batch_size,
        )
        workers.append(ctx.Process(target=client_main, args=(job, out, go)))
    for w in workers:
        w.start()
    for _ in workers:  # interpreter start-up and imports before the clock: listeners' apps are already open
        assert out.get() == "ready"
    t = lap(f"start {procs} listener processes", t)
    relay_cpu = ProcessCpu(os.getpid())
    t = time.perf_counter()
    go.set()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    stream_s = time.perf_counter() - t
    relay_thread_cpu = relay_cpu.used()
    accepted = sum(r["accepted"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    t = lap(f"stream {accepted:,} plays (batch endpoint)", t)
    print(
        f"    {accepted / stream_s:,.0f} accepted/s; listener processes spent {sum(r['sign_s'] for r in results):.1f} s "
        f"signing; this process (relay + chain) used {sum(relay_thread_cpu.values()):.1f} s CPU; errors {errors or 'none'}"
    )

    # ------------------------------------------------------------------------------------ settle, claim
    settled = server.call(server.relay.settler.settle_round(force=True))
    t = lap(f"settle {settled} channels ({server.relay.settler.batches_sent} settleBatch tx)", t)
    expected: dict[str, int] = {}
    for r in results:
        for payees, amounts in r["finals"].values():
            for payee, amount in zip(payees, amounts, strict=True):
                expected[payee] = expected.get(payee, 0) + amount
    claimed: dict[str, int] = {}
    for _name, k in (*artists.items(), ("platform", platform)):
        claimable = channels.claimable(k.address)
        if claimable:
            channels.claim(TxSender(w3, k))
        claimed[k.address] = claimable
    t = lap(f"claim ({len(claimed)} payees)", t)
    total = time.perf_counter() - t0 - times[f"start {procs} listener processes"]
    server.stop()

    reconciled = all(claimed.get(a, 0) == v for a, v in expected.items()) and accepted == args.listeners * args.plays
    print(
        f"reconciliation: every payee claimed exactly what the listeners' last vouchers owe it: {reconciled} "
        f"({sum(claimed.values()) / ETH:.6f} ETH claimed)"
    )
    verdict = "within" if total <= args.target else "OVER"
    print(
        f"total wall time {total:.1f} s ({verdict} the {args.target:.0f} s target; listener process start-up "
        f"not counted)"
    )
    (workdir / "results.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "phases_s": times,
                "accepted": accepted,
                "errors": errors,
                "accepted_per_s": accepted / stream_s,
                "relay_process_cpu_s": relay_thread_cpu,
                "client_sign_s": [r["sign_s"] for r in results],
                "client_cpu_s": [r["cpu_s"] for r in results],
                "reconciled": reconciled,
                "total_s": total,
                "load_average_at_end": os.getloadavg(),
            },
            indent=2,
        )
        + "\n"
    )
    if not reconciled:
        raise SystemExit("reconciliation failed")


if __name__ == "__main__":
    main()
