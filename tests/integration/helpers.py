"""Small helpers shared by the contract integration tests (channels, registry, claims and tokens)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import coincurve
import pytest
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector
from web3.logs import DISCARD
from web3.types import TxReceipt

from chainstream.chain.artifacts import error_abis, load_artifact
from chainstream.chain.contracts import TokenClient, settle_entry
from chainstream.chain.deploy import deploy_contract
from chainstream.chain.transactions import chain_error_from
from chainstream.errors import ChainError
from chainstream.protocol import Domain, PrivateKey, Signature, SignedVoucher, Voucher
from chainstream.protocol.eip712 import close_struct_hash
from chainstream.protocol.hashing import keccak
from chainstream.protocol.signing import HALF_N, SECP256K1_N
from chainstream.protocol.types import ZERO_ADDRESS, ZERO_HASH, Address, to_address
from tests.integration.conftest import Chain

ETH = ZERO_ADDRESS
FINNEY = 10**15


def salt(label: str | int) -> bytes:
    """A deterministic 32-byte salt."""
    return hashlib.sha256(f"salt-{label}".encode()).digest()


def play_hash(label: str | int) -> bytes:
    return hashlib.sha256(f"plays-{label}".encode()).digest()


def new_address(label: str | int) -> Address:
    """A fresh payee address nobody else uses (no key needed: payees are only credited and read)."""
    return to_address(keccak(f"payee-{label}".encode())[12:])


def gas_cost(receipt: TxReceipt) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def selector(name: str) -> bytes:
    """The 4-byte selector of one of the contracts' custom errors."""
    for sel, abi in error_abis().items():
        if abi["name"] == name:
            assert sel == function_abi_to_4byte_selector(abi)
            return sel
    raise KeyError(name)


@contextmanager
def reverts(reason: str, **expected_args: Any) -> Iterator[pytest.ExceptionInfo[ChainError]]:
    """Expect a transaction (sent through TxSender) to revert with this custom error and these arguments."""
    with pytest.raises(ChainError) as info:
        yield info
    assert info.value.reason == reason, str(info.value)
    for key, value in expected_args.items():
        got = info.value.error_args[key]
        if isinstance(value, str) and isinstance(got, str):
            assert got.lower() == value.lower(), (key, got, value)
        else:
            assert got == value, (key, got, value)


def call_reverts(fn: Any, reason: str, **call_args: Any) -> ChainError:
    """Expect an eth_call to revert with this custom error; returns the decoded error."""
    try:
        fn.call(call_args or None)
    except Exception as exc:  # noqa: BLE001 - eth-tester and web3 raise different types
        err = chain_error_from(exc, "call")
        assert err.reason == reason, str(err)
        return err
    raise AssertionError(f"call did not revert (expected {reason})")


def events(contract: Any, name: str, receipt: TxReceipt) -> list[Any]:
    """Decoded logs of one event of `contract` in a receipt."""
    return list(getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD))


# ---------------------------------------------------------------- channels


def open_channel(
    chain: Chain,
    amount: int,
    *,
    label: str | int = 1,
    payer: str = "listener",
    relay: str = "relay",
    token: str = ETH,
    session_key: str = ZERO_ADDRESS,
    session_expiry: int = 0,
) -> bytes:
    cid, _ = chain.channels.open(
        chain.tx(payer),
        relay=chain.address(relay),
        amount=amount,
        salt=salt(label),
        token=token,
        session_key=session_key,
        session_expiry=session_expiry,
    )
    return cid


def voucher(cid: bytes, payments: Mapping[str, int] | list[tuple[str, int]], ph: bytes | None = None) -> Voucher:
    """A voucher paying cumulative `payments` (payee -> amount, in payee order)."""
    items = list(payments.items()) if isinstance(payments, Mapping) else list(payments)
    return Voucher(
        cid,
        tuple(to_address(p) for p, _ in items),
        tuple(a for _, a in items),
        ph if ph is not None else play_hash(sum(a for _, a in items)),
    )


def sign(
    chain: Chain, v: Voucher, signer: str | PrivateKey = "listener", domain: Domain | None = None
) -> SignedVoucher:
    key = signer if isinstance(signer, PrivateKey) else chain.key(signer)
    return v.sign(domain or chain.channels.domain, key)


def entry(signed: SignedVoucher, prev: tuple[int, ...] | list[int] = ()) -> tuple[Any, ...]:
    return settle_entry(signed, prev)


def raw_entry(
    cid: bytes, payees: list[str], amounts: list[int], prev: list[int], r: bytes, vs: bytes, ph: bytes = ZERO_HASH
) -> tuple[Any, ...]:
    return (cid, list(payees), list(amounts), ph, list(prev), r, vs)


