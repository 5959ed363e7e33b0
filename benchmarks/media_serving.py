"""Paid streaming: segments served per second with the entitlement checks vs the same files without them, and
the relay's CPU per second of audio streamed.

No chain: a RelayService over a real SqliteStore with the seed catalog put into its catalog and one channel into
its store; the catalog's audio uploaded through the real path (owner signature, keccak, Debian's ffmpeg, atomic
publish); payments through `RelayService.submit`, whose acknowledgements carry the grants. Phases:

- `raw`: a route of the paid route's shape, in the same router right after it, finding the service the same way,
  that reads the same segment from the content store, with no grant check and no record (its requests carry a
  grant header of the same size, ignored, unless `--raw-without-grant`);
- `seconds (new row each)`: GET /segments/k with per-second grants, `--segments-per-grant` segments each (1: the
  web player, which pays each segment ahead), every request a new delivery row (the worst case);
- `download grant (re-fetch)`: GET /segments/k with one download grant, segments fetched again and again.

`--rounds` rounds of the three phases in a rotating order; reported: each phase's median round, and the paired
overhead (each round's phase over the same round's raw, median over rounds). With `--http` the app runs under
uvicorn here and the client in a subprocess (this process's CPU is the relay's alone); without it, in-process
through httpx's ASGI transport (client and app share the CPU counted).

Run:  .venv/bin/python benchmarks/media_serving.py --http
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PROJECT_ROOT, key, machine  # noqa: E402
from hot_path import CHAIN_ID, CHANNELS_ADDRESS, _Channels  # noqa: E402

from chainstream.chain.deploy import Deployment  # noqa: E402
from chainstream.config import Settings  # noqa: E402
from chainstream.ledger import LedgerState, apply, charge_download, charge_seconds  # noqa: E402
from chainstream.media.upload import upload_digest  # noqa: E402
from chainstream.protocol import Kind  # noqa: E402
from chainstream.protocol.types import ZERO_ADDRESS  # noqa: E402
from chainstream.relay.api.deps import service_of  # noqa: E402
from chainstream.relay.api.media import _grant, _send, _track, router  # noqa: E402
from chainstream.relay.catalog import CatalogEntry  # noqa: E402
from chainstream.relay.media import DELIVERY_FLUSH_SECONDS, Served  # noqa: E402
from chainstream.relay.process import tune_interpreter_for_serving  # noqa: E402
from chainstream.relay.service import RelayService  # noqa: E402
from chainstream.seed import ARTISTS, CATALOG, split_for, track_audio  # noqa: E402
from chainstream.store import ChannelRecord, SqliteStore  # noqa: E402
from chainstream.verify import ChargeSpec, Payment  # noqa: E402

Urls = list[tuple[str, dict[str, str]]]
GRANT = "X-ChainStream-Grant"
RAW, SECONDS, REFETCH = "raw", "seconds (new row each)", "download grant (re-fetch)"
PER_SECOND = "Per-Second Drift"
FOR_SALE = "Gas Price Blues"


async def build(workdir: Path) -> tuple[RelayService, dict[str, bytes], bytes, Any]:
    artists = {name: key(f"artist-{name}") for name in ARTISTS}
    address_of = {n: k.address for n, k in artists.items()}
    relay = key("relay")
    store = SqliteStore(workdir / "relay.db")
    store.start()
    deployment = Deployment(CHAIN_ID, CHANNELS_ADDRESS, "0x" + "c1" * 20, None, 0, 86_400, 3_600)  # type: ignore[arg-type]
    service = RelayService(
        settings=Settings(
            relay_key="0x" + relay.secret.hex(), database=str(workdir / "relay.db"), media_dir=workdir / "media"
        ),
        channels=_Channels(),  # type: ignore[arg-type]
        registry=None,  # type: ignore[arg-type]
        deployment=deployment,
        relay_key=relay,
        store=store,
    )
    ids = {}
    for spec in CATALOG:
        track_id, data = track_audio(spec)
        ids[spec.title] = track_id
        split = split_for(spec, address_of, key("platform").address)
        service.catalog.put(
            CatalogEntry(track_id, spec.title, address_of[spec.artist], split, 1, 0, {ZERO_ADDRESS: spec.eth})
        )
        if spec.title in (PER_SECOND, FOR_SALE):
            signature = artists[spec.artist].sign(upload_digest(CHAIN_ID, relay.address, track_id)).to_hex()

            async def body(data: bytes = data) -> Any:
                yield data

            await service.media.upload(track_id, signature, body(), len(data))
    cid = os.urandom(32)
    session = key("session-0")
    store.upsert_channel(
        ChannelRecord(
            cid, key("listener-0").address, ZERO_ADDRESS, 10**24, session.address, int(time.time()) + 86_400, "open", 0
        )
    )
    return service, ids, cid, session


async def pay(
    service: RelayService, cid: bytes, session: Any, state: LedgerState, spec: ChargeSpec, charge: Any
) -> tuple[LedgerState, str]:
    nxt, _ = apply(state, charge)
    signature = session.sign(nxt.voucher.digest(service.domain))
    ack = await service.submit(Payment(cid, nxt.seq, spec, nxt.voucher, signature))
    assert ack.grant is not None
    return nxt, str(ack.grant["token"])


async def phase(client: httpx.AsyncClient, urls: list[tuple[str, dict[str, str]]]) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for url, headers in urls:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.text)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"requests": len(urls), "per_s": len(urls) / wall, "cpu_us_per_request": cpu / len(urls) * 1e6}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-media-"))
    service, ids, cid, session = await build(workdir)
    track = ids[PER_SECOND]
    manifest = service.media.manifest(track)
    n_seg = len(manifest.segments)
    per_grant = args.segments_per_grant
    grants_needed = -(-args.requests // per_grant)
    state = LedgerState.opened(cid)
    listing_s = service.catalog.listing(track, ZERO_ADDRESS)
    listing_d = service.catalog.listing(ids[FOR_SALE], ZERO_ADDRESS)
    assert listing_s is not None and listing_d is not None
    state, download = await pay(
        service, cid, session, state, ChargeSpec(Kind.DOWNLOAD, ids[FOR_SALE]), charge_download(state, listing_d)
    )

    async def raw(track_id: str, index: int, request: Request) -> Response:
        """The paid route's shape (same parameters, the service found the same way, same response path) minus the
        grant, the check, the record."""
        media = service_of(request).media
        _grant(request)  # read the header as the paid route does, ignore it
        m = media.manifest(_track(track_id))
        return _send(Served("audio/mp4", body=media.content.read(m.track_id, m.segments[index].name)))

    # The raw route sits in a router like the media router, right after the paid segment route: the framework
    # (an included router matches a request twice) costs both the same.
    routes = APIRouter(prefix="/api/v1")
    routes.routes.extend(router.routes)
    routes.add_api_route("/tracks/{track_id}/raw/{index}", raw, methods=["GET"])
    paid = next(i for i, r in enumerate(routes.routes) if getattr(r, "path", "").endswith("/segments/{index}"))
    routes.routes.insert(paid + 1, routes.routes.pop())
    app = FastAPI()
    app.state.relay = SimpleNamespace(service=service)  # what the routes' dependencies read (relay/api/deps.py)
    app.include_router(routes)

    sold = service.media.manifest(ids[FOR_SALE])
    sold_segments = len(sold.segments)
    hex_s, hex_d = "0x" + track.hex(), "0x" + ids[FOR_SALE].hex()

    async def fresh_seconds_grants() -> list[str]:
        nonlocal state
        tokens = []
        for g in range(grants_needed):
            # the seconds of this grant's segments (rounded up): the metered budget covers each of them
            covered = [manifest.segments[(g * per_grant + j) % n_seg] for j in range(per_grant)]
            seconds = sum(-(-seg.duration_ms // 1000) for seg in covered)
            state, token = await pay(
                service,
                cid,
                session,
                state,
                ChargeSpec(Kind.SECONDS, track, seconds=seconds),
                charge_seconds(listing_s, seconds),
            )
            tokens.append(token)
        return tokens

    # The raw requests carry a grant header of the same size as the paid ones (ignored), so both sides parse the
    # same bytes; `--raw-without-grant` drops it (the header's own cost then counts as overhead).
    def raw_urls(tokens: list[str]) -> Urls:
        return [
            (
                f"/api/v1/tracks/{hex_s}/raw/{i % n_seg}",
                {} if args.raw_without_grant else {GRANT: tokens[i // per_grant]},
            )
            for i in range(args.requests)
        ]

    def seconds_urls(tokens: list[str]) -> Urls:
        return [
            (f"/api/v1/tracks/{hex_s}/segments/{i % n_seg}", {GRANT: tokens[i // per_grant]})
            for i in range(args.requests)
        ]

    # the download grant: one receipt, so each segment is a new row only once; later requests re-fetch (repeat)
    play_urls = [
        (f"/api/v1/tracks/{hex_d}/segments/{i % sold_segments}", {GRANT: download}) for i in range(args.requests)
    ]

    async def rounds_of_urls() -> list[dict[str, Urls]]:
        # every round's per-second requests are new rows under grants paid before the round (outside its timing)
        out = []
        for _ in range(args.rounds):
            tokens = await fresh_seconds_grants()
            out.append({RAW: raw_urls(tokens), SECONDS: seconds_urls(tokens), REFETCH: play_urls})
        return out

    plan = await rounds_of_urls()
    tune_interpreter_for_serving()  # as the relay process does once started (GC thresholds, switch interval)
    if args.http:
        results = await over_http(app, plan)
        return finish(service, manifest, n_seg, track, results, "http")
    transport = httpx.ASGITransport(app=app)
    samples: dict[str, list[dict[str, float]]] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        await phase(client, plan[0][RAW][:200])  # warm-up
        for round_, phases in enumerate(plan):
            for name in _order(round_):
                samples.setdefault(name, []).append(await phase(client, phases[name]))
    results = {name: _median(rs) for name, rs in samples.items()}
    return finish(service, manifest, n_seg, track, results, "asgi")


def finish(
    service: RelayService, manifest: Any, n_seg: int, track: bytes, results: dict[str, Any], mode: str
) -> dict[str, Any]:
    base = results[RAW]["cpu_us_per_request"]
    seg_seconds = manifest.duration_ms / 1000 / n_seg
    for r in results.values():
        r["overhead_cpu_pct"] = (r["cpu_us_per_request"] / base - 1) * 100
        # each round's phase against the same round's raw (run back to back, so a change in the machine's other
        # load between rounds cancels out): the median of those ratios
        paired = [
            (us / raw - 1) * 100 for us, raw in zip(r["rounds_cpu_us"], results[RAW]["rounds_cpu_us"], strict=True)
        ]
        r["paired_overhead_pct"] = statistics.median(paired)
        r["cpu_ms_per_audio_second"] = r["cpu_us_per_request"] / 1000 / seg_seconds
    service.store.close()
    size = len(service.media.content.read(track, manifest.segments[1].name) or b"")
    return {
        "machine": machine(),
        "mode": mode,
        "segment_seconds": seg_seconds,
        "segment_bytes": size,
        "results": results,
    }


CLIENT = """
import json, sys, httpx
port, path = int(sys.argv[1]), sys.argv[2]
urls = json.load(open(path))
with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
    for url, headers in urls:
        r = c.get(url, headers=headers)
        assert r.status_code == 200, (url, r.text)
