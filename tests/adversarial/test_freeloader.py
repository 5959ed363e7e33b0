"""The freeloader: a listener or a stranger trying to get audio without paying for it.

Real relay (in-process, eth-tester), real ffmpeg output, real payments; the attacker holds whatever it can get
honestly (its own channel, its own grants, the public manifest) and tries to stretch it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from chainstream.media.upload import upload_digest
from chainstream.pricing import Terms
from chainstream.protocol import Kind, PrivateKey
from chainstream.protocol.hashing import keccak
from chainstream.sdk import Artist
from chainstream.seed import catalog_audio
from tests.integration.media_fixtures import GRANT, audio_track, owner_key, publish
from tests.integration.relay_fixtures import (
    BLUES,
    DRIFT,
    GWEI,
    MODEM,
    InProcessRelay,
    RelayChain,
    cid_hex,
    open_listener,
    rejected,
    signed_plays,
    wait_until,
)


def _get(relay: InProcessRelay, path: str, grant: str | None = None) -> httpx.Response:
    return httpx.get(relay.url + path, headers={GRANT: grant} if grant else {}, timeout=30)


def _segments(manifest: dict[str, Any]) -> list[str]:
    return [s["url"] for s in manifest["segments"]]


# ------------------------------------------------------------------------------------------ uploads


def test_a_stranger_cannot_publish_audio_for_someone_elses_track(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """Upload signed by a key that does not own the track: 403 not_track_owner, nothing published."""
    track_id, data = catalog_audio()[MODEM]
    info = relay.client().info()
    stranger = relay_chain.chain.key("stranger")
    signature = stranger.sign(upload_digest(info["chainId"], info["relay"], track_id)).to_hex()
    response = httpx.put(
        f"{relay.api}/tracks/0x{track_id.hex()}/media", content=data, headers={"X-ChainStream-Signature": signature}
    )
    rejected(response, 403, "not_track_owner")
    unsigned = httpx.put(f"{relay.api}/tracks/0x{track_id.hex()}/media", content=data)
    rejected(unsigned, 403, "not_track_owner")


def test_the_owners_signature_for_another_relay_does_not_publish_here(relay_chain: RelayChain, make_relay: Any) -> None:
    """A captured upload signature names its relay: replayed to another relay it is not the owner's."""
    here = make_relay()
    track_id, data = catalog_audio()[BLUES]
    info = here.client().info()
    signature = owner_key(relay_chain, BLUES).sign(
        upload_digest(info["chainId"], relay_chain.chain.address("relay"), track_id)
    )
    response = httpx.put(
        f"{here.api}/tracks/0x{track_id.hex()}/media",
        content=data,
        headers={"X-ChainStream-Signature": signature.to_hex()},
    )
    rejected(response, 403, "not_track_owner")


