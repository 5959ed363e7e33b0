"""TrackRegistry on real chains: registration, owner-only changes, split and terms validation, versioned splits,
and that a split change never redirects vouchers that were already signed."""

from __future__ import annotations

from typing import Any

import pytest

from chainstream.pricing import Split, Terms, play_price
from chainstream.protocol import GENESIS, Kind, PlayReceipt, Voucher, chain_head
from chainstream.protocol.types import ZERO_ADDRESS
from tests.integration.conftest import STABLE, Chain
from tests.integration.helpers import (
    ETH,
    FINNEY,
    call_reverts,
    events,
    new_address,
    open_channel,
    reverts,
    settle,
    sign,
)

TRACK = b"\x11" * 32
TERMS = Terms(per_play=10**15, per_second=10**13, download=10**17)


def _split(chain: Chain, fee: bool = True) -> Split:
    if fee:
        return Split((chain.address("artist"), chain.address("collab")), (7_000, 3_000), chain.address("platform"), 500)
    return Split((chain.address("artist"), chain.address("collab"), chain.address("label")), (5_000, 3_000, 2_000))


def _register(
    chain: Chain,
    track: bytes = TRACK,
    owner: str = "artist",
    split: Split | None = None,
    token: str = ETH,
    terms: Terms = TERMS,
    title: str = "Song",
) -> Any:
    return chain.registry.register_track(chain.tx(owner), track, title, token, terms, split or _split(chain))


def _values(struct: Any) -> tuple[Any, ...]:
    """An event's struct argument (web3 decodes it as a dict) as a plain tuple."""
    return tuple(struct.values()) if hasattr(struct, "values") else tuple(struct)


def _raw_split(recipients: list[str], bps: list[int], fee_recipient: str = ZERO_ADDRESS, fee_bps: int = 0) -> tuple:
    return (recipients, bps, fee_recipient, fee_bps)


# ----------------------------------------------------------------------------------------------- register


def test_registerTrack_storesTrackTermsAndSplit(chain: Chain) -> None:
    r = chain.registry
    split = _split(chain)
    receipt = _register(chain, split=split, title="First Light")
    ts = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]

    (registered,) = events(r.contract, "TrackRegistered", receipt)
    assert (bytes(registered.args.trackId), registered.args.owner, registered.args.title) == (
        TRACK,
        chain.address("artist"),
        "First Light",
    )
    (terms_ev,) = events(r.contract, "TermsSet", receipt)
    assert (terms_ev.args.token, _values(terms_ev.args.terms)) == (ETH, TERMS.as_tuple())
    (split_ev,) = events(r.contract, "SplitSet", receipt)
    assert (split_ev.args.version, bytes(split_ev.args.splitHash)) == (1, split.hash)
    assert _values(split_ev.args.split) == (list(split.recipients), list(split.bps), split.fee_recipient, split.fee_bps)

    info = r.get_track(TRACK)
    assert (info.owner, info.title, info.split_version, info.split_hash, info.registered_at) == (
        chain.address("artist"),
        "First Light",
        1,
        split.hash,
        ts,
    )
    assert r.get_terms(TRACK, ETH) == TERMS
    assert r.get_split(TRACK, 1) == (split, split.hash)
    assert r.get_terms(TRACK, chain.token.address).enabled is False  # no terms in that token
    assert r.track_ids() == [TRACK]


def test_registerTrack_revertsIfTrackExists(chain: Chain) -> None:
    _register(chain)
    with reverts("TrackExists", trackId=TRACK):
        _register(chain, owner="stranger")
    assert chain.registry.get_track(TRACK).owner == chain.address("artist")


def test_hashSplit_matchesPythonSplitHash(chain: Chain) -> None:
    splits = [
        Split.solo(chain.address("artist")),
        _split(chain),
        _split(chain, fee=False),
        Split(tuple(new_address(i) for i in range(16)), (625,) * 16, chain.address("platform"), 5_000),
    ]
    for split in splits:
        assert bytes(chain.registry.contract.functions.hashSplit(split.as_tuple()).call()) == split.hash


