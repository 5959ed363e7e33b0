"""ledger.replay (review issue 8, finding 3): a client rebuilds a channel's state from a relay's history, each
receipt priced by one of the track's registry splits, and only a history that chains into the reported
vouchers replays; the counters then come from the receipts."""

from __future__ import annotations

import dataclasses

import pytest

from chainstream.errors import ProtocolError
from chainstream.ledger import (
    AcceptedPayment,
    LedgerState,
    Listing,
    apply,
    charge_download,
    charge_play,
    charge_seconds,
    charge_tip,
    replay,
)
from chainstream.pricing import Model, Split, Terms
from chainstream.protocol import Domain, Kind

DOMAIN = Domain(chain_id=31337, verifying_contract="0x" + "cc" * 20)
CID = bytes.fromhex("0c" * 32)
ARTIST, COLLAB, FAN = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "44" * 20
OWN, SONG = bytes.fromhex("ab" * 32), bytes.fromhex("cd" * 32)
V1 = Split((ARTIST,), (10_000,))
V2 = Split((ARTIST, COLLAB), (7_000, 3_000))
SPLITS = {OWN: [V1], SONG: [V1, V2]}
OWN_LISTING = Listing(OWN, "own", ARTIST, Terms(per_play=1_000, model=Model.STREAM_TO_OWN, own_after=9), V1, 1)
SONG_V1 = Listing(SONG, "song", ARTIST, Terms(per_play=500, per_second=7, download=9_000), V1, 1)
SONG_V2 = dataclasses.replace(SONG_V1, split=V2, split_version=2)


def splits_of(track: bytes) -> list[Split]:
    return SPLITS.get(track, [])


def honest() -> tuple[LedgerState, list[AcceptedPayment]]:
    state, history = LedgerState.opened(CID), []
    for make in (
        lambda s: charge_play(s, OWN_LISTING),
        lambda s: charge_play(s, OWN_LISTING),
        lambda s: charge_seconds(SONG_V1, 30),
        lambda s: charge_tip(777, artist=FAN, memo="thanks"),
        lambda s: charge_download(s, SONG_V2),  # after the split changed
        lambda s: charge_play(s, SONG_V2),  # free: owned
    ):
        charge = make(state)
        state, receipt = apply(state, charge)
        history.append(
            AcceptedPayment(
                receipt.seq,
                charge.kind,
                charge.target,
                charge.units,
                charge.amount,
                charge.memo,
                state.voucher.digest(DOMAIN),
            )
        )
    return state, history


def test_an_honest_history_replays_with_its_counters() -> None:
    state, history = honest()
    replayed = replay(LedgerState.opened(CID), history, splits_of, DOMAIN)
    assert replayed == state
    assert replayed.plays_of(OWN) == 2 and replayed.plays_of(SONG) == 1 and replayed.owned == {SONG}
    middle = replay(LedgerState.opened(CID), history[:3], splits_of, DOMAIN)
    assert replay(middle, history[3:], splits_of, DOMAIN) == state


@pytest.mark.parametrize(
    "lie",
    [
        lambda h: [dataclasses.replace(p, kind=Kind.SECONDS) if p.kind == Kind.PLAY else p for p in h],
        lambda h: [dataclasses.replace(p, amount=p.amount + 1) if p.seq == 3 else p for p in h],
        lambda h: [dataclasses.replace(p, memo="") if p.seq == 4 else p for p in h],
        lambda h: [h[1], h[0], *h[2:]],
        lambda h: [h[0], *h[2:]],
    ],
    ids=["plays-as-seconds", "amount", "memo", "reordered", "gap"],
)
def test_a_rewritten_history_does_not_replay(lie: object) -> None:
    _, history = honest()
    with pytest.raises(ProtocolError) as info:
        replay(LedgerState.opened(CID), lie(history), splits_of, DOMAIN)  # type: ignore[operator]
    assert info.value.code == "untrusted_state"


def test_a_receipt_whose_split_the_registry_never_had_does_not_replay() -> None:
    _, history = honest()
    with pytest.raises(ProtocolError):
        replay(LedgerState.opened(CID), history, lambda t: splits_of(t)[:1], DOMAIN)