def test_the_owner_cannot_publish_a_file_other_than_the_registered_one(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """Owner-signed upload of different bytes under the track id: 422 content_mismatch, nothing published."""
    track_id, data = catalog_audio()[MODEM]
    other = catalog_audio()[BLUES][1]
    info = relay.client().info()
    signature = owner_key(relay_chain, MODEM).sign(upload_digest(info["chainId"], info["relay"], track_id)).to_hex()
    response = httpx.put(
        f"{relay.api}/tracks/0x{track_id.hex()}/media", content=other, headers={"X-ChainStream-Signature": signature}
    )
    body = rejected(response, 422, "content_mismatch")
    assert "0x" + keccak(other).hex() in body["error"]["message"]
    manifest = httpx.get(f"{relay.api}/tracks/0x{track_id.hex()}/media")
    assert manifest.status_code == 404 or manifest.json()["original"]["bytes"] == len(data)


# ------------------------------------------------------------------------------------------ listening


def test_every_segment_and_the_original_are_402_without_a_paying_voucher_and_200_with_one(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """No grant: every segment and the original answer 402 with what to pay; a play's grant opens the segments, a
    download's the original (the very uploaded file)."""
    manifest = publish(relay_chain, relay, BLUES)[BLUES]
    for url in [*_segments(manifest), manifest["original"]["url"]]:
        body = rejected(_get(relay, url), 402, "payment_required")
        payment = body["payment"]
        assert payment["trackId"] == "0x" + relay_chain.track(BLUES).hex()
        assert payment["relay"] == relay.address and payment["paymentEndpoint"].endswith("/payments")
        assert {a["kind"] for a in payment["accepts"]} >= {"download"}
    listener = open_listener(relay_chain, relay)
    play = listener.play(relay_chain.track(BLUES)).grant
    assert play is not None and play["kind"] == "play"
    for url in _segments(manifest):
        assert _get(relay, url, play["token"]).status_code == 200
    rejected(_get(relay, manifest["original"]["url"], play["token"]), 402, "payment_required")
    original = listener.download_original(relay_chain.track(BLUES))
    assert original == catalog_audio()[BLUES][1]


def test_a_grant_for_one_track_does_not_open_another(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """A paid play of one track, presented for another track's segments: 403 grant_mismatch."""
    manifests = publish(relay_chain, relay, BLUES, MODEM)
    listener = open_listener(relay_chain, relay)
    grant = listener.play(relay_chain.track(BLUES)).grant
    assert grant is not None
    rejected(_get(relay, _segments(manifests[MODEM])[0], grant["token"]), 403, "grant_mismatch")


def test_a_grant_altered_to_name_another_channel_or_more_seconds_is_refused(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """Editing the grant's payload (channel, paid seconds, expiry) breaks its MAC: 403 invalid_grant."""
    manifest = publish(relay_chain, relay, DRIFT)[DRIFT]
    listener = open_listener(relay_chain, relay)
    token = listener.listen(relay_chain.track(DRIFT), 2).grant["token"]  # type: ignore[index]
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for field, value in (("c", "0x" + "11" * 32), ("p", 10**9), ("x", 2**40)):
        forged = base64.urlsafe_b64encode(json.dumps({**payload, field: value}).encode()).rstrip(b"=").decode()
        rejected(_get(relay, _segments(manifest)[0], f"{forged}.{mac}"), 403, "invalid_grant")
    rejected(_get(relay, _segments(manifest)[0], "x" * 5000), 403, "invalid_grant")
    assert _get(relay, _segments(manifest)[0], token).status_code == 200


def test_another_relays_grant_opens_nothing_here(
    relay_chain: RelayChain, relay: InProcessRelay, make_relay: Any
) -> None:
    """A grant is MACed with its relay's key: a real grant from relay A is invalid at relay B."""
    other = make_relay()
    publish(relay_chain, relay, BLUES)
    manifest = publish(relay_chain, other, BLUES)[BLUES]
    listener = open_listener(relay_chain, relay)
    grant = listener.play(relay_chain.track(BLUES)).grant
    rejected(_get(other, _segments(manifest)[0], grant["token"]), 403, "invalid_grant")  # type: ignore[index]


def test_a_per_second_listener_who_pays_for_20_seconds_gets_at_most_20_seconds_and_one_segment(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """Pay 20 s of a 30 s track, then fetch every segment (and refetch, and use older grants): the relay serves
    at least what was paid and at most one segment more; the rest is 402."""
    track = audio_track(relay_chain, relay, seconds=30, terms=Terms(per_second=1_000 * GWEI))
    manifest = relay.client().get(f"/tracks/0x{track.hex()}/media")
    listener = open_listener(relay_chain, relay)
    grants = [listener.listen(track, 10).grant["token"], listener.listen(track, 10).grant["token"]]  # type: ignore[index]
    served = 0.0
    longest = max(s["duration"] for s in manifest["segments"])
    for seg in manifest["segments"]:
        for token in reversed(grants):  # the newest grant, then the older one
            response = _get(relay, seg["url"], token)
            if response.status_code == 200:
                served += seg["duration"]
                break
            rejected(response, 402, "payment_required")
    assert 20 <= served <= 20 + longest, served
    # refetching what was served is free, but opens nothing new
    assert _get(relay, manifest["segments"][0]["url"], grants[-1]).status_code == 200
    last = manifest["segments"][-1]["url"]
    rejected(_get(relay, last, grants[-1]), 402, "payment_required")
    delivered = listener.relay.get(f"/channels/0x{listener.channel_id.hex()}/deliveries")["tracks"]  # type: ignore[union-attr]
    assert delivered[0]["secondsPaid"] == 20 and delivered[0]["secondsDeliveredMetered"] <= 20 + longest


def test_a_second_listener_cannot_spend_the_first_ones_seconds(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """Two channels: the second, paying nothing, holds no grant; fabricating one fails; the first's grant is
    metered on the first's channel only."""
    manifest = publish(relay_chain, relay, DRIFT)[DRIFT]
    payer = open_listener(relay_chain, relay)
    token = payer.listen(relay_chain.track(DRIFT), 2).grant["token"]  # type: ignore[index]
    rejected(_get(relay, _segments(manifest)[0]), 402, "payment_required")
    assert _get(relay, _segments(manifest)[0], token).status_code == 200
    rejected(_get(relay, _segments(manifest)[1], token), 402, "payment_required")


def test_an_expired_play_grant_opens_nothing(relay_chain: RelayChain, make_relay: Any) -> None:
    """A play's grant is bounded in time: past grant_ttl it is 402 grant_expired."""
    now = [1_700_000_000.0]
    import time as _time

    offset = _time.time() - now[0]
    relay = make_relay(grant_ttl=60, clock=lambda: now[0] + offset)
    manifest = publish(relay_chain, relay, BLUES)[BLUES]
    listener = open_listener(relay_chain, relay)
    token = listener.play(relay_chain.track(BLUES)).grant["token"]  # type: ignore[index]
    assert _get(relay, _segments(manifest)[0], token).status_code == 200
    now[0] += 61
    rejected(_get(relay, _segments(manifest)[1], token), 402, "grant_expired")


def test_resending_a_paid_play_after_its_grant_expired_buys_no_more_listening(
    relay_chain: RelayChain, make_relay: Any
) -> None:
    """The listener (or anyone holding its signed play) posts the accepted payment again once the grant expired:
    the relay answers `duplicate` (nothing is charged) with the same grant, bounded by when the play was accepted —
    not a fresh hour of audio for the same single payment."""
    now = [1_700_000_000.0]
    import time as _time

    offset = _time.time() - now[0]
    relay = make_relay(grant_ttl=60, clock=lambda: now[0] + offset)
    manifest = publish(relay_chain, relay, BLUES)[BLUES]
    listener = open_listener(relay_chain, relay)
    [play] = signed_plays(listener, relay_chain.track(BLUES), 1)
    path = f"/channels/{cid_hex(listener)}/payments"
    first = relay.http().post(path, json=play.body).json()
    assert first["status"] == "accepted"
    now[0] += 61
    again = relay.http().post(path, json=play.body).json()
    assert again["status"] == "duplicate" and again["amount"] == "0"
    assert again["grant"]["expiresAt"] == first["grant"]["expiresAt"]
    rejected(_get(relay, _segments(manifest)[0], again["grant"]["token"]), 402, "grant_expired")


def test_a_buyer_gets_the_original_again_after_the_purchase_grant_expired_and_a_player_never_does(
    relay_chain: RelayChain, make_relay: Any
) -> None:
    """A download buyer's later (free) play earns a download grant: the original again. A listener who only
    played the track gets 402 for the original whatever it replays."""
    now = [1_700_000_000.0]
    import time as _time

    offset = _time.time() - now[0]
    relay = make_relay(grant_ttl=60, clock=lambda: now[0] + offset)
    manifest = publish(relay_chain, relay, BLUES)[BLUES]
    buyer = open_listener(relay_chain, relay)
    first = buyer.download(relay_chain.track(BLUES)).grant["token"]  # type: ignore[index]
    now[0] += 61
    rejected(_get(relay, manifest["original"]["url"], first), 402, "grant_expired")
    assert buyer.download_original(relay_chain.track(BLUES)) == catalog_audio()[BLUES][1]
    player = open_listener(relay_chain, relay, wallet="listener2")
    for _ in range(2):
        token = player.play(relay_chain.track(BLUES)).grant["token"]  # type: ignore[index]
        rejected(_get(relay, manifest["original"]["url"], token), 402, "payment_required")


def test_a_free_preview_serves_min_seconds_and_no_more(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """A track charging a play only after minSeconds: those seconds are free to anyone, the rest is 402."""
    track = audio_track(
        relay_chain, relay, seconds=10, terms=Terms(per_play=5_000 * GWEI, min_seconds=4), notes=(440.0, 550.0)
    )
    manifest = relay.client().get(f"/tracks/0x{track.hex()}/media")
    assert manifest["previewSeconds"] == 4
    served = 0.0
    for seg in manifest["segments"]:
        response = _get(relay, seg["url"])
        if response.status_code == 200:
            served += seg["duration"]
        else:
            rejected(response, 402, "payment_required")
    assert 0 < served <= 4
    # The artist ends the preview: the next request for its first segment is refused (nothing kept the old one).
    owner = Artist(relay_chain.chain.key("artist"), w3=relay_chain.w3, deployment=relay_chain.chain.deployment)
    owner.set_terms(track, Terms(per_play=5_000 * GWEI))
    wait_until(
        lambda: relay.client().get(f"/tracks/0x{track.hex()}/media")["previewSeconds"] == 0,
        what="the relay to see the new terms",
    )
    rejected(_get(relay, manifest["segments"][0]["url"]), 402, "payment_required")


def test_a_stranger_with_a_made_up_key_gets_nothing(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """A grant MACed with a guessed key (the zero key, a random one) is invalid."""
    from chainstream.media import grants as g

    manifest = publish(relay_chain, relay, BLUES)[BLUES]
    for key in (b"\x00" * 32, PrivateKey.generate().secret):
        token = g.issue(
            g.grant_key(key),
            g.Grant(b"\x01" * 32, relay_chain.track(BLUES), 1, Kind.DOWNLOAD, 2**40),
        )
        rejected(_get(relay, _segments(manifest)[0], token), 403, "invalid_grant")
        rejected(_get(relay, manifest["original"]["url"], token), 403, "invalid_grant")


def test_a_stranger_cannot_read_what_a_channel_listened_to(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """A channel's deliveries (what it heard, when) are the payer's: 401 without a read token, 200 with it."""
    publish(relay_chain, relay, BLUES)
    listener = open_listener(relay_chain, relay)
    listener.stream(relay_chain.track(BLUES), max_segments=1)
    path = f"/channels/0x{listener.channel_id.hex()}/deliveries"  # type: ignore[union-attr]
    rejected(httpx.get(relay.api + path), 401, "read_token_required")
    assert listener.relay.get(path)["tracks"][0]["segments"] == 1  # type: ignore[union-attr]