def test_trackIds_paginatesInRegistrationOrder(chain: Chain) -> None:
    r = chain.registry
    ids = [bytes([i]) * 32 for i in (3, 1, 2)]
    for track in ids:
        _register(chain, track)
    assert r.contract.functions.trackCount().call() == 3
    assert r.track_ids() == ids
    assert [bytes(t) for t in r.contract.functions.trackIds(1, 5).call()] == ids[1:]
    assert [bytes(t) for t in r.contract.functions.trackIds(0, 1).call()] == ids[:1]
    assert r.contract.functions.trackIds(3, 2).call() == []
    assert r.contract.functions.trackIds(7, 2).call() == []


def test_getTrack_revertsIfTrackNotFound(chain: Chain) -> None:
    err = call_reverts(chain.registry.contract.functions.getTrack(TRACK), "TrackNotFound")
    assert bytes(err.error_args["trackId"]) == TRACK
    with reverts("TrackNotFound", trackId=TRACK):
        chain.registry.set_terms(chain.tx("artist"), TRACK, ETH, TERMS)
    with reverts("TrackNotFound", trackId=TRACK):
        chain.registry.set_split(chain.tx("artist"), TRACK, _split(chain))
    with reverts("TrackNotFound", trackId=TRACK):
        chain.registry.transfer_track(chain.tx("artist"), TRACK, chain.address("label"))


# -------------------------------------------------------------------------------------------- owner only


def test_setTerms_revertsIfNotOwner(chain: Chain) -> None:
    _register(chain)
    with reverts("TrackNotOwner", trackId=TRACK, caller=chain.address("stranger")):
        chain.registry.set_terms(chain.tx("stranger"), TRACK, ETH, Terms(per_play=1))
    assert chain.registry.get_terms(TRACK, ETH) == TERMS


def test_setSplit_revertsIfNotOwner(chain: Chain) -> None:
    _register(chain)
    with reverts("TrackNotOwner", trackId=TRACK, caller=chain.address("collab")):  # a recipient is not the owner
        chain.registry.set_split(chain.tx("collab"), TRACK, Split.solo(chain.address("collab")))
    assert chain.registry.get_track(TRACK).split_version == 1


def test_transferTrack_revertsIfNotOwner(chain: Chain) -> None:
    _register(chain)
    with reverts("TrackNotOwner", trackId=TRACK, caller=chain.address("stranger")):
        chain.registry.transfer_track(chain.tx("stranger"), TRACK, chain.address("stranger"))
    assert chain.registry.get_track(TRACK).owner == chain.address("artist")


def test_transferTrack_handsOverControl(chain: Chain) -> None:
    r = chain.registry
    _register(chain)
    receipt = r.transfer_track(chain.tx("artist"), TRACK, chain.address("label"))
    (ev,) = events(r.contract, "TrackTransferred", receipt)
    assert (bytes(ev.args.trackId), ev.args["from"], ev.args.to) == (
        TRACK,
        chain.address("artist"),
        chain.address("label"),
    )
    assert r.get_track(TRACK).owner == chain.address("label")
    with reverts("TrackNotOwner", caller=chain.address("artist")):
        r.set_terms(chain.tx("artist"), TRACK, ETH, Terms(per_play=1))
    r.set_terms(chain.tx("label"), TRACK, ETH, Terms(per_play=1))
    r.set_split(chain.tx("label"), TRACK, Split.solo(chain.address("label")))
    assert r.get_terms(TRACK, ETH).per_play == 1
    assert r.get_track(TRACK).split_version == 2


def test_transferTrack_revertsIfNewOwnerZero(chain: Chain) -> None:
    _register(chain)
    with reverts("TrackOwnerZero"):
        chain.registry.transfer_track(chain.tx("artist"), TRACK, ZERO_ADDRESS)


# ------------------------------------------------------------------------------------------------- terms


