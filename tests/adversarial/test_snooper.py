"""The snooper: reads what other people listened to, paid and earned, or runs script on the player's origin.

Listening history is personal data (review issue 8, finding 6): a channel's summary and history, a listener's
channels, a payee's earnings and the filtered live events are shown only with the owner's read token
(docs/API.md, read tokens), and the public event stream carries nothing that names or links to a listener.
The player's origin keeps session keys, so it sends a Content-Security-Policy and loads no CDN script (finding 7).
Real relays on the embedded chain (tests/integration/relay_fixtures.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from chainstream.ledger import LedgerState, charge_play
from chainstream.protocol import PrivateKey
from chainstream.protocol.types import ZERO_HASH
from chainstream.sdk import Listener
from tests.integration.relay_fixtures import (
    BLUES,
    MODEM,
    InProcessRelay,
    RelayChain,
    cid_hex,
    new_wallet,
    open_listener,
    play_spec,
    rejected,
    sign_charge,
)

ROOT = Path(__file__).resolve().parents[2]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"ChainStream-Read {token}"}


def token_for(relay: InProcessRelay, key: PrivateKey, **kwargs: Any) -> str:
    """A read token signed by `key` (InProcessRelay.read_token: account, channel_id, valid_for, relay_address)."""
    account = kwargs.pop("account", None)
    channel_id = kwargs.pop("channel_id", ZERO_HASH)
    return relay.read_token(key, account, channel_id, **kwargs)


def played(relay: InProcessRelay, rc: RelayChain, wallet: PrivateKey | str = "listener") -> Listener:
    """A listener whose channel has a play and a tip with a private message."""
    listener = open_listener(rc, relay, wallet=wallet)
    listener.play(rc.track(MODEM))
    listener.tip(1_000, artist=rc.chain.address("ada"), message="for the 3am set, from J.")
    return listener


def channel_paths(listener: Listener) -> list[str]:
    cid = cid_hex(listener)
    return [f"/channels/{cid}", f"/channels/{cid}/history"]


def read_events(lines: Iterator[str], want: int) -> list[dict[str, Any]]:
    """`want` payment events from an open stream (raw data lines kept as `_raw`)."""
    events: list[dict[str, Any]] = []
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind == "payment":
            events.append({**json.loads(line[6:]), "_raw": line})
            if len(events) == want:
                return events
    raise AssertionError(f"the stream ended after {events}")


# --------------------------------------------------------------------------------------- no token, or not theirs


def test_stranger_reads_a_listeners_channel_history_and_list_without_a_token_is_refused_401(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger asks for someone's channel summary, play history and channel list with no credentials."""
    listener = played(relay, relay_chain)
    http = relay.http()
    for path in [*channel_paths(listener), f"/listeners/{listener.address}/channels"]:
        body = rejected(http.get(path), 401, "read_token_required")
        assert "for the 3am set" not in json.dumps(body)


