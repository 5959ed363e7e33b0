"""Cumulative vouchers: append-only payees, accumulation, the extension rule and the typed-data shape."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainstream.errors import ProtocolError
from chainstream.protocol import Domain, Kind, PlayReceipt, PrivateKey, Voucher
from chainstream.protocol.eip712 import EIP712_TYPES
from chainstream.protocol.receipts import GENESIS
from chainstream.protocol.types import MAX_AMOUNT, ZERO_HASH, Address, to_address

CID = b"\xc1" * 32
DOMAIN = Domain(chain_id=31337, verifying_contract="0x" + "cc" * 20)
A, B, C, D = (to_address("0x" + f"{i:02x}" * 20) for i in (0xA1, 0xB2, 0xC3, 0xD4))


def receipt(seq: int, amount: int = 0) -> PlayReceipt:
    return PlayReceipt(seq=seq, target=b"\x22" * 32, kind=Kind.PLAY, units=1, amount=amount, split_hash=ZERO_HASH)


def test_empty_voucher() -> None:
    empty = Voucher.empty(CID)
    assert (empty.payees, empty.amounts, empty.play_hash, empty.total) == ((), (), GENESIS, 0)


def test_add_appends_new_payees_in_order_and_accumulates() -> None:
    v1 = Voucher.empty(CID).add({B: 5, A: 7}, receipt(1, 12))
    assert v1.payees == (B, A) and v1.amounts == (5, 7)
    v2 = v1.add({C: 1, A: 3, D: 2, B: 0}, receipt(2, 6))
    assert v2.payees == (B, A, C, D)
    assert v2.amounts == (5, 10, 1, 2)
    assert v2.total == v1.total + 6 == 18
    assert v2.play_hash == receipt(2, 6).chain(v1.play_hash)
    assert v1.play_hash == receipt(1, 12).chain(GENESIS)


def test_add_skips_zero_payments_and_accepts_lowercase_addresses() -> None:
    v = Voucher.empty(CID).add({Address(A.lower()): 4, B: 0}, receipt(1, 4))
    assert v.payees == (A,) and v.amounts == (4,)
    free = v.add({}, receipt(2))
    assert free.payees == v.payees and free.amounts == v.amounts and free.play_hash != v.play_hash


def test_add_rejects_negative_payments_and_overflow() -> None:
    with pytest.raises(ProtocolError):
        Voucher.empty(CID).add({A: -1}, receipt(1))
    full = Voucher(CID, (A,), (MAX_AMOUNT,))
    with pytest.raises(ProtocolError):
        full.add({A: 1}, receipt(1))


def test_amount_of_and_total() -> None:
    v = Voucher(CID, (A, B), (3, 4))
    assert v.total == 7
    assert v.amount_of(B) == 4 and v.amount_of(B.lower()) == 4 and v.amount_of(C) == 0


def test_deltas_since() -> None:
    v1 = Voucher(CID, (A, B), (3, 4))
    v2 = Voucher(CID, (A, B, C), (3, 9, 2))
    assert v2.deltas_since(v1) == {B: 5, C: 2}
    assert v2.deltas_since(Voucher.empty(CID)) == {A: 3, B: 9, C: 2}
    assert v1.deltas_since(v1) == {}


@pytest.mark.parametrize(
    ("payees", "amounts", "code"),
    [
        ((B, A), (4, 3), "payees_reordered"),
        ((A,), (3,), "payees_reordered"),  # a payee dropped
        ((C, A, B), (1, 3, 4), "payees_reordered"),  # a payee inserted in front
        ((A, B), (2, 4), "amount_decreased"),
        ((A, B, C), (3, 3, 9), "amount_decreased"),
    ],
)
def test_deltas_since_rejects_non_extensions(payees: tuple, amounts: tuple, code: str) -> None:
    previous = Voucher(CID, (A, B), (3, 4))
    with pytest.raises(ProtocolError) as info:
        Voucher(CID, payees, amounts).deltas_since(previous)
    assert info.value.code == code


def test_deltas_since_rejects_other_channel() -> None:
    with pytest.raises(ProtocolError) as info:
        Voucher(CID, (A,), (1,)).deltas_since(Voucher.empty(b"\x00" * 32))
    assert info.value.code == "wrong_channel"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channel_id": b"\x01" * 31},
        {"channel_id": CID, "play_hash": b"\x01"},
        {"channel_id": CID, "payees": (A,), "amounts": ()},
        {"channel_id": CID, "payees": (A, A), "amounts": (1, 2)},
        {"channel_id": CID, "payees": (A,), "amounts": (-1,)},
        {"channel_id": CID, "payees": (A,), "amounts": (MAX_AMOUNT + 1,)},
    ],
)
def test_invalid_vouchers(kwargs: dict) -> None:
    with pytest.raises(ProtocolError):
        Voucher(**kwargs)


def test_message_and_typed_data_shape() -> None:
    v = Voucher(CID, (A, B), (3, 4), b"\x05" * 32)
    assert v.message() == {
        "channelId": "0x" + "c1" * 32,
        "payees": [A, B],
        "amounts": [3, 4],
        "playHash": "0x" + "05" * 32,
    }
    document = v.typed_data(DOMAIN)
    assert document["primaryType"] == "Voucher"
    assert document["types"] == {"EIP712Domain": EIP712_TYPES["EIP712Domain"], "Voucher": EIP712_TYPES["Voucher"]}
    assert document["domain"] == DOMAIN.as_dict()
    assert document["message"] == v.message()


def test_sign_and_signer() -> None:
    key = PrivateKey(b"\x01" * 32)
    signed = Voucher(CID, (A,), (1,)).sign(DOMAIN, key)
    assert signed.signer(DOMAIN) == key.address
    other_domain = Domain(chain_id=1, verifying_contract=DOMAIN.verifying_contract)
    assert signed.signer(other_domain) != key.address  # bound to the chain


def test_close_digest_binds_the_voucher() -> None:
    v = Voucher(CID, (A,), (1,))
    assert v.close_digest(DOMAIN) != Voucher(CID, (A,), (2,)).close_digest(DOMAIN)
    assert v.close_digest(DOMAIN) != v.digest(DOMAIN)


payment_maps = st.dictionaries(st.sampled_from([A, B, C, D]), st.integers(min_value=0, max_value=10**12), max_size=4)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(payment_maps, min_size=1, max_size=8))
def test_every_added_voucher_extends_the_previous(steps: list[dict[Address, int]]) -> None:
    voucher = Voucher.empty(CID)
    for seq, payments in enumerate(steps, 1):
        nxt = voucher.add(payments, receipt(seq, sum(payments.values())))
        assert nxt.payees[: len(voucher.payees)] == voucher.payees
        assert nxt.deltas_since(voucher) == {p: a for p, a in payments.items() if a}
        assert nxt.total == voucher.total + sum(payments.values())
        voucher = nxt


def test_voucher_checksumsPayees_soMixedCaseDuplicatesAreCaught() -> None:
    lower = "0x" + "ab" * 20
    upper = "0x" + "AB" * 20
    voucher = Voucher(b"\x01" * 32, (Address(lower),), (5,))
    assert voucher.payees == (to_address(lower),) and voucher.payees[0] != lower
    with pytest.raises(ProtocolError, match="appears twice"):
        Voucher(b"\x01" * 32, (Address(lower), Address(upper)), (1, 2))
