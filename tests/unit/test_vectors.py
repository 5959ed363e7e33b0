"""docs/protocol-vectors.json, docs/PROTOCOL.md and the code never drift apart.

Every vector in the JSON is recomputed here from its inputs with the Python implementation (independently of
scripts/make_vectors.py), the file must equal the generator's output, and PROTOCOL.md must hold the generator's
current vectors block.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from eth_account.messages import encode_typed_data

from chainstream.chain.artifacts import error_abis
from chainstream.pricing import Split
from chainstream.protocol import Domain, Kind, PlayReceipt, PrivateKey, Signature, Voucher, recover
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.protocol.hashing import keccak
from chainstream.protocol.read_token import ReadToken
from chainstream.protocol.receipts import GENESIS
from chainstream.protocol.types import ZERO_HASH, Address, to_address

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "docs" / "protocol-vectors.json"
DOC_PATH = ROOT / "docs" / "PROTOCOL.md"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vectors", ROOT / "scripts" / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_vectors", module)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
DOMAIN = Domain(chain_id=VECTORS["domain"]["chainId"], verifying_contract=VECTORS["domain"]["verifyingContract"])


def b32(text: str) -> bytes:
    raw = bytes.fromhex(text[2:])
    assert text.startswith("0x") and len(raw) == 32, text
    return raw


def hex0x(raw: bytes) -> str:
    return "0x" + raw.hex()


def decimal(text: str) -> int:
    assert isinstance(text, str) and text.isdigit() and (text == "0" or not text.startswith("0")), text
    return int(text)


def voucher_of(entry: dict[str, Any]) -> Voucher:
    message = entry["message"]
    return Voucher(
        channel_id=b32(message["channelId"]),
        payees=tuple(to_address(p) for p in message["payees"]),
        amounts=tuple(decimal(a) for a in message["amounts"]),
        play_hash=b32(message["playHash"]),
    )


# --------------------------------------------------------------------------------------------- format


def test_format() -> None:
    assert list(VECTORS) == [
        "domain",
        "domainSeparator",
        "vouchers",
        "closes",
        "receipts",
        "splits",
        "caps",
        "readTokens",
        "profiles",
    ]
    assert VECTORS["domain"] == {
        "name": "ChainStream",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    }
    keys = {
        "vouchers": ["description", "privateKey", "signer", "message", "structHash", "digest", "signature"],
        "closes": ["description", "privateKey", "signer", "message", "digest", "signature"],
        "receipts": [
            "description",
            "prev",
            "seq",
            "target",
            "kind",
            "units",
            "amount",
            "splitHash",
            "memo",
            "memoHash",
            "head",
        ],
        "splits": ["description", "recipients", "bps", "feeRecipient", "feeBps", "hash", "amount", "shares"],
        "readTokens": ["description", "privateKey", "signer", "message", "digest", "signature", "token"],
        "profiles": ["description", "privateKey", "signer", "message", "structHash", "digest", "signature"],
    }
    for section, fields in keys.items():
        assert VECTORS[section], section
        for entry in VECTORS[section]:
            assert list(entry) == fields, (section, entry["description"])
    for entry in VECTORS["vouchers"]:
        assert list(entry["message"]) == ["channelId", "payees", "amounts", "playHash"]
    for entry in VECTORS["closes"]:
        assert list(entry["message"]) == ["channelId", "voucherDigest"]


def test_coverage() -> None:
    vouchers = [voucher_of(e) for e in VECTORS["vouchers"]]
    assert len(vouchers[0].payees) == 1
    assert any(len(v.payees) == 3 for v in vouchers)
    signers = {e["signer"] for e in VECTORS["vouchers"]}
    assert len(signers) >= 2  # the payer and a session key
    assert {e["message"]["voucherDigest"] == hex0x(ZERO_HASH) for e in VECTORS["closes"]} == {True, False}
    assert {r["kind"] for r in VECTORS["receipts"]} == {int(k) for k in Kind}
    assert any(r["memo"] for r in VECTORS["receipts"])
    dusty = [s for s in VECTORS["splits"] if _dust(s) > 0]
    assert dusty


def _dust(entry: dict[str, Any]) -> int:
    amount = decimal(entry["amount"])
    rest = amount - amount * entry["feeBps"] // 10_000
    primary = decimal(entry["shares"].get(entry["recipients"][0], "0"))
    return primary - rest * entry["bps"][0] // 10_000


# ----------------------------------------------------------------------------------------- recompute


def test_domain_separator() -> None:
    assert hex0x(DOMAIN.separator) == VECTORS["domainSeparator"]


@pytest.mark.parametrize("entry", VECTORS["vouchers"], ids=lambda e: e["description"][:40])
def test_voucher_vectors(entry: dict[str, Any]) -> None:
    voucher = voucher_of(entry)
    assert list(voucher.payees) == entry["message"]["payees"]  # given checksummed
    assert hex0x(voucher.struct_hash()) == entry["structHash"]
    assert hex0x(voucher.digest(DOMAIN)) == entry["digest"]
    key = PrivateKey(entry["privateKey"])
    assert key.address == entry["signer"]
    assert voucher.sign(DOMAIN, key).signature.to_hex() == entry["signature"]
    signature = Signature.from_hex(entry["signature"])
    assert signature.v in (27, 28)
    assert recover(b32(entry["digest"]), signature) == entry["signer"]


@pytest.mark.parametrize("entry", VECTORS["closes"], ids=lambda e: e["description"][:40])
def test_close_vectors(entry: dict[str, Any]) -> None:
    channel_id = b32(entry["message"]["channelId"])
    voucher_digest = b32(entry["message"]["voucherDigest"])
    digest = DOMAIN.digest(close_struct_hash(channel_id, voucher_digest))
    assert hex0x(digest) == entry["digest"]
    key = PrivateKey(entry["privateKey"])
    assert key.address == entry["signer"]
    assert key.sign(digest).to_hex() == entry["signature"]
    assert recover(digest, Signature.from_hex(entry["signature"])) == entry["signer"]
    # The voucherDigest is zero or the digest of a voucher in the file; Voucher.close_digest agrees.
    if voucher_digest == ZERO_HASH:
        assert hex0x(Voucher.empty(channel_id).close_digest(DOMAIN)) == entry["digest"]
    else:
        (voucher,) = [voucher_of(v) for v in VECTORS["vouchers"] if v["digest"] == entry["message"]["voucherDigest"]]
        assert voucher.channel_id == channel_id
        assert hex0x(voucher.close_digest(DOMAIN)) == entry["digest"]


@pytest.mark.parametrize("entry", VECTORS["readTokens"], ids=lambda e: e["description"][:40])
def test_read_token_vectors(entry: dict[str, Any]) -> None:
    """hashStruct(ReadAccess) by hand (PROTOCOL.md §3.5), the signature, and the wire form parsed back."""
    m = entry["message"]
    struct = keccak(
        keccak(b"ReadAccess(address account,bytes32 channelId,address relay,uint256 notAfter)")
        + bytes(12)
        + bytes.fromhex(m["account"][2:])
        + b32(m["channelId"])
        + bytes(12)
        + bytes.fromhex(m["relay"][2:])
        + m["notAfter"].to_bytes(32, "big")
    )
    digest = DOMAIN.digest(struct)
    assert hex0x(digest) == entry["digest"]
    key = PrivateKey(entry["privateKey"])
    assert key.address == entry["signer"] and key.sign(digest).to_hex() == entry["signature"]
    token = ReadToken.parse(entry["token"])
    assert (token.account, hex0x(token.channel_id), token.not_after) == (m["account"], m["channelId"], m["notAfter"])
    assert token.signer(DOMAIN, m["relay"]) == entry["signer"]
    # shown to another relay, the same token recovers to someone else
    assert token.signer(DOMAIN, "0x" + "77" * 20) != entry["signer"]


@pytest.mark.parametrize("entry", VECTORS["caps"], ids=lambda e: e["description"])
def test_caps_vectors(entry: dict[str, Any]) -> None:
    """hashStruct(Caps) by hand (PROTOCOL.md §3.3), the digest, and the payer's or session key's signature."""
    m = entry["message"]
    struct = keccak(
        keccak(b"Caps(bytes32 channelId,uint256 dailyCap,uint256 sessionCap,uint256 issuedAt)")
        + b32(m["channelId"])
        + int(m["dailyCap"]).to_bytes(32, "big")
        + int(m["sessionCap"]).to_bytes(32, "big")
        + m["issuedAt"].to_bytes(32, "big")
    )
    assert hex0x(struct) == entry["structHash"]
    digest = DOMAIN.digest(struct)
    assert hex0x(digest) == entry["digest"]
    key = PrivateKey(entry["privateKey"])
    assert key.address == entry["signer"] and key.sign(digest).to_hex() == entry["signature"]
    assert recover(digest, Signature.from_hex(entry["signature"])) == entry["signer"]


@pytest.mark.parametrize("entry", VECTORS["profiles"], ids=lambda e: e["description"][:40])
def test_profile_vectors(entry: dict[str, Any]) -> None:
    """hashStruct(ArtistProfile) by hand (PROTOCOL.md §3.6; the string as keccak256 of its UTF-8 bytes, the
    uint64 as a word), checked against eth-account's encoder too, and the artist's own signature."""
    m = entry["message"]
    struct = keccak(
        keccak(b"ArtistProfile(address artist,string name,uint64 issuedAt)")
        + bytes(12)
        + bytes.fromhex(m["artist"][2:])
        + keccak(m["name"].encode("utf-8"))
        + m["issuedAt"].to_bytes(32, "big")
    )
    assert hex0x(struct) == entry["structHash"]
    digest = DOMAIN.digest(struct)
    assert hex0x(digest) == entry["digest"]
    document = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "ArtistProfile": [
                {"name": "artist", "type": "address"},
                {"name": "name", "type": "string"},
                {"name": "issuedAt", "type": "uint64"},
            ],
        },
        "primaryType": "ArtistProfile",
        "domain": VECTORS["domain"],
        "message": m,
    }
    assert (
        keccak(
            b"\x19\x01"
            + encode_typed_data(full_message=document).header
            + encode_typed_data(full_message=document).body
        )
        == digest
    )
    key = PrivateKey(entry["privateKey"])
    assert key.address == entry["signer"] == m["artist"] and key.sign(digest).to_hex() == entry["signature"]


def receipt_of(entry: dict[str, Any]) -> PlayReceipt:
    return PlayReceipt(
        seq=entry["seq"],
        target=b32(entry["target"]),
        kind=Kind(entry["kind"]),
        units=entry["units"],
        amount=decimal(entry["amount"]),
        split_hash=b32(entry["splitHash"]),
        memo=entry["memo"],
    )


@pytest.mark.parametrize("entry", VECTORS["receipts"], ids=lambda e: e["description"][:40])
def test_receipt_vectors(entry: dict[str, Any]) -> None:
    receipt = receipt_of(entry)
    assert hex0x(receipt.memo_hash) == entry["memoHash"]
    assert hex0x(receipt.chain(b32(entry["prev"]))) == entry["head"]


def test_receipts_form_chains() -> None:
    previous = None
    for entry in VECTORS["receipts"]:
        if entry["seq"] == 1:
            assert entry["prev"] == hex0x(GENESIS)
        else:
            assert previous is not None and entry["seq"] == previous["seq"] + 1
            assert entry["prev"] == previous["head"]
        previous = entry


@pytest.mark.parametrize("entry", VECTORS["splits"], ids=lambda e: e["description"][:40])
def test_split_vectors(entry: dict[str, Any]) -> None:
    split = Split(tuple(entry["recipients"]), tuple(entry["bps"]), entry["feeRecipient"], entry["feeBps"])
    assert hex0x(split.hash) == entry["hash"]
    shares = split.apply(decimal(entry["amount"]))
    assert [(p, str(a)) for p, a in shares.items()] == list(entry["shares"].items())  # order matters
    assert sum(decimal(a) for a in entry["shares"].values()) == decimal(entry["amount"])


def test_vouchers_follow_from_the_receipts() -> None:
    """Replaying each receipt chain (split by the split its splitHash names) yields the vouchers' payees and amounts."""
    splits = {
        s["hash"]: Split(tuple(s["recipients"]), tuple(s["bps"]), s["feeRecipient"], s["feeBps"])
        for s in VECTORS["splits"]
    }
    by_play_hash = {e["message"]["playHash"]: voucher_of(e) for e in VECTORS["vouchers"]}
    matched = 0
    state = Voucher.empty(ZERO_HASH)
    for entry in VECTORS["receipts"]:
        receipt = receipt_of(entry)
        if receipt.seq == 1:
            state = Voucher.empty(ZERO_HASH)
        if receipt.split_hash == ZERO_HASH:
            payments: dict[Address, int] = {to_address(receipt.target[12:]): receipt.amount}
        else:
            payments = splits[entry["splitHash"]].apply(receipt.amount)
        state = state.add(payments, receipt)
        assert hex0x(state.play_hash) == entry["head"]
        voucher = by_play_hash.get(entry["head"])
        if voucher is not None:
            assert (voucher.payees, voucher.amounts) == (state.payees, state.amounts)
            matched += 1
    assert matched == len(VECTORS["vouchers"])


