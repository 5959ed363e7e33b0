"""The EIP-712 domain and message types of ChainStream, and their digests.

Three signed types exist, with different type hashes so that one can never be replayed as another:

- ``Voucher(bytes32 channelId,address[] payees,uint256[] amounts,bytes32 playHash)``: signed by the listener
  (or its session key) — everything the channel owes each payee so far.
- ``Close(bytes32 channelId,bytes32 voucherDigest)``: signed by the relay — consent to close the channel
  cooperatively at the voucher with that digest.
- ``Caps(bytes32 channelId,uint256 dailyCap,uint256 sessionCap,uint256 issuedAt)``: signed by the listener or
  its session key — spending limits the relay enforces (never seen by the contract).
- ``ReadAccess(address account,bytes32 channelId,address relay,uint256 notAfter)``: signed by a listener (or its
  session key) or an artist — a short-lived read token for the relay's private reads (never seen by the contract).
- ``ArtistProfile(address artist,string name,uint64 issuedAt)``: signed by the artist — the name clients show for
  that address (never seen by the contract; see protocol/profile.py).

The domain is ``{name: "ChainStream", version: "1", chainId, verifyingContract}``, so a signature is bound to
one chain and one deployment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainstream.protocol.hashing import address_word, hash_addresses, hash_uints, keccak, type_hash, word
from chainstream.protocol.types import Address, to_address

DOMAIN_NAME = "ChainStream"
DOMAIN_VERSION = "1"

VOUCHER_TYPE = "Voucher(bytes32 channelId,address[] payees,uint256[] amounts,bytes32 playHash)"
CLOSE_TYPE = "Close(bytes32 channelId,bytes32 voucherDigest)"
CAPS_TYPE = "Caps(bytes32 channelId,uint256 dailyCap,uint256 sessionCap,uint256 issuedAt)"
READ_ACCESS_TYPE = "ReadAccess(address account,bytes32 channelId,address relay,uint256 notAfter)"
RELAY_IDENTITY_TYPE = "RelayIdentity(bytes32 challenge)"
ARTIST_PROFILE_TYPE = "ArtistProfile(address artist,string name,uint64 issuedAt)"
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

VOUCHER_TYPEHASH = type_hash(VOUCHER_TYPE)
CLOSE_TYPEHASH = type_hash(CLOSE_TYPE)
CAPS_TYPEHASH = type_hash(CAPS_TYPE)
READ_ACCESS_TYPEHASH = type_hash(READ_ACCESS_TYPE)
RELAY_IDENTITY_TYPEHASH = type_hash(RELAY_IDENTITY_TYPE)
ARTIST_PROFILE_TYPEHASH = type_hash(ARTIST_PROFILE_TYPE)
DOMAIN_TYPEHASH = type_hash(DOMAIN_TYPE)

#: EIP-712 type definitions, as wallets (eth_signTypedData_v4) and eth-account expect them.
EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Voucher": [
        {"name": "channelId", "type": "bytes32"},
        {"name": "payees", "type": "address[]"},
        {"name": "amounts", "type": "uint256[]"},
        {"name": "playHash", "type": "bytes32"},
    ],
    "Close": [
        {"name": "channelId", "type": "bytes32"},
        {"name": "voucherDigest", "type": "bytes32"},
    ],
    "Caps": [
        {"name": "channelId", "type": "bytes32"},
        {"name": "dailyCap", "type": "uint256"},
        {"name": "sessionCap", "type": "uint256"},
        {"name": "issuedAt", "type": "uint256"},
    ],
    "ReadAccess": [
        {"name": "account", "type": "address"},
        {"name": "channelId", "type": "bytes32"},
        {"name": "relay", "type": "address"},
        {"name": "notAfter", "type": "uint256"},
    ],
    "ArtistProfile": [
        {"name": "artist", "type": "address"},
        {"name": "name", "type": "string"},
        {"name": "issuedAt", "type": "uint64"},
    ],
}


@dataclass(frozen=True)
class Domain:
    """The signing domain of one ChainStreamChannels deployment; its separator is computed once."""

    chain_id: int
    verifying_contract: Address
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifying_contract", to_address(self.verifying_contract))
        separator = keccak(
            DOMAIN_TYPEHASH
            + keccak(self.name.encode())
            + keccak(self.version.encode())
            + word(self.chain_id)
            + address_word(self.verifying_contract)
        )
        object.__setattr__(self, "separator", separator)

    def digest(self, struct_hash: bytes) -> bytes:
        """The EIP-712 digest: keccak256("\\x19\\x01" || domainSeparator || hashStruct(message))."""
        return keccak(b"\x19\x01" + self.separator + struct_hash)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


def voucher_struct_hash(
    channel_id: bytes, payees: tuple[str, ...], amounts: tuple[int, ...], play_hash: bytes
) -> bytes:
    """hashStruct(Voucher)."""
    return keccak(VOUCHER_TYPEHASH + channel_id + hash_addresses(payees) + hash_uints(amounts) + play_hash)


def close_struct_hash(channel_id: bytes, voucher_digest: bytes) -> bytes:
    """hashStruct(Close)."""
    return keccak(CLOSE_TYPEHASH + channel_id + voucher_digest)


def caps_struct_hash(channel_id: bytes, daily_cap: int, session_cap: int, issued_at: int) -> bytes:
    """hashStruct(Caps): the listener's spending caps (0 = none), enforced by the relay, not on-chain."""
    return keccak(CAPS_TYPEHASH + channel_id + word(daily_cap) + word(session_cap) + word(issued_at))


def read_access_struct_hash(account: str, channel_id: bytes, relay: str, not_after: int) -> bytes:
    """hashStruct(ReadAccess): `account` lets `relay` show it its data (one channel, or all with a zero channelId)
    until `notAfter` (unix seconds); checked by that relay only, never by the contract."""
    return keccak(READ_ACCESS_TYPEHASH + address_word(account) + channel_id + address_word(relay) + word(not_after))


def artist_profile_struct_hash(artist: str, name: str, issued_at: int) -> bytes:
    """hashStruct(ArtistProfile): the string is hashed as keccak256 of its UTF-8 bytes (EIP-712 dynamic type)."""
    return keccak(ARTIST_PROFILE_TYPEHASH + address_word(artist) + keccak(name.encode("utf-8")) + word(issued_at))


def relay_identity_struct_hash(challenge: bytes) -> bytes:
    """hashStruct(RelayIdentity): a relay proves which key it holds by signing a client's random challenge, so a
    client never signs a read token for a relay address another server only claims (GET /info?challenge=)."""
    return keccak(RELAY_IDENTITY_TYPEHASH + challenge)


def typed_data(domain: Domain, primary_type: str, message: dict[str, Any]) -> dict[str, Any]:
    """A full EIP-712 typed-data document (for wallets and eth-account's encode_typed_data)."""
    types = {"EIP712Domain": EIP712_TYPES["EIP712Domain"], primary_type: EIP712_TYPES[primary_type]}
    return {"types": types, "primaryType": primary_type, "domain": domain.as_dict(), "message": message}
