"""A payee's earnings, pure: settled by each channel's cumulative credit, claims attributed in order."""

from __future__ import annotations

from chainstream.protocol import Kind
from chainstream.protocol.types import Address
from chainstream.relay.earnings import CLAIMED, CSV_COLUMNS, PENDING, SETTLED, csv_rows, earnings, spreadsheet_safe
from chainstream.store.records import EarningRow
from chainstream.tokens import TokenInfo

ETH, USD = Address("0x" + "00" * 20), Address("0x" + "5d" * 20)
A, B = b"\xaa" * 32, b"\xbb" * 32  # channels: A in ETH, B in USD
SONG, OTHER = b"\x01" * 32, b"\x02" * 32
HOUR = 3_600


def row(
    channel: bytes, seq: int, amount: int, kind: Kind = Kind.PLAY, target: bytes = SONG, units: int = 1, at: float = 0
) -> EarningRow:
    return EarningRow(
        channel_id=channel, seq=seq, target=target, kind=int(kind), units=units, amount=amount, accepted_at=at
    )


ROWS = [
    row(A, 2, 20, Kind.SECONDS, units=7, at=HOUR + 5),
    row(A, 1, 10, at=5),  # out of order on purpose: settlement follows seq
    row(A, 3, 30, Kind.TIP, units=0, at=HOUR + 9),
    row(B, 1, 1_000, Kind.DOWNLOAD, target=OTHER, at=2 * HOUR),
]
TOKENS = {A: ETH, B: USD}


def test_nothing_settled_is_all_pending() -> None:
    e = earnings(ROWS, token_of=TOKENS, credited={}, claimed={}, default_token=ETH)
    assert {p.status for p in e.payments} == {PENDING}
    assert (e.tokens[ETH].pending, e.tokens[ETH].total, e.tokens[USD].pending) == (60, 60, 1_000)


def test_a_channel_credit_settles_its_earliest_payments_in_seq_order() -> None:
    e = earnings(ROWS, token_of=TOKENS, credited={A: 30}, claimed={}, default_token=ETH)
    by_seq = {(p.channel_id, p.seq): p.status for p in e.payments}
    assert by_seq == {(A, 1): SETTLED, (A, 2): SETTLED, (A, 3): PENDING, (B, 1): PENDING}
    t = e.tokens[ETH]
    assert (t.pending, t.settled, t.claimed, t.total) == (30, 30, 0, 60)


def test_a_credit_short_of_a_payment_leaves_it_pending() -> None:
    e = earnings(ROWS, token_of=TOKENS, credited={A: 29}, claimed={}, default_token=ETH)
    assert [p.status for p in e.payments if p.channel_id == A] == [SETTLED, PENDING, PENDING]


def test_seconds_delivered_count_the_tracks_audio_on_the_channels_that_paid_this_payee_for_it() -> None:
    """A track's metered seconds delivered sum its deliveries on the channels whose payments credited the payee
    for it; audio of another track, or served on a channel that never paid this payee for the track, is left out."""
    C = b"\xcc" * 32  # a channel that played SONG but never paid this payee
    delivered = {(A, SONG): 7_250, (A, OTHER): 1_000, (B, OTHER): 3_000, (C, SONG): 60_000}
    e = earnings(ROWS, token_of=TOKENS, credited={}, claimed={}, default_token=ETH, delivered=delivered)
    assert (e.tracks[(ETH, SONG)].seconds, e.tracks[(ETH, SONG)].delivered_millis) == (7, 7_250)
    assert e.tracks[(USD, OTHER)].delivered_millis == 3_000
    assert (
        earnings(ROWS, token_of=TOKENS, credited={}, claimed={}, default_token=ETH).tracks[(ETH, SONG)].delivered_millis
        == 0
    )


def test_claims_are_per_token_and_attributed_to_settled_payments_in_order_partly_if_need_be() -> None:
    e = earnings(ROWS, token_of=TOKENS, credited={A: 60, B: 1_000}, claimed={ETH: 25, USD: 1_000}, default_token=ETH)
    a = [(p.seq, p.claimed, p.status) for p in e.payments if p.channel_id == A]
    assert a == [(1, 10, CLAIMED), (2, 15, SETTLED), (3, 0, SETTLED)]
    assert (e.tokens[ETH].claimed, e.tokens[ETH].settled) == (25, 35)
    assert e.tokens[USD].claimed == 1_000 and e.payments[-1].status == CLAIMED


def test_per_track_counts_and_hourly_timeline() -> None:
    e = earnings(ROWS, token_of=TOKENS, credited={}, claimed={}, default_token=ETH)
    song = e.tracks[(ETH, SONG)]
    assert (song.plays, song.seconds, song.tips, song.downloads, song.total) == (1, 7, 30, 0, 60)
    assert e.tracks[(USD, OTHER)].downloads == 1
    assert e.timeline == {(ETH, 0): 10, (ETH, HOUR): 50, (USD, 2 * HOUR): 1_000}


def test_a_channel_the_relay_no_longer_lists_counts_in_the_default_token() -> None:
    e = earnings([row(b"\xcc" * 32, 1, 5)], token_of={}, credited={}, claimed={}, default_token=ETH)
    assert e.tokens[ETH].total == 5


def test_csv_rows_are_per_payment_in_token_units_newest_first_and_spreadsheet_safe() -> None:
    e = earnings(ROWS, token_of=TOKENS, credited={A: 60}, claimed={ETH: 10}, default_token=ETH)
    tokens = {ETH: TokenInfo(ETH, "ETH", 18), USD: TokenInfo(USD, "mUSD", 6)}
    titles = {SONG: '=HYPERLINK("http://evil","click")', OTHER: "@SUM(A1)"}
    rows = list(csv_rows(e, titles=titles, tokens=tokens))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["channel"][-2:], r["seq"]) for r in rows] == [("bb", "1"), ("aa", "3"), ("aa", "2"), ("aa", "1")]
    download = rows[0]
    assert (download["kind"], download["amount"], download["token"], download["status"]) == (
        "download",
        "0.001",
        "mUSD",
        "pending",
    )
    assert download["title"] == "'@SUM(A1)" and rows[1]["title"].startswith("'=HYPERLINK")
    assert rows[-1]["date"] == "1970-01-01 00:00:05" and rows[-1]["status"] == "claimed"
    assert rows[-1]["amount"] == "0.00000000000000001"


def test_spreadsheet_safe_leaves_ordinary_text_alone() -> None:
    assert spreadsheet_safe("Morning Modem") == "Morning Modem"
    assert spreadsheet_safe("-1") == "'-1" and spreadsheet_safe("+x") == "'+x"
