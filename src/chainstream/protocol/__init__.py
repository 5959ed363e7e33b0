"""The voucher protocol: pure types, EIP-712 digests, receipts and signing. No chain, no I/O."""

from chainstream.protocol.eip712 import CLOSE_TYPE, VOUCHER_TYPE, Domain
from chainstream.protocol.receipts import GENESIS, Kind, KindName, PlayReceipt, chain_head
from chainstream.protocol.signing import PrivateKey, Signature, recover
from chainstream.protocol.types import Address, ChannelId, TokenAmount, TrackId, to_address
from chainstream.protocol.voucher import SignedVoucher, Voucher

__all__ = [
    "CLOSE_TYPE",
    "GENESIS",
    "VOUCHER_TYPE",
    "Address",
    "ChannelId",
    "Domain",
    "Kind",
    "KindName",
    "PlayReceipt",
    "PrivateKey",
    "Signature",
    "SignedVoucher",
    "TokenAmount",
    "TrackId",
    "Voucher",
    "chain_head",
    "recover",
    "to_address",
]
