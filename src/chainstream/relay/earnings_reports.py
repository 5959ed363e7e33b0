"""A payee's earnings as the relay answers them (GET /artists/{address}/earnings, JSON or CSV): the store's rows
and settled, claimed and delivered amounts, read and handed to the pure attribution of relay/earnings.py."""

from __future__ import annotations

import csv
import io
from typing import Any

from chainstream.protocol.types import ZERO_ADDRESS, Address, to_address
from chainstream.relay.catalog import Catalog
from chainstream.relay.earnings import CSV_COLUMNS, Earnings, csv_rows, earnings
from chainstream.relay.media import MediaService
from chainstream.relay.read_models import earnings_json
from chainstream.store import Store
from chainstream.tokens import TokenInfo


class EarningsReports:
    """Earnings per payee, from this relay's store and catalog."""

    def __init__(self, *, store: Store, catalog: Catalog, media: MediaService, tokens: list[TokenInfo]) -> None:
        self.store = store
        self.catalog = catalog
        self.media = media
        self.tokens = tokens

    def earnings(self, payee: str) -> dict[str, Any]:
        """A payee's earnings per token and per track, each payment marked pending, settled or claimed (see
        relay/earnings.py for the attribution rules)."""
        payee = to_address(payee)
        titles = {track_id: e.title for track_id, e in self.catalog.entries.items()}
        return earnings_json(payee, self._earnings(payee), titles)

    def earnings_csv(self, payee: str) -> str:
        """One CSV row per payment that credited `payee` (relay/earnings.py `csv_rows`)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        titles = {track_id: e.title for track_id, e in self.catalog.entries.items()}
        tokens = {t.address: t for t in self.tokens}
        writer.writerows(csv_rows(self._earnings(to_address(payee)), titles=titles, tokens=tokens))
        return out.getvalue()

    def _earnings(self, payee: Address) -> Earnings:
        rows = self.store.earnings_rows(payee)
        credited: dict[bytes, int] = {}
        for channel_id in {bytes(r["channel_id"]) for r in rows}:
            settled = self.store.get_settled(channel_id)
            if settled and payee in settled.payees:
                credited[channel_id] = settled.credited[settled.payees.index(payee)]
        claimed: dict[str, int] = {}
        for claim in self.store.claims_of(payee):
            claimed[claim["token"]] = claimed.get(claim["token"], 0) + int(claim["amount"])
        if self.media.book is not None:
            self.media.book.flush()  # deliveries still buffered in memory: read them back from the store
        delivered = self.store.metered_deliveries_of(payee)
        return earnings(
            rows,
            token_of={c.channel_id: c.token for c in self.store.channels()},
            credited=credited,
            claimed=claimed,
            default_token=ZERO_ADDRESS,
            delivered=delivered,
        )
