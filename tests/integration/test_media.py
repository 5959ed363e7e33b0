"""Artists publish audio: uploads to a real relay (owner checked on chain, content hash checked, real ffmpeg),
limits and clear refusals for bad files, atomic publishing across a crash, and the SDK streaming what it pays for."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from chainstream.media.upload import upload_digest
from chainstream.pricing import Split, Terms
from chainstream.protocol import PrivateKey
from chainstream.protocol.hashing import keccak
from chainstream.sdk import Artist, RelayError
from chainstream.sdk.artist import upload_audio
from chainstream.seed import catalog_audio, synthesize
from tests.integration.media_fixtures import GRANT, needs_ffmpeg, owner_key, publish
from tests.integration.relay_fixtures import (
    BLUES,
    DRIFT,
    ETH,
    GWEI,
    MODEM,
    InProcessRelay,
    RelayChain,
    RelayProcess,
    cid_hex,
    open_listener,
    rejected,
    wait_until,
)


def _put(relay: InProcessRelay, track_id: bytes, body: bytes, key: PrivateKey) -> httpx.Response:
    info = relay.client().info()
    signature = key.sign(upload_digest(info["chainId"], info["relay"], track_id)).to_hex()
    return httpx.put(
        f"{relay.api}/tracks/0x{track_id.hex()}/media",
        content=body,
        headers={"X-ChainStream-Signature": signature},
        timeout=60,
    )


def _register(rc: RelayChain, relay: InProcessRelay, data: bytes, actor: str = "artist") -> bytes:
    track_id = keccak(data)
    key = rc.chain.key(actor)
    Artist(key, w3=rc.w3, deployment=rc.chain.deployment).register_track(
        track_id, f"upload test {track_id.hex()[:8]}", Terms(per_play=1_000 * GWEI), Split.solo(key.address)
    )
    wait_until(lambda: track_id in relay.service.catalog.entries, what="the catalog to see the new track")
    return track_id


def test_the_owner_publishes_audio_as_segments_a_browser_plays_and_a_second_upload_changes_nothing(
    relay_chain: RelayChain, make_relay: object
) -> None:
    """The owner's upload is transcoded into fMP4/AAC segments of about 2 s covering the whole file."""
    relay = make_relay()  # type: ignore[operator]
    first = publish(relay_chain, relay, DRIFT)[DRIFT]
    assert first["status"] == "published"
    assert first["mime"] == 'audio/mp4; codecs="mp4a.40.2"'
    durations = [s["duration"] for s in first["segments"]]
    assert len(durations) == 6 and all(1.5 <= d <= 2.6 for d in durations), durations
    assert abs(first["duration"] - 12.0) < 0.1
    init = httpx.get(relay.url + first["init"], timeout=30)
    assert init.status_code == 200 and init.content[4:8] == b"ftyp"  # an fMP4 initialisation segment
    again = publish(relay_chain, relay, DRIFT)[DRIFT]
    assert again["status"] == "already_published" and again["segments"] == first["segments"]


def test_an_upload_for_a_track_the_registry_does_not_know_is_refused(relay: InProcessRelay) -> None:
    """No track, no audio: 404 unknown_track (nothing is read or stored)."""
    needs_ffmpeg()
    data = b"RIFF not registered"
    rejected(_put(relay, keccak(data), data, PrivateKey.generate()), 404, "unknown_track")


