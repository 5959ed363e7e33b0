"""Play receipts: the chain hash equals the EIP-712 hashStruct layout, and the field rules."""

from __future__ import annotations

from typing import get_args

import pytest
from eth_abi import encode
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from chainstream.errors import ProtocolError
from chainstream.protocol import Kind, KindName, PlayReceipt, chain_head
from chainstream.protocol.hashing import keccak
from chainstream.protocol.receipts import GENESIS, MAX_MEMO_BYTES, RECEIPT_TYPE, RECEIPT_TYPEHASH
from chainstream.protocol.types import MAX_AMOUNT, ZERO_HASH

bytes32 = st.binary(min_size=32, max_size=32)
receipts = st.builds(
    PlayReceipt,
    seq=st.integers(min_value=1, max_value=2**64 - 1),
    target=bytes32,
    kind=st.sampled_from(list(Kind)),
    units=st.integers(min_value=0, max_value=2**32 - 1),
    amount=st.integers(min_value=0, max_value=MAX_AMOUNT),
    split_hash=bytes32,
    memo=st.text(max_size=40),
)
RECEIPT_FIELDS = [
    {"name": "prev", "type": "bytes32"},
    {"name": "seq", "type": "uint64"},
    {"name": "target", "type": "bytes32"},
    {"name": "kind", "type": "uint8"},
    {"name": "units", "type": "uint32"},
    {"name": "amount", "type": "uint256"},
    {"name": "splitHash", "type": "bytes32"},
    {"name": "memoHash", "type": "bytes32"},
]


def receipt(seq: int = 1, **overrides: object) -> PlayReceipt:
    fields: dict[str, object] = {
        "seq": seq,
        "target": b"\x22" * 32,
        "kind": Kind.PLAY,
        "units": 1,
        "amount": 10,
        "split_hash": b"\x33" * 32,
    }
    fields.update(overrides)
    return PlayReceipt(**fields)  # type: ignore[arg-type]


def test_kinds_and_type_hash() -> None:
    assert [int(k) for k in (Kind.PLAY, Kind.SECONDS, Kind.TIP, Kind.DOWNLOAD)] == [0, 1, 2, 3]
    assert keccak(RECEIPT_TYPE.encode()) == RECEIPT_TYPEHASH
    assert "PlayReceipt(" + ",".join(f"{f['type']} {f['name']}" for f in RECEIPT_FIELDS) + ")" == RECEIPT_TYPE
    assert GENESIS == ZERO_HASH


@settings(max_examples=100, deadline=None)
@given(r=receipts, prev=bytes32)
def test_chain_equals_abi_encoding_and_eip712_hash_struct(r: PlayReceipt, prev: bytes) -> None:
    values = [RECEIPT_TYPEHASH, prev, r.seq, r.target, int(r.kind), r.units, r.amount, r.split_hash, r.memo_hash]
    types = ["bytes32", "bytes32", "uint64", "bytes32", "uint8", "uint32", "uint256", "bytes32", "bytes32"]
    assert r.chain(prev) == keccak(encode(types, values))
    document = {
        # Receipts are never signed; any domain will do to make eth-account compute hashStruct(PlayReceipt).
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}], "PlayReceipt": RECEIPT_FIELDS},
        "primaryType": "PlayReceipt",
        "domain": {"name": "ChainStream"},
        "message": {
            "prev": prev,
            "seq": r.seq,
            "target": r.target,
            "kind": int(r.kind),
            "units": r.units,
            "amount": r.amount,
            "splitHash": r.split_hash,
            "memoHash": r.memo_hash,
        },
    }
    assert bytes(encode_typed_data(full_message=document).body) == r.chain(prev)


def test_memo_hash() -> None:
    assert receipt().memo_hash == ZERO_HASH
    assert receipt(kind=Kind.TIP, memo="thanks \u2764").memo_hash == keccak("thanks \u2764".encode())


def test_memo_length_is_counted_in_utf8_bytes() -> None:
    receipt(kind=Kind.TIP, memo="a" * MAX_MEMO_BYTES)
    receipt(kind=Kind.TIP, memo="\u00e9" * (MAX_MEMO_BYTES // 2))
    for memo in ("a" * (MAX_MEMO_BYTES + 1), "\u00e9" * (MAX_MEMO_BYTES // 2 + 1)):
        with pytest.raises(ProtocolError) as info:
            receipt(kind=Kind.TIP, memo=memo)
        assert info.value.code == "memo_too_long"


@pytest.mark.parametrize(
    "overrides",
    [
        {"seq": 0},
        {"seq": 2**64},
        {"target": b"\x22" * 31},
        {"split_hash": b""},
        {"units": -1},
        {"units": 2**32},
        {"amount": -1},
        {"amount": MAX_AMOUNT + 1},
    ],
)
def test_invalid_receipts(overrides: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        receipt(**overrides)


def test_chain_head_folds_in_order() -> None:
    rs = [receipt(1), receipt(2, kind=Kind.SECONDS, units=30), receipt(3, kind=Kind.TIP, units=0, memo="hi")]
    head = GENESIS
    for r in rs:
        head = r.chain(head)
    assert chain_head(rs) == head
    assert chain_head([]) == GENESIS
    assert chain_head(rs[1:], start=rs[0].chain(GENESIS)) == head
    assert chain_head(list(reversed(rs))) != head


def test_each_kind_has_one_wire_name_its_int_is_the_receipt_field_and_the_literal_lists_the_same_names() -> None:
    """The JSON names and receipt values are the wire format (API, grants, database): pinned here."""
    assert {k.wire: int(k) for k in Kind} == {"play": 0, "seconds": 1, "tip": 2, "download": 3}
    assert get_args(KindName) == tuple(k.wire for k in Kind)
    assert all(Kind.parse(k.wire) is k for k in Kind)


@pytest.mark.parametrize("name", ["PLAY", "Play", "tip ", "", "0", "listen", "name"])
def test_a_kind_parses_only_from_its_exact_wire_name(name: str) -> None:
    with pytest.raises(ValueError, match="unknown charge kind"):
        Kind.parse(name)
