"""secp256k1 signing and recovery with coincurve (libsecp256k1), ~35-90x faster than pure-Python eth-keys.

Signatures are 65 bytes ``r || s || v`` with v in {27, 28}. Only low-s signatures are produced and accepted
(EIP-2): the high-s twin of a valid signature is rejected here exactly as the contract rejects it, so a
signature can never serve as an identifier — deduplicate by digest or by (channel, cumulative total).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import coincurve

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.hashing import keccak
from chainstream.protocol.types import Address, to_address

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = SECP256K1_N // 2


@dataclass(frozen=True)
class Signature:
    v: int
    r: int
    s: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> Signature:
        if len(raw) != 65:
            raise ProtocolError(f"signature must be 65 bytes, got {len(raw)}", code=Code.BAD_SIGNATURE)
        return cls(v=raw[64], r=int.from_bytes(raw[:32], "big"), s=int.from_bytes(raw[32:64], "big"))

    @classmethod
    def from_hex(cls, text: str) -> Signature:
        try:
            return cls.from_bytes(bytes.fromhex(text[2:] if text.startswith("0x") else text))
        except ValueError as exc:
            raise ProtocolError("signature is not hex", code=Code.BAD_SIGNATURE) from exc

    def to_bytes(self) -> bytes:
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.v])

    def to_hex(self) -> str:
        return "0x" + self.to_bytes().hex()

    @property
    def r_bytes(self) -> bytes:
        return self.r.to_bytes(32, "big")

    @property
    def s_bytes(self) -> bytes:
        return self.s.to_bytes(32, "big")

    @property
    def vs_bytes(self) -> bytes:
        """EIP-2098 compact (v, s): s with v - 27 in the top bit, as the contracts take it."""
        return (self.s | ((self.v - 27) << 255)).to_bytes(32, "big")


class PrivateKey:
    """A signing key. Keeps the coincurve key object so repeated signing does not re-parse it."""

    def __init__(self, secret: bytes | str) -> None:
        if isinstance(secret, str):
            secret = bytes.fromhex(secret[2:] if secret.startswith("0x") else secret)
        if len(secret) != 32:
            raise ProtocolError("private key must be 32 bytes", code=Code.BAD_KEY)
        self._key = coincurve.PrivateKey(secret)
        self.address: Address = public_key_to_address(self._key.public_key.format(compressed=False))

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(coincurve.PrivateKey().secret)

    @property
    def secret(self) -> bytes:
        return bytes(self._key.secret)

    def sign(self, digest: bytes) -> Signature:
        """Sign a 32-byte digest (no further hashing). libsecp256k1 always returns low-s."""
        raw = self._key.sign_recoverable(digest, hasher=None)
        return Signature(v=raw[64] + 27, r=int.from_bytes(raw[:32], "big"), s=int.from_bytes(raw[32:64], "big"))

    def __repr__(self) -> str:  # never print the secret
        return f"PrivateKey({self.address})"


@lru_cache(maxsize=1 << 16)
def public_key_to_address(uncompressed: bytes) -> Address:
    """The address of a 65-byte uncompressed public key. Cached: a channel's vouchers all recover to the same
    session key, so the relay would otherwise hash and checksum the same key for every voucher."""
    return to_address(keccak(uncompressed[1:])[12:])


def recover(digest: bytes, signature: Signature) -> Address:
    """The signer of `digest`; ProtocolError for malformed or high-s signatures."""
    if signature.v not in (27, 28):
        raise ProtocolError(f"signature v must be 27 or 28, got {signature.v}", code=Code.BAD_SIGNATURE)
    if not 0 < signature.r < SECP256K1_N or not 0 < signature.s <= HALF_N:
        raise ProtocolError("signature r/s out of range (high-s signatures are rejected)", code=Code.BAD_SIGNATURE)
    raw = signature.r_bytes + signature.s_bytes + bytes([signature.v - 27])
    try:
        public = coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception for unrecoverable signatures
        raise ProtocolError("signature does not recover to a public key", code=Code.BAD_SIGNATURE) from exc
    return public_key_to_address(public.format(compressed=False))


def high_s_twin(signature: Signature) -> Signature:
    """The malleable twin (s -> n - s, v flipped): same signer, different bytes. For tests and docs."""
    return Signature(v=55 - signature.v, r=signature.r, s=SECP256K1_N - signature.s)