def test_stranger_signs_a_token_for_someone_elses_channel_is_refused(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger signs a read token with its own key, naming itself or naming the victim as the account."""
    listener = played(relay, relay_chain)
    stranger = new_wallet(relay_chain)
    http = relay.http()
    own = token_for(relay, stranger)  # the stranger's own (valid) token opens nothing of the victim's
    victims = token_for(relay, stranger, account=listener.address)  # claims to be the victim: a forged signature
    for path in channel_paths(listener):
        rejected(http.get(path, headers=auth(own)), 403, "read_forbidden")
        rejected(http.get(path, headers=auth(victims)), 401, "read_token_invalid")
    rejected(http.get(f"/listeners/{listener.address}/channels", headers=auth(own)), 403, "read_forbidden")
    rejected(http.get(f"/listeners/{listener.address}/channels", headers=auth(victims)), 401, "read_token_invalid")


def test_stranger_reads_an_artists_earnings_is_refused_and_the_artist_reads_them(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger (or a listener's session key) asks for an artist's earnings, as JSON and as the CSV download."""
    listener = played(relay, relay_chain)
    ada = relay_chain.chain.key("ada")
    http = relay.http()
    path = f"/artists/{ada.address}/earnings"
    rejected(http.get(path), 401, "read_token_required")
    rejected(http.get(path, params={"format": "csv"}), 401, "read_token_required")
    rejected(http.get(path, headers=auth(token_for(relay, new_wallet(relay_chain)))), 403, "read_forbidden")
    # a session key signing for the artist's account is not the artist
    forged = token_for(relay, listener.session_key, account=ada.address)
    rejected(http.get(path, headers=auth(forged)), 401, "read_token_invalid")
    mine = token_for(relay, ada)
    assert http.get(path, headers=auth(mine)).json()["payee"] == ada.address
    csv = http.get(path, params={"format": "csv", "readToken": mine})
    assert csv.status_code == 200 and csv.text.startswith("date,channel,seq,track,title,kind,units,amount")


def test_the_owner_reads_with_a_session_key_token_or_a_wallet_token(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """The listener reads its channel with its session key's token (one channel) or its wallet's (all)."""
    listener = played(relay, relay_chain, new_wallet(relay_chain))
    http = relay.http()
    assert listener.channel_id is not None
    for token in (
        token_for(relay, listener.session_key, account=listener.address, channel_id=listener.channel_id),
        token_for(relay, listener.session_key, account=listener.address),
        token_for(relay, listener.wallet),
    ):
        summary, history = (http.get(p, headers=auth(token)).json() for p in channel_paths(listener))
        assert summary["payer"] == listener.address and summary["seq"] == 2
        assert history["items"][0]["memo"] == "for the 3am set, from J."
    listed = http.get(f"/listeners/{listener.address}/channels", headers=auth(token_for(relay, listener.wallet)))
    assert [c["channelId"] for c in listed.json()["channels"]] == [cid_hex(listener)]
    # the SDK signs its reads by itself
    assert listener.spending()["seq"] == 2 and listener.history()[0]["kind"] == "tip"


def test_a_token_for_one_channel_does_not_open_another(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """The listener's channel-bound token (or one channel's session key) is tried on its other channel."""
    wallet = new_wallet(relay_chain)
    first = played(relay, relay_chain, wallet)
    second = played(relay, relay_chain, wallet)  # same payer, another channel and session key
    assert first.channel_id is not None and second.channel_id is not None
    http = relay.http()
    bound = token_for(relay, first.session_key, account=wallet.address, channel_id=first.channel_id)
    key_of_first = token_for(relay, first.session_key, account=wallet.address)
    for path in channel_paths(second):
        rejected(http.get(path, headers=auth(bound)), 403, "read_forbidden")
        rejected(http.get(path, headers=auth(key_of_first)), 401, "read_token_invalid")
    # a one-channel token does not list the payer's channels either
    rejected(http.get(f"/listeners/{wallet.address}/channels", headers=auth(bound)), 403, "read_forbidden")
    # the first channel's key lists the payer's channels, but sees the second only as the chain shows it
    listed = http.get(f"/listeners/{wallet.address}/channels", headers=auth(key_of_first)).json()["channels"]
    by_id = {c["channelId"]: c for c in listed}
    assert by_id[cid_hex(first)]["plays"] and "partial" not in by_id[cid_hex(first)]
    other = by_id[cid_hex(second)]
    assert other["partial"] is True and not {"plays", "spent", "spentToday", "voucher", "dailyCap"} & set(other)


def test_an_expired_or_too_long_lived_token_is_refused(relay: InProcessRelay, relay_chain: RelayChain) -> None:
    """A token past its notAfter, or one signed to last a day (a leaked URL would stay useful), is refused."""
    listener = played(relay, relay_chain)
    http = relay.http()
    path = f"/channels/{cid_hex(listener)}"
    rejected(http.get(path, headers=auth(token_for(relay, listener.wallet, valid_for=-120))), 401, "read_token_expired")
    rejected(
        http.get(path, headers=auth(token_for(relay, listener.wallet, valid_for=86_400))), 401, "read_token_invalid"
    )


def test_a_token_replayed_on_another_relay_is_refused(
    relay: InProcessRelay, eager_relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A relay (or anyone who saw the token) shows a listener's and an artist's tokens to another relay."""
    listener = open_listener(relay_chain, eager_relay, wallet=new_wallet(relay_chain))
    listener.play(relay_chain.track(MODEM))
    ada = relay_chain.chain.key("ada")
    elsewhere = relay.address  # signed for the session relay, shown to the eager one
    http = eager_relay.http()
    for_listener = token_for(eager_relay, listener.wallet, relay_address=elsewhere)
    rejected(http.get(f"/channels/{cid_hex(listener)}", headers=auth(for_listener)), 401, "read_token_invalid")
    rejected(http.get(f"/listeners/{listener.address}/channels", headers=auth(for_listener)), 401, "read_token_invalid")
    for_ada = token_for(eager_relay, ada, relay_address=elsewhere)
    rejected(http.get(f"/artists/{ada.address}/earnings", headers=auth(for_ada)), 401, "read_token_invalid")
    # the same, signed for the eager relay, works there
    mine = token_for(eager_relay, listener.wallet)
    assert http.get(f"/channels/{cid_hex(listener)}", headers=auth(mine)).status_code == 200


def test_malformed_huge_or_wrong_scheme_tokens_are_refused_401_not_500(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """Garbage in the Authorization header and the query parameter: a clear 401, never a crash."""
    listener = played(relay, relay_chain)
    http = relay.http()
    path = f"/channels/{cid_hex(listener)}"
    good = token_for(relay, listener.wallet)
    high_s = good[:-132] + "0x" + "ff" * 65
    for header in (
        {"Authorization": f"Bearer {good}"},
        {"Authorization": "ChainStream-Read"},
        auth("x" * 100_000),
        auth(good.replace(".", "..", 1)),
        auth(high_s),
        auth(good[:-2] + "1f"),  # v = 31
    ):
        rejected(http.get(path, headers=header), 401, "read_token_invalid")
    rejected(http.get(path, params={"readToken": "{}" * 5_000}), 401, "read_token_invalid")


# ------------------------------------------------------------------------------------------------ live events


def test_stranger_subscribes_to_a_channels_or_a_payees_events_is_refused(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger opens the live stream of someone's channel, or of an artist's payments."""
    listener = played(relay, relay_chain)
    stranger = new_wallet(relay_chain)
    http = relay.http()
    ada = relay_chain.chain.address("ada")
    rejected(http.get("/events", params={"channel": cid_hex(listener)}), 401, "read_token_required")
    rejected(http.get("/events", params={"payee": ada}), 401, "read_token_required")
    theirs = token_for(relay, stranger)
    rejected(http.get("/events", params={"channel": cid_hex(listener), "readToken": theirs}), 403, "read_forbidden")
    rejected(http.get("/events", params={"payee": ada, "readToken": theirs}), 403, "read_forbidden")


def test_the_public_stream_carries_no_memo_amount_channel_or_identity(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger listens to the unfiltered event stream while a listener plays and tips with a message."""
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    ada = relay_chain.chain.address("ada")
    friend = "0x" + "5a" * 20  # a tip straight to a person's address
    secrets = [cid_hex(listener), listener.address, listener.session_key.address, ada, friend, "3am"]
    with (
        httpx.Client(base_url=relay.api, timeout=httpx.Timeout(10.0, read=15.0)) as http,
        http.stream("GET", "/events") as public,
    ):
        lines = public.iter_lines()
        assert next(lines) == ": connected"
        listener.play(relay_chain.track(MODEM))
        listener.tip(1_000, artist=friend, message="for the 3am set, from J.")
        events = read_events(lines, 2)
    assert [e["kind"] for e in events] == ["play", "tip"]
    assert events[0]["target"] == "0x" + relay_chain.track(MODEM).hex() and events[1]["target"] is None
    for event in events:
        assert set(event) - {"_raw"} == {"type", "kind", "target", "at"}
        raw = event["_raw"].lower()
        assert not [s for s in secrets if s.lower().removeprefix("0x") in raw], raw


def test_a_stream_opened_with_a_token_sends_nothing_after_the_token_expires(
    make_relay: Any, relay_chain: RelayChain
) -> None:
    """Someone who got hold of a read token (a URL in a log) opens the channel's stream just before it expires,
    to keep watching the listener's payments for good."""
    clock = SettableClock(time.time())
    relay = make_relay(clock=clock)
    listener = open_listener(relay_chain, relay, wallet=new_wallet(relay_chain))
    modem = relay_chain.track(MODEM)
    leaked = token_for(relay, listener.wallet, valid_for=60)
    with (
        httpx.Client(base_url=relay.api, timeout=httpx.Timeout(10.0, read=15.0)) as http,
        http.stream("GET", "/events", params={"channel": cid_hex(listener), "readToken": leaked}) as events,
    ):
        lines = events.iter_lines()
        assert next(lines) == ": connected"
        listener.play(modem)
        assert read_events(lines, 1)[0]["seq"] == 1  # while the token is valid
        clock.now += 600  # ten minutes later (the relay's clock)
        listener.tip(1_000, artist=relay_chain.chain.address("ada"), message="after hours")
        rest = list(lines)  # the stream ends instead of sending it
    assert not any("after hours" in line for line in rest), rest


class SettableClock:
    """The relay's wall clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------- side doors


def test_stranger_sends_a_stale_payment_to_read_the_channel_state_gets_no_state(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger posts a made-up payment with an old seq to get the channel's state in the resync reply."""
    listener = played(relay, relay_chain)
    stranger = new_wallet(relay_chain)
    blues = relay_chain.track(BLUES)
    assert listener.channel_id is not None
    opened = LedgerState.opened(listener.channel_id)
    forged = sign_charge(
        listener, charge_play(opened, listener.listing(blues)), play_spec(blues), key=stranger, state=opened
    )
    http = relay.http()
    for response in (
        http.post(f"/channels/{cid_hex(listener)}/payments", json=forged.body),
        http.post("/payments/batch", json={"payments": [{**forged.body, "channelId": cid_hex(listener), "id": 1}]}),
    ):
        body = response.json()
        item = body["results"][0] if "results" in body else body
        assert item["error"]["code"] == "unauthorized_signer", body  # who signed is checked first
        assert "state" not in item, "the channel's state went to someone who cannot sign for it"
    # the channel's own signer still gets it, to resynchronise
    own = sign_charge(listener, charge_play(opened, listener.listing(blues)), play_spec(blues), state=opened)
    body = http.post(f"/channels/{cid_hex(listener)}/payments", json=own.body).json()
    assert body["state"]["seq"] == 2


# ---------------------------------------------------------------------------------------------- the browser


def test_the_player_origin_sends_a_csp_with_the_import_maps_hash_and_no_framing(relay: InProcessRelay) -> None:
    """A page or a framing site tries to run foreign script on the origin that keeps session keys."""
    page = httpx.get(relay.url + "/", timeout=10)
    assert page.status_code == 200 and "importmap" in page.text
    importmap = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.DOTALL)
    assert importmap is not None
    digest = base64.b64encode(hashlib.sha256(importmap.group(1).encode()).digest()).decode()
    for response in (page, httpx.get(relay.api + "/info", timeout=10), httpx.get(relay.url + "/nowhere", timeout=10)):
        csp = {d.split()[0]: d.split()[1:] for d in response.headers["content-security-policy"].split("; ")}
        assert csp["script-src"] == ["'self'", f"'sha256-{digest}'"]
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
        assert csp["default-src"] == ["'self'"] and "'unsafe-inline'" not in str(csp)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_docs_pages_that_load_cdn_scripts_are_not_served_on_the_player_origin(relay: InProcessRelay) -> None:
    """/docs and /redoc would load floating-version Swagger UI / ReDoc from a CDN next to the session keys."""
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = httpx.get(relay.url + path, timeout=10)
        assert "cdn.jsdelivr.net" not in response.text and "<script" not in response.text, path
    assert httpx.get(relay.url + "/openapi.json", timeout=10).json()["info"]["title"] == "ChainStream relay"
    # and the player's own page loads nothing from another origin
    index = (ROOT / "frontend" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", index)


def test_stranger_rebuilds_a_guessed_first_voucher_learns_nothing_from_a_duplicate(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger rebuilds the channel's first voucher for a guessed track (receipts are public data), signs it
    itself, and watches for a "duplicate" acknowledgement (it would confirm the play and show the balance)."""
    listener = played(relay, relay_chain)
    assert listener.channel_id is not None
    opened = LedgerState.opened(listener.channel_id)
    modem = relay_chain.track(MODEM)
    guess = sign_charge(
        listener,
        charge_play(opened, listener.listing(modem)),
        play_spec(modem),
        key=new_wallet(relay_chain),
        state=opened,
    )
    response = relay.http().post(f"/channels/{cid_hex(listener)}/payments", json=guess.body)
    body = rejected(response, 403, "unauthorized_signer")
    assert "state" not in body and "remaining" not in body
    # the listener's own resend of that voucher is still acknowledged as a duplicate (idempotent retries)
    own = sign_charge(listener, charge_play(opened, listener.listing(modem)), play_spec(modem), state=opened)
    assert relay.http().post(f"/channels/{cid_hex(listener)}/payments", json=own.body).json()["status"] == "duplicate"


def test_stranger_probes_a_channels_seq_and_next_voucher_with_payments_learns_nothing(
    relay: InProcessRelay, relay_chain: RelayChain
) -> None:
    """A stranger posts payments it signed itself (any seq, a guessed next voucher) to read the channel's seq,
    whether its guess of the history is right, or today's spending, from the refusals."""
    listener = played(relay, relay_chain)
    stranger = new_wallet(relay_chain)
    modem = relay_chain.track(MODEM)
    assert listener.state is not None
    # the true next voucher (what a perfect guess of the history would give), signed by the stranger
    right = sign_charge(listener, charge_play(listener.state, listener.listing(modem)), play_spec(modem), key=stranger)
    http = relay.http()
    answers = []
    for seq in (1, 2, 3, 99):
        body = {**right.body, "seq": seq}
        answers.append(
            rejected(http.post(f"/channels/{cid_hex(listener)}/payments", json=body), 403, "unauthorized_signer")
        )
    # every answer is the same refusal, whatever the seq and however good the guess: no "expected seq 3"
    assert len({a["error"]["message"] for a in answers}) == 1 and "seq" not in answers[0]["error"]["message"]
    assert not any("state" in a for a in answers)
