#!/usr/bin/env python3
"""Write docs/protocol-vectors.json and the test-vector block of docs/PROTOCOL.md, deterministically.

Everything is derived from fixed private keys, a fixed domain (chain id 31337, a fixed verifying contract) and
fixed channel parameters, with ChainStream's own Python implementation (Split.apply, Voucher.add, the receipt
chain, libsecp256k1's RFC 6979 signatures). Running the script twice gives byte-identical files.

    .venv/bin/python scripts/make_vectors.py          # rewrite both files
    .venv/bin/python scripts/make_vectors.py --check  # exit 1 if either is out of date

tests/unit/test_vectors.py recomputes every vector independently and checks that PROTOCOL.md holds the current
block, so the vectors, the spec and the code cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chainstream.pricing import Model, Split, Terms, download_price, owned_after, play_price, seconds_price
from chainstream.protocol import Domain, Kind, PlayReceipt, PrivateKey, Voucher
from chainstream.protocol.eip712 import (
    ARTIST_PROFILE_TYPE,
    ARTIST_PROFILE_TYPEHASH,
    CAPS_TYPE,
    CAPS_TYPEHASH,
    CLOSE_TYPE,
    CLOSE_TYPEHASH,
    DOMAIN_TYPE,
    DOMAIN_TYPEHASH,
    READ_ACCESS_TYPE,
    READ_ACCESS_TYPEHASH,
    VOUCHER_TYPE,
    VOUCHER_TYPEHASH,
    artist_profile_struct_hash,
    caps_struct_hash,
    close_struct_hash,
)
from chainstream.protocol.hashing import address_word, hash_addresses, hash_uints, keccak, word
from chainstream.protocol.read_token import sign_read_token
from chainstream.protocol.receipts import RECEIPT_TYPE, RECEIPT_TYPEHASH
from chainstream.protocol.signing import Signature
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, Address

ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = ROOT / "docs" / "protocol-vectors.json"
DOC_PATH = ROOT / "docs" / "PROTOCOL.md"
BEGIN_MARKER = "<!-- vectors:begin -->"
END_MARKER = "<!-- vectors:end -->"

CHAIN_ID = 31337
VERIFYING_CONTRACT = Address("0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC")
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=VERIFYING_CONTRACT)


def fixed_key(byte: int) -> PrivateKey:
    """The private key 0xbbbb...bb (32 times the same byte)."""
    return PrivateKey(bytes([byte]) * 32)


def hex0x(raw: bytes) -> str:
    return "0x" + raw.hex()


# Signers (their private keys are public test values: never fund them on a real chain).
PAYER = fixed_key(0x01)
SESSION = fixed_key(0x02)
RELAY = fixed_key(0x03)
ARTIST_KEY = fixed_key(0x04)  # an artist signing its profile (the payees below need no keys)
SIGNERS = (("listener (payer)", PAYER), ("session key", SESSION), ("relay", RELAY), ("artist (profiles)", ARTIST_KEY))

# Payees need no keys: readable all-digit addresses (their checksummed form is the same string).
ARTIST = Address("0x1111111111111111111111111111111111111111")
COLLAB = Address("0x2222222222222222222222222222222222222222")
PLATFORM = Address("0x3333333333333333333333333333333333333333")
LABEL = Address("0x4444444444444444444444444444444444444444")
PRODUCER = Address("0x5555555555555555555555555555555555555555")
MIXER = Address("0x6666666666666666666666666666666666666666")
PAYEES = (
    ("artist", ARTIST),
    ("collaborator", COLLAB),
    ("platform (fee recipient)", PLATFORM),
    ("label", LABEL),
    ("producer", PRODUCER),
    ("mixer", MIXER),
)

# Tracks: ids are keccak256 of the audio content by convention; here of a fixed string.
TRACK_1 = keccak(b"ChainStream test vector track 1")
TRACK_2 = keccak(b"ChainStream test vector track 2")
TERMS_1 = Terms(per_play=1000)
SPLIT_1 = Split.solo(ARTIST)
TERMS_2 = Terms(per_play=1001, per_second=7, download=50_000)
SPLIT_2 = Split((ARTIST, COLLAB), (7000, 3000), PLATFORM, 250)
STREAM_TO_OWN = Terms(per_play=1000, model=Model.STREAM_TO_OWN, own_after=3)

TIP_MEMO = "Great set! \U0001f3b6"
CLOSE_DEPOSIT_CAP = 100_000  # the deposit of the capped-settlement example


def channel_id(
    payer: str, token: str, relay: str, salt: bytes, chain_id: int = CHAIN_ID, contract: str = VERIFYING_CONTRACT
) -> bytes:
    """keccak256(abi.encode(chainId, contract, payer, token, relay, salt)): the contract's channelIdFor."""
    return keccak(
        word(chain_id) + address_word(contract) + address_word(payer) + address_word(token) + address_word(relay) + salt
    )