def settle(
    chain: Chain, signed: SignedVoucher, prev: tuple[int, ...] | list[int] = (), *, by: str = "relay"
) -> TxReceipt:
    return chain.channels.settle(chain.tx(by), signed, prev)


def settle_raw(chain: Chain, settle_entry_: tuple[Any, ...], *, by: str = "relay") -> TxReceipt:
    return chain.tx(by).transact(chain.channels.contract.functions.settle(settle_entry_), action="settle")


def settle_call(chain: Chain, settle_entry_: tuple[Any, ...], *, by: str = "relay") -> int:
    """What settle would credit (eth_call), without sending it."""
    return int(chain.channels.contract.functions.settle(settle_entry_).call({"from": chain.address(by)}))


def batch(chain: Chain, entries: list[tuple[Any, ...]], *, by: str = "relay") -> TxReceipt:
    return chain.channels.settle_batch(chain.tx(by), entries)


def raw_channel(chain: Chain, cid: bytes) -> tuple[Any, ...]:
    """getChannel as the contract returns it (to compare whole states before and after)."""
    return tuple(chain.channels.contract.functions.getChannel(cid).call())


def close_signature(
    chain: Chain, cid: bytes, final: Voucher | None, signer: str = "relay", domain: Domain | None = None
) -> Signature:
    """The relay's Close(channelId, voucherDigest) signature (voucherDigest zero without a final voucher)."""
    domain = domain or chain.channels.domain
    voucher_digest = final.digest(domain) if final is not None and final.payees else ZERO_HASH
    return chain.key(signer).sign(domain.digest(close_struct_hash(cid, voucher_digest)))


def cooperative_close(
    chain: Chain,
    cid: bytes,
    final: SignedVoucher | None,
    prev: tuple[int, ...] | list[int] = (),
    sig: Signature | None = None,
    *,
    by: str = "listener",
) -> TxReceipt:
    sig = sig or close_signature(chain, cid, final.voucher if final else None)
    return chain.channels.cooperative_close(chain.tx(by), final, prev, sig, channel_id=cid)


def expected_channel_id(chain: Chain, payer: str, token: str, relay: str, salt_: bytes) -> bytes:
    encoded = abi_encode(
        ["uint256", "address", "address", "address", "address", "bytes32"],
        [chain.w3.eth.chain_id, chain.channels.address, payer, token, relay, salt_],
    )
    return keccak(encoded)


# ------------------------------------------------------------------ tokens


def deploy_token(
    chain: Chain, name: str, *, allow: bool = True, mint_to: tuple[str, ...] = ("listener",), amount: int = 10**24
) -> TokenClient:
    """Deploy a mock token, mint to some actors and (by default) allow it on the channels contract."""
    address = deploy_contract(chain.tx("deployer"), name)
    token = TokenClient(chain.w3, address)
    token.contract = chain.w3.eth.contract(address=address, abi=load_artifact(name).abi)
    for actor in mint_to:
        chain.tx("deployer").transact(token.contract.functions.mint(chain.address(actor), amount), action="mint")
    if allow:
        chain.channels.allow_token(chain.tx("deployer"), address)
    return token


def token_balance(chain: Chain, token: str, owner: str) -> int:
    return int(TokenClient(chain.w3, token).contract.functions.balanceOf(owner).call())


# -------------------------------------------------------------- signatures


def crafted_high_s_key(digest: bytes, nonce_seed: int = 7) -> tuple[PrivateKey, Signature]:
    """A key whose signature of `digest` has a high s that still fits in EIP-2098's 255 bits.

    A random signature's high-s twin n - s is almost always >= 2^255, so it cannot be written as (r, vs) at all.
    Solving s = k^-1 (z + r d) for the key d instead gives a signature (r, s_high) with HALF_N < s_high < 2^255:
    valid for d, submittable as vs = s_high | (v - 27) << 255, and only rejected by the low-s rule.
    Returns the key and the high-s signature; its low-s twin is the normal signature of the key.
    """
    n = SECP256K1_N
    z = int.from_bytes(digest, "big")
    k = nonce_seed
    while True:
        point = coincurve.PrivateKey(k.to_bytes(32, "big")).public_key.format(compressed=True)
        x = int.from_bytes(point[1:], "big")
        if x < n:
            break
        k += 1
    r = x % n
    s_high = HALF_N + 1 + 0x1234567
    assert HALF_N < s_high < 2**255
    d = (s_high * k - z) * pow(r, -1, n) % n
    assert d != 0
    parity = point[0] - 2  # 0x02: even y, 0x03: odd y
    return PrivateKey(d.to_bytes(32, "big")), Signature(v=27 + parity, r=r, s=s_high)
