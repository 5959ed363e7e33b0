"""secp256k1 signing and recovery: round trips, agreement with eth-account, and the rejection rules."""

from __future__ import annotations

import contextlib

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from chainstream.errors import ProtocolError
from chainstream.protocol import PrivateKey, Signature, recover
from chainstream.protocol.signing import HALF_N, SECP256K1_N, high_s_twin

secrets = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
digests = st.binary(min_size=32, max_size=32)
KEY = PrivateKey(b"\x01" * 32)
DIGEST = bytes(range(32))


@settings(max_examples=100, deadline=None)
@given(secret=secrets, digest=digests)
def test_sign_recover_round_trip_and_eth_account_agree(secret: bytes, digest: bytes) -> None:
    key = PrivateKey(secret)
    signature = key.sign(digest)
    assert key.address == Account.from_key(secret).address
    assert signature.v in (27, 28)
    assert 0 < signature.s <= HALF_N
    assert recover(digest, signature) == key.address
    # Both are RFC 6979: eth-account produces the very same bytes, and recovers the same signer.
    signed = Account.unsafe_sign_hash(digest, secret)
    assert bytes(signed.signature) == signature.to_bytes()
    assert (signed.v, signed.r, signed.s) == (signature.v, signature.r, signature.s)
    assert Account._recover_hash(digest, signature=signature.to_bytes()) == key.address
    assert Account._recover_hash(digest, vrs=(signature.v, signature.r, signature.s)) == key.address


@settings(max_examples=50, deadline=None)
@given(secret=secrets, digest=digests)
def test_high_s_twin_is_rejected(secret: bytes, digest: bytes) -> None:
    key = PrivateKey(secret)
    signature = key.sign(digest)
    twin = high_s_twin(signature)
    assert twin.s > HALF_N and twin.v != signature.v and twin.r == signature.r
    # ecrecover alone accepts the twin (same signer, different bytes): that is why it must be rejected.
    assert Account._recover_hash(digest, signature=twin.to_bytes()) == key.address
    with pytest.raises(ProtocolError) as info:
        recover(digest, twin)
    assert info.value.code == "bad_signature"


@pytest.mark.parametrize("v", [0, 1, 26, 29, 35, 36, 255])
def test_wrong_v_is_rejected(v: int) -> None:
    signature = KEY.sign(DIGEST)
    with pytest.raises(ProtocolError, match="v must be 27 or 28"):
        recover(DIGEST, Signature(v=v, r=signature.r, s=signature.s))


def test_flipped_v_recovers_someone_else() -> None:
    signature = KEY.sign(DIGEST)
    flipped = Signature(v=55 - signature.v, r=signature.r, s=signature.s)
    with contextlib.suppress(ProtocolError):  # or no point at all
        assert recover(DIGEST, flipped) != KEY.address


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (SECP256K1_N, 1), (SECP256K1_N + 1, 1), (1, HALF_N + 1), (1, SECP256K1_N - 1), (2**256 - 1, 1)],
)
def test_out_of_range_r_s_rejected(r: int, s: int) -> None:
    with pytest.raises(ProtocolError):
        recover(DIGEST, Signature(v=27, r=r, s=s))


@settings(max_examples=200, deadline=None)
@given(
    digest=digests,
    v=st.sampled_from([27, 28]),
    r=st.integers(min_value=1, max_value=SECP256K1_N - 1),
    s=st.integers(min_value=1, max_value=HALF_N),
)
def test_recover_of_arbitrary_signatures_never_crashes(digest: bytes, v: int, r: int, s: int) -> None:
    """Garbage either recovers to some address (as ecrecover would) or raises ProtocolError."""
    signature = Signature(v=v, r=r, s=s)
    try:
        signer = recover(digest, signature)
    except ProtocolError as exc:
        assert exc.code == "bad_signature"
    else:
        assert signer == Account._recover_hash(digest, vrs=(v, r, s))


def test_signature_wrong_digest_recovers_other_address() -> None:
    signature = KEY.sign(DIGEST)
    assert recover(bytes(32), signature) != KEY.address


def test_signature_encodings() -> None:
    signature = KEY.sign(DIGEST)
    raw = signature.to_bytes()
    assert len(raw) == 65 and raw[64] == signature.v
    assert Signature.from_bytes(raw) == signature
    assert Signature.from_hex(signature.to_hex()) == signature
    assert Signature.from_hex(signature.to_hex()[2:]) == signature
    assert signature.r_bytes + signature.s_bytes == raw[:64]
    with pytest.raises(ProtocolError):
        Signature.from_bytes(raw[:64])
    with pytest.raises(ProtocolError):
        Signature.from_hex("0x" + "zz" * 65)


@pytest.mark.parametrize("v", [27, 28])
def test_eip2098_compact_form(v: int) -> None:
    signature = Signature(v=v, r=5, s=HALF_N)
    vs = int.from_bytes(signature.vs_bytes, "big")
    assert vs >> 255 == v - 27
    assert vs & ((1 << 255) - 1) == signature.s


def test_private_key_inputs_and_repr() -> None:
    assert PrivateKey("0x" + "01" * 32).address == KEY.address == PrivateKey("01" * 32).address
    assert KEY.secret == b"\x01" * 32
    assert "01" * 8 not in repr(KEY) and KEY.address in repr(KEY)
    with pytest.raises(ProtocolError):
        PrivateKey(b"\x01" * 31)
    generated = PrivateKey.generate()
    assert recover(DIGEST, generated.sign(DIGEST)) == generated.address