def settled_root(payees: tuple[str, ...] | list[str], amounts: tuple[int, ...] | list[int]) -> bytes:
    """bytes20(keccak256(abi.encode(hash(payees), hash(amounts)))), hash = keccak of the 32-byte words."""
    return keccak(hash_addresses(payees) + hash_uints(amounts))[:20]


EMPTY_ROOT = settled_root((), ())


def capped_credit(amounts: tuple[int, ...], prev: tuple[int, ...], available: int) -> tuple[int, ...]:
    """What a settlement credits when the deposit cannot cover it: payees are paid in order until it runs out."""
    credited = []
    for i, amount in enumerate(amounts):
        before = prev[i] if i < len(prev) else 0
        delta = min(amount - before, available)
        available -= delta
        credited.append(before + delta)
    return tuple(credited)


#: The reasons settleBatch reports in SettlementSkipped(channelId, index, reason): the selector of the error the
#: single-entry settle() would revert with (VoucherStale: settle() is a silent no-op instead).
SKIP_REASONS = (
    "ChannelNotFound(bytes32)",
    "ChannelNotSettleable(bytes32,uint32)",
    "SettleNotAllowed(bytes32,address,uint32)",
    "VoucherLengthMismatch(bytes32,uint256,uint256,uint256)",
    "VoucherAmountOverflow(bytes32)",
    "VoucherStale(bytes32,uint256,uint256)",
    "VoucherPrevStateMismatch(bytes32,bytes20)",
    "VoucherNotMonotonic(bytes32,uint256)",
    "VoucherInvalidSignature(bytes32)",
    "VoucherUnauthorizedSigner(bytes32,address)",
)


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


SALT_A = (1).to_bytes(32, "big")
SALT_B = (2).to_bytes(32, "big")
CHANNEL_A = channel_id(PAYER.address, ZERO_ADDRESS, RELAY.address, SALT_A)
CHANNEL_B = channel_id(PAYER.address, ZERO_ADDRESS, RELAY.address, SALT_B)
CHANNELS = (("A", SALT_A, CHANNEL_A), ("B", SALT_B, CHANNEL_B))


# ----------------------------------------------------------------------------------------------- builders


def voucher_entry(description: str, voucher: Voucher, key: PrivateKey) -> dict[str, Any]:
    signature = voucher.sign(DOMAIN, key).signature
    return {
        "description": description,
        "privateKey": hex0x(key.secret),
        "signer": key.address,
        "message": {
            "channelId": hex0x(voucher.channel_id),
            "payees": list(voucher.payees),
            "amounts": [str(a) for a in voucher.amounts],
            "playHash": hex0x(voucher.play_hash),
        },
        "structHash": hex0x(voucher.struct_hash()),
        "digest": hex0x(voucher.digest(DOMAIN)),
        "signature": signature.to_hex(),
    }


