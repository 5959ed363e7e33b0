"""Prometheus metrics at `GET /metrics` (docs/OPERATIONS.md, Metrics and alerts).

Two kinds:

- **Counters and histograms** updated as things happen, process-wide, in `REGISTRY` (prometheus-client's own
  locks only; nothing else on the payment path). `PrometheusObserver` is the observer (relay/observer.py) the
  process gives its service, settler and watcher: they report payments by outcome and code, verification and
  commit latency, settlement batches, gas and failures, and reorgs to it. relay/outage.py increments the
  counters it owns (`CHAIN_RPC_ERRORS`, `DATABASE_ERRORS`).
- **Gauges read at scrape time** from one relay (`RelayCollector`): unsettled exposure per token (over the
  channels in memory), outbox depth by state, watcher lag in blocks, the node's reachability.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chainstream.codes import Code
from chainstream.relay.observer import RelayObserver

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: seconds the scrape-time gauges are reused
GAUGE_TTL = 1.0

VOUCHERS = Counter(
    "chainstream_vouchers_total",
    "payments answered, by outcome (accepted, duplicate, rejected, failed) and error code",
    ["outcome", "code"],
    registry=REGISTRY,
)
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
VERIFY_SECONDS = Histogram(
    "chainstream_verify_seconds",
    "time to verify one payment (signature, ledger, pricing)",
    buckets=_FAST,
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "chainstream_commit_seconds",
    "time from queueing a group of payments to their durable commit",
    buckets=(*_FAST, 2.5, 5.0),
    registry=REGISTRY,
)
SETTLEMENT_BATCHES = Counter(
    "chainstream_settlement_batches_total",
    "settleBatch transactions, by outcome (mined, failed)",
    ["outcome"],
    registry=REGISTRY,
)
SETTLEMENT_GAS = Counter("chainstream_settlement_gas_total", "gas used by mined settlements", registry=REGISTRY)
SETTLEMENT_CHANNELS = Counter(
    "chainstream_settlement_channels_total", "channel entries in mined settlements", registry=REGISTRY
)
#: incremented when the watcher reports a reorg it detected
REORGS = Counter("chainstream_reorgs_total", "chain reorganisations the watcher detected", registry=REGISTRY)
CHAIN_RPC_ERRORS = Counter(
    "chainstream_chain_rpc_errors_total",
    "calls to the chain's node that failed (unreachable, timeout)",
    registry=REGISTRY,
)
DATABASE_ERRORS = Counter(
    "chainstream_database_unavailable_total",
    "writes the database refused (full, read-only, I/O)",
    registry=REGISTRY,
)

#: outbox states that are not final (confirmed rows only grow, and are not read at scrape time)
OUTBOX_STATES = ("signed", "sent", "failed")


class PrometheusObserver(RelayObserver):
    """Counts what the service, settler and watcher report (relay/observer.py) in the process-wide counters."""

    def payment_answered(self, outcome: str, code: str) -> None:
        VOUCHERS.labels(outcome, code).inc()
        if code == Code.DATABASE_UNAVAILABLE:
            DATABASE_ERRORS.inc()

    def payment_verified(self, seconds: float) -> None:
        VERIFY_SECONDS.observe(seconds)

    def payments_committed(self, seconds: float) -> None:
        COMMIT_SECONDS.observe(seconds)

    def settlement_sent(self, channels: int) -> None:
        SETTLEMENT_BATCHES.labels("sent").inc()
        SETTLEMENT_CHANNELS.inc(channels)

    def settlement_failed(self) -> None:
        SETTLEMENT_BATCHES.labels("failed").inc()

    def settlement_mined(self, gas_used: int) -> None:
        SETTLEMENT_GAS.inc(gas_used)

    def reorg_detected(self) -> None:
        REORGS.inc()


class RelayCollector(Collector):
    """Gauges read from one relay when scraped."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay

    def collect(self) -> Iterator[GaugeMetricFamily]:
        relay = self.relay
        service, store, status = relay.service, relay.store, relay.chain_status
        exposure = GaugeMetricFamily(
            "chainstream_unsettled_exposure",
            "accepted but not yet settled, per token (smallest units; channels in memory)",
            labels=["token"],
        )
        per_token: dict[str, int] = {}
        for rt in service.cache.in_memory():
            settled = store.get_settled(rt.record.channel_id)
            unsettled = rt.ledger.voucher.total - (settled.total if settled else 0)
            if unsettled > 0:
                per_token[rt.record.token] = per_token.get(rt.record.token, 0) + unsettled
        for token, amount in sorted(per_token.items()):
            exposure.add_metric([token], float(amount))
        yield exposure
        outbox = GaugeMetricFamily(
            "chainstream_outbox", "settlement transactions by state (not confirmed)", labels=["state"]
        )
        counts = dict.fromkeys(OUTBOX_STATES, 0)
        for row in store.outbox(OUTBOX_STATES):
            counts[row.status] = counts.get(row.status, 0) + 1
        for state, n in counts.items():
            outbox.add_metric([state], n)
        yield outbox
        processed = relay.watcher.processed_block
        if status.head is not None and processed is not None:
            lag = max(0, status.head - relay.settings.confirmations - processed)
            yield GaugeMetricFamily(
                "chainstream_watcher_lag_blocks", "blocks the watcher is behind the head", value=lag
            )
            yield GaugeMetricFamily("chainstream_chain_head", "the newest block the node reported", value=status.head)
        yield GaugeMetricFamily(
            "chainstream_chain_reachable", "1 while the chain's node answers", value=1 if status.reachable else 0
        )
        yield GaugeMetricFamily(
            "chainstream_accepted_since_start", "payments accepted by this process", value=service.accepted_count
        )


def metrics_router(get_relay: Any) -> APIRouter:
    """`GET /metrics` (Prometheus text format), outside /api/v1 as scrapers expect."""
    router = APIRouter()
    collectors: dict[int, CollectorRegistry] = {}
    cached: dict[int, tuple[float, bytes]] = {}
    lock = asyncio.Lock()

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        relay = get_relay()
        own = collectors.get(id(relay))
        if own is None:
            own = collectors[id(relay)] = CollectorRegistry(auto_describe=False)
            own.register(RelayCollector(relay))
        # The scrape-time gauges read the store (a query per channel in memory): off the event loop, and at
        # most once per GAUGE_TTL however often /metrics is asked (it is public, like /health).
        async with lock:
            at, gauges = cached.get(id(relay), (float("-inf"), b""))
            if time.monotonic() - at >= GAUGE_TTL:
                gauges = await asyncio.to_thread(generate_latest, own)
                cached[id(relay)] = (time.monotonic(), gauges)
        return Response(generate_latest(REGISTRY) + gauges, media_type=CONTENT_TYPE)

    return router
