"""Shared pieces of the benchmarks: deterministic keys, the seed catalog as clients price it, pre-signed
voucher chains, and small measurement helpers. Not part of the package; imported by the scripts beside it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chainstream.ledger import LedgerState, Listing, apply, charge_play
from chainstream.protocol import Domain, PrivateKey
from chainstream.protocol.hashing import address_word, keccak, word
from chainstream.seed import CATALOG, split_for

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def key(label: str) -> PrivateKey:
    """A deterministic key for a named benchmark actor (never a real key)."""
    return PrivateKey(hashlib.sha256(f"chainstream-bench-{label}".encode()).digest())


def machine() -> str:
    """`nproc` and the CPU model, as the README reports them."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def channel_id_for(chain_id: int, channels: str, payer: str, token: str, relay: str, salt: bytes) -> bytes:
    """ChainStreamChannels.channelIdFor, computed locally (no RPC per channel)."""
    return keccak(
        word(chain_id) + address_word(channels) + address_word(payer) + address_word(token) + address_word(relay) + salt
    )


def eth_listings(ids: dict[str, bytes], address_of: dict[str, str], platform_address: str) -> list[Listing]:
    """The seed catalog's tracks that have an ETH per-play price, priced exactly as the relay prices them.

    `ids` is what register_catalog returned ({title: track id})."""
    return [
        Listing(
            ids[spec.title],
            spec.title,
            address_of[spec.artist],
            spec.eth,
            split_for(spec, address_of, platform_address),
            1,
        )
        for spec in CATALOG
        if spec.eth.per_play > 0
    ]


def play_chain_cost(listings: Sequence[Listing], plays: int) -> int:
    """What `plays` plays cost at most (rotating over the listings from any start): the deposit a channel needs."""
    worst = 0
    for start in range(len(listings)):
        state = LedgerState.opened(b"\x00" * 32)
        for i in range(plays):
            state, _ = apply(state, charge_play(state, listings[(start + i) % len(listings)]))
        worst = max(worst, state.voucher.total)
    return worst


@dataclass(frozen=True)
class ChainJob:
    """One channel's chain of plays to pre-sign (picklable, for a process pool)."""

    index: int
    channel_id: bytes
    session_secret: bytes
    plays: int
    chain_id: int
    channels: str


def sign_chain(job: ChainJob, listings: Sequence[Listing]) -> list[tuple[str, bytes, bytes]]:
    """The channel's next `plays` vouchers, computed with the shared ledger and signed by its session key.

    Returns, per seq 1..plays, (the StreamedPaymentIn JSON without its id, the digest, the 65-byte signature)."""
    domain = Domain(job.chain_id, job.channels)
    session = PrivateKey(job.session_secret)
    cid_hex = "0x" + job.channel_id.hex()
    state = LedgerState.opened(job.channel_id)
    out = []
    for i in range(job.plays):
        listing = listings[(job.index + i) % len(listings)]
        state, receipt = apply(state, charge_play(state, listing))
        v = state.voucher
        digest = v.digest(domain)
        signature = session.sign(digest)
        body = {
            "channelId": cid_hex,
            "seq": receipt.seq,
            "charge": {"kind": "play", "trackId": "0x" + listing.track_id.hex()},
            "voucher": {
                "payees": list(v.payees),
                "amounts": [str(a) for a in v.amounts],
                "playHash": "0x" + v.play_hash.hex(),
            },
            "signature": signature.to_hex(),
        }
        out.append((json.dumps(body, separators=(",", ":")), digest, signature.to_bytes()))
    return out


def with_id(message: str, ident: int) -> str:
    """Add the stream id to a pre-serialised payment (cheap string surgery, no re-encoding)."""
    return f'{{"id":{ident},{message[1:]}'


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def summarize_ms(latencies_s: Iterable[float]) -> dict[str, float]:
    values = sorted(x * 1000 for x in latencies_s)
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "p99.9": percentile(values, 99.9),
        "max": values[-1] if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


class ProcessCpu:
    """CPU seconds a process (and each of its threads) used between two samples, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self._start = self._sample()

    def _sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                raw = Path(f"/proc/{self.pid}/task/{tid}/stat").read_text()
                fields = raw[raw.rindex(")") + 2 :].split()
                out["main" if int(tid) == self.pid else f"thread-{tid}"] = (
                    int(fields[11]) + int(fields[12])
                ) / self.tick
        except OSError:
            pass
        return out

    def reset(self) -> None:
        self._start = self._sample()

    def used(self) -> dict[str, float]:
        """Per thread CPU seconds since the last reset (threads that used at least 10 ms)."""
        now = self._sample()
        used = {name: now[name] - self._start.get(name, 0.0) for name in now}
        return {name: s for name, s in sorted(used.items(), key=lambda kv: -kv[1]) if s >= 0.01}


def timed(label: str, timings: dict[str, float]):  # type: ignore[no-untyped-def]
    """Context manager adding the block's wall time to timings[label]."""

    class _T:
        def __enter__(self) -> None:
            self.t0 = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - self.t0

    return _T()


def process_tree_cpu(root: int) -> float:
    """CPU seconds used so far by a process and its live children (e.g. a PostgreSQL server: the postmaster,
    its background workers and one backend per connection), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(entry) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
