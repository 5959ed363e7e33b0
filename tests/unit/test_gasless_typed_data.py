"""The gas-free authorisations' EIP-712 encoding (chainstream.protocol.gasless), checked two ways with no chain:

- against eth-account's generic encode_typed_data (an independent implementation), for every type;
- against the test vectors in docs/PROTOCOL.md §14 (fixed keys, RFC 6979 signatures), which this test regenerates
  and compares byte for byte (`python -m tests.unit.test_gasless_typed_data` prints the block).

The contract side is checked by tests/hardhat/gasless.test.js (ethers' TypedDataEncoder == openDigest) and
tests/adversarial/test_gasless.py (this module's digest == the deployed contract's openDigest).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from eth_account.messages import encode_typed_data

from chainstream.errors import ProtocolError
from chainstream.protocol import PrivateKey
from chainstream.protocol.gasless import CloseAuth, OpenAuth, ScheduleAuth, TopUpAuth, gasless_domain
from chainstream.protocol.types import ZERO_ADDRESS

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
BEGIN, END = "<!-- gasless-vectors:begin -->", "<!-- gasless-vectors:end -->"


def key(label: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(f"chainstream-vector-{label}".encode()).digest())


DOMAIN = gasless_domain(31337, "0x" + "c0" * 20)
PAYER, RELAY, SESSION, PAYEE = key("payer"), key("relay"), key("session"), key("payee")
TOKEN = "0x" + "70" * 20
CHANNEL = bytes.fromhex("ab" * 32)


def samples() -> list[tuple[str, PrivateKey, OpenAuth | TopUpAuth | CloseAuth | ScheduleAuth]]:
    return [
        (
            "open 10 mUSD with a session key, relay fee at most 0.02, anyone submits",
            PAYER,
            OpenAuth(
                PAYER.address,
                TOKEN,
                RELAY.address,
                SESSION.address,
                1_900_000_000,
                bytes(31) + b"\x01",
                10_000_000,
                20_000,
                ZERO_ADDRESS,
                1,
                1_800_000_000,
            ),
        ),
        (
            "top up 5 mUSD, only the relay may submit",
            PAYER,
            TopUpAuth(PAYER.address, CHANNEL, 5_000_000, 10_000, RELAY.address, 2, 1_800_000_000),
        ),
        (
            "close at a final voucher, fee at most 0.01 out of the refund",
            PAYER,
            CloseAuth(PAYER.address, CHANNEL, bytes.fromhex("cd" * 32), 10_000, ZERO_ADDRESS, 3, 1_800_000_000),
        ),
        (
            "payouts of mUSD from 1 mUSD, weekly, to a recipient, fee at most 0.001",
            PAYEE,
            ScheduleAuth(PAYEE.address, TOKEN, True, "0x" + "be" * 20, 1_000_000, 604_800, 1_000, 0, 1_800_000_000),
        ),
    ]


def vectors_block() -> str:
    out = []
    for description, signer, auth in samples():
        out.append(
            {
                "description": description,
                "primaryType": auth.PRIMARY,
                "signer": signer.address,
                "message": auth.message(),
                "structHash": "0x" + auth.struct_hash().hex(),
                "digest": "0x" + auth.digest(DOMAIN).hex(),
                "signature": auth.sign(signer, DOMAIN).to_hex(),
            }
        )
    body = json.dumps({"domain": DOMAIN.as_dict(), "vectors": out}, indent=1)
    return f"{BEGIN}\n```json\n{body}\n```\n{END}"


@pytest.mark.parametrize("case", range(4))
def test_digest_equals_eth_account_encode_typed_data(case: int) -> None:
    _, _, auth = samples()[case]
    signable = encode_typed_data(full_message=auth.typed_data(DOMAIN))
    from eth_utils import keccak

    assert keccak(b"\x19" + signable.version + signable.header + signable.body) == auth.digest(DOMAIN)


def test_protocol_md_holds_the_current_vectors() -> None:
    text = DOC.read_text()
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    assert found is not None, f"docs/PROTOCOL.md has no {BEGIN} block"
    assert found.group(0) == vectors_block(), "regenerate: python -m tests.unit.test_gasless_typed_data"


def test_out_of_range_fields_are_refused_before_encoding() -> None:
    """eth-account would coerce them (negatives, too-long ints); the builders refuse them."""
    _, _, auth = samples()[0]
    assert isinstance(auth, OpenAuth)
    for field, value in (("amount", 2**96), ("session_expiry", -1), ("max_fee", "5"), ("salt", b"\x01")):
        with pytest.raises(ProtocolError) as info:
            type(auth)(**{**auth.__dict__, field: value})
        assert info.value.code == "bad_authorization"
    with pytest.raises(ProtocolError):
        ScheduleAuth(PAYEE.address, TOKEN, True, ZERO_ADDRESS, 0, 0, 0, 0, 1)  # enabled, nothing to wait for


if __name__ == "__main__":
    print(vectors_block())