def test_skip_reason_selectors_match_the_contract_abi() -> None:
    errors = error_abis()
    for signature in GENERATOR.SKIP_REASONS:
        selector = keccak(signature.encode())[:4]
        assert selector in errors, signature
        abi = errors[selector]
        assert f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})" == signature


# --------------------------------------------------------------------------------------------- drift


def test_vectors_file_is_the_generators_output() -> None:
    assert VECTORS_PATH.read_text(encoding="utf-8") == GENERATOR.dump_json(GENERATOR.build()) + "\n", (
        "docs/protocol-vectors.json is stale: run scripts/make_vectors.py"
    )


def test_protocol_doc_holds_the_current_vectors_block() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    assert text.count(GENERATOR.BEGIN_MARKER) == 1 and text.count(GENERATOR.END_MARKER) == 1
    assert GENERATOR.extract_block(text) == GENERATOR.render_block(), (
        "docs/PROTOCOL.md's vectors block is stale: run scripts/make_vectors.py"
    )
    assert GENERATOR.replace_block(text, GENERATOR.render_block()) == text


def test_protocol_doc_states_the_type_strings() -> None:
    from chainstream.protocol.eip712 import CAPS_TYPE, CLOSE_TYPE, DOMAIN_TYPE, READ_ACCESS_TYPE, VOUCHER_TYPE
    from chainstream.protocol.receipts import RECEIPT_TYPE

    text = DOC_PATH.read_text(encoding="utf-8")
    for type_string in (VOUCHER_TYPE, CLOSE_TYPE, CAPS_TYPE, DOMAIN_TYPE, RECEIPT_TYPE, READ_ACCESS_TYPE):
        assert type_string in text


def test_ethers_snippet_in_the_doc_reproduces_the_vectors() -> None:
    """The doc's ethers v6 example runs against the JSON (skipped without node and the npm packages)."""
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "ethers").is_dir():
        pytest.skip("node or node_modules/ethers is not installed (npm ci)")
    text = DOC_PATH.read_text(encoding="utf-8")
    start = text.index("```js\n") + len("```js\n")
    snippet = text[start : text.index("```", start)]
    result = subprocess.run(
        [node, "--input-type=module"], input=snippet, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
