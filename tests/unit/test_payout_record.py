"""The PaidOutBatch record's encoding (docs/PROTOCOL.md §14.2.1): the documented example decodes as documented, and
words no payoutBatch writes are refused rather than read as payouts. (That the contract writes this encoding, and
that it matches the balances it moved, is checked on a chain by tests/adversarial/test_gasless.py, the invariant
machine and tests/hardhat/gasless.test.js, which decodes it independently.) And the relay's store key for each
payout of a record (relay.payouts.claim_key)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chainstream.chain.gasless import PayoutEntry, decode_payout_entries
from chainstream.relay.payouts import claim_key

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
PAYEE = 0x1111111111111111111111111111111111111111


def documented_example() -> Any:
    text = PROTOCOL.read_text()
    block = re.search(
        r"<!-- payout-record-example:begin -->\n```json\n(.*?)```\n<!-- payout-record-example:end -->", text, re.S
    )
    assert block, "docs/PROTOCOL.md lost its payout record example"
    return json.loads(block.group(1))


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def test_the_documented_example_decodes_as_documented() -> None:
    example = documented_example()
    entries = [bytes.fromhex(w[2:]) for w in example["entries"]]
    decoded = decode_payout_entries(int(example["fee"]), entries)
    expected = [
        PayoutEntry(d["index"], d["payee"], None, 0, 0, d["skipped"])
        if "skipped" in d
        else PayoutEntry(d["index"], d["payee"], d["to"], int(d["amount"]), int(d["fee"]))
        for d in example["decoded"]
    ]
    assert decoded == expected


def test_amount_of_a_one_word_entry_uses_all_94_bits() -> None:
    [entry] = decode_payout_entries(7, [word(PAYEE | (2**94 - 1) << 162)])
    assert (entry.amount, entry.fee, entry.to == entry.payee) == (2**94 - 1, 7, True)


@pytest.mark.parametrize(
    "words",
    [
        [word(PAYEE | 3 << 160)],  # both flags
        [word(PAYEE | 1 << 160), word(5), word(1)],  # a four-word entry cut short
        [word(PAYEE | 1 << 160), word(5), word(1), word(1 << 160)],  # a recipient that is no address
    ],
    ids=["both-flags", "truncated", "bad-recipient"],
)
def test_words_no_payout_batch_writes_are_refused(words: list[bytes]) -> None:
    with pytest.raises(ValueError, match="PaidOutBatch entry 0"):
        decode_payout_entries(0, words)


def test_claim_keys_of_payouts_are_distinct_negative_and_fit_a_postgresql_integer() -> None:
    """Each payout of a batch log gets a claim key of its own, never a real (non-negative) log index, within INTEGER."""
    keys = [claim_key(log_index, k) for log_index in (0, 1, 7, 524_287) for k in (0, 1, 4_095)]
    assert None not in keys and len(set(keys)) == len(keys)
    assert all(-(2**31) <= key < 0 for key in keys if key is not None)
    assert claim_key(524_288, 0) is None and claim_key(0, 4_096) is None  # refused, never wrapped onto another key
