"""The EIP-712 authorisations of gas-free onboarding and scheduled payouts (contracts/ChainStreamGasless.sol).

A listener holding only an ERC-20 signs an ``OpenChannel`` (then ``TopUpChannel`` and ``CloseChannel``); a payee
signs a ``PayoutSchedule``. Anyone (normally the relay) submits them to the ChainStreamGasless contract and pays
the gas, keeping a fee in the token of at most the signed ``maxFee``. The domain is
``{name: "ChainStreamGasless", version: "1", chainId, verifyingContract: <the gasless contract>}`` — distinct from
the channels' domain, so no gas-free authorisation can ever verify as a voucher or a close, nor the reverse.

Pure: no chain, no I/O. docs/PROTOCOL.md §"Gas-free onboarding" has test vectors (tests/unit/test_gasless.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol.eip712 import EIP712_TYPES, Domain
from chainstream.protocol.hashing import address_word, keccak, type_hash, word
from chainstream.protocol.signing import PrivateKey, Signature
from chainstream.protocol.types import Address, to_address

GASLESS_DOMAIN_NAME = "ChainStreamGasless"
GASLESS_DOMAIN_VERSION = "1"

OPEN_CHANNEL_TYPE = (
    "OpenChannel(address payer,address token,address relay,address sessionKey,uint32 sessionExpiry,bytes32 salt,"
    "uint96 amount,uint96 maxFee,address submitter,uint256 nonce,uint256 deadline)"
)
TOPUP_CHANNEL_TYPE = (
    "TopUpChannel(address payer,bytes32 channelId,uint96 amount,uint96 maxFee,address submitter,uint256 nonce,"
    "uint256 deadline)"
)
CLOSE_CHANNEL_TYPE = (
    "CloseChannel(address payer,bytes32 channelId,bytes32 voucherDigest,uint96 maxFee,address submitter,"
    "uint256 nonce,uint256 deadline)"
)
PAYOUT_SCHEDULE_TYPE = (
    "PayoutSchedule(address payee,address token,bool enabled,address recipient,uint96 threshold,uint32 period,"
    "uint64 maxFee,uint256 nonce,uint256 deadline)"
)

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
UINT96_MAX = 2**96 - 1
UINT256_MAX = 2**256 - 1


def gasless_domain(chain_id: int, gasless_contract: str) -> Domain:
    """The signing domain of one ChainStreamGasless deployment (see ChainStreamChannels.gasless())."""
    return Domain(
        chain_id=chain_id,
        verifying_contract=to_address(gasless_contract),
        name=GASLESS_DOMAIN_NAME,
        version=GASLESS_DOMAIN_VERSION,
    )


def _fields(type_string: str) -> list[dict[str, str]]:
    inner = type_string[type_string.index("(") + 1 : -1]
    return [{"type": f.split(" ")[0], "name": f.split(" ")[1]} for f in inner.split(",")]


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ProtocolError(f"{name} must be an integer in [0, {maximum}]", code=Code.BAD_AUTHORIZATION)


def _check_bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ProtocolError(f"{name} must be 32 bytes", code=Code.BAD_AUTHORIZATION)


class _Auth:
    """Shared encoding: the field order of the type string is the dataclass field order."""

    #: set by @dataclass on each subclass (declared so that `asdict(self)` type-checks here)
    __dataclass_fields__: ClassVar[dict[str, Any]]
    TYPE: str
    PRIMARY: str
    _RANGES: dict[str, int]
    _BYTES32: tuple[str, ...] = ()
    _ADDRESSES: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self._ADDRESSES:
            object.__setattr__(self, name, to_address(getattr(self, name)))
        for name, maximum in self._RANGES.items():
            _check_range(name, getattr(self, name), maximum)
        for name in self._BYTES32:
            _check_bytes32(name, getattr(self, name))

    def values(self) -> tuple[Any, ...]:
        """The fields in type order, as web3 takes the struct."""
        return tuple(asdict(self).values())

    def struct_hash(self) -> bytes:
        encoded = b""
        for f, value in zip(_fields(self.TYPE), self.values(), strict=True):
            if f["type"] == "address":
                encoded += address_word(value)
            elif f["type"] == "bytes32":
                encoded += value
            elif f["type"] == "bool":
                encoded += word(int(value))
            else:
                encoded += word(value)
        return keccak(type_hash(self.TYPE) + encoded)

    def digest(self, domain: Domain) -> bytes:
        return domain.digest(self.struct_hash())

    def sign(self, key: PrivateKey, domain: Domain) -> Signature:
        return key.sign(self.digest(domain))

    def message(self) -> dict[str, Any]:
        """The typed-data message under the type's own (camelCase) field names, bytes as 0x hex."""
        names = [f["name"] for f in _fields(self.TYPE)]
        return {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in zip(names, self.values(), strict=True)}

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """A full EIP-712 document (eth_signTypedData_v4)."""
        return {
            "types": {
                "EIP712Domain": EIP712_TYPES["EIP712Domain"],
                self.PRIMARY: _fields(self.TYPE),
            },
            "primaryType": self.PRIMARY,
            "domain": domain.as_dict(),
            "message": self.message(),
        }