def test_a_corrupt_file_is_refused_with_415_and_nothing_is_published(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """A file ffmpeg cannot read as audio: 415 unsupported_media, the track stays unpublished."""
    needs_ffmpeg()
    data = b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(4000)
    track_id = _register(relay_chain, relay, data)
    rejected(_put(relay, track_id, data, relay_chain.chain.key("artist")), 415, "unsupported_media")
    rejected(httpx.get(f"{relay.api}/tracks/0x{track_id.hex()}/media"), 404, "media_not_published")
    assert list(Path(relay.settings.media_dir, "staging", "main").iterdir()) == []


def test_an_upload_larger_than_the_limit_is_refused_with_413(relay_chain: RelayChain, make_relay: object) -> None:
    """upload_max_bytes bounds what the relay reads (and stores) from one upload."""
    needs_ffmpeg()
    relay = make_relay(upload_max_bytes=100_000)  # type: ignore[operator]
    track_id, data = catalog_audio()[MODEM]
    assert len(data) > 100_000
    rejected(_put(relay, track_id, data, owner_key(relay_chain, MODEM)), 413, "upload_too_large")
    # also when the client does not announce the length (chunked): the relay stops reading at the limit
    info = relay.client().info()
    signature = owner_key(relay_chain, MODEM).sign(upload_digest(info["chainId"], info["relay"], track_id)).to_hex()
    response = httpx.put(
        f"{relay.api}/tracks/0x{track_id.hex()}/media",
        content=iter([data[:60_000], data[60_000:]]),
        headers={"X-ChainStream-Signature": signature},
        timeout=60,
    )
    rejected(response, 413, "upload_too_large")


def test_audio_longer_than_the_limit_is_refused_with_413(relay_chain: RelayChain, make_relay: object) -> None:
    """upload_max_seconds bounds the playback length (checked by ffprobe before any transcoding)."""
    relay = make_relay(upload_max_seconds=5)  # type: ignore[operator]
    needs_ffmpeg()
    track_id, data = catalog_audio()[MODEM]  # 8 s
    rejected(_put(relay, track_id, data, owner_key(relay_chain, MODEM)), 413, "audio_too_long")


def test_the_sdk_streams_a_per_second_track_paying_one_segment_ahead(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """Listener.stream pays seconds whenever the relay answers 402 and gets every segment; the channel's
    deliveries show what was paid and served."""
    manifest = publish(relay_chain, relay, DRIFT)[DRIFT]
    listener = open_listener(relay_chain, relay)
    streamed = listener.stream(relay_chain.track(DRIFT))
    assert streamed.segments == len(manifest["segments"])
    assert streamed.audio.startswith(httpx.get(relay.url + manifest["init"]).content)
    assert streamed.seconds_paid >= 12
    delivered = listener.relay.get(f"/channels/0x{listener.channel_id.hex()}/deliveries")["tracks"]  # type: ignore[union-attr]
    assert delivered == [
        {
            "trackId": "0x" + relay_chain.track(DRIFT).hex(),
            "secondsPaid": streamed.seconds_paid,
            "secondsDelivered": pytest.approx(manifest["duration"]),
            "secondsDeliveredMetered": pytest.approx(manifest["duration"]),
            "segments": len(manifest["segments"]),
        }
    ]
    history = listener.relay.get(f"/channels/0x{listener.channel_id.hex()}/history")  # type: ignore[union-attr]
    assert history["delivered"] == delivered


def test_the_artists_earnings_show_seconds_delivered_next_to_seconds_paid(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """A listener streams a per-second track to the end: the owner's and a collaborator's earnings rows for it show
    the seconds paid and the metered seconds of audio the relay served on those channels (issue 10)."""
    manifest = publish(relay_chain, relay, DRIFT)[DRIFT]
    track = "0x" + relay_chain.track(DRIFT).hex()
    artists = {
        who: Artist(
            relay_chain.chain.key(who), w3=relay_chain.w3, deployment=relay_chain.chain.deployment, relay=relay.client()
        )
        for who in ("cleo", "ada")  # the owner, and a collaborator on the split
    }

    def row(who: str) -> tuple[int, float]:
        rows = [t for t in artists[who].earnings()["tracks"] if t["target"] == track and t["token"] == ETH]
        return (rows[0]["seconds"], rows[0]["secondsDelivered"]) if rows else (0, 0.0)

    before = {who: row(who) for who in artists}  # the relay may have streamed this track for earlier tests
    streamed = open_listener(relay_chain, relay).stream(relay_chain.track(DRIFT))
    segment = max(seg["duration"] for seg in manifest["segments"])
    for who in artists:
        seconds, delivered = row(who)
        assert seconds - before[who][0] == streamed.seconds_paid
        assert delivered - before[who][1] == pytest.approx(manifest["duration"])
        # paid one segment ahead at most: never more than one segment's audio beyond what was paid
        assert delivered - before[who][1] <= streamed.seconds_paid + segment


def test_the_sdk_streams_a_per_play_track_with_one_payment(relay_chain: RelayChain, relay: InProcessRelay) -> None:
    """One play's grant opens every segment of a per-play track."""
    manifest = publish(relay_chain, relay, BLUES)[BLUES]
    listener = open_listener(relay_chain, relay)
    streamed = listener.stream(relay_chain.track(BLUES))
    assert streamed.payments == 1 and streamed.segments == len(manifest["segments"])


def test_the_cli_uploads_a_file_for_the_owner(relay_chain: RelayChain, relay: InProcessRelay, tmp_path: Path) -> None:
    """Artist.upload from a file on disk (streamed), as the CLI does."""
    needs_ffmpeg()
    data = synthesize((300.0, 400.0), 3.0)
    track_id = _register(relay_chain, relay, data)
    path = tmp_path / "song.wav"
    path.write_bytes(data)
    result = upload_audio(relay.client(), relay_chain.chain.key("artist"), path)
    assert result["status"] == "published" and result["trackId"] == "0x" + track_id.hex()
    with pytest.raises(RelayError) as refused:
        relay.client().fetch(f"/tracks/0x{track_id.hex()}/segments/0", {GRANT: ""})
    assert refused.value.status == 402


# ------------------------------------------------------------------------------------------ crash safety


@pytest.mark.anvil
def test_a_relay_killed_mid_upload_publishes_nothing_and_takes_the_upload_again_after_restart(
    anvil_relay_chain: RelayChain, relay_process: RelayProcess
) -> None:
    """kill -9 while the body streams in: no track directory appears, the staging leftover is removed at the
    next start, and the same upload then publishes."""
    needs_ffmpeg()
    relay_process.start()
    track_id, data = catalog_audio()[MODEM]
    info = relay_process.client().info()
    key = owner_key(anvil_relay_chain, MODEM)
    signature = key.sign(upload_digest(info["chainId"], info["relay"], track_id)).to_hex()
    media = relay_process.workdir / "chainstream-media"
    staging = media / "staging" / "main"
    head = (
        f"PUT /api/v1/tracks/0x{track_id.hex()}/media HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-ChainStream-Signature: {signature}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", relay_process.port), timeout=30) as sock:
        sock.sendall(head + data[: len(data) // 2])
        # the relay is writing the body to its staging directory: crash now
        wait_until(
            lambda: any(p.stat().st_size > 0 for p in staging.glob("*/original")), what="the upload to reach disk"
        )
        relay_process.kill()
    assert not any((media / "tracks").iterdir()), "a crashed upload left a published track"
    assert any(staging.iterdir())  # the half-written upload is there, unpublished
    relay_process.start()
    assert not any(staging.iterdir()), "the restart did not remove the crashed upload"
    rejected(httpx.get(f"{relay_process.api}/tracks/0x{track_id.hex()}/media"), 404, "media_not_published")
    assert upload_audio(relay_process.client(), key, data)["status"] == "published"
    assert (media / "tracks" / f"0x{track_id.hex()}" / "manifest.json").is_file()


# ------------------------------------------------------------------------------------------ several instances


def _two_instances(rc: RelayChain, postgres_url: str, tmp_path: Path) -> tuple[InProcessRelay, InProcessRelay]:
    """Instances a and b of one relay (one new key, one PostgreSQL database, one content directory), started."""
    from tests.integration.relay_fixtures import LAZY, new_wallet

    actor = f"relay-media-{os.urandom(4).hex()}"
    rc.chain.keys[actor] = new_wallet(rc)
    shared = {"media_dir": tmp_path / "media", **LAZY}
    a = InProcessRelay(rc, postgres_url, relay_actor=actor, instance="a", **shared).start()
    b = InProcessRelay(rc, postgres_url, relay_actor=actor, instance="b", **shared).start()
    return a, b


@pytest.mark.postgres
def test_two_instances_on_postgresql_serve_the_same_content_and_honour_each_others_grants(
    relay_chain: RelayChain,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """Instances a and b of one relay (one key, one PostgreSQL database, one content directory): audio uploaded
    through a streams from b; a grant issued by a opens b's segments, and the per-second budget a listener
    paid through a is metered across both (b refuses what a already served)."""
    from tests.integration.relay_fixtures import new_wallet

    a, b = _two_instances(relay_chain, postgres_url, tmp_path)
    try:
        manifest = publish(relay_chain, a, DRIFT)[DRIFT]
        assert b.client().get(f"/tracks/0x{relay_chain.track(DRIFT).hex()}/media") == {
            k: v for k, v in manifest.items() if k != "status"
        }
        listener = open_listener(relay_chain, a, wallet=new_wallet(relay_chain))
        token = listener.listen(relay_chain.track(DRIFT), 3).grant["token"]  # type: ignore[index]
        segments = [s["url"] for s in manifest["segments"]]
        assert httpx.get(a.url + segments[0], headers={GRANT: token}).status_code == 200  # 0-2 s of 3 s paid
        assert httpx.get(b.url + segments[1], headers={GRANT: token}).status_code == 200  # b: 2-4 s (one ahead)
        rejected(httpx.get(a.url + segments[2], headers={GRANT: token}), 402, "payment_required")
        rejected(httpx.get(b.url + segments[2], headers={GRANT: token}), 402, "payment_required")
        delivered = listener.relay.get(f"/channels/{cid_hex(listener)}/deliveries")["tracks"]
        assert delivered[0]["secondsPaid"] == 3 and delivered[0]["segments"] == 2
    finally:
        b.stop()
        a.stop()


@pytest.mark.postgres
def test_segment_requests_racing_on_two_instances_never_serve_past_the_seconds_paid(
    relay_chain: RelayChain,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """Listeners pay 3 s of a per-second track through instance a and ask both instances for every segment at
    once: together a and b serve two segments (0-2 s, then 2-4 s, one ahead) per listener, never a third. (The
    whole path, HTTP to the shared store; tests/store/test_postgres_instances.py races the store itself harder.)"""
    from tests.integration.relay_fixtures import new_wallet

    a, b = _two_instances(relay_chain, postgres_url, tmp_path)
    try:
        manifest = publish(relay_chain, a, DRIFT)[DRIFT]
        urls = [s["url"] for s in manifest["segments"]]
        for _ in range(6):
            listener = open_listener(relay_chain, a, wallet=new_wallet(relay_chain))
            token = listener.listen(relay_chain.track(DRIFT), 3).grant["token"]  # type: ignore[index]
            asks = [(base, url) for url in urls for base in (a.url, b.url)]
            barrier = threading.Barrier(len(asks))

            def fetch(ask: tuple[str, str], token: str = token, barrier: threading.Barrier = barrier) -> int:
                barrier.wait()
                return httpx.get(ask[0] + ask[1], headers={GRANT: token}, timeout=60).status_code

            with ThreadPoolExecutor(len(asks)) as pool:
                statuses = list(pool.map(fetch, asks))
            assert sorted(set(statuses)) == [200, 402], statuses
            delivered = listener.relay.get(f"/channels/{cid_hex(listener)}/deliveries")["tracks"]
            assert delivered[0]["segments"] == 2, (delivered, statuses)
    finally:
        b.stop()
        a.stop()


@pytest.mark.postgres
def test_a_metered_segment_waiting_on_another_instances_lock_holds_up_no_other_request(
    relay_chain: RelayChain,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """Another instance holds the metering lock of a listener's track (as while it meters a segment of it): this
    instance's request for that segment waits for the lock, but its event loop does not, so its payments and
    health checks are answered meanwhile; once the lock is released the segment is served."""
    import psycopg

    from chainstream.store.postgres import METER_LOCK
    from tests.integration.relay_fixtures import new_wallet

    a, b = _two_instances(relay_chain, postgres_url, tmp_path)
    try:
        manifest = publish(relay_chain, a, DRIFT)[DRIFT]
        listener = open_listener(relay_chain, a, wallet=new_wallet(relay_chain))
        token = listener.listen(relay_chain.track(DRIFT), 3).grant["token"]  # type: ignore[index]
        key = (bytes.fromhex(cid_hex(listener)[2:]) + relay_chain.track(DRIFT)).hex()
        with psycopg.connect(postgres_url, autocommit=True) as other, ThreadPoolExecutor(1) as pool:
            with other.transaction():
                other.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (METER_LOCK, key))
                waiting = pool.submit(
                    httpx.get, a.url + manifest["segments"][0]["url"], headers={GRANT: token}, timeout=120
                )
                wait_until(lambda: _waits_for_advisory_lock(other), what="the segment request to wait on the lock")
                assert httpx.get(a.api + "/health/live", timeout=15).status_code == 200
                assert listener.listen(relay_chain.track(DRIFT), 2).grant is not None  # a payment, answered
                assert not waiting.done()
            assert waiting.result().status_code == 200
    finally:
        b.stop()
        a.stop()


def _waits_for_advisory_lock(conn: object) -> bool:
    """Whether some session of the database waits for an advisory lock."""
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    return bool(rows[0])


def test_a_segment_the_relay_cannot_read_is_neither_served_nor_metered(
    relay_chain: RelayChain, relay: InProcessRelay
) -> None:
    """A per-second listener asks for a segment whose file is gone from the content store: 404, and the seconds it
    paid are not spent on it (the next segment is served, and the channel's deliveries count only that one)."""
    from chainstream.pricing import Terms
    from tests.integration.media_fixtures import audio_track

    track = audio_track(relay_chain, relay, seconds=8, terms=Terms(per_second=1_000 * GWEI), notes=(261.6, 392.0))
    manifest = relay.client().get(f"/tracks/0x{track.hex()}/media")
    listener = open_listener(relay_chain, relay)
    token = listener.listen(track, 2).grant["token"]  # type: ignore[index]  # one segment's seconds (2 s)
    media = relay.service.media
    first = media.manifest(track).segments[0].name
    (media.content.tracks / f"0x{track.hex()}" / first).unlink()
    rejected(httpx.get(relay.url + manifest["segments"][0]["url"], headers={GRANT: token}), 404, "media_not_published")
    assert httpx.get(relay.url + manifest["segments"][1]["url"], headers={GRANT: token}).status_code == 200
    delivered = listener.relay.get(f"/channels/{cid_hex(listener)}/deliveries")["tracks"]
    assert [t["segments"] for t in delivered] == [1]
