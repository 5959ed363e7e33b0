"""The relay's audio: uploads by a track's owner, and segments served only against grants that paid for them.

Upload: the owner's signature over (track, relay, chain) is checked against the TrackRegistry, the body is
streamed to a staging directory while its keccak256 is computed, and only a file whose hash is the track id is
probed, transcoded and published (atomically, see media/store.py).

Streaming: every payment for a track (a play, seconds, a download) is acknowledged with a grant (media/grants.py).
A segment is served for a grant of the same track: a play's or a download's for the grant's lifetime, a
per-second grant while what the channel was served of the track (metered by the store) is below what it had paid
for; every segment served is recorded per channel and receipt. A track's `minSeconds` are a free preview. Anything
else is answered 402 with what to pay (`payment_required_body`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sha3 import keccak_256

from chainstream.chain.contracts import RegistryClient
from chainstream.codes import Code
from chainstream.config import Settings
from chainstream.errors import ChainStreamError
from chainstream.media import grants
from chainstream.media.errors import MediaError
from chainstream.media.grants import GRANT_KINDS, Grant
from chainstream.media.store import ORIGINAL, DirectoryContentStore, Manifest, Segment
from chainstream.media.transcode import INIT, MIME, PLAYLIST, probe, tools, transcode
from chainstream.media.upload import upload_digest
from chainstream.protocol import Kind, PrivateKey, Signature, recover
from chainstream.relay.catalog import Catalog, CatalogEntry
from chainstream.store import Store
from chainstream.store.records import EXHAUSTED, REPEAT, SERVED
from chainstream.verify import Payment

log = logging.getLogger("chainstream.relay.media")

#: a grant travels in this header (or, for a plain download link, in the `grant` query parameter)
GRANT_HEADER = "X-ChainStream-Grant"
#: at most this many transcodes at once (each is one ffmpeg process)
TRANSCODES = 2
#: a shared store's metering: at most this many decisions in worker threads at once (each instance meters on one
#: database connection, so more would only hold threads that store and chain calls share; the rest wait on the loop)
METERING_IN_FLIGHT = 2


#: verified grant tokens kept (a per-second listener's grant serves one or two segments, a play's every one)
VERIFIED_GRANTS_MAX = 50_000
#: deliveries decided in memory are written to the store this often (one statement, one commit per batch)
DELIVERY_FLUSH_SECONDS = 0.25
#: receipts whose served segments are kept in memory; past it the book is written out and starts over
DELIVERY_BOOK_MAX = 100_000


class DeliveryBook:
    """What the relay served, per channel, track and receipt, decided in memory and written to the store in
    batches (a store with one relay instance: SQLite).

    Each decision (served / repeat / exhausted) is taken on the event loop without awaiting, against what this
    instance served (loaded from the store the first time a channel's track or a receipt is seen), so it is
    atomic; the rows then reach the store within DELIVERY_FLUSH_SECONDS, one commit per batch instead of one
    fsync per segment. A crash can lose that last fraction of a second of records: the listener's history then
    shows slightly less delivered (never more), and the metered budget counts those segments again after the
    restart, against the listener only if it fetches them again. A shared store (several instances) decides in
    the database instead (`Store.record_delivery`), where every instance sees every delivery."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._served: dict[tuple[bytes, bytes, int], set[int]] = {}
        self._metered: dict[tuple[bytes, bytes], int] = {}
        self._pending: list[tuple[bytes, bytes, int, int, int, int, float]] = []
        self._flush_scheduled = False

    def record(
        self, channel: bytes, track: bytes, seq: int, segment: int, millis: int, budget_ms: int | None, now: float
    ) -> str:
        self._bound()
        key = (channel, track, seq)
        served = self._served.get(key)
        if served is None:
            served = self._served[key] = set(self.store.served_segments(channel, track, seq))
        if segment in served:
            return REPEAT
        if budget_ms is not None:
            total = self._metered.get((channel, track))
            if total is None:
                total = self._metered[(channel, track)] = self.store.metered_millis(channel, track)
            if total >= budget_ms:
                return EXHAUSTED
            self._metered[(channel, track)] = total + millis
        served.add(segment)
        self._pending.append((channel, track, seq, segment, millis, 0 if budget_ms is None else 1, now))
        self._schedule()
        return SERVED

    def new_receipt(self, channel: bytes, track: bytes, seq: int) -> None:
        """A receipt just accepted here: nothing was served under it yet (no need to ask the store)."""
        self._bound()
        self._served.setdefault((channel, track, seq), set())

    def _bound(self) -> None:
        """At most DELIVERY_BOOK_MAX receipts in memory (paid receipts nothing is fetched for count too): past it,
        write what is pending and start over from the store."""
        if len(self._served) > DELIVERY_BOOK_MAX:
            self.flush()
            self._served.clear()
            self._metered.clear()

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a direct call): write at once
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_later(DELIVERY_FLUSH_SECONDS, self._flush_later, loop)

    def _flush_later(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        rows, self._pending = self._pending, []
        if rows:
            loop.run_in_executor(None, self._write, rows)

    def _write(self, rows: list[tuple[bytes, bytes, int, int, int, int, float]]) -> None:
        try:
            self.store.add_deliveries(rows)
        except ChainStreamError as exc:  # accounting only: logged, never fails a request that was served
            log.error("could not record %d deliveries: %s", len(rows), exc)

    def flush(self) -> None:
        """Write what is pending now (before reading deliveries back)."""
        rows, self._pending = self._pending, []
        if rows:
            self._write(rows)


@dataclass(frozen=True)
class Served:
    """A file to send: bytes (a segment) or chunks (the original)."""

    media_type: str
    body: bytes | None = None
    chunks: Iterator[bytes] | None = None
    size: int = 0


def media_root(settings: Settings) -> Path:
    """The content store's directory: MEDIA_DIR, else chainstream-media/ beside a SQLite database file (the
    relay's state in one place), else in the working directory (a PostgreSQL URL)."""
    if settings.media_dir is not None:
        return settings.media_dir
    database = settings.database
    if database.startswith("sqlite:///"):
        database = database[len("sqlite:///") :]
    if "://" not in database and database != ":memory:":
        return Path(database).parent / "chainstream-media"
    return Path("chainstream-media")


class MediaService:
    def __init__(
        self,
        settings: Settings,
        *,
        relay_key: PrivateKey,
        store: Store,
        catalog: Catalog,
        registry: RegistryClient,
        chain_id: int,
        channels_address: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.address = relay_key.address
        self.store = store
        self.catalog = catalog
        self.registry = registry
        self.chain_id = chain_id
        self.channels_address = channels_address
        self.clock = clock
        self.content = DirectoryContentStore(media_root(settings), instance=settings.instance)
        self._grant_key = grants.grant_key(relay_key.secret)
        self._transcodes = asyncio.Semaphore(TRANSCODES)
        self._metering = asyncio.Semaphore(METERING_IN_FLIGHT)
        self.book = None if store.shared else DeliveryBook(store)
        self._verified: dict[str, Grant] = {}  # grant tokens whose MAC checked out (a listener reuses one)
        self._previews: dict[bytes, tuple[CatalogEntry, int]] = {}  # preview_ms per track, with the entry it is of
        # Constructed once the instance holds its claim on the database: no upload of this instance is running.
        left = self.content.clean_staging()
        if left:
            log.warning("removed %d unpublished upload(s) left by an earlier run", left)

    # ------------------------------------------------------------------ upload
    async def owner_of(self, track_id: bytes) -> str:
        """The track's owner on chain (the catalog's, or the registry's for a track registered a moment ago)."""
        entry = self.catalog.entries.get(track_id)
        if entry is not None:
            return entry.owner
        info = await asyncio.to_thread(self.registry.find_track, track_id)  # a node outage stays a 503
        if info is None:
            raise MediaError(Code.UNKNOWN_TRACK, f"no track 0x{track_id.hex()} in the registry", status=404)
        return info.owner

    async def check_uploader(self, track_id: bytes, signature: str | None) -> None:
        """The upload's signature must be the track's on-chain owner's (403 not_track_owner otherwise)."""
        if not signature:
            raise MediaError(
                Code.NOT_TRACK_OWNER,
                "an upload must be signed by the track's owner (X-ChainStream-Signature)",
                status=403,
            )
        try:
            signer = recover(upload_digest(self.chain_id, self.address, track_id), Signature.from_hex(signature))
        except ChainStreamError as exc:
            raise MediaError(Code.BAD_SIGNATURE, f"the upload's signature is invalid: {exc}") from exc
        owner = await self.owner_of(track_id)
        if signer != owner:
            raise MediaError(
                Code.NOT_TRACK_OWNER,
                f"the upload is signed by {signer}; only the track's owner {owner} may publish its audio",
                status=403,
            )

    async def upload(
        self, track_id: bytes, signature: str | None, body: AsyncIterator[bytes], content_length: int | None
    ) -> dict[str, Any]:
        """Publish the audio of `track_id` (see the module docstring); returns the manifest's JSON."""
        await self.check_uploader(track_id, signature)
        existing = self.content.manifest(track_id)
        if existing is not None:
            return {"status": "already_published", **self.manifest_json(existing)}
        limit = self.settings.upload_max_bytes
        if content_length is not None and content_length > limit:
            raise MediaError(
                Code.UPLOAD_TOO_LARGE, f"{content_length} bytes; this relay takes up to {limit}", status=413
            )
        staging = self.content.new_staging()
        try:
            size = await _receive(body, staging / ORIGINAL, track_id, limit)
            manifest = await self._transcode(track_id, staging, size)
            published = await asyncio.to_thread(self.content.publish, staging, manifest)
        except BaseException:
            self.content.discard(staging)
            raise
        if not published:  # a concurrent upload of the same file won
            manifest = self.content.manifest(track_id) or manifest
        return {"status": "published" if published else "already_published", **self.manifest_json(manifest)}

    async def _transcode(self, track_id: bytes, staging: Path, size: int) -> Manifest:
        """Probe and transcode the original in `staging` into streaming segments (at most TRANSCODES at
        once); the manifest that describes them."""
        ffmpeg, ffprobe = tools(self.settings.ffmpeg)
        original = staging / ORIGINAL
        async with self._transcodes:
            max_seconds, timeout = self.settings.upload_max_seconds, self.settings.transcode_timeout
            info = await probe(ffprobe, original, max_seconds=max_seconds, timeout=timeout)
            segments = await transcode(
                ffmpeg,
                original,
                staging,
                segment_seconds=self.settings.segment_seconds,
                max_seconds=max_seconds,
                timeout=timeout,
            )
        (staging / PLAYLIST).unlink(missing_ok=True)
        return Manifest(
            track_id=track_id,
            duration_ms=sum(s.duration_ms for s in segments),
            mime=MIME,
            init=INIT,
            segments=segments,
            original_bytes=size,
            original_format=info.format,
            published_at=int(self.clock()),
        )

    # ------------------------------------------------------------------ reading
    def manifest(self, track_id: bytes) -> Manifest:
        manifest = self.content.manifest(track_id)
        if manifest is None:
            raise MediaError(Code.MEDIA_NOT_PUBLISHED, f"no audio published for track 0x{track_id.hex()}", status=404)
        return manifest

    def manifest_json(self, m: Manifest) -> dict[str, Any]:
        base = f"/api/v1/tracks/0x{m.track_id.hex()}"
        return {
            "trackId": "0x" + m.track_id.hex(),
            "duration": m.duration_ms / 1000,
            "mime": m.mime,
            "init": f"{base}/init",
            "segments": [
                {
                    "index": s.index,
                    "start": s.start_ms / 1000,
                    "duration": s.duration_ms / 1000,
                    "url": f"{base}/segments/{s.index}",
                }
                for s in m.segments
            ],
            "original": {"url": f"{base}/original", "bytes": m.original_bytes, "format": m.original_format},
            "previewSeconds": self.preview_ms(m.track_id) / 1000,
            "grantHeader": GRANT_HEADER,
        }

    def preview_ms(self, track_id: bytes) -> int:
        """The free preview: the largest `minSeconds` among the track's enabled terms (ms). Asked on every segment
        request, so kept per track until the catalog's entry for it changes (a new terms event replaces it)."""
        entry = self.catalog.entries.get(track_id)
        if entry is None:
            return 0
        kept = self._previews.get(track_id)
        if kept is not None and kept[0] is entry:
            return kept[1]
        preview = 1000 * max((t.min_seconds for t in entry.terms.values() if t.enabled), default=0)
        self._previews[track_id] = (entry, preview)
        return preview

    def init_segment(self, track_id: bytes) -> Served:
        """The initialisation segment: codec set-up, no audio; free."""
        m = self.manifest(track_id)
        data = self.content.read(track_id, m.init)
        if data is None:
            raise MediaError(Code.MEDIA_NOT_PUBLISHED, "the track's init segment is missing", status=404)
        return Served("audio/mp4", body=data)

    # --------------------------------------------------------------- grants
    def grant_for(
        self,
        payment: Payment,
        seq: int,
        *,
        accepted_at: float,
        owned: bool = False,
        fresh: bool = False,
        paid_seconds: int | None = None,
    ) -> dict[str, Any] | None:
        """The grant acknowledging an accepted payment for a track (None for a tip), valid `grant_ttl` from when
        the payment was accepted — also when a duplicate is acknowledged again, so resending a paid play never
        buys more listening time. A play of a track the channel bought (`owned`: its receipts hold a download
        of it) is free and earns a download grant, so a buyer can fetch the original again after the purchase's
        grant expired (with a new free play)."""
        kind = payment.charge.kind
        track_id = payment.charge.track_id
        if kind not in GRANT_KINDS or track_id is None:
            return None
        if kind == Kind.PLAY and owned:
            kind = Kind.DOWNLOAD
        paid_ms = 0
        if kind == Kind.SECONDS:
            # a new payment: the seconds the channel's ledger holds for the track (no query on the event loop);
            # a duplicate: what was paid up to it, from the store
            if paid_seconds is None:
                paid_seconds = self.store.seconds_paid(payment.channel_id, track_id, seq)
            paid_ms = 1000 * paid_seconds
        grant = Grant(payment.channel_id, track_id, seq, kind, int(accepted_at) + self.settings.grant_ttl, paid_ms)
        if fresh and self.book is not None:
            self.book.new_receipt(payment.channel_id, track_id, seq)
        token = grants.issue(self._grant_key, grant)
        self._remember(token, grant)  # issued here: its first segment needs no MAC check
        return {
            "token": token,
            "trackId": "0x" + track_id.hex(),
            "channelId": "0x" + payment.channel_id.hex(),
            "seq": seq,
            "kind": kind.wire,
            "expiresAt": grant.expires_at,
            "paidSeconds": paid_ms / 1000 if kind == Kind.SECONDS else None,
            "media": f"/api/v1/tracks/0x{track_id.hex()}/media",
        }

    def _grant(self, track_id: bytes, token: str | None, segment: Segment | None, m: Manifest) -> Grant:
        if not token:
            raise self.payment_required(m, segment, "this audio is paid for: pay for the track, then send the grant")
        grant = self._verified.get(token)
        if grant is None:
            grant = grants.verify(self._grant_key, token, now=self.clock())
            self._remember(token, grant)
        elif self.clock() >= grant.expires_at:
            grant = grants.verify(self._grant_key, token, now=self.clock())  # raises grant_expired
        if grant.track_id != track_id:
            raise MediaError(
                Code.GRANT_MISMATCH, f"the grant is for track 0x{grant.track_id.hex()}, not this one", status=403
            )
        return grant

    def _remember(self, token: str, grant: Grant) -> None:
        """Keep a grant whose token is known good (issued or verified here): at most VERIFIED_GRANTS_MAX."""
        if len(self._verified) >= VERIFIED_GRANTS_MAX:
            self._verified.clear()
        self._verified[token] = grant

    async def segment(self, track_id: bytes, index: int, token: str | None) -> Served:
        """Segment `index` of a track, if the grant (or the free preview) covers it; recorded as delivered."""
        m = self.manifest(track_id)
        if not 0 <= index < len(m.segments):
            raise MediaError(Code.NO_SUCH_SEGMENT, f"the track has segments 0..{len(m.segments) - 1}", status=404)
        seg = m.segments[index]
        if seg.start_ms + seg.duration_ms <= self.preview_ms(track_id):
            return self._read(track_id, seg.name)
        grant = self._grant(track_id, token, seg, m)
        served = self._read(track_id, seg.name)  # first: a segment that cannot be read is neither served nor metered
        metered = grant.kind == Kind.SECONDS
        outcome = await self._record(grant, track_id, index, seg.duration_ms, grant.paid_ms if metered else None)
        if outcome == EXHAUSTED:
            raise self.payment_required(
                m,
                seg,
                f"the channel has paid {grant.paid_ms / 1000:g} s of this track (as of this grant) and has been "
                "served that much: pay the next seconds, then use the new grant",
            )
        return served

    async def original(self, track_id: bytes, token: str | None) -> Served:
        """The uploaded file itself, for a download grant."""
        m = self.manifest(track_id)
        grant = self._grant(track_id, token, None, m)
        if not grant.original:
            raise self.payment_required(m, None, "the original file is sold as a download: buy it for a download grant")
        chunks = self.content.stream(track_id, ORIGINAL)  # first: a file that cannot be read is not recorded
        if chunks is None:
            raise MediaError(Code.MEDIA_NOT_PUBLISHED, "the original file is missing", status=404)
        await self._record(grant, track_id, -1, m.duration_ms, None)
        return Served("application/octet-stream", chunks=chunks, size=m.original_bytes)

    async def _record(self, grant: Grant, track_id: bytes, segment: int, millis: int, budget_ms: int | None) -> str:
        """SERVED, REPEAT or EXHAUSTED: decided in memory (the book, on the event loop) or, with a shared store, in
        the database off the event loop (its round trips, and a wait on another instance's lock of the same
        channel's track, must not hold up every other request here)."""
        if self.book is not None:
            return self.book.record(grant.channel_id, track_id, grant.seq, segment, millis, budget_ms, self.clock())
        async with self._metering:
            return await asyncio.to_thread(
                self.store.record_delivery,
                grant.channel_id,
                track_id,
                grant.seq,
                segment,
                millis,
                budget_ms=budget_ms,
                served_at=self.clock(),
            )

    def _read(self, track_id: bytes, name: str) -> Served:
        data = self.content.read(track_id, name)
        if data is None:
            raise MediaError(Code.MEDIA_NOT_PUBLISHED, f"segment {name} is missing", status=404)
        return Served("audio/mp4", body=data)

    def payment_required(self, m: Manifest, segment: Segment | None, message: str) -> MediaError:
        """402 with what to pay for this audio (in the spirit of x402): the track, its prices per token, the
        channel contract and relay to pay through, the payment endpoint and where the grant goes."""
        track_id = m.track_id
        entry = self.catalog.entries.get(track_id)
        accepts: list[dict[str, Any]] = []
        for token, t in entry.terms.items() if entry else []:
            if not t.enabled:
                continue
            if segment is not None and t.per_second:
                seconds = max(1, -(-(segment.start_ms + segment.duration_ms) // 1000))
                accepts.append(
                    {"token": token, "kind": Kind.SECONDS.wire, "perSecond": str(t.per_second), "seconds": seconds}
                )
            if segment is not None and (t.per_play or t.model):
                accepts.append({"token": token, "kind": Kind.PLAY.wire, "price": str(t.per_play), "model": t.model})
            if t.download:
                accepts.append({"token": token, "kind": Kind.DOWNLOAD.wire, "price": str(t.download)})
        base = f"/api/v1/tracks/0x{track_id.hex()}"
        payment = {
            "trackId": "0x" + track_id.hex(),
            "title": entry.title if entry else None,
            "resource": f"{base}/segments/{segment.index}" if segment else f"{base}/original",
            "segment": None
            if segment is None
            else {"index": segment.index, "start": segment.start_ms / 1000, "duration": segment.duration_ms / 1000},
            "accepts": accepts,
            "previewSeconds": self.preview_ms(track_id) / 1000,
            "chainId": self.chain_id,
            "channels": self.channels_address,
            "relay": self.address,
            "paymentEndpoint": "/api/v1/channels/{channelId}/payments",
            "grantHeader": GRANT_HEADER,
        }
        return MediaError(Code.PAYMENT_REQUIRED, message, status=402, extra={"payment": payment})

    # ------------------------------------------------------------- accounting
    def delivery_summary(self, channel_id: bytes) -> list[dict[str, Any]]:
        """Per track: seconds paid (per-second receipts) vs seconds of audio the relay served on the channel."""
        if self.book is not None:
            self.book.flush()
        out = []
        for row in self.store.deliveries(channel_id):
            out.append(
                {
                    "trackId": "0x" + row["target"].hex(),
                    "secondsPaid": self.store.seconds_paid(channel_id, row["target"]),
                    "secondsDelivered": row["millis"] / 1000,
                    "secondsDeliveredMetered": row["metered_millis"] / 1000,
                    "segments": row["segments"],
                }
            )
        return out


async def _receive(body: AsyncIterator[bytes], original: Path, track_id: bytes, limit: int) -> int:
    """Stream an upload to `original` (never held in memory); its size. MediaError if it is larger than `limit`,
    empty, or not the file whose keccak256 is `track_id`."""
    size = 0
    digest = keccak_256()
    with original.open("wb") as out:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise MediaError(Code.UPLOAD_TOO_LARGE, f"more than {limit} bytes", status=413)
            digest.update(chunk)
            await asyncio.to_thread(out.write, chunk)
    if size == 0:
        raise MediaError(Code.UNSUPPORTED_MEDIA, "the upload is empty", status=415)
    if digest.digest() != track_id:
        raise MediaError(
            Code.CONTENT_MISMATCH,
            f"the file's keccak256 is 0x{digest.hexdigest()}, not the track id 0x{track_id.hex()}: "
            "upload the very file the track was registered with",
        )
    return size
