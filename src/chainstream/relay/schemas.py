"""HTTP request bodies, validated strictly at the edge before anything is hashed or signed.

Amounts travel as decimal strings (they exceed JavaScript's safe integers); bytes32 values and signatures as
0x-hex. Everything is converted to the protocol's own types here, so the core never sees loose input.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from chainstream.codes import Code
from chainstream.errors import ProtocolError
from chainstream.protocol import Kind, KindName, Signature, Voucher
from chainstream.protocol.types import MAX_AMOUNT, Address, check_amount, to_address, to_bytes32
from chainstream.verify import ChargeSpec, Payment

HEX32 = r"^0x[0-9a-fA-F]{64}$"
AMOUNT = r"^(0|[1-9][0-9]{0,28})$"
_HEX32 = re.compile(HEX32)
Amount = Annotated[str, Field(pattern=AMOUNT, description="decimal string, token's smallest unit")]
Hex32 = Annotated[str, Field(pattern=HEX32)]
AddressStr = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]


def _unicode_text(value: str) -> str:
    """Refuse lone surrogates: JSON can carry "\\ud800", but it is not text, and nothing can store or sign it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be Unicode text (it holds a lone surrogate)") from None
    return value


#: free text from a client: valid Unicode only
Text = Annotated[str, AfterValidator(_unicode_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class VoucherIn(Strict):
    payees: list[AddressStr] = Field(max_length=256)
    amounts: list[Amount] = Field(max_length=256)
    playHash: Hex32


class ChargeIn(Strict):
    kind: KindName
    trackId: Hex32 | None = None
    artist: AddressStr | None = None
    seconds: StrictInt = Field(0, ge=0, le=3_600)
    amount: Amount | None = Field(None, description="tips only")
    memo: Text = Field("", max_length=280)


class PaymentIn(Strict):
    seq: StrictInt = Field(ge=1, lt=2**64)
    charge: ChargeIn
    voucher: VoucherIn
    signature: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$")]


class StreamedPaymentIn(PaymentIn):
    channelId: Hex32
    id: StrictInt | Annotated[Text, Field(max_length=128)] | None = Field(None, description="echoed back in the reply")


class BatchIn(Strict):
    payments: list[StreamedPaymentIn] = Field(min_length=1, max_length=1_000)


class CapsIn(Strict):
    dailyCap: Amount = Field(description="0 = no daily cap")
    sessionCap: Amount = Field(description="0 = no session-key cap")
    issuedAt: StrictInt = Field(
        ge=0,
        lt=2**63,
        description="unix seconds; must increase, and be at most caps_clock_skew ahead of the relay's clock",
    )
    signature: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$")]


class CloseIn(Strict):
    voucherDigest: Hex32 = Field(description="EIP-712 digest of the listener's latest voucher (0x00..00 if none)")
    signature: Annotated[
        str,
        Field(
            pattern=r"^0x[0-9a-fA-F]{130}$",
            description="the payer's or its session key's over Close(channelId, voucherDigest)",
        ),
    ]


class ProfileIn(Strict):
    name: Text = Field(description="1..64 characters of printable text in NFC, signed exactly as sent")
    issuedAt: StrictInt = Field(
        ge=0,
        lt=2**64,
        description="unix seconds; must be newer than the stored profile's, at most caps_clock_skew ahead",
    )
    signature: Annotated[
        str,
        Field(
            pattern=r"^0x[0-9a-fA-F]{130}$",
            description="the artist's over ArtistProfile(artist, name, issuedAt)",
        ),
    ]


def to_payment(channel_id_hex: str, body: PaymentIn) -> Payment:
    """Convert a validated body to a Payment; ProtocolError (400) for values the schema cannot catch."""
    if not _HEX32.fullmatch(channel_id_hex):
        raise ProtocolError("channelId must be 0x + 64 hex digits", code=Code.BAD_CHANNEL_ID)
    channel_id = to_bytes32(channel_id_hex, "channelId")
    amounts = tuple(check_amount(int(a), "voucher amount") for a in body.voucher.amounts)
    # Voucher checksums the payees itself.
    voucher = Voucher(
        channel_id,
        tuple(Address(p) for p in body.voucher.payees),
        amounts,
        to_bytes32(body.voucher.playHash, "playHash"),
    )
    c = body.charge
    tip = int(c.amount) if c.amount is not None else 0
    if tip > MAX_AMOUNT:
        raise ProtocolError("tip amount too large", code=Code.BAD_AMOUNT)
    charge = ChargeSpec(
        kind=Kind.parse(c.kind),
        track_id=to_bytes32(c.trackId, "trackId") if c.trackId else None,
        artist=to_address(c.artist) if c.artist else None,
        seconds=c.seconds,
        amount=tip,
        memo=c.memo,
    )
    return Payment(channel_id, body.seq, charge, voucher, Signature.from_hex(body.signature))
