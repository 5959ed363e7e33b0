"""What an operator sees (issue 9): Prometheus metrics at /metrics, and the relay's own JSON log lines, which
never hold its key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.relay_fixtures import (
    MODEM,
    InProcessRelay,
    RelayChain,
    RelayProcess,
    new_wallet,
    open_listener,
    relay_key_hex,
    signed_plays,
    wait_until,
)


def scrape(relay: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    response = httpx.get(relay.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_payments_by_outcome_and_code_latencies_exposure_outbox_lag_and_settlements(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """A scrape after payments (accepted, duplicate, refused) and a settlement shows each of them counted, the
    latency histograms filled, the unsettled exposure per token, the outbox by state and the watcher's lag."""
    relay: InProcessRelay = make_relay(settle_min_value=10**30, settle_max_age=10**9, settle_max_gas_fraction=1e12)
    before = scrape(relay)
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    cid = "0x" + listener.channel_id.hex()  # type: ignore[union-attr]
    plays = signed_plays(listener, relay_chain.track(MODEM), 3)
    http = relay.http()
    assert http.post(f"/channels/{cid}/payments", json=plays[0].body).json()["status"] == "accepted"
    assert http.post(f"/channels/{cid}/payments", json=plays[0].body).json()["status"] == "duplicate"
    assert http.post(f"/channels/{cid}/payments", json=plays[2].body).json()["error"]["code"] == "seq_gap"
    eth = "0x0000000000000000000000000000000000000000"
    exposure = ("chainstream_unsettled_exposure", (("token", eth),))
    # the scrape-time gauges are reused for up to a second (GAUGE_TTL): wait for a fresh one
    after = wait_until(lambda: exposure in (s := scrape(relay)) and s, what="a scrape with the new exposure")

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0) >= by

    assert grew("chainstream_vouchers_total", outcome="accepted", code="")
    assert grew("chainstream_vouchers_total", outcome="duplicate", code="")
    assert grew("chainstream_vouchers_total", outcome="rejected", code="seq_gap")
    assert grew("chainstream_verify_seconds_count", 2)  # the accepted and the refused one were verified
    assert grew("chainstream_commit_seconds_count")
    assert after[exposure] >= plays[0].state.voucher.total
    assert ("chainstream_outbox", (("state", "sent"),)) in after
    assert after[("chainstream_watcher_lag_blocks", ())] >= 0
    assert after[("chainstream_chain_reachable", ())] == 1

    relay.settle_now(listener.channel_id)  # type: ignore[arg-type]
    wait_until(
        lambda: relay_chain.chain.channels.get_channel(listener.channel_id).settled > 0,  # type: ignore[arg-type]
        what="the settlement",
    )
    mined = ("chainstream_settlement_batches_total", (("outcome", "sent"),))
    settled = wait_until(
        # the gauges are reused for up to a second: wait for a scrape after the settlement was recorded
        lambda: (s := scrape(relay)).get(mined, 0) > before.get(mined, 0) and exposure not in s and s,
        what="the settlement to be counted and its exposure gone",
    )
    assert settled[("chainstream_settlement_gas_total", ())] > before.get(("chainstream_settlement_gas_total", ()), 0)


def test_relay_logs_json_lines_at_info_and_never_its_key(
    relay_process: RelayProcess, anvil_relay_chain: RelayChain, tmp_path: Path
) -> None:
    """A relay run at info level (payments, a settlement, a refused payment) writes its own lines as JSON, the
    info ones included (they were dropped), and its private key appears nowhere in the log."""
    relay = relay_process.start(CHAINSTREAM_LOG_LEVEL="info", CHAINSTREAM_SETTLE_MAX_GAS_FRACTION="1e12")
    listener = open_listener(anvil_relay_chain, relay)
    listener.play(anvil_relay_chain.track(MODEM))
    wait_until(
        lambda: anvil_relay_chain.chain.channels.get_channel(listener.channel_id).settled > 0,  # type: ignore[arg-type]
        what="the settlement",
    )
    relay.stop()  # flushes everything
    log = "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("relay-*.log")))
    ours = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)  # every structured line is one JSON object
            assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
            ours.append(entry)
    assert any(e["level"] == "info" and e["logger"].startswith("chainstream") for e in ours), log
    key = relay_key_hex(anvil_relay_chain).removeprefix("0x")
    assert key.lower() not in log.lower()