"""


async def over_http(app: FastAPI, plan: list[dict[str, Urls]]) -> dict[str, Any]:
    """The app under uvicorn (uvloop, httptools) in this process, the client in another: this process's CPU is the
    relay's, sockets and HTTP parsing included."""
    import uvicorn

    from chainstream.chain.node import free_port

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    samples: dict[str, list[dict[str, float]]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-media-client-"))
    try:
        for round_, phases in enumerate(plan):
            for name in _order(round_):
                urls = phases[name]
                path = workdir / "urls.json"
                path.write_text(json.dumps(urls))
                cpu0, wall0 = time.process_time(), time.perf_counter()
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(port), str(path))
                assert await proc.wait() == 0
                await asyncio.sleep(2 * DELIVERY_FLUSH_SECONDS)  # the phase's last delivery rows are written in it
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                samples.setdefault(name, []).append(
                    {"requests": len(urls), "per_s": len(urls) / wall, "cpu_us_per_request": cpu / len(urls) * 1e6}
                )
    finally:
        server.should_exit = True
        await task
    return {name: _median(rs) for name, rs in samples.items()}


def _order(round_: int) -> tuple[str, ...]:
    """The phases in a different order each round, so none always runs first (or right after another's writes)."""
    names = (RAW, SECONDS, REFETCH)
    k = round_ % len(names)
    return names[k:] + names[:k]


