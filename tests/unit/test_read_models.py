"""The relay's read models and channel head, pure: what each live-event audience sees, and a head's day roll."""

from __future__ import annotations

from chainstream.ledger import LedgerState
from chainstream.protocol import Kind, Voucher
from chainstream.relay.channel_cache import ChannelHead
from chainstream.relay.read_models import PUBLIC_TOPIC, payment_events
from chainstream.store import PaymentRecord

CHANNEL, TRACK = b"\x01" * 32, b"\x0a" * 32
ARTIST, COLLAB = "0x" + "aa" * 20, "0x" + "bb" * 20
RECORD = PaymentRecord(
    channel_id=CHANNEL,
    seq=3,
    digest=b"\x02" * 32,
    voucher=Voucher(CHANNEL, (ARTIST, COLLAB), (800, 200), b"\x03" * 32),
    signature=b"\x04" * 65,
    signer="0x" + "cc" * 20,
    kind=int(Kind.TIP),
    target=TRACK,
    units=0,
    amount=100,
    split_hash=b"\x05" * 32,
    memo="thanks",
    payments={ARTIST: 80, COLLAB: 20},
    accepted_at=1_700_000_000.5,
    prev_digest=None,
    caps_basis=0,
)


def test_the_public_event_shows_no_amount_memo_or_channel() -> None:
    """The unfiltered stream is anyone's: the kind of charge, the catalog track, when."""
    events = payment_events(RECORD, deposit=5_000, spent_today=300, public_target=True)
    public = [e for e, topics in events if topics == {PUBLIC_TOPIC}]
    assert public == [{"type": "payment", "kind": "tip", "target": "0x" + TRACK.hex(), "at": 1_700_000_000.5}]


def test_a_tip_to_an_address_is_public_without_its_target() -> None:
    """A target outside the catalog names a person: the public event leaves it out."""
    [(public, _), *_] = payment_events(RECORD, deposit=5_000, spent_today=300, public_target=False)
    assert public["target"] is None


def test_each_payee_sees_its_own_amount_and_nothing_of_the_listener() -> None:
    """A payee's event: what it was paid, no channel, totals or other payees."""
    events = dict((frozenset(t), e) for e, t in payment_events(RECORD, 5_000, 300, public_target=True))
    artist = events[frozenset({f"payee:{ARTIST}"})]
    assert artist["amount"] == "80" and artist["memo"] == "thanks"
    assert not {"channelId", "total", "remaining", "payments", "spentToday"} & artist.keys()
    channel = events[frozenset({"channel:0x" + CHANNEL.hex()})]
    assert (channel["total"], channel["remaining"], channel["spentToday"]) == ("1000", "4000", "300")


def test_a_new_day_starts_the_head_with_nothing_spent() -> None:
    """The daily cap counts per UTC day: the same head on its day, a reset copy on the next."""
    head = ChannelHead(LedgerState.opened(CHANNEL), spent_today=700, day=10, digest=b"\x06" * 32)
    assert head.on_day(10) is head
    assert head.on_day(11) == ChannelHead(head.ledger, 0, 11, head.digest, None)