def close_entry(description: str, cid: bytes, voucher_digest: bytes, key: PrivateKey) -> dict[str, Any]:
    digest = DOMAIN.digest(close_struct_hash(cid, voucher_digest))
    return {
        "description": description,
        "privateKey": hex0x(key.secret),
        "signer": key.address,
        "message": {"channelId": hex0x(cid), "voucherDigest": hex0x(voucher_digest)},
        "digest": hex0x(digest),
        "signature": key.sign(digest).to_hex(),
    }


def read_token_entry(
    description: str, key: PrivateKey, account: str, channel_id: bytes, not_after: int
) -> dict[str, Any]:
    token = sign_read_token(key, DOMAIN, RELAY.address, account=account, channel_id=channel_id, not_after=not_after)
    return {
        "description": description,
        "privateKey": hex0x(key.secret),
        "signer": key.address,
        "message": {
            "account": token.account,
            "channelId": hex0x(channel_id),
            "relay": RELAY.address,
            "notAfter": not_after,
        },
        "digest": hex0x(token.digest(DOMAIN, RELAY.address)),
        "signature": token.signature.to_hex(),
        "token": token.encode(),
    }


def caps_entry(
    description: str, key: PrivateKey, channel_id: bytes, daily_cap: int, session_cap: int, issued_at: int
) -> dict[str, Any]:
    """Caps(channelId, dailyCap, sessionCap, issuedAt) signed by the payer or its session key (relay only)."""
    struct_hash = caps_struct_hash(channel_id, daily_cap, session_cap, issued_at)
    digest = DOMAIN.digest(struct_hash)
    return {
        "description": description,
        "privateKey": hex0x(key.secret),
        "signer": key.address,
        "message": {
            "channelId": hex0x(channel_id),
            "dailyCap": str(daily_cap),
            "sessionCap": str(session_cap),
            "issuedAt": issued_at,
        },
        "structHash": hex0x(struct_hash),
        "digest": hex0x(digest),
        "signature": key.sign(digest).to_hex(),
    }


def profile_entry(description: str, key: PrivateKey, name: str, issued_at: int) -> dict[str, Any]:
    """ArtistProfile(artist, name, issuedAt) signed by the artist itself (relay and clients only)."""
    struct_hash = artist_profile_struct_hash(key.address, name, issued_at)
    digest = DOMAIN.digest(struct_hash)
    return {
        "description": description,
        "privateKey": hex0x(key.secret),
        "signer": key.address,
        "message": {"artist": key.address, "name": name, "issuedAt": issued_at},
        "structHash": hex0x(struct_hash),
        "digest": hex0x(digest),
        "signature": key.sign(digest).to_hex(),
    }


def receipt_entry(description: str, prev: bytes, receipt: PlayReceipt) -> dict[str, Any]:
    return {
        "description": description,
        "prev": hex0x(prev),
        "seq": receipt.seq,
        "target": hex0x(receipt.target),
        "kind": int(receipt.kind),
        "units": receipt.units,
        "amount": str(receipt.amount),
        "splitHash": hex0x(receipt.split_hash),
        "memo": receipt.memo,
        "memoHash": hex0x(receipt.memo_hash),
        "head": hex0x(receipt.chain(prev)),
    }


def split_entry(description: str, split: Split, amount: int) -> dict[str, Any]:
    return {
        "description": description,
        "recipients": list(split.recipients),
        "bps": list(split.bps),
        "feeRecipient": split.fee_recipient,
        "feeBps": split.fee_bps,
        "hash": hex0x(split.hash),
        "amount": str(amount),
        "shares": {payee: str(share) for payee, share in split.apply(amount).items()},
    }


