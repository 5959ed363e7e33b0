"""The hand-built EIP-712 hashes equal eth-account's generic encoder, and the type strings equal the contracts'."""

from __future__ import annotations

from pathlib import Path

from eth_account.messages import _hash_eip191_message, encode_typed_data, hash_domain
from hypothesis import given, settings
from hypothesis import strategies as st

from chainstream.protocol import Domain, Voucher
from chainstream.protocol.eip712 import (
    CAPS_TYPE,
    CAPS_TYPEHASH,
    CLOSE_TYPE,
    CLOSE_TYPEHASH,
    DOMAIN_TYPE,
    DOMAIN_TYPEHASH,
    EIP712_TYPES,
    VOUCHER_TYPE,
    VOUCHER_TYPEHASH,
    caps_struct_hash,
    close_struct_hash,
    typed_data,
)
from chainstream.protocol.hashing import hash_addresses, hash_uints, keccak
from chainstream.protocol.types import MAX_AMOUNT, ZERO_HASH, to_address

ROOT = Path(__file__).resolve().parents[2]

bytes32 = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20).map(to_address)
domains = st.builds(Domain, chain_id=st.integers(min_value=1, max_value=2**64), verifying_contract=addresses)


@st.composite
def vouchers(draw: st.DrawFn) -> Voucher:
    n = draw(st.integers(min_value=0, max_value=8))
    payees = draw(st.lists(addresses, min_size=n, max_size=n, unique=True))
    amounts = draw(st.lists(st.integers(min_value=0, max_value=MAX_AMOUNT), min_size=n, max_size=n))
    return Voucher(channel_id=draw(bytes32), payees=tuple(payees), amounts=tuple(amounts), play_hash=draw(bytes32))


def eth_account_parts(document: dict) -> tuple[bytes, bytes, bytes]:
    """(domain separator, hashStruct(message), digest) as eth-account computes them."""
    signable = encode_typed_data(full_message=document)
    return bytes(signable.header), bytes(signable.body), bytes(_hash_eip191_message(signable))


@settings(max_examples=250, deadline=None)
@given(voucher=vouchers(), domain=domains)
def test_voucher_digest_matches_eth_account(voucher: Voucher, domain: Domain) -> None:
    separator, struct_hash, digest = eth_account_parts(voucher.typed_data(domain))
    assert domain.separator == separator
    assert voucher.struct_hash() == struct_hash
    assert voucher.digest(domain) == digest


@settings(max_examples=100, deadline=None)
@given(voucher=vouchers(), domain=domains)
def test_close_digest_matches_eth_account(voucher: Voucher, domain: Domain) -> None:
    voucher_digest = voucher.digest(domain) if voucher.payees else ZERO_HASH
    message = {"channelId": "0x" + voucher.channel_id.hex(), "voucherDigest": "0x" + voucher_digest.hex()}
    _, struct_hash, digest = eth_account_parts(typed_data(domain, "Close", message))
    assert close_struct_hash(voucher.channel_id, voucher_digest) == struct_hash
    assert voucher.close_digest(domain) == digest


@settings(max_examples=50, deadline=None)
@given(
    domain=domains,
    channel_id=bytes32,
    caps=st.tuples(*[st.integers(min_value=0, max_value=2**256 - 1)] * 3),
)
def test_caps_digest_matches_eth_account(domain: Domain, channel_id: bytes, caps: tuple[int, int, int]) -> None:
    daily, session, issued_at = caps
    message = {"channelId": channel_id, "dailyCap": daily, "sessionCap": session, "issuedAt": issued_at}
    _, struct_hash, digest = eth_account_parts(typed_data(domain, "Caps", message))
    assert caps_struct_hash(channel_id, daily, session, issued_at) == struct_hash
    assert domain.digest(struct_hash) == digest


@settings(max_examples=100, deadline=None)
@given(domain=domains)
def test_domain_separator_matches_eth_account(domain: Domain) -> None:
    assert domain.separator == bytes(hash_domain(domain.as_dict()))


def test_empty_voucher_closes_with_zero_voucher_digest() -> None:
    domain = Domain(chain_id=1, verifying_contract="0x" + "11" * 20)
    empty = Voucher.empty(b"\x07" * 32)
    assert empty.close_digest(domain) == domain.digest(close_struct_hash(b"\x07" * 32, ZERO_HASH))
    assert empty.struct_hash() == keccak(VOUCHER_TYPEHASH + b"\x07" * 32 + keccak(b"") + keccak(b"") + ZERO_HASH)


def test_array_encodings() -> None:
    assert hash_addresses([]) == hash_uints([]) == keccak(b"")
    assert hash_uints([1, 2]) == keccak((1).to_bytes(32, "big") + (2).to_bytes(32, "big"))
    assert hash_addresses(["0x" + "ab" * 20]) == keccak(b"\x00" * 12 + b"\xab" * 20)


def test_type_hashes() -> None:
    assert keccak(VOUCHER_TYPE.encode()) == VOUCHER_TYPEHASH
    assert keccak(CLOSE_TYPE.encode()) == CLOSE_TYPEHASH
    assert keccak(CAPS_TYPE.encode()) == CAPS_TYPEHASH
    assert keccak(DOMAIN_TYPE.encode()) == DOMAIN_TYPEHASH
    assert len({VOUCHER_TYPEHASH, CLOSE_TYPEHASH, CAPS_TYPEHASH}) == 3
    # The type strings are what EIP712_TYPES (given to wallets) encode to.
    pairs = (("Voucher", VOUCHER_TYPE), ("Close", CLOSE_TYPE), ("Caps", CAPS_TYPE), ("EIP712Domain", DOMAIN_TYPE))
    for name, type_string in pairs:
        fields = ",".join(f"{f['type']} {f['name']}" for f in EIP712_TYPES[name])
        assert type_string == f"{name}({fields})"


def test_type_strings_match_the_contracts() -> None:
    hashing = (ROOT / "contracts" / "libraries" / "VoucherHashing.sol").read_text()
    assert f'keccak256("{VOUCHER_TYPE}")' in hashing
    assert f'keccak256("{CLOSE_TYPE}")' in hashing
    channels = (ROOT / "contracts" / "ChainStreamChannels.sol").read_text()
    assert 'EIP712("ChainStream", "1")' in channels
    domain = Domain(chain_id=1, verifying_contract="0x" + "11" * 20)
    assert (domain.name, domain.version) == ("ChainStream", "1")


def test_typed_data_document_shape() -> None:
    domain = Domain(chain_id=31337, verifying_contract="0x" + "cc" * 20)
    document = typed_data(domain, "Close", {"channelId": "0x" + "00" * 32, "voucherDigest": "0x" + "00" * 32})
    assert set(document) == {"types", "primaryType", "domain", "message"}
    assert document["primaryType"] == "Close"
    assert set(document["types"]) == {"EIP712Domain", "Close"}
    assert document["domain"] == {
        "name": "ChainStream",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": to_address("0x" + "cc" * 20),
    }
