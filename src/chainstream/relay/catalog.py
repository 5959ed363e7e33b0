"""The relay's view of the TrackRegistry: every track's terms per token and current split.

At start the relay serves before the whole registry is read (`load`, after the port opened): a payment, a
manifest or a segment of a track not read yet loads that track from the registry first (`ensure`), as a channel
loads on first use. The watcher puts the newest state of a track it sees changing (`put`); the loads put a track
only if nothing newer is there already (`put_if_absent`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from chainstream.chain.contracts import RegistryClient, TrackInfo
from chainstream.ledger import Listing
from chainstream.pricing import Split, Terms
from chainstream.protocol.types import Address

#: track ids found missing from the registry while the catalog loads, remembered until it is loaded (anyone can
#: name a random track: each such payment costs one registry call at most once, and the set stays bounded)
ABSENT_MAX = 10_000
#: on-demand track reads in flight at once while the catalog loads: a flood of distinct unknown ids waits here
#: instead of taking every worker thread the payments' store and chain calls share
READS_MAX = 4


@dataclass(frozen=True)
class CatalogEntry:
    track_id: bytes
    title: str
    owner: Address
    split: Split
    split_version: int
    registered_at: int
    terms: dict[str, Terms]


class Catalog:
    """Loaded from the chain after the relay opens its port (track by track on demand meanwhile), and refreshed
    track by track when registry events arrive."""

    def __init__(self, registry: RegistryClient, tokens: Sequence[str]) -> None:
        self.registry = registry
        self.tokens = tokens
        self.entries: dict[bytes, CatalogEntry] = {}
        self._listings: dict[tuple[bytes, str], Listing] = {}
        #: every track the registry held when `load` listed them is in `entries` (later ones come from the watcher)
        self.complete = False
        self._fetching: dict[bytes, asyncio.Task[None]] = {}
        self._absent: set[bytes] = set()
        self._complete = asyncio.Event()
        self._reads = asyncio.Semaphore(READS_MAX)

    async def load(self) -> None:
        """Read every registered track, off the event loop one track at a time; entries are put on the loop."""
        track_ids = await asyncio.to_thread(self.registry.track_ids)
        for track_id in track_ids:
            if track_id not in self.entries:
                self.put_if_absent(await asyncio.to_thread(self.fetch, track_id))
        self._loaded()

    def _loaded(self) -> None:
        self.complete = True
        self._absent.clear()
        self._complete.set()

    async def wait_loaded(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the whole catalog to be read; whether it is."""
        if not self.complete:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._complete.wait(), timeout)
        return self.complete

    async def ensure(self, track_id: bytes) -> None:
        """Load `track_id` from the registry now if the catalog is still loading and has not read it (a track the
        registry does not know is left out: pricing then refuses it as after the load). Concurrent requests for
        one track share one read; a node that cannot be reached raises, as a channel's first load does."""
        if self.complete or track_id in self.entries or track_id in self._absent:
            return
        task = self._fetching.get(track_id)
        if task is None:
            task = self._fetching[track_id] = asyncio.ensure_future(self._fetch_one(track_id))
            task.add_done_callback(lambda _: self._fetching.pop(track_id, None))
        await asyncio.shield(task)  # a cancelled request leaves the read to the others

    async def _fetch_one(self, track_id: bytes) -> None:
        async with self._reads:
            if self.complete or track_id in self.entries:
                return
            entry = await asyncio.to_thread(self.fetch_registered, track_id)
        if entry is not None:
            self.put_if_absent(entry)
        elif not self.complete and len(self._absent) < ABSENT_MAX:
            self._absent.add(track_id)

    def refresh(self, track_id: bytes) -> None:
        self.put(self.fetch(track_id))

    def fetch(self, track_id: bytes) -> CatalogEntry:
        """Read a track's current state from the registry (chain I/O)."""
        return self._entry(track_id, self.registry.get_track(track_id))

    def fetch_registered(self, track_id: bytes) -> CatalogEntry | None:
        """`fetch`, or None if the registry does not know the track (chain I/O)."""
        info = self.registry.find_track(track_id)
        return None if info is None else self._entry(track_id, info)

    def _entry(self, track_id: bytes, info: TrackInfo) -> CatalogEntry:
        split, _ = self.registry.get_split(track_id, info.split_version)
        terms = {token: self.registry.get_terms(track_id, token) for token in self.tokens}
        return CatalogEntry(track_id, info.title, info.owner, split, info.split_version, info.registered_at, terms)

    def put(self, entry: CatalogEntry) -> None:
        """Make a fetched entry the one payments are priced by (no I/O)."""
        self.entries[entry.track_id] = entry
        self._absent.discard(entry.track_id)
        for token, t in entry.terms.items():
            key = (entry.track_id, token)
            if t.enabled:
                self._listings[key] = Listing(
                    entry.track_id, entry.title, entry.owner, t, entry.split, entry.split_version
                )
            else:
                self._listings.pop(key, None)

    def put_if_absent(self, entry: CatalogEntry) -> None:
        """`put`, unless the track is there already (the watcher's newer state, or another load's)."""
        if entry.track_id not in self.entries:
            self.put(entry)

    def listing(self, track_id: bytes, token: str) -> Listing | None:
        return self._listings.get((track_id, token))
