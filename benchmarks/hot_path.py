"""The relay's per-voucher CPU cost without network or chain: the stream handler's work, stage by stage.

A RelayService over a real SqliteStore (WAL, synchronous=FULL, group commit) with the seed catalog and
`--channels` channels put straight into its catalog and store (no chain: nothing on this path reads one once
a channel is loaded). Pre-signed play vouchers go through what WS /api/v1/payments/stream does for each
message: limits.check_message -> StreamedPaymentIn.model_validate_json -> to_payment -> RelayService.submit (verify, queue for the
group commit, await durability) -> the reply dict -> json.dumps, with `--window` messages in flight.

It reports CPU microseconds per voucher of the event-loop thread and of the writer thread (thread CPU
clocks, so other processes on the machine barely move them), and a one-core breakdown of the pure stages.
Use it to compare code changes; relay_throughput.py measures the real thing end to end.

Run:  .venv/bin/python benchmarks/hot_path.py [--channels 1000 --per-channel 20 --window 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PROJECT_ROOT, ChainJob, key, machine, play_chain_cost, sign_chain  # noqa: E402

from chainstream.chain.deploy import Deployment  # noqa: E402
from chainstream.config import Settings  # noqa: E402
from chainstream.ledger import LedgerState, apply, charge_play  # noqa: E402
from chainstream.protocol import Domain, Signature, recover  # noqa: E402
from chainstream.protocol.types import ZERO_ADDRESS  # noqa: E402
from chainstream.relay.api.payments import ack_json  # noqa: E402
from chainstream.relay.catalog import CatalogEntry  # noqa: E402
from chainstream.relay.limits import check_json_depth, check_message  # noqa: E402
from chainstream.relay.process import tune_interpreter_for_serving  # noqa: E402
from chainstream.relay.schemas import StreamedPaymentIn, to_payment  # noqa: E402
from chainstream.relay.service import RelayService  # noqa: E402
from chainstream.seed import ARTISTS, CATALOG, split_for, track_audio  # noqa: E402
from chainstream.store import ChannelRecord, SqliteStore  # noqa: E402
from chainstream.verify import ChannelTerms, verify_payment  # noqa: E402

CHANNELS_ADDRESS = "0x" + "c0" * 20
CHAIN_ID = 31337


class _Channels:
    """Stands in for ChannelsClient: the service only needs the domain once channels are in its store."""

    domain = Domain(CHAIN_ID, CHANNELS_ADDRESS)


def build_service(workdir: Path, channels: int, plays: int) -> tuple[RelayService, list[Any], list[bytes], list[bytes]]:
    artists = {name: key(f"artist-{name}") for name in ARTISTS}
    address_of = {n: k.address for n, k in artists.items()}
    platform = key("platform").address
    relay = key("relay")
    store = SqliteStore(workdir / "relay.db")
    deployment = Deployment(CHAIN_ID, CHANNELS_ADDRESS, "0x" + "c1" * 20, None, 0, 86_400, 3_600)  # type: ignore[arg-type]
    service = RelayService(
        settings=Settings(
            relay_key="0x" + relay.secret.hex(), database=str(workdir / "relay.db"), media_dir=workdir / "media"
        ),
        channels=_Channels(),
        registry=None,
        deployment=deployment,  # type: ignore[arg-type]
        relay_key=relay,
        store=store,
    )
    listings = []
    for spec in CATALOG:
        track_id, _ = track_audio(spec)
        split = split_for(spec, address_of, platform)
        service.catalog.put(
            CatalogEntry(track_id, spec.title, address_of[spec.artist], split, 1, 0, {ZERO_ADDRESS: spec.eth})
        )
        if spec.eth.per_play:
            listing = service.catalog.listing(track_id, ZERO_ADDRESS)
            assert listing is not None
            listings.append(listing)
    deposit = play_chain_cost(listings, plays)
    expiry = int(time.time()) + 30 * 86_400
    ids, sessions = [], []
    for i in range(channels):
        cid = os.urandom(32)
        session = key(f"session-{i}")
        store.upsert_channel(
            ChannelRecord(cid, key(f"listener-{i}").address, ZERO_ADDRESS, deposit, session.address, expiry, "open", 0)
        )
        ids.append(cid)
        sessions.append(session.secret)
    return service, listings, ids, sessions


def stage_breakdown(
    service: RelayService, listings: list[Any], message: str, digest: bytes, sig: bytes
) -> dict[str, float]:
    """One-core cost of each pure stage for one voucher (best of 5 runs of 2,000 calls, thread CPU time)."""
    body = StreamedPaymentIn.model_validate_json(message)
    payment = to_payment(body.channelId, body)
    state = LedgerState.opened(payment.channel_id)
    record = service.store.get_channel(payment.channel_id)
    assert record is not None
    terms = ChannelTerms(
        record.channel_id, record.payer, record.token, record.deposit, record.session_key, record.session_expiry, True
    )
    listing = service.catalog.listing(
        body.charge.trackId and bytes.fromhex(body.charge.trackId[2:]) or b"", ZERO_ADDRESS
    )
    assert listing is not None
    charge = charge_play(state, listing)
    next_state, _ = apply(state, charge)
    signature = Signature.from_bytes(sig)
    now = int(time.time())
    max_message = Settings.model_fields["max_message_bytes"].default
    body_bytes = message.encode()
    stages = {
        "check_message (limits)": lambda: check_message(message, max_message),
        "check_json_depth (bytes)": lambda: check_json_depth(body_bytes),
        "model_validate_json": lambda: StreamedPaymentIn.model_validate_json(message),
        "to_payment": lambda: to_payment(body.channelId, body),
        "verify_payment (all)": lambda: verify_payment(
            payment,
            state=state,
            channel=terms,
            domain=service.domain,
            listing_of=lambda _: listing,
            now=now,
            spent_today=0,
            session_margin=600,
        ),
        "  charge_play": lambda: charge_play(state, listing),
        "  apply (next voucher)": lambda: apply(state, charge),
        "  voucher digest": lambda: next_state.voucher.digest(service.domain),
        "  recover": lambda: recover(digest, signature),
        "reply json": lambda: json.dumps(
            {"id": 1, "ok": True, **ack_json(_fake_ack(payment))}, separators=(",", ":"), ensure_ascii=False
        ),
    }
    out = {}
    for name, fn in stages.items():
        best = float("inf")
        for _ in range(5):
            t = time.thread_time()
            for _ in range(2_000):
                fn()
            best = min(best, time.thread_time() - t)
        out[name] = best / 2_000 * 1e6
    return out


def _fake_ack(payment: Any) -> Any:
    from chainstream.relay.service import PaymentAck

    return PaymentAck(
        "accepted", payment.channel_id, payment.seq, payment.voucher.total, 10**13, b"\x00" * 32, 10**18, 10**15, None
    )


async def stream(service: RelayService, messages: list[str], window: int) -> tuple[int, float, float, float]:
    """What the stream endpoint does per message, `window` messages in flight; returns (accepted, wall, loop CPU)."""
    slots = asyncio.Semaphore(window)
    max_message = Settings.model_fields["max_message_bytes"].default
    accepted = 0
    replies: list[str] = []

    async def handle(text: str) -> None:
        nonlocal accepted
        try:
            check_message(text, max_message)
            body = StreamedPaymentIn.model_validate_json(text)
            ack = await service.submit(to_payment(body.channelId, body))
            replies.append(
                json.dumps({"id": body.id, "ok": True, **ack_json(ack)}, separators=(",", ":"), ensure_ascii=False)
            )
            accepted += 1
        finally:
            slots.release()

    tasks = []
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    for text in messages:
        await slots.acquire()
        tasks.append(asyncio.create_task(handle(text)))
    await asyncio.gather(*tasks)
    return accepted, time.perf_counter() - wall0, time.thread_time() - cpu0, float(len(replies))


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds of another thread of this process, from /proc."""
    native = thread.native_id
    raw = Path(f"/proc/self/task/{native}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=1_000)
    p.add_argument("--per-channel", type=int, default=20, help="vouchers per channel")
    p.add_argument("--window", type=int, default=4_000, help="messages in flight (like 4 connections x 1,000)")
    p.add_argument("--workdir", type=Path, default=PROJECT_ROOT / "build" / "bench")
    args = p.parse_args()
    workdir = args.workdir / time.strftime("hot-path-%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")

    service, listings, ids, sessions = build_service(workdir, args.channels, args.per_channel)
    chains = [
        sign_chain(ChainJob(i, cid, sessions[i], args.per_channel, CHAIN_ID, CHANNELS_ADDRESS), listings)
        for i, cid in enumerate(ids)
    ]
    # Round-robin over channels, as the load generator sends them; ids make the messages stream messages.
    messages = [
        f'{{"id":{i * 1000 + s},{chains[i][s][0][1:]}' for s in range(args.per_channel) for i in range(len(ids))
    ]
    first = chains[0][0]
    breakdown = stage_breakdown(service, listings, f'{{"id":1,{first[0][1:]}', first[1], first[2])

    async def run() -> tuple[int, float, float, float, float]:
        service.store.start()
        for cid in ids:  # load every channel (as the relay does on a channel's first payment)
            await service.cache.runtime(cid)
        tune_interpreter_for_serving()  # as Relay.start does
        writer = service.store._writer
        assert writer is not None
        writer_cpu0 = thread_cpu(writer)
        accepted, wall, loop_cpu, _ = await stream(service, messages, args.window)
        writer_cpu = thread_cpu(writer) - writer_cpu0
        groups = service.store.groups_committed
        service.store.close()
        return accepted, wall, loop_cpu, writer_cpu, groups

    accepted, wall, loop_cpu, writer_cpu, groups = uvloop.run(run())  # uvicorn runs the relay on uvloop
    print(
        f"{accepted} vouchers over {args.channels} channels, window {args.window}: {accepted / wall:,.0f}/s wall "
        f"(one process, loop + writer threads), {groups} group commits"
    )
    print(
        f"CPU per voucher: event loop {loop_cpu / accepted * 1e6:.0f} us, writer {writer_cpu / accepted * 1e6:.0f} us"
    )
    print("one-core stage costs per voucher (best of 5, thread CPU):")
    for name, us in breakdown.items():
        print(f"  {name:<24} {us:7.1f} us")


if __name__ == "__main__":
    main()