def _median(samples: list[dict[str, float]]) -> dict[str, Any]:
    """The round with the median CPU per request, and every round's figure beside it."""
    ordered = sorted(samples, key=lambda r: r["cpu_us_per_request"])
    return {**ordered[len(ordered) // 2], "rounds_cpu_us": [r["cpu_us_per_request"] for r in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2_000, help="requests per phase")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the three phases; the median is reported")
    parser.add_argument(
        "--segments-per-grant",
        type=int,
        default=1,
        help="per-second phase: segments each grant pays for (1: the web player, which pays each segment ahead)",
    )
    parser.add_argument("--raw-without-grant", action="store_true", help="raw requests carry no grant header")
    parser.add_argument("--http", action="store_true", help="over real HTTP (uvicorn here, the client in a subprocess)")
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    folder = PROJECT_ROOT / "build" / "bench" / f"media_serving-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(out, indent=2))
    print(out["machine"])
    print(f"{out['mode']}: segments of {out['segment_seconds']:.2f} s, {out['segment_bytes']} bytes")
    for name, r in out["results"].items():
        print(
            f"{name:28s} {r['per_s']:8.0f} segments/s  {r['cpu_us_per_request']:7.0f} us CPU/segment  "
            f"{r['overhead_cpu_pct']:+6.1f}% vs raw ({r['paired_overhead_pct']:+5.1f}% paired)  "
            f"{r['cpu_ms_per_audio_second']:.3f} ms CPU per second of audio"
        )
    print(f"results: {folder / 'results.json'}")


if __name__ == "__main__":
    main()
