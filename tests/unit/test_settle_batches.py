"""Cutting due settlements into settleBatch transactions: by count, and by an estimate of gas, so that channels
with many payees cannot make one transaction exceed a block's gas limit."""

from __future__ import annotations

import dataclasses

from chainstream.protocol import Voucher
from chainstream.relay.settler import batches, entry_gas
from tests.unit.test_group_commit import records


def due_with_payees(*counts: int) -> list:
    out = []
    for n, count in enumerate(counts, start=1):
        record = records(n, 1)[0]
        payees = tuple(f"0x{i + 1:040x}" for i in range(count))
        voucher = Voucher(record.channel_id, payees, tuple(1 for _ in payees), record.voucher.play_hash)
        out.append((dataclasses.replace(record, voucher=voucher), ()))
    return out


def test_batches_are_cut_by_count_and_by_gas_in_order() -> None:
    due = due_with_payees(1, 1, 1, 1, 1)
    assert [len(c) for c in batches(due, 2, 10**9)] == [2, 2, 1]
    assert [item for chunk in batches(due, 2, 10**9) for item in chunk] == due  # order kept, nothing lost

    heavy = due_with_payees(32, 32, 1, 32, 2)
    budget = entry_gas(32) * 2  # two heavy entries fit, a third does not
    chunks = batches(heavy, 100, budget)
    assert [[len(p.voucher.payees) for p, _ in c] for c in chunks] == [[32, 32], [1, 32, 2]]
    assert all(sum(entry_gas(len(p.voucher.payees)) for p, _ in c) <= budget for c in chunks)


def test_an_entry_over_the_budget_goes_alone() -> None:
    due = due_with_payees(1, 200, 1)
    assert [[len(p.voucher.payees) for p, _ in c] for c in batches(due, 100, entry_gas(10))] == [[1], [200], [1]]
    assert batches([], 100, 10**7) == []