class _Channel:
    """Builds one channel's vouchers and receipts the way a client does: price, split, chain, add."""

    def __init__(self, name: str, cid: bytes) -> None:
        self.name = name
        self.voucher = Voucher.empty(cid)
        self.seq = 0
        self.receipts: list[dict[str, Any]] = []

    def charge(
        self,
        what: str,
        kind: Kind,
        target: bytes,
        units: int,
        amount: int,
        split_hash: bytes,
        payments: dict[Address, int],
        memo: str = "",
    ) -> None:
        self.seq += 1
        receipt = PlayReceipt(
            seq=self.seq, target=target, kind=kind, units=units, amount=amount, split_hash=split_hash, memo=memo
        )
        self.receipts.append(
            receipt_entry(f"channel {self.name}, receipt {self.seq}: {what}", self.voucher.play_hash, receipt)
        )
        self.voucher = self.voucher.add(payments, receipt)


def build() -> dict[str, Any]:
    """The whole vector document (JSON-ready: amounts as decimal strings)."""
    return _build()[0]


def _build() -> tuple[dict[str, Any], dict[str, Voucher]]:
    """The vector document, and the vouchers the doc block's settlement examples use."""
    vouchers: list[dict[str, Any]] = []

    a = _Channel("A", CHANNEL_A)
    price = play_price(TERMS_1, 1)
    a.charge(
        f"PLAY of track 1 (flat {price}, solo split)", Kind.PLAY, TRACK_1, 1, price, SPLIT_1.hash, SPLIT_1.apply(price)
    )
    vouchers.append(
        voucher_entry(
            "channel A, first voucher: one play of track 1 at a flat 1000 with a solo split -> one payee",
            a.voucher,
            PAYER,
        )
    )

    b = _Channel("B", CHANNEL_B)
    price = play_price(TERMS_2, 1)
    b.charge(
        f"PLAY of track 2 ({price}; 70/30 split, 2.5% platform fee)",
        Kind.PLAY,
        TRACK_2,
        1,
        price,
        SPLIT_2.hash,
        SPLIT_2.apply(price),
    )
    price = seconds_price(TERMS_2, 30)
    b.charge(
        f"SECONDS: 30 s of track 2 at 7/s = {price}",
        Kind.SECONDS,
        TRACK_2,
        30,
        price,
        SPLIT_2.hash,
        SPLIT_2.apply(price),
    )
    b.charge(
        "TIP of 333333 to track 2's split, with a memo",
        Kind.TIP,
        TRACK_2,
        0,
        333_333,
        SPLIT_2.hash,
        SPLIT_2.apply(333_333),
        TIP_MEMO,
    )
    vouchers.append(
        voucher_entry(
            "channel B after 3 receipts (play 1001, 30 seconds 210, tip 333333 with memo), each split by Split.apply "
            "(2.5% platform fee off the top, 70/30 artist/collaborator): 3 payees in first-paid order "
            "[platform, collaborator, artist]",
            b.voucher,
            PAYER,
        )
    )
    settled_voucher = b.voucher
    price = download_price(TERMS_2)
    b.charge(f"DOWNLOAD of track 2 ({price})", Kind.DOWNLOAD, TRACK_2, 1, price, SPLIT_2.hash, SPLIT_2.apply(price))
    vouchers.append(
        voucher_entry(
            "channel B after receipt 4 (download of track 2 for 50000), signed by the channel's session key",
            b.voucher,
            SESSION,
        )
    )
    b.charge(
        "TIP of 777 straight to the label (target = its address left-padded, splitHash = 0)",
        Kind.TIP,
        address_word(LABEL),
        0,
        777,
        ZERO_HASH,
        {LABEL: 777},
    )
    vouchers.append(
        voucher_entry(
            "channel B after receipt 5 (direct tip of 777 to a new payee): the label is appended at the end",
            b.voucher,
            PAYER,
        )
    )
    final_voucher = b.voucher

    closes = [
        close_entry(
            "relay consents to a cooperative close of channel B at its last voucher (voucherDigest = that "
            "voucher's digest)",
            CHANNEL_B,
            final_voucher.digest(DOMAIN),
            RELAY,
        ),
        close_entry(
            "relay consents to a cooperative close of channel A at the already settled state (no final "
            "voucher: voucherDigest = 0)",
            CHANNEL_A,
            ZERO_HASH,
            RELAY,
        ),
    ]
    assert closes[0]["digest"] == hex0x(final_voucher.close_digest(DOMAIN))
    assert closes[1]["digest"] == hex0x(Voucher.empty(CHANNEL_A).close_digest(DOMAIN))

    splits = [
        split_entry("solo split: the artist gets everything", SPLIT_1, 1000),
        split_entry(
            "track 2's split (70/30, 2.5% fee): fee 25 off the top, collaborator floor(976*3000/10000) = "
            "292, artist the rest 684 (683 + 1 dust)",
            SPLIT_2,
            1001,
        ),
        split_entry(
            "three ways, no fee: recipients 1.. get floor(10*3333/10000) = 3, recipient 0 gets 4 (3 + 1 dust)",
            Split((ARTIST, COLLAB, PRODUCER), (3334, 3333, 3333)),
            10,
        ),
        split_entry(
            "four recipients and a 10% fee: fee 9, rest 88 -> 26, 17, 8 and 37 for recipient 0 (35 + 2 dust)",
            Split((ARTIST, COLLAB, PRODUCER, MIXER), (4000, 3000, 2000, 1000), PLATFORM, 1000),
            97,
        ),
        split_entry(
            "a tiny amount: fee floor(7*5000/10000) = 3, the 1-bps recipients' shares floor to 0 and are "
            "omitted, recipient 0 gets the remaining 4",
            Split((ARTIST, COLLAB, PRODUCER), (9998, 1, 1), PLATFORM, 5000),
            7,
        ),
        split_entry(
            "the maximum 50% fee on an odd amount: fee floor(3/2) = 1, rest 2 split 1/1",
            Split((ARTIST, COLLAB), (5000, 5000), PLATFORM, 5000),
            3,
        ),
    ]

    doc = {
        "domain": DOMAIN.as_dict(),
        "domainSeparator": hex0x(DOMAIN.separator),
        "vouchers": vouchers,
        "closes": closes,
        "receipts": a.receipts + b.receipts,
        "splits": splits,
        "caps": [
            caps_entry(
                "the payer sets a daily cap of 5000 and a session cap of 20000",
                PAYER,
                CHANNEL_A,
                5_000,
                20_000,
                1_700_000_000,
            ),
            caps_entry(
                "the session key tightens the daily cap to 4000 (no session cap)",
                SESSION,
                CHANNEL_A,
                4_000,
                0,
                1_700_000_001,
            ),
        ],
        "readTokens": [
            read_token_entry(
                "the payer reads all its channels at the relay (channelId zero)",
                PAYER,
                PAYER.address,
                ZERO_HASH,
                1_700_000_300,
            ),
            read_token_entry(
                "channel A's session key reads channel A only", SESSION, PAYER.address, CHANNEL_A, 1_700_000_300
            ),
        ],
        "profiles": [
            profile_entry("an artist names itself (ASCII)", ARTIST_KEY, "Ada Lovelace", 1_700_000_000),
            profile_entry(
                "the same artist renames itself later (non-ASCII, NFC: hashed as UTF-8 bytes)",
                ARTIST_KEY,
                "Zoë Ωmega 🎵",
                1_700_000_060,
            ),
        ],
    }
    return doc, {"settled": settled_voucher, "final": final_voucher}