@dataclass(frozen=True)
class OpenAuth(_Auth):
    """A listener's authorisation to open a channel with these exact terms; the deposit is amount - fee."""

    payer: Address
    token: Address
    relay: Address
    session_key: Address
    session_expiry: int
    salt: bytes
    amount: int
    max_fee: int
    submitter: Address
    nonce: int
    deadline: int

    TYPE = OPEN_CHANNEL_TYPE
    PRIMARY = "OpenChannel"
    _ADDRESSES = ("payer", "token", "relay", "session_key", "submitter")
    _RANGES = {
        "session_expiry": UINT32_MAX,
        "amount": UINT96_MAX,
        "max_fee": UINT96_MAX,
        "nonce": UINT256_MAX,
        "deadline": UINT256_MAX,
    }
    _BYTES32 = ("salt",)


@dataclass(frozen=True)
class TopUpAuth(_Auth):
    """A payer's authorisation to add amount - fee to a channel's deposit."""

    payer: Address
    channel_id: bytes
    amount: int
    max_fee: int
    submitter: Address
    nonce: int
    deadline: int

    TYPE = TOPUP_CHANNEL_TYPE
    PRIMARY = "TopUpChannel"
    _ADDRESSES = ("payer", "submitter")
    _RANGES = {"amount": UINT96_MAX, "max_fee": UINT96_MAX, "nonce": UINT256_MAX, "deadline": UINT256_MAX}
    _BYTES32 = ("channel_id",)


@dataclass(frozen=True)
class CloseAuth(_Auth):
    """A payer's authorisation to close its channel cooperatively at the final voucher with `voucher_digest`
    (ZERO_HASH: at the settled state); the fee comes out of the refund."""

    payer: Address
    channel_id: bytes
    voucher_digest: bytes
    max_fee: int
    submitter: Address
    nonce: int
    deadline: int

    TYPE = CLOSE_CHANNEL_TYPE
    PRIMARY = "CloseChannel"
    _ADDRESSES = ("payer", "submitter")
    _RANGES = {"max_fee": UINT96_MAX, "nonce": UINT256_MAX, "deadline": UINT256_MAX}
    _BYTES32 = ("channel_id", "voucher_digest")


@dataclass(frozen=True)
class ScheduleAuth(_Auth):
    """A payee's payout schedule for one token (enabled False cancels). `nonce` is the payee's scheduleNonce."""

    payee: Address
    token: Address
    enabled: bool
    recipient: Address
    threshold: int
    period: int
    max_fee: int
    nonce: int
    deadline: int

    TYPE = PAYOUT_SCHEDULE_TYPE
    PRIMARY = "PayoutSchedule"
    _ADDRESSES = ("payee", "token", "recipient")
    _RANGES = {
        "threshold": UINT96_MAX,
        "period": UINT32_MAX,
        "max_fee": UINT64_MAX,
        "nonce": UINT256_MAX,
        "deadline": UINT256_MAX,
    }

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ProtocolError("enabled must be a boolean", code=Code.BAD_AUTHORIZATION)
        super().__post_init__()
        if self.enabled and self.threshold == 0 and self.period == 0:
            raise ProtocolError("an enabled schedule needs a threshold or a period", code=Code.BAD_AUTHORIZATION)


__all__ = [
    "CLOSE_CHANNEL_TYPE",
    "OPEN_CHANNEL_TYPE",
    "PAYOUT_SCHEDULE_TYPE",
    "TOPUP_CHANNEL_TYPE",
    "CloseAuth",
    "OpenAuth",
    "ScheduleAuth",
    "TopUpAuth",
    "gasless_domain",
]
