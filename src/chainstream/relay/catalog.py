"""The relay's view of the TrackRegistry: every track's terms per token and current split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chainstream.chain.contracts import RegistryClient
from chainstream.ledger import Listing
from chainstream.pricing import Split, Terms
from chainstream.protocol.types import Address


@dataclass
class CatalogEntry:
    track_id: bytes
    title: str
    owner: Address
    split: Split
    split_version: int
    registered_at: int
    terms: dict[str, Terms]


class Catalog:
    """Loaded from the chain at start and refreshed track by track when registry events arrive."""

    def __init__(self, registry: RegistryClient, tokens: Sequence[str]) -> None:
        self.registry = registry
        self.tokens = tokens
        self.entries: dict[bytes, CatalogEntry] = {}
        self._listings: dict[tuple[bytes, str], Listing] = {}

    def load_all(self) -> None:
        for track_id in self.registry.track_ids():
            self.refresh(track_id)

    def refresh(self, track_id: bytes) -> None:
        self.put(self.fetch(track_id))

    def fetch(self, track_id: bytes) -> CatalogEntry:
        """Read a track's current state from the registry (chain I/O)."""
        info = self.registry.get_track(track_id)
        split, _ = self.registry.get_split(track_id, info.split_version)
        terms = {token: self.registry.get_terms(track_id, token) for token in self.tokens}
        return CatalogEntry(track_id, info.title, info.owner, split, info.split_version, info.registered_at, terms)

    def put(self, entry: CatalogEntry) -> None:
        """Make a fetched entry the one payments are priced by (no I/O)."""
        self.entries[entry.track_id] = entry
        for token, t in entry.terms.items():
            key = (entry.track_id, token)
            if t.enabled:
                self._listings[key] = Listing(
                    entry.track_id, entry.title, entry.owner, t, entry.split, entry.split_version
                )
            else:
                self._listings.pop(key, None)

    def listing(self, track_id: bytes, token: str) -> Listing | None:
        return self._listings.get((track_id, token))
