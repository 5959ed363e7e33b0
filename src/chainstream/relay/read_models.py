"""What the relay shows of its state, built from it without I/O: a channel's summary, the live payment events
(each audience shown only what is its own) and a payee's earnings as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainstream.protocol import Kind
from chainstream.relay.api.models import ChannelSummary, VoucherJSON
from chainstream.relay.earnings import Earnings, TrackEarnings
from chainstream.store import PaymentRecord

if TYPE_CHECKING:
    from chainstream.protocol import Voucher
    from chainstream.relay.channel_cache import ChannelRuntime

#: the event bus topic of the public /events stream (no filter): carries no listener's data
PUBLIC_TOPIC = "public"


def voucher_json(voucher: Voucher, signature: bytes | None) -> VoucherJSON:
    """A voucher as the API shows it (the channel summary's, a co-signed close's)."""
    return VoucherJSON(
        payees=list(voucher.payees),
        amounts=[str(a) for a in voucher.amounts],
        playHash="0x" + voucher.play_hash.hex(),
        signature=None if signature is None else "0x" + signature.hex(),
    )


def channel_summary(rt: ChannelRuntime, relay: str, settled_total: int) -> ChannelSummary:
    """The channel's state as the relay holds it (GET /channels/{id}); `settled_total` is what settlements
    credited so far."""
    r = rt.record
    v = rt.ledger.voucher
    return ChannelSummary(
        channelId="0x" + r.channel_id.hex(),
        payer=r.payer,
        token=r.token,
        relay=relay,
        status=r.status if r.coop_close is None or r.status != "open" else "closing",
        closesAt=r.closes_at,
        deposit=str(r.deposit),
        spent=str(v.total),
        settled=str(settled_total),
        remaining=str(r.deposit - v.total),
        spentToday=str(rt.spent_today),
        dailyCap=None if r.daily_cap is None else str(r.daily_cap),
        sessionCap=None if r.session_cap is None else str(r.session_cap),
        capsIssuedAt=rt.caps_issued_at,
        sessionKey=r.session_key,
        sessionExpiry=r.session_expiry,
        seq=rt.ledger.seq,
        voucher=voucher_json(v, rt.head_signature),
        plays={"0x" + t.hex(): n for t, n in rt.ledger.plays.items()},
        owned=["0x" + t.hex() for t in rt.ledger.owned],
    )


def payment_events(
    record: PaymentRecord, deposit: int, spent_today: int, *, public_target: bool
) -> list[tuple[dict[str, Any], set[str]]]:
    """The live events of an accepted payment, each with the topics it goes to (docs/API.md, GET /events):

    - the public stream: what kind of charge hit which catalog track (`public_target`: none for a tip to an
      address, which names a person), when — no amounts, memo or channel;
    - each payee's (the payee's read token): what it was paid, for what and when, and a tip's memo (addressed
      to it), but nothing of the listener: no channel, payer, totals or other payees;
    - the channel's subscribers (its payer's read token): everything about the payment."""
    kind = Kind(record.kind).wire
    target = "0x" + record.target.hex()
    events: list[tuple[dict[str, Any], set[str]]] = [
        (
            {"type": "payment", "kind": kind, "target": target if public_target else None, "at": record.accepted_at},
            {PUBLIC_TOPIC},
        )
    ]
    for payee, value in record.payments.items():
        payee_event = {
            "type": "payment",
            "kind": kind,
            "target": target,
            "payee": payee,
            "amount": str(value),
            "memo": record.memo,
            "at": record.accepted_at,
        }
        events.append((payee_event, {f"payee:{payee}"}))
    event = {
        "type": "payment",
        "channelId": "0x" + record.channel_id.hex(),
        "seq": record.seq,
        "kind": kind,
        "target": target,
        "amount": str(record.amount),
        "total": str(record.voucher.total),
        "remaining": str(deposit - record.voucher.total),
        "spentToday": str(spent_today),
        "payments": {payee: str(v) for payee, v in record.payments.items()},
        "memo": record.memo,
        "at": record.accepted_at,
    }
    events.append((event, {"channel:0x" + record.channel_id.hex()}))
    return events


def earnings_json(payee: str, result: Earnings, titles: dict[bytes, str]) -> dict[str, Any]:
    """GET /artists/{address}/earnings: per token, per track (with its title when in the catalog), per hour."""
    return {
        "payee": payee,
        "tokens": {
            token: {k: str(getattr(t, k)) for k in ("pending", "settled", "claimed", "total")}
            for token, t in result.tokens.items()
        },
        "tracks": [_track_earnings_json(t, titles.get(t.target)) for t in result.tracks.values()],
        "timeline": [{"token": t, "hour": h, "amount": str(a)} for (t, h), a in sorted(result.timeline.items())],
    }


def _track_earnings_json(t: TrackEarnings, title: str | None) -> dict[str, Any]:
    return {
        "token": t.token,
        "target": "0x" + t.target.hex(),
        "plays": t.plays,
        "seconds": t.seconds,
        "secondsDelivered": t.delivered_millis / 1000,
        "tips": str(t.tips),
        "downloads": t.downloads,
        "earned": str(t.total),
        "pending": str(t.pending),
        "settled": str(t.settled),
        "claimed": str(t.claimed),
        "title": title,
    }
