"""Token amounts for people: exact decimal formatting and parsing (no rounding, every unit shows)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation

from chainstream.codes import Code
from chainstream.errors import RecoverableError
from chainstream.protocol.types import Address

EXACT = Context(prec=200)  # uint256 has 78 digits: never round


@dataclass(frozen=True)
class TokenInfo:
    address: Address
    symbol: str
    decimals: int

    def fmt(self, units: int) -> str:
        """`units` in whole tokens with the symbol, exactly: 1234500000000000 wei -> "0.0012345 ETH"."""
        return f"{self.num(units)} {self.symbol}"

    def num(self, units: int) -> str:
        """Like fmt, without the symbol (for columns whose header names the token)."""
        text = f"{Decimal(units).scaleb(-self.decimals, EXACT):f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text

    def units(self, amount: str | Decimal) -> int:
        """Parse an amount in whole tokens ("0.01") into base units; refuses more decimals than the token has."""
        try:
            value = EXACT.create_decimal(str(amount).strip())
        except InvalidOperation:
            raise RecoverableError(f"not an amount: {amount!r}", code=Code.BAD_AMOUNT) from None
        if not value.is_finite() or value < 0:
            raise RecoverableError(f"not an amount: {amount!r}", code=Code.BAD_AMOUNT)
        scaled = value.scaleb(self.decimals, EXACT)
        if scaled != scaled.to_integral_value():
            raise RecoverableError(
                f"{amount} has more than {self.decimals} decimals ({self.symbol})", code=Code.BAD_AMOUNT
            )
        return int(scaled)
