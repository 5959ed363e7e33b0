"""A payee's earnings from the relay's records: per payment, per (token, track), per token and per hour, each
amount marked pending, settled or claimed. Pure: the caller reads the store and the chain's settled state.

Settlement is cumulative per (channel, payee): the amount credited to a payee in a channel covers that payee's
earliest payments of the channel in sequence order. Claims are per token and not per channel: they are attributed
to settled payments in the order those are listed (channel, then sequence), oldest first within a channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from chainstream.protocol import Kind
from chainstream.protocol.types import Address
from chainstream.store.records import EarningRow
from chainstream.tokens import TokenInfo

PENDING, SETTLED, CLAIMED = "pending", "settled", "claimed"


@dataclass(frozen=True)
class PaymentEarning:
    """What one payment credited the payee, and how much of it is settled on chain and claimed."""

    channel_id: bytes
    seq: int
    token: Address
    target: bytes
    kind: Kind
    units: int
    amount: int
    accepted_at: float
    settled: bool
    claimed: int = 0  # of `amount`, attributed to the payee's claims (only for a settled payment)

    @property
    def status(self) -> str:
        if not self.settled:
            return PENDING
        return CLAIMED if self.claimed == self.amount else SETTLED


@dataclass
class Totals:
    pending: int = 0
    settled: int = 0  # settled and not claimed
    claimed: int = 0
    total: int = 0

    def add(self, p: PaymentEarning) -> None:
        self.total += p.amount
        if not p.settled:
            self.pending += p.amount
        else:
            self.claimed += p.claimed
            self.settled += p.amount - p.claimed


@dataclass
class TrackEarnings(Totals):
    token: str = ""
    target: bytes = b""
    plays: int = 0
    seconds: int = 0
    tips: int = 0  # an amount
    downloads: int = 0
    delivered_millis: int = 0  # metered audio the relay served of this track on the channels that paid for it
    channels: set[bytes] = field(default_factory=set)

    def add(self, p: PaymentEarning) -> None:
        super().add(p)
        self.channels.add(p.channel_id)
        if p.kind == Kind.PLAY:
            self.plays += 1
        elif p.kind == Kind.SECONDS:
            self.seconds += p.units
        elif p.kind == Kind.TIP:
            self.tips += p.amount
        else:
            self.downloads += 1


@dataclass
class Earnings:
    payments: list[PaymentEarning] = field(default_factory=list)
    tokens: dict[str, Totals] = field(default_factory=dict)
    tracks: dict[tuple[str, bytes], TrackEarnings] = field(default_factory=dict)
    timeline: dict[tuple[str, int], int] = field(default_factory=dict)  # (token, hour start) -> amount


def earnings(
    rows: Iterable[EarningRow],
    *,
    token_of: Mapping[bytes, Address],
    credited: Mapping[bytes, int],
    claimed: Mapping[str, int],
    default_token: Address,
    delivered: Mapping[tuple[bytes, bytes], int] | None = None,
) -> Earnings:
    """The payee's earnings. `token_of`: each channel's token; `credited`: what the chain credited the payee per
    channel; `claimed`: what the payee claimed per token; `delivered`: metered milliseconds of audio the relay
    served per (channel, track), summed per track over the channels whose payments credited the payee for it (so
    a track's seconds delivered sit next to the seconds paid on the same channels)."""
    payments = _with_claims(_with_settlement(rows, token_of, credited, default_token), claimed)
    out = Earnings(payments=payments)
    for p in payments:
        out.tokens.setdefault(p.token, Totals()).add(p)
        out.tracks.setdefault((p.token, p.target), TrackEarnings(token=p.token, target=p.target)).add(p)
        hour = int(p.accepted_at) // 3600 * 3600
        out.timeline[(p.token, hour)] = out.timeline.get((p.token, hour), 0) + p.amount
    for track in out.tracks.values():
        track.delivered_millis = sum((delivered or {}).get((c, track.target), 0) for c in track.channels)
    return out


def _with_settlement(
    rows: Iterable[EarningRow],
    token_of: Mapping[bytes, Address],
    credited: Mapping[bytes, int],
    default_token: Address,
) -> list[PaymentEarning]:
    """Each payment, settled iff the channel's cumulative earnings up to it are within what the chain credited."""
    cumulative: dict[bytes, int] = {}
    out = []
    for r in sorted(rows, key=lambda r: (bytes(r["channel_id"]), r["seq"])):
        channel_id = bytes(r["channel_id"])
        amount = int(r["amount"])
        cumulative[channel_id] = cumulative.get(channel_id, 0) + amount
        out.append(
            PaymentEarning(
                channel_id=channel_id,
                seq=int(r["seq"]),
                token=token_of.get(channel_id, default_token),
                target=bytes(r["target"]),
                kind=Kind(r["kind"]),
                units=int(r["units"]),
                amount=amount,
                accepted_at=float(r["accepted_at"]),
                settled=cumulative[channel_id] <= credited.get(channel_id, 0),
            )
        )
    return out


def _with_claims(payments: list[PaymentEarning], claimed: Mapping[str, int]) -> list[PaymentEarning]:
    """Attribute each token's claimed total to its settled payments, in order."""
    left = dict(claimed)
    out = []
    for p in payments:
        if p.settled:
            take = min(p.amount, left.get(p.token, 0))
            left[p.token] = left.get(p.token, 0) - take
            p = replace(p, claimed=take)
        out.append(p)
    return out


CSV_COLUMNS = ("date", "channel", "seq", "track", "title", "kind", "units", "amount", "token", "status", "claimed")


#: a formula character at the start of the text or of any part a spreadsheet may split it into (locales that use
#: ';' as the separator split "Hit;=2+5" into two cells, the second a formula)
_FORMULA_CELL = re.compile(r"(^|[;,|\t\r\n])(\s*)([=+\-@])")


def spreadsheet_safe(text: str) -> str:
    """`text` as a spreadsheet shows it and never runs it: a formula character that starts the text, or starts any
    part of it after a separator some spreadsheet splits on, is escaped with '."""
    return _FORMULA_CELL.sub(r"\1\2'\3", text)


def csv_rows(
    result: Earnings, *, titles: Mapping[bytes, str], tokens: Mapping[Address, TokenInfo]
) -> Iterator[dict[str, str]]:
    """One row per payment, newest first: UTC date, channel, track id and title, kind, amount and claimed part in
    token units (the token's decimals), and pending / settled / claimed."""
    for p in sorted(result.payments, key=lambda p: (-p.accepted_at, p.channel_id, -p.seq)):
        token = tokens.get(p.token) or TokenInfo(p.token, p.token, 18)
        yield {
            "date": datetime.fromtimestamp(p.accepted_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "channel": "0x" + p.channel_id.hex(),
            "seq": str(p.seq),
            "track": "0x" + p.target.hex(),
            "title": spreadsheet_safe(titles.get(p.target, "")),
            "kind": p.kind.wire,
            "units": str(p.units),
            "amount": token.num(p.amount),
            "token": spreadsheet_safe(token.symbol),
            "status": p.status,
            "claimed": token.num(p.claimed),
        }
