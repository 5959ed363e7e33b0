"""The relay's payment API against a real relay (uvicorn in a thread) on the embedded chain: what it accepts,
what it rejects (exact codes and HTTP statuses), idempotency, ordering, caps, cooperative close, OpenAPI."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx
import pytest

from chainstream.ledger import charge_download, charge_play, charge_seconds, charge_tip
from chainstream.protocol import Signature, Voucher
from chainstream.protocol.eip712 import caps_struct_hash, close_struct_hash
from chainstream.protocol.signing import high_s_twin
from chainstream.protocol.types import to_address
from chainstream.sdk import RelayError
from tests.integration.relay_fixtures import (
    BLUES,
    DRIFT,
    ETH,
    MODEM,
    PLAY_PRICE,
    InProcessRelay,
    RelayChain,
    cid_hex,
    open_listener,
    play_spec,
    rejected,
    sign_charge,
    signed_plays,
    wait_until,
)


def post(http: httpx.Client, channel: str, body: Any) -> httpx.Response:
    return http.post(f"/channels/{channel}/payments", json=body)


def count_rows(relay: InProcessRelay, channel_id: bytes) -> int:
    return len(relay.payment_rows(channel_id))


# ------------------------------------------------------------------------------------------------ accepted


def test_a_play_is_verified_stored_and_acknowledged(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay, deposit=10**17)
    track = relay_chain.track(MODEM)
    [play] = signed_plays(listener, track, 1)
    http = relay.http()
    accepted_before = relay.health()["accepted"]
    response = post(http, cid_hex(listener), play.body)
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["status"] == "accepted"
    assert ack["channelId"] == cid_hex(listener)
    assert ack["seq"] == 1
    assert int(ack["amount"]) == PLAY_PRICE
    assert int(ack["total"]) == PLAY_PRICE == play.state.voucher.total
    assert int(ack["remaining"]) == 10**17 - PLAY_PRICE
    assert ack["digest"] == "0x" + play.state.voucher.digest(listener.channels.domain).hex()
    rows = relay.payment_rows(listener.channel_id)  # type: ignore[arg-type]
    assert [(r["seq"], int(r["total"])) for r in rows] == [(1, PLAY_PRICE)]
    summary = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    assert summary["seq"] == 1 and int(summary["spent"]) == PLAY_PRICE and summary["status"] == "open"
    assert summary["payer"] == relay_chain.chain.address("listener")
    assert summary["plays"] == {"0x" + track.hex(): 1}
    assert relay.health()["accepted"] == accepted_before + 1


def test_same_voucher_twice_is_a_duplicate_stored_once(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    first, second = signed_plays(listener, relay_chain.track(MODEM), 2)
    http = relay.http()
    cid = cid_hex(listener)
    accepted_before = relay.health()["accepted"]
    assert post(http, cid, first.body).json()["status"] == "accepted"
    again = post(http, cid, first.body)
    assert again.status_code == 200
    dup = again.json()
    assert dup["status"] == "duplicate" and dup["seq"] == 1 and dup["amount"] == "0"
    assert dup["digest"] == "0x" + first.state.voucher.digest(listener.channels.domain).hex()
    assert post(http, cid, second.body).json()["status"] == "accepted"
    # An older voucher resubmitted after a newer one: still a duplicate (found by digest), never stored twice.
    older = post(http, cid, first.body).json()
    assert older["status"] == "duplicate" and older["seq"] == 1 and older["total"] == str(PLAY_PRICE)
    assert post(http, cid, second.body).json()["status"] == "duplicate"
    assert [r["seq"] for r in relay.payment_rows(listener.channel_id)] == [1, 2]  # type: ignore[arg-type]
    assert relay.rows("SELECT COUNT(*) AS n FROM earnings WHERE channel_id=? AND seq=1", (listener.channel_id,))[0][
        "n"
    ] == len(first.state.voucher.payees)
    assert relay.health()["accepted"] == accepted_before + 2


def test_out_of_order_vouchers_gap_then_in_order(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    one, two, three = signed_plays(listener, relay_chain.track(MODEM), 3)
    http = relay.http()
    cid = cid_hex(listener)
    assert post(http, cid, one.body).status_code == 200
    body = rejected(post(http, cid, three.body), 409, "seq_gap")
    assert body["state"]["seq"] == 1 and int(body["state"]["spent"]) == PLAY_PRICE
    assert body["error"]["details"] == {"expected": "2", "got": "3"}
    assert post(http, cid, two.body).json()["status"] == "accepted"
    assert post(http, cid, three.body).json()["status"] == "accepted"
    assert [r["seq"] for r in relay.payment_rows(listener.channel_id)] == [1, 2, 3]  # type: ignore[arg-type]
    assert relay.channel(listener.channel_id)["seq"] == 3  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ rejected


def test_unknown_channel_is_404(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    nowhere = "0x" + hashlib.sha256(b"no such channel").hexdigest()
    http = relay.http()
    rejected(post(http, nowhere, play.body), 404, "unknown_channel")
    rejected(http.get(f"/channels/{nowhere}", headers=relay.owner_headers(listener.channel_id)), 404, "unknown_channel")
    assert (
        relay.rows("SELECT COUNT(*) AS n FROM channels WHERE channel_id=?", (bytes.fromhex(nowhere[2:]),))[0]["n"] == 0
    )


def test_a_channel_served_by_another_relay_is_403(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay, relay_address=relay_chain.chain.address("stranger"))
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    rejected(post(relay.http(), cid_hex(listener), play.body), 403, "wrong_relay")
    assert relay.rows("SELECT COUNT(*) AS n FROM channels WHERE channel_id=?", (listener.channel_id,))[0]["n"] == 0
    assert count_rows(relay, listener.channel_id) == 0  # type: ignore[arg-type]


def test_stale_voucher_is_409_with_the_relays_state(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    for play in signed_plays(listener, relay_chain.track(MODEM), 2):
        assert post(http, cid, play.body).status_code == 200
    # A different seq-1 voucher (another track) from the opened state: behind the channel, and not a duplicate.
    [other] = signed_plays(listener, relay_chain.track(BLUES), 1)
    body = rejected(post(http, cid, other.body), 409, "stale_voucher")
    assert body["state"]["seq"] == 2 and int(body["state"]["spent"]) == 2 * PLAY_PRICE
    assert count_rows(relay, listener.channel_id) == 2  # type: ignore[arg-type]


def test_voucher_mismatch_is_409_with_the_state_to_resync_from(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    [one] = signed_plays(listener, relay_chain.track(MODEM), 1)
    assert post(http, cid, one.body).status_code == 200
    [two] = signed_plays(listener, relay_chain.track(MODEM), 1, state=one.state)
    v = two.state.voucher
    greedy = Voucher(v.channel_id, v.payees, (v.amounts[0] - 1, *v.amounts[1:]), v.play_hash)  # underpays by 1 wei
    signature = listener.session_key.sign(greedy.digest(listener.channels.domain))
    body = {
        **two.body,
        "voucher": {**two.body["voucher"], "amounts": [str(a) for a in greedy.amounts]},
        "signature": signature.to_hex(),
    }
    reply = rejected(post(http, cid, body), 409, "voucher_mismatch")
    state = reply["state"]
    assert state["seq"] == 1 and state["voucher"]["amounts"] == [str(a) for a in one.state.voucher.amounts]
    assert state["voucher"]["playHash"] == "0x" + one.state.voucher.play_hash.hex()
    assert state["plays"] == {"0x" + relay_chain.track(MODEM).hex(): 1}
    assert post(http, cid, two.body).json()["status"] == "accepted"  # the honest voucher still goes through


def test_unknown_track_is_404_and_unpriced_charges_are_not_offered(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    ghost = "0x" + hashlib.sha256(b"ghost track").hexdigest()
    rejected(post(http, cid, {**play.body, "charge": {"kind": "play", "trackId": ghost}}), 404, "unknown_track")
    rejected(http.get(f"/tracks/{ghost}"), 404, "unknown_track")
    # Gas Price Blues has no per-second price; Morning Modem is not for sale; Per-Second Drift has no play price.
    rejected(
        post(
            http,
            cid,
            {
                **play.body,
                "charge": {"kind": "seconds", "trackId": "0x" + relay_chain.track(BLUES).hex(), "seconds": 10},
            },
        ),
        422,
        "not_offered",
    )
    rejected(
        post(
            http, cid, {**play.body, "charge": {"kind": "download", "trackId": "0x" + relay_chain.track(MODEM).hex()}}
        ),
        422,
        "not_offered",
    )
    rejected(post(http, cid, {**play.body, "charge": {"kind": "play"}}), 422, "bad_charge")
    rejected(
        post(
            http,
            cid,
            {**play.body, "charge": {"kind": "tip", "amount": "0", "artist": relay_chain.chain.address("ada")}},
        ),
        422,
        "bad_amount",
    )
    assert count_rows(relay, listener.channel_id) == 0  # type: ignore[arg-type]
    assert post(http, cid, play.body).json()["seq"] == 1


def test_insufficient_deposit_is_402_then_accepted_after_a_top_up(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    listener = open_listener(relay_chain, relay, deposit=2 * PLAY_PRICE + 1)
    http = relay.http()
    cid = cid_hex(listener)
    one, two, three = signed_plays(listener, relay_chain.track(MODEM), 3)
    assert post(http, cid, one.body).status_code == 200
    assert int(post(http, cid, two.body).json()["remaining"]) == 1
    refused = rejected(post(http, cid, three.body), 402, "insufficient_deposit")
    assert refused["error"]["details"] == {"total": str(3 * PLAY_PRICE), "deposit": str(2 * PLAY_PRICE + 1)}
    listener.top_up(PLAY_PRICE)
    ack = post(http, cid, three.body).json()
    assert ack["status"] == "accepted" and ack["seq"] == 3 and int(ack["remaining"]) == 1
    assert int(relay.channel(listener.channel_id)["deposit"]) == 3 * PLAY_PRICE + 1  # type: ignore[arg-type]


def test_a_new_session_key_is_accepted_before_the_watcher_sees_it_and_refusals_read_the_chain_sparingly(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """A payment by a key the relay does not know yet makes it re-read the channel from the chain (the payer may
    have just authorised it), a few times per channel at most: anyone can sign a payment that is refused."""
    relay = make_relay(poll_interval=3_600)  # the watcher polls once, at start: only the re-read can see the key
    listener = open_listener(relay_chain, relay)
    track = relay_chain.track(MODEM)
    listener.play(track)
    channels = relay.service.channels
    reads: list[bytes] = []
    get_channel = channels.get_channel
    channels.get_channel = lambda channel_id, *block: reads.append(channel_id) or get_channel(channel_id, *block)

    key = listener.authorise_session_key()
    assert listener.play(track).seq == 2 and relay.channel(listener.channel_id)["sessionKey"] == key
    assert reads == [listener.channel_id]

    http = relay.http()
    stranger = sign_charge(
        listener,
        charge_play(listener.state, listener.listing(track)),
        play_spec(track),
        key=relay_chain.chain.key("stranger"),
    )
    for _ in range(6):
        rejected(post(http, cid_hex(listener), stranger.body), 403, "unauthorized_signer")
    assert len(reads) == 3  # REFRESH_BURST in its window; the other refusals cost the node nothing
    assert listener.play(track).seq == 3


def test_signatures_bad_unauthorized_and_malleable(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    sig = play.signature
    rejected(
        post(http, cid, {**play.body, "signature": Signature(v=29, r=sig.r, s=sig.s).to_hex()}), 422, "bad_signature"
    )
    rejected(post(http, cid, {**play.body, "signature": Signature(v=27, r=0, s=sig.s).to_hex()}), 422, "bad_signature")
    rejected(post(http, cid, {**play.body, "signature": high_s_twin(sig).to_hex()}), 422, "bad_signature")
    stranger = sign_charge(
        listener,
        charge_play(listener.state, listener.listing(relay_chain.track(MODEM))),
        play_spec(relay_chain.track(MODEM)),
        key=relay_chain.chain.key("stranger"),
    )
    rejected(post(http, cid, stranger.body), 403, "unauthorized_signer")
    relay_signed = sign_charge(
        listener,
        charge_play(listener.state, listener.listing(relay_chain.track(MODEM))),
        play_spec(relay_chain.track(MODEM)),
        key=relay_chain.chain.key("relay"),
    )
    rejected(post(http, cid, relay_signed.body), 403, "unauthorized_signer")
    assert count_rows(relay, listener.channel_id) == 0  # type: ignore[arg-type]
    # The payer's own wallet may always sign.
    wallet = sign_charge(
        listener,
        charge_play(listener.state, listener.listing(relay_chain.track(MODEM))),
        play_spec(relay_chain.track(MODEM)),
        key=listener.wallet,
    )
    assert post(http, cid, wallet.body).json()["status"] == "accepted"


def test_session_key_too_close_to_expiry_is_403(make_relay: Any, relay_chain: RelayChain) -> None:
    """The relay refuses session-key vouchers within session_margin of the key's expiry (measured on its own
    clock: the embedded chain's runs ahead of it by a second per block, so the margin here is wide instead of
    the key short-lived)."""
    strict = make_relay(session_margin=30 * 86_400, settle_min_value=10**30, settle_max_age=10**9)
    listener = open_listener(relay_chain, strict)  # a session key valid for 7 days: inside the 30-day margin
    http = strict.http()
    cid = cid_hex(listener)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    rejected(post(http, cid, play.body), 403, "session_key_expired")
    wallet = sign_charge(
        listener,
        charge_play(listener.state, listener.listing(relay_chain.track(MODEM))),
        play_spec(relay_chain.track(MODEM)),
        key=listener.wallet,
    )
    assert post(http, cid, wallet.body).json()["status"] == "accepted"


def test_daily_cap_via_the_sdk(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    track = relay_chain.track(MODEM)
    summary = listener.set_caps(daily=2 * PLAY_PRICE)
    assert summary["dailyCap"] == str(2 * PLAY_PRICE) and summary["sessionCap"] is None
    assert listener.play(track).spent_today == PLAY_PRICE
    paid = listener.play(track)
    assert paid.spent_today == 2 * PLAY_PRICE and paid.seq == 2
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.status == 402 and info.value.code == "daily_cap_exceeded"
    assert info.value.details == {
        "spentToday": str(2 * PLAY_PRICE),
        "amount": str(PLAY_PRICE),
        "dailyCap": str(2 * PLAY_PRICE),
    }
    assert listener.state.seq == 2  # type: ignore[union-attr]
    listener.set_caps(daily=0)  # lift it
    assert listener.play(track).seq == 3
    assert relay.channel(listener.channel_id)["dailyCap"] is None  # type: ignore[arg-type]


def test_session_cap_binds_the_session_key_not_the_wallet(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    track = relay_chain.track(MODEM)
    listener.set_caps(session=PLAY_PRICE)
    assert listener.play(track).total == PLAY_PRICE
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.status == 402 and info.value.code == "session_cap_exceeded"
    assert info.value.details == {"total": str(2 * PLAY_PRICE), "sessionCap": str(PLAY_PRICE)}
    wallet = sign_charge(
        listener, charge_play(listener.state, listener.listing(track)), play_spec(track), key=listener.wallet
    )
    assert post(relay.http(), cid_hex(listener), wallet.body).json()["status"] == "accepted"


def test_caps_must_be_signed_by_the_channel_and_be_newer(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    domain = listener.channels.domain

    def caps_body(daily: int, issued_at: int, key: Any) -> dict[str, Any]:
        digest = domain.digest(caps_struct_hash(listener.channel_id, daily, 0, issued_at))  # type: ignore[arg-type]
        return {
            "dailyCap": str(daily),
            "sessionCap": "0",
            "issuedAt": issued_at,
            "signature": key.sign(digest).to_hex(),
        }

    doc = http.get(f"/channels/{cid}/caps/typed-data", params={"dailyCap": 5, "issuedAt": 100}).json()
    assert doc["primaryType"] == "Caps" and doc["message"]["dailyCap"] == 5 and doc["message"]["issuedAt"] == 100
    rejected(
        http.put(f"/channels/{cid}/caps", json=caps_body(PLAY_PRICE, 100, relay_chain.chain.key("stranger"))),
        403,
        "unauthorized_signer",
    )
    assert http.put(f"/channels/{cid}/caps", json=caps_body(10 * PLAY_PRICE, 100, listener.wallet)).status_code == 200
    rejected(http.put(f"/channels/{cid}/caps", json=caps_body(PLAY_PRICE, 99, listener.session_key)), 409, "stale_caps")
    rejected(
        http.put(f"/channels/{cid}/caps", json=caps_body(PLAY_PRICE, 100, listener.session_key)), 409, "stale_caps"
    )
    assert relay.channel(listener.channel_id)["dailyCap"] == str(10 * PLAY_PRICE)  # type: ignore[arg-type]

    # The session key may tighten the caps that bind it, never loosen them: that takes the payer.
    assert (
        http.put(f"/channels/{cid}/caps", json=caps_body(5 * PLAY_PRICE, 101, listener.session_key)).status_code == 200
    )
    rejected(
        http.put(f"/channels/{cid}/caps", json=caps_body(6 * PLAY_PRICE, 102, listener.session_key)),
        403,
        "caps_need_payer",
    )
    rejected(http.put(f"/channels/{cid}/caps", json=caps_body(0, 102, listener.session_key)), 403, "caps_need_payer")
    assert relay.channel(listener.channel_id)["dailyCap"] == str(5 * PLAY_PRICE)  # type: ignore[arg-type]
    assert http.put(f"/channels/{cid}/caps", json=caps_body(0, 102, listener.wallet)).status_code == 200
    assert relay.channel(listener.channel_id)["dailyCap"] is None  # type: ignore[arg-type]


MALFORMED: list[tuple[str, Any]] = [
    ("seq zero", lambda b: {**b, "seq": 0}),
    ("seq as string", lambda b: {**b, "seq": "1"}),
    ("negative amount", lambda b: {**b, "voucher": {**b["voucher"], "amounts": ["-1"] * len(b["voucher"]["amounts"])}}),
    (
        "fractional amount",
        lambda b: {**b, "voucher": {**b["voucher"], "amounts": ["1.5"] * len(b["voucher"]["amounts"])}},
    ),
    ("leading zero", lambda b: {**b, "voucher": {**b["voucher"], "amounts": ["01"] * len(b["voucher"]["amounts"])}}),
    ("amount as number", lambda b: {**b, "voucher": {**b["voucher"], "amounts": [1] * len(b["voucher"]["amounts"])}}),
    (
        "30-digit amount",
        lambda b: {**b, "voucher": {**b["voucher"], "amounts": ["1" * 30] * len(b["voucher"]["amounts"])}},
    ),
    ("short playHash", lambda b: {**b, "voucher": {**b["voucher"], "playHash": "0x1234"}}),
    ("non-hex playHash", lambda b: {**b, "voucher": {**b["voucher"], "playHash": "0x" + "zz" * 32}}),
    ("bad payee", lambda b: {**b, "voucher": {**b["voucher"], "payees": ["0x1234"] * len(b["voucher"]["payees"])}}),
    ("non-hex signature", lambda b: {**b, "signature": "0x" + "g" * 130}),
    ("short signature", lambda b: {**b, "signature": b["signature"][:-2]}),
    ("non-hex trackId", lambda b: {**b, "charge": {**b["charge"], "trackId": "0x" + "q" * 64}}),
    ("unknown kind", lambda b: {**b, "charge": {**b["charge"], "kind": "stream"}}),
    (
        "too many seconds",
        lambda b: {**b, "charge": {"kind": "seconds", "trackId": b["charge"]["trackId"], "seconds": 3_601}},
    ),
    ("extra field", lambda b: {**b, "bonus": 1}),
    ("missing voucher", lambda b: {k: v for k, v in b.items() if k != "voucher"}),
    ("not an object", lambda b: [b]),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[name for name, _ in MALFORMED])
def test_malformed_requests_are_422_invalid_request(
    relay: InProcessRelay, relay_chain: RelayChain, case: tuple[str, Any]
) -> None:
    listener = open_listener(relay_chain, relay)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    body = rejected(post(relay.http(), cid_hex(listener), case[1](play.body)), 422, "invalid_request")
    assert body["details"], body


def test_unparseable_json_and_bad_path_ids(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    [play] = signed_plays(listener, relay_chain.track(MODEM), 1)
    raw = json.dumps(play.body)
    for text in (raw[:-1], "{not json", "", "null"):
        rejected(
            http.post(f"/channels/{cid}/payments", content=text, headers={"content-type": "application/json"}),
            422,
            "invalid_request",
        )
    # Values the schema cannot judge are refused by the protocol layer with their own stable codes (400).
    rejected(post(http, "0x1234", play.body), 400, "bad_channel_id")
    rejected(http.get("/channels/0xnothex"), 400, "bad_bytes32")
    too_big = {
        **play.body,
        "voucher": {**play.body["voucher"], "amounts": [str(2**96)] * len(play.body["voucher"]["amounts"])},
    }
    rejected(post(http, cid, too_big), 400, "bad_amount")
    twice = {
        **play.body,
        "voucher": {
            **play.body["voucher"],
            "payees": [play.body["voucher"]["payees"][0]] * len(play.body["voucher"]["payees"]),
        },
    }
    rejected(post(http, cid, twice), 400, "bad_voucher")
    assert post(http, cid, play.body).json()["status"] == "accepted"


# ------------------------------------------------------------------------------------------------ closing


def test_no_payment_after_the_relay_cosigned_a_close(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    one, two = signed_plays(listener, relay_chain.track(MODEM), 2)
    assert post(http, cid, one.body).status_code == 200
    domain = listener.channels.domain

    def close_request(voucher_digest: bytes, key: Any) -> dict[str, Any]:
        digest = domain.digest(close_struct_hash(listener.channel_id, voucher_digest))  # type: ignore[arg-type]
        return {"voucherDigest": "0x" + voucher_digest.hex(), "signature": key.sign(digest).to_hex()}

    # Nobody but the payer or its session key can stop the channel's payments by asking for a close, and the
    # request must name the relay's latest voucher.
    latest = one.state.voucher.digest(domain)
    rejected(http.post(f"/channels/{cid}/close"), 422, "invalid_request")
    rejected(
        http.post(f"/channels/{cid}/close", json=close_request(latest, relay_chain.chain.key("stranger"))),
        403,
        "unauthorized_signer",
    )
    stale = rejected(
        http.post(f"/channels/{cid}/close", json=close_request(b"\0" * 32, listener.session_key)),
        409,
        "close_state_mismatch",
    )
    assert stale["state"]["seq"] == 1
    assert relay.channel(listener.channel_id)["status"] == "open"  # type: ignore[arg-type]
    reply = http.post(f"/channels/{cid}/close", json=close_request(latest, listener.session_key))
    assert reply.status_code == 200, reply.text
    close = reply.json()
    assert close["voucher"]["amounts"] == [str(a) for a in one.state.voucher.amounts]
    assert close["prevAmounts"] == []
    assert Signature.from_hex(close["relaySignature"])
    rejected(post(http, cid, two.body), 409, "channel_not_open")
    assert post(http, cid, one.body).json()["status"] == "duplicate"  # re-acknowledging what is covered is fine
    assert relay.channel(listener.channel_id)["status"] == "closing"  # type: ignore[arg-type]
    assert count_rows(relay, listener.channel_id) == 1  # type: ignore[arg-type]


def test_cooperative_close_refunds_the_rest_at_once(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    deposit = 10**17
    listener = open_listener(relay_chain, relay, deposit=deposit)
    track = relay_chain.track(MODEM)
    for _ in range(3):
        listener.play(track)
    listener.listen(relay_chain.track(DRIFT), 30)
    total = listener.state.voucher.total  # type: ignore[union-attr]
    before = relay_chain.w3.eth.get_balance(listener.address)
    refund = listener.close_cooperatively()
    assert refund == deposit - total
    state = listener.chain_state()
    assert state.settled == total and state.status.name == "CLOSED"
    receipt_gas = before + refund - relay_chain.w3.eth.get_balance(listener.address)
    assert 0 < receipt_gas < 10**16  # only the gas of the close transaction is missing
    with pytest.raises(RelayError) as info:
        listener.play(track)
    assert info.value.status == 409 and info.value.code == "channel_not_open"
    wait_until(lambda: relay.channel(listener.channel_id)["status"] == "closed", what="the watcher to see the close")  # type: ignore[arg-type]
    summary = relay.channel(listener.channel_id)  # type: ignore[arg-type]
    assert int(summary["settled"]) == total
    closed = listener.state.voucher.digest(listener.channels.domain)  # type: ignore[union-attr]
    request = {
        "voucherDigest": "0x" + closed.hex(),
        "signature": listener.session_key.sign(
            listener.channels.domain.digest(close_struct_hash(listener.channel_id, closed))
        ).to_hex(),
    }  # type: ignore[arg-type]
    rejected(relay.http().post(f"/channels/{cid_hex(listener)}/close", json=request), 409, "channel_not_open")
    # What this channel credited its payees (their claimable balances also hold what other tests' channels,
    # settled by the same session relay meanwhile, credited them).
    assert listener.settled_state().credited == listener.state.voucher.amounts  # type: ignore[union-attr]
    assert all(
        listener.channels.claimable(p) >= a
        for p, a in zip(
            listener.state.voucher.payees,  # type: ignore[union-attr]
            listener.state.voucher.amounts,
            strict=True,
        )
    )  # type: ignore[union-attr]


def test_other_kinds_of_charges_are_priced_by_the_relay(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    listener = open_listener(relay_chain, relay)
    http = relay.http()
    cid = cid_hex(listener)
    blues = relay_chain.track(BLUES)
    ada = relay_chain.chain.address("ada")
    state = listener.state
    steps = [
        (
            charge_seconds(listener.listing(relay_chain.track(DRIFT)), 45),
            {"kind": "seconds", "trackId": "0x" + relay_chain.track(DRIFT).hex(), "seconds": 45},
        ),
        (
            charge_tip(12_345, artist=ada, memo="thanks!"),
            {"kind": "tip", "artist": ada, "amount": "12345", "memo": "thanks!"},
        ),
        (None, {"kind": "download", "trackId": "0x" + blues.hex()}),
        (None, {"kind": "play", "trackId": "0x" + blues.hex()}),  # owned now: free
    ]
    for charge, spec in steps:
        if charge is None:
            listing = listener.listing(blues)
            charge = charge_download(state, listing) if spec["kind"] == "download" else charge_play(state, listing)
        signed = sign_charge(listener, charge, spec, state=state)
        ack = post(http, cid, signed.body).json()
        assert ack["status"] == "accepted", ack
        assert int(ack["amount"]) == charge.amount
        state = signed.state
    assert int(ack["amount"]) == 0
    history = http.get(f"/channels/{cid}/history", headers=relay.owner_headers(listener.channel_id)).json()["items"]
    assert [h["kind"] for h in history] == ["play", "download", "tip", "seconds"]
    assert history[2]["memo"] == "thanks!" and history[2]["payments"] == {ada: "12345"}
    assert relay.channel(listener.channel_id)["owned"] == ["0x" + blues.hex()]  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ reading


def test_catalog_info_and_openapi(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    http = relay.http()
    info = http.get("/info").json()
    assert info["relay"] == relay_chain.chain.address("relay")
    assert info["channels"] == relay_chain.chain.deployment.channels and info["chainId"] == relay_chain.w3.eth.chain_id
    tracks = http.get("/catalog", params={"token": ETH}).json()["tracks"]
    assert set(relay_chain.tracks) <= {t["title"] for t in tracks}  # other tests of the session publish more
    modem = http.get(f"/tracks/0x{relay_chain.track(MODEM).hex()}").json()
    assert modem["terms"][ETH]["perPlay"] == str(PLAY_PRICE)
    # no Swagger UI / ReDoc pages on the player's origin (they load CDN scripts; tests/adversarial/test_snooper.py)
    assert httpx.get(relay.url + "/docs", timeout=10).status_code == 404
    spec = httpx.get(relay.url + "/openapi.json", timeout=10).json()
    assert spec["info"]["title"] == "ChainStream relay"
    paths = spec["paths"]
    for path in (
        "/api/v1/channels/{channel_id}/payments",
        "/api/v1/payments/batch",
        "/api/v1/channels/{channel_id}/close",
    ):
        assert "post" in paths[path], path
    assert "put" in paths["/api/v1/channels/{channel_id}/caps"]
    assert "get" in paths["/api/v1/artists/{address}/earnings"]
    assert "PaymentIn" in spec["components"]["schemas"]


def test_a_database_from_before_persisted_caps_is_upgraded(tmp_path: Any) -> None:
    """Stores created before caps' issuedAt was persisted gain the column on open; their rows read as before."""
    import sqlite3

    from chainstream.store import SqliteStore

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE channels (channel_id BLOB PRIMARY KEY, payer TEXT NOT NULL, token TEXT NOT NULL,
        deposit TEXT NOT NULL, session_key TEXT NOT NULL, session_expiry INTEGER NOT NULL, status TEXT NOT NULL,
        closes_at INTEGER NOT NULL DEFAULT 0, coop_close_digest BLOB, daily_cap TEXT, session_cap TEXT,
        opened_block INTEGER NOT NULL DEFAULT 0)""")
    conn.execute(
        "INSERT INTO channels VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (b"\x01" * 32, ETH, ETH, "5", ETH, 0, "open", 0, None, "7", None, 3),
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        record = store.get_channel(b"\x01" * 32)
        assert record is not None and record.daily_cap == 7 and record.caps_issued_at == 0 and record.opened_block == 3
        store.set_caps(b"\x01" * 32, 9, None, 1_234)
        again = store.get_channel(b"\x01" * 32)
        assert again is not None and again.daily_cap == 9 and again.caps_issued_at == 1_234
    finally:
        store.close()
    SqliteStore(path).close()  # opening an upgraded database again changes nothing


def test_every_refusal_has_the_relays_error_format(relay: InProcessRelay) -> None:
    """Paths the relay does not have, methods a path does not take and a malformed SSE filter are refused like
    everything else: {"error": {"code", "message"}} with a stable code."""
    http = relay.http()
    rejected(http.get("/no/such/path"), 404, "not_found")
    rejected(http.delete("/health"), 405, "method_not_allowed")
    rejected(http.get("/events", params={"channel": "0x1234"}), 400, "bad_bytes32")
    rejected(http.get("/events", params={"payee": "0x1234"}), 400, "bad_address")


def test_a_channel_pays_at_most_max_payees_addresses(make_relay: Any, relay_chain: RelayChain) -> None:
    """Each payee costs a fresh storage slot at every settlement: dust tips to many fresh addresses would make a
    channel cost the relay more gas than it pays. The relay refuses the payment that adds one payee too many;
    payments to payees already on the voucher go on."""
    relay = make_relay(max_payees=4)  # a play of MODEM pays 3 addresses
    listener = open_listener(relay_chain, relay)
    track = relay_chain.track(MODEM)
    listener.play(track)
    assert listener.state is not None
    fresh = [to_address("0x" + os.urandom(20).hex()) for _ in range(3)]
    room = 4 - len(listener.state.voucher.payees)
    assert room >= 1  # the play leaves room for at least one tipped address, so the limit is reached by tips
    for artist in fresh[:room]:
        listener.tip(1, artist=artist)
    assert len(listener.state.voucher.payees) == 4
    with pytest.raises(RelayError) as info:
        listener.tip(1, artist=fresh[-1])
    assert (info.value.status, info.value.code) == (422, "too_many_payees")
    seq = listener.state.seq
    assert listener.play(track).seq == seq + 1  # the same payees: accepted


def test_made_up_channel_ids_do_not_each_cost_a_call_to_the_node(make_relay: Any, relay_chain: RelayChain) -> None:
    relay = make_relay()
    channels = relay.service.channels
    reads: list[bytes] = []
    get_channel = channels.get_channel
    channels.get_channel = lambda channel_id, *block: reads.append(channel_id) or get_channel(channel_id, *block)
    made_up = "0x" + os.urandom(32).hex()
    headers = {"Authorization": "ChainStream-Read " + relay.read_token(relay_chain.chain.key("listener"))}
    for _ in range(5):
        rejected(relay.http().get(f"/channels/{made_up}", headers=headers), 404, "unknown_channel")
    assert len(reads) == 1  # the answer is kept for a moment
    listener = open_listener(relay_chain, relay)  # a channel opened meanwhile is served at once
    assert listener.play(relay_chain.track(MODEM)).seq == 1
