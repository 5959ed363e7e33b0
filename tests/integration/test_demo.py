"""`chainstream demo` end to end on the embedded chain, with a real relay over HTTP (small numbers)."""

from __future__ import annotations

import io

from rich.console import Console

from chainstream.demo import run_demo


def test_demo_reconciles_to_the_wei_and_the_watchtower_defeats_a_stale_close() -> None:
    out = io.StringIO()
    result = run_demo(listeners=3, plays=5, seed=7, console=Console(file=out, width=120, color_system=None))
    text = out.getvalue()

    # every token balances to the wei, with each figure read from the chain
    assert {r.token.symbol for r in result.reconciliation} == {"ETH", "mUSD"}
    for rec in result.reconciliation:
        assert rec.deposits > 0
        assert (
            rec.deposits
            == rec.claimed_artists
            + rec.claimable_artists
            + rec.claimed_platform
            + rec.claimable_platform
            + rec.refunds
            + rec.escrowed
        ), rec
        assert rec.settled == rec.paid > 0
        assert rec.contract_balance == rec.claimable_artists + rec.claimable_platform + rec.escrowed
        assert rec.claimed_artists > 0 and rec.claimed_platform > 0  # everyone claimed after the batch
        assert rec.balanced
    eth = next(r for r in result.reconciliation if r.token.symbol == "ETH")
    assert eth.refunds > 0  # cooperative close and the unilateral close both refunded
    assert any(r.escrowed > 0 for r in result.reconciliation)  # one channel stays open

    # the watchtower settled the latest voucher inside the window: refund = deposit - latest total
    stale = result.stale_close
    assert stale.latest_seq > stale.stale_seq
    assert stale.latest_total > stale.stale_total
    assert stale.settled_by_listener < stale.stale_total  # the listener's settle of the stale voucher was refused
    assert stale.settled_after_watchtower == stale.latest_total
    assert stale.watchtower_tx_from == "the relay"
    assert stale.refund == stale.deposit - stale.latest_total
    assert stale.defeated

    assert result.cap_rejection.startswith("daily_cap_exceeded")
    assert result.payments >= 3 * 5
    assert result.balanced
    assert "balanced: yes" in text
    assert "RECONCILIATION — ETH" in text and "RECONCILIATION — mUSD" in text
    assert "daily_cap_exceeded" in text