def test_setTerms_setsPerTokenAndWithdraws(chain: Chain) -> None:
    r = chain.registry
    _register(chain)
    stable_terms = Terms(per_play=10 * STABLE // 1000, model=1, own_after=32, min_seconds=30)
    receipt = r.set_terms(chain.tx("artist"), TRACK, chain.token.address, stable_terms)
    (ev,) = events(r.contract, "TermsSet", receipt)
    assert (ev.args.token, _values(ev.args.terms)) == (chain.token.address, stable_terms.as_tuple())
    assert r.get_terms(TRACK, chain.token.address) == stable_terms
    assert r.get_terms(TRACK, ETH) == TERMS  # other tokens untouched
    withdrawn = Terms(enabled=False)
    r.set_terms(chain.tx("artist"), TRACK, ETH, withdrawn)
    assert r.get_terms(TRACK, ETH) == withdrawn


@pytest.mark.parametrize(("model", "own_after"), [(2, 0), (255, 1), (1, 0), (1, 33)])
def test_setTerms_revertsIfModelInvalid(chain: Chain, model: int, own_after: int) -> None:
    _register(chain)
    raw = (1, 0, 0, model, own_after, 0, True)
    with reverts("TermsInvalid", model=model, ownAfter=own_after):
        chain.tx("artist").transact(chain.registry.contract.functions.setTerms(TRACK, ETH, raw), action="setTerms")
    # The same invalid terms also block registration.
    split = _split(chain).as_tuple()
    with reverts("TermsInvalid"):
        chain.tx("artist").transact(
            chain.registry.contract.functions.registerTrack(b"\x99" * 32, "x", ETH, raw, split), action="register"
        )


# ------------------------------------------------------------------------------------------------- split


def _invalid_splits(chain: Chain) -> list[tuple[str, tuple, dict[str, Any]]]:
    a, b, platform = chain.address("artist"), chain.address("collab"), chain.address("platform")
    many = [new_address(i) for i in range(17)]
    return [
        ("noRecipients", _raw_split([], []), {"reason": "SplitRecipientCount", "count": 0}),
        (
            "tooManyRecipients",
            _raw_split(many, [10_000 - 16 * 588] + [588] * 16),
            {"reason": "SplitRecipientCount", "count": 17},
        ),
        ("lengthMismatch", _raw_split([a, b], [10_000]), {"reason": "SplitLengthMismatch", "recipients": 2, "bps": 1}),
        (
            "zeroRecipient",
            _raw_split([a, ZERO_ADDRESS], [5_000, 5_000]),
            {"reason": "SplitBadRecipient", "index": 1, "recipient": ZERO_ADDRESS},
        ),
        (
            "duplicateRecipient",
            _raw_split([a, b, a], [4_000, 3_000, 3_000]),
            {"reason": "SplitBadRecipient", "index": 2, "recipient": a},
        ),
        ("zeroShare", _raw_split([a, b], [10_000, 0]), {"reason": "SplitSharesInvalid", "sum": 0}),
        ("sharesBelowTotal", _raw_split([a, b], [5_000, 4_999]), {"reason": "SplitSharesInvalid", "sum": 9_999}),
        ("sharesAboveTotal", _raw_split([a, b], [5_000, 5_001]), {"reason": "SplitSharesInvalid", "sum": 10_001}),
        (
            "feeAboveMax",
            _raw_split([a], [10_000], platform, 5_001),
            {"reason": "SplitFeeInvalid", "feeBps": 5_001, "feeRecipient": platform},
        ),
        (
            "feeWithoutRecipient",
            _raw_split([a], [10_000], ZERO_ADDRESS, 100),
            {"reason": "SplitFeeInvalid", "feeBps": 100, "feeRecipient": ZERO_ADDRESS},
        ),
        (
            "recipientWithoutFee",
            _raw_split([a], [10_000], platform, 0),
            {"reason": "SplitFeeInvalid", "feeBps": 0, "feeRecipient": platform},
        ),
    ]


def test_setSplit_revertsIfSplitInvalid(chain: Chain) -> None:
    r = chain.registry
    _register(chain)
    for name, raw, expected in _invalid_splits(chain):
        expected = dict(expected)
        reason = expected.pop("reason")
        with reverts(reason, **expected):
            chain.tx("artist").transact(r.contract.functions.setSplit(TRACK, raw), action=f"setSplit {name}")
        with reverts(reason, **expected):
            chain.tx("artist").transact(
                r.contract.functions.registerTrack(b"\x99" * 32, "x", ETH, TERMS.as_tuple(), raw), action=name
            )
    assert r.get_track(TRACK).split_version == 1
    assert r.track_ids() == [TRACK]


def test_setSplit_acceptsBoundaryValues(chain: Chain) -> None:
    r = chain.registry
    _register(chain)
    sixteen = Split(tuple(new_address(i) for i in range(16)), (625,) * 16, chain.address("platform"), 5_000)
    r.set_split(chain.tx("artist"), TRACK, sixteen)
    assert r.get_split(TRACK, 2) == (sixteen, sixteen.hash)
    assert r.contract.functions.MAX_RECIPIENTS().call() == 16
    assert r.contract.functions.MAX_FEE_BPS().call() == 5_000


def test_setSplit_publishesNewVersionAndKeepsOldOnes(chain: Chain) -> None:
    r = chain.registry
    v1 = _split(chain)
    _register(chain, split=v1)
    v2 = _split(chain, fee=False)
    assert chain.registry.contract.functions.setSplit(TRACK, v2.as_tuple()).call({"from": chain.address("artist")}) == 2
    receipt = r.set_split(chain.tx("artist"), TRACK, v2)
    (ev,) = events(r.contract, "SplitSet", receipt)
    assert (ev.args.version, bytes(ev.args.splitHash)) == (2, v2.hash)
    info = r.get_track(TRACK)
    assert (info.split_version, info.split_hash) == (2, v2.hash)
    assert r.get_split(TRACK, 1) == (v1, v1.hash)
    assert r.get_split(TRACK, 2) == (v2, v2.hash)
    assert v1.hash != v2.hash


def test_setSplit_doesNotRedirectAlreadySignedVouchers(chain: Chain) -> None:
    """A voucher priced with split v1 pays exactly the v1 payees even after the owner publishes v2."""
    r, c = chain.registry, chain.channels
    v1 = _split(chain)  # artist 70 %, collab 30 %, platform fee 5 %
    _register(chain, split=v1)
    cid = open_channel(chain, 10 * FINNEY)

    split, split_hash = r.get_split(TRACK, r.get_track(TRACK).split_version)
    terms = r.get_terms(TRACK, ETH)
    v = Voucher.empty(cid)
    receipts = []
    for seq in range(1, 4):
        price = play_price(terms, seq)
        receipt = PlayReceipt(seq=seq, target=TRACK, kind=Kind.PLAY, units=1, amount=price, split_hash=split_hash)
        receipts.append(receipt)
        v = v.add(split.apply(price), receipt)
    signed = sign(chain, v)

    # The owner now sends everything to the label.
    v2 = Split.solo(chain.address("label"))
    r.set_split(chain.tx("artist"), TRACK, v2)
    assert r.get_track(TRACK).split_hash == v2.hash

    receipt = settle(chain, signed)
    fee = 3 * (TERMS.per_play * 500 // 10_000)
    rest_each = TERMS.per_play - TERMS.per_play * 500 // 10_000
    collab = 3 * (rest_each * 3_000 // 10_000)
    assert c.claimable(chain.address("platform")) == fee
    assert c.claimable(chain.address("collab")) == collab
    assert c.claimable(chain.address("artist")) == 3 * TERMS.per_play - fee - collab
    assert c.claimable(chain.address("label")) == 0
    assert c.get_channel(cid).settled == 3 * TERMS.per_play
    # The signed play hash is the receipt chain over split v1's hash: auditable after the change.
    (settled,) = events(c.contract, "ChannelSettled", receipt)
    assert bytes(settled.args.playHash) == chain_head(receipts, GENESIS) == v.play_hash
    assert all(rc.split_hash == r.get_split(TRACK, 1)[1] for rc in receipts)
