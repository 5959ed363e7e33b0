"""The deployed contracts compute the same hashes as the Python protocol code (and as docs/PROTOCOL.md says)."""

from __future__ import annotations

import random

import pytest

from chainstream.pricing import MAX_RECIPIENTS, TOTAL_BPS, Split
from chainstream.protocol import Kind, PlayReceipt, Voucher
from chainstream.protocol.hashing import address_word, hash_addresses, hash_uints, keccak, word
from chainstream.protocol.types import MAX_AMOUNT, ZERO_ADDRESS, ZERO_HASH, to_address
from tests.integration.conftest import Chain


def settled_root(payees: tuple[str, ...], amounts: tuple[int, ...]) -> bytes:
    """PROTOCOL.md 8.1: bytes20(keccak256(abi.encode(keccak256(words(payees)), keccak256(words(amounts)))))."""
    return keccak(hash_addresses(payees) + hash_uints(amounts))[:20]


def random_address(rng: random.Random) -> str:
    return to_address(rng.randbytes(20))


def random_voucher(rng: random.Random, n: int) -> Voucher:
    payees = tuple(dict.fromkeys(random_address(rng) for _ in range(n)))
    amounts = tuple(rng.choice([0, 1, rng.randrange(MAX_AMOUNT), MAX_AMOUNT]) for _ in payees)
    return Voucher(rng.randbytes(32), payees, amounts, rng.randbytes(32))  # type: ignore[arg-type]


def random_split(rng: random.Random) -> Split:
    n = rng.randint(1, MAX_RECIPIENTS)
    cuts = sorted(rng.sample(range(1, TOTAL_BPS), n - 1))
    bps = tuple(b - a for a, b in zip([0, *cuts], [*cuts, TOTAL_BPS], strict=True))
    fee_bps = rng.choice([0, 1, 250, 5000])
    fee_recipient = random_address(rng) if fee_bps else ZERO_ADDRESS
    return Split(tuple(random_address(rng) for _ in range(n)), bps, fee_recipient, fee_bps)


def test_domain_separator(chain: Chain) -> None:
    channels = chain.channels
    assert bytes(channels.contract.functions.domainSeparator().call()) == channels.domain.separator
    assert channels.domain.chain_id == chain.w3.eth.chain_id


def test_empty_root(chain: Chain) -> None:
    empty_root = bytes(chain.channels.contract.functions.EMPTY_ROOT().call())
    assert empty_root == settled_root((), ()) == keccak(keccak(b"") + keccak(b""))[:20]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 8, 16])
def test_voucher_and_close_digests(chain: Chain, n: int) -> None:
    rng = random.Random(f"digests-{n}")
    functions = chain.channels.contract.functions
    domain = chain.channels.domain
    for _ in range(3):
        voucher = random_voucher(rng, n)
        digest = bytes(
            functions.voucherDigest(
                voucher.channel_id, list(voucher.payees), list(voucher.amounts), voucher.play_hash
            ).call()
        )
        assert digest == voucher.digest(domain)
        voucher_digest = digest if voucher.payees else ZERO_HASH
        close = bytes(functions.closeDigest(voucher.channel_id, voucher_digest).call())
        assert close == voucher.close_digest(domain)
        assert bytes(functions.closeDigest(voucher.channel_id, ZERO_HASH).call()) == Voucher.empty(
            voucher.channel_id
        ).close_digest(domain)


def test_channel_id_derivation(chain: Chain) -> None:
    rng = random.Random("channel-ids")
    for token in (ZERO_ADDRESS, chain.token.address):
        payer, relay, salt = random_address(rng), random_address(rng), rng.randbytes(32)
        expected = keccak(
            word(chain.w3.eth.chain_id)
            + address_word(chain.channels.address)
            + address_word(payer)
            + address_word(token)
            + address_word(relay)
            + salt
        )
        assert chain.channels.channel_id_for(payer, token, relay, salt) == expected


def test_hash_split(chain: Chain) -> None:
    rng = random.Random("splits")
    hash_split = chain.registry.contract.functions.hashSplit
    for split in [Split.solo(chain.address("artist")), *(random_split(rng) for _ in range(8))]:
        assert bytes(hash_split(split.as_tuple()).call()) == split.hash


def _voucher(chain: Chain, cid: bytes, amounts: dict[str, int]) -> Voucher:
    receipt = PlayReceipt(
        seq=1, target=b"\x01" * 32, kind=Kind.TIP, units=0, amount=sum(amounts.values()), split_hash=ZERO_HASH
    )
    return Voucher.empty(cid).add({to_address(chain.address(a)): v for a, v in amounts.items()}, receipt)


def test_settled_root_after_settlement(chain: Chain) -> None:
    cid, _ = chain.channels.open(chain.tx("listener"), relay=chain.address("relay"), amount=10**18, salt=b"\x31" * 32)
    assert chain.channels.get_channel(cid).settled_root == settled_root((), ())
    voucher = _voucher(chain, cid, {"platform": 25, "collab": 292, "artist": 684})
    chain.channels.settle(chain.tx("relay"), voucher.sign(chain.channels.domain, chain.key("listener")))
    state = chain.channels.get_channel(cid)
    assert state.settled == 1001
    assert state.settled_root == settled_root(voucher.payees, voucher.amounts)


def test_settled_root_after_a_capped_settlement(chain: Chain) -> None:
    cid, _ = chain.channels.open(chain.tx("listener"), relay=chain.address("relay"), amount=1000, salt=b"\x32" * 32)
    voucher = _voucher(chain, cid, {"platform": 300, "collab": 900, "artist": 400})
    chain.channels.settle(chain.tx("relay"), voucher.sign(chain.channels.domain, chain.key("listener")))
    state = chain.channels.get_channel(cid)
    credited = (300, 700, 0)  # paid in payee order until the deposit ran out
    assert state.settled == 1000
    assert state.settled_root == settled_root(voucher.payees, credited)
    assert chain.channels.prev_amounts(cid) == credited