# ------------------------------------------------------------------------------------------------- render


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def render_block() -> str:
    """The Markdown between the vectors markers of docs/PROTOCOL.md (generated; do not edit by hand)."""
    doc, extra = _build()
    out: list[str] = [
        "<!-- generated by scripts/make_vectors.py together with docs/protocol-vectors.json: do not edit by hand -->",
        "",
        "#### Keys and addresses",
        "",
        "These private keys are public test values. Never fund their addresses on a real chain.",
        "",
        "| role | private key | address |",
        "|---|---|---|",
    ]
    for role, key in SIGNERS:
        out.append(f"| {role} | `{hex0x(key.secret)}` | `{key.address}` |")
    out += ["", "| payee | address |", "|---|---|"]
    out += [f"| {role} | `{address}` |" for role, address in PAYEES]
    out += [
        "",
        "#### Domain and type hashes",
        "",
        "```json",
        dump_json(doc["domain"]),
        "```",
        "",
        "| value | hex |",
        "|---|---|",
        f'| `keccak256("{DOMAIN_TYPE}")` | `{hex0x(DOMAIN_TYPEHASH)}` |',
        f'| `keccak256("{VOUCHER_TYPE}")` | `{hex0x(VOUCHER_TYPEHASH)}` |',
        f'| `keccak256("{CLOSE_TYPE}")` | `{hex0x(CLOSE_TYPEHASH)}` |',
        f'| `keccak256("{RECEIPT_TYPE}")` | `{hex0x(RECEIPT_TYPEHASH)}` |',
        f'| `keccak256("{CAPS_TYPE}")` | `{hex0x(CAPS_TYPEHASH)}` |',
        f'| `keccak256("{READ_ACCESS_TYPE}")` | `{hex0x(READ_ACCESS_TYPEHASH)}` |',
        f'| `keccak256("{ARTIST_PROFILE_TYPE}")` | `{hex0x(ARTIST_PROFILE_TYPEHASH)}` |',
        f"| domain separator | `{doc['domainSeparator']}` |",
        f'| `keccak256("")` (hash of an empty array) | `{hex0x(keccak(b""))}` |',
        "",
        "#### Channel ids",
        "",
        f"`keccak256(abi.encode(uint256 {CHAIN_ID}, address {VERIFYING_CONTRACT}, address payer, address token, "
        "address relay, bytes32 salt))` with payer = the listener, token = `address(0)` (ETH), relay = the relay:",
        "",
        "| channel | salt | channelId |",
        "|---|---|---|",
    ]
    out += [f"| {name} | `{hex0x(salt)}` | `{hex0x(cid)}` |" for name, salt, cid in CHANNELS]
    out += [
        "",
        'Tracks: track 1 = `keccak256("ChainStream test vector track 1")` = '
        f"`{hex0x(TRACK_1)}`, terms: flat 1000 per play, split: solo artist (hash `{hex0x(SPLIT_1.hash)}`).",
        'Track 2 = `keccak256("ChainStream test vector track 2")` = '
        f"`{hex0x(TRACK_2)}`, terms: 1001 per play, 7 per second, 50000 to download; split: artist 7000 bps, "
        f"collaborator 3000 bps, platform fee 250 bps (hash `{hex0x(SPLIT_2.hash)}`).",
        "",
        "#### Play receipts",
        "",
        "Channel A's chain and channel B's chain, each starting at `prev = 0x00…00`; every voucher's `playHash` is "
        "the `head` of its channel's latest receipt.",
        "",
        "```json",
        dump_json(doc["receipts"]),
        "```",
        "",
        "#### Vouchers",
        "",
    ]
    for i, entry in enumerate(doc["vouchers"], 1):
        sig = Signature.from_hex(entry["signature"])
        out += [
            f"{i}. {entry['description']}.",
            "",
            "```json",
            dump_json(entry),
            "```",
            "",
            f"   EIP-2098 compact form for `SettleEntry`: `r = {hex0x(sig.r_bytes)}`, `vs = {hex0x(sig.vs_bytes)}`.",
            "",
        ]
    out += ["#### Close messages (signed by the relay)", ""]
    for i, entry in enumerate(doc["closes"], 1):
        sig = Signature.from_hex(entry["signature"])
        out += [
            f"{i}. {entry['description']}.",
            "",
            "```json",
            dump_json(entry),
            "```",
            "",
            f"   Compact form for `cooperativeClose(finalVoucher, r, vs)`: `r = {hex0x(sig.r_bytes)}`, "
            f"`vs = {hex0x(sig.vs_bytes)}`.",
            "",
        ]
    out += ["#### Splits", "", "```json", dump_json(doc["splits"]), "```", ""]
    out += [
        "#### Caps (relay only; amounts as decimal strings, 0 = no cap)",
        "",
        "```json",
        dump_json(doc["caps"]),
        "```",
        "",
        "#### Read tokens (relay only; `token` is the wire form)",
        "",
        "```json",
        dump_json(doc["readTokens"]),
        "```",
        "",
        "#### Artist profiles (relay and clients only; signed by the artist)",
        "",
        "```json",
        dump_json(doc["profiles"]),
        "```",
        "",
    ]

    settled = extra["settled"]
    final = extra["final"]
    capped = capped_credit(settled.amounts, (), CLOSE_DEPOSIT_CAP)
    after_capped = capped_credit(final.amounts, capped, 10**18)
    out += [
        "#### Settled-state commitments",
        "",
        "`settledRoot(payees, amounts) = bytes20(keccak256(abi.encode(keccak256(words(payees)), "
        "keccak256(words(amounts)))))`:",
        "",
        "| state | prevAmounts for the next settlement | settledRoot |",
        "|---|---|---|",
        f"| nothing settled (`EMPTY_ROOT`) | `[]` | `{hex0x(EMPTY_ROOT)}` |",
        f"| channel B after settling voucher 2 in full | `{list(settled.amounts)}` | "
        f"`{hex0x(settled_root(settled.payees, settled.amounts))}` |",
        f"| channel B after settling voucher 2 with a deposit of only {CLOSE_DEPOSIT_CAP} (capped: paid in payee "
        f"order; `SettlementCapped.credited`) | `{list(capped)}` | `{hex0x(settled_root(settled.payees, capped))}` |",
        f"| then, after a top-up, voucher 4 settled with `prevAmounts = {list(capped)}` | `{list(after_capped)}` | "
        f"`{hex0x(settled_root(final.payees, after_capped))}` |",
        "",
        "#### Skip reasons of `settleBatch`",
        "",
        "Checked in this order; the first failing check is the entry's `SettlementSkipped.reason`:",
        "",
        "| error | selector |",
        "|---|---|",
        *[f"| `{sig}` | `{hex0x(selector(sig))}` |" for sig in SKIP_REASONS],
        "",
        "#### Pricing",
        "",
        "Stream-to-own with `perPlay = 1000, ownAfter = 3`: plays 1..5 cost "
        f"`{[play_price(STREAM_TO_OWN, n) for n in range(1, 6)]}` (owned after paying "
        f"{owned_after(STREAM_TO_OWN)} in total).",
    ]
    return "\n".join(out)


def replace_block(text: str, block: str) -> str:
    start = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC_PATH} has no {BEGIN_MARKER} ... {END_MARKER} block")
    return text[: start + len(BEGIN_MARKER)] + "\n" + block + "\n" + text[end:]


def extract_block(text: str) -> str:
    """The current content between the markers (without the newlines next to them)."""
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    return text[start:end].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that both files are up to date")
    args = parser.parse_args(argv)

    vectors_text = dump_json(build()) + "\n"
    doc_text = replace_block(DOC_PATH.read_text(encoding="utf-8"), render_block())
    outputs = ((VECTORS_PATH, vectors_text), (DOC_PATH, doc_text))
    if args.check:
        stale = [
            str(p.relative_to(ROOT)) for p, text in outputs if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)} (run scripts/make_vectors.py)", file=sys.stderr)
            return 1
        print("protocol vectors up to date")
        return 0
    for path, text in outputs:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
