"""The relay's in-memory delivery book stays bounded however many paid receipts nothing is fetched for."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainstream.relay import media
from chainstream.relay.media import REPEAT, SERVED, DeliveryBook
from chainstream.store import SqliteStore


def test_paid_receipts_that_fetch_nothing_do_not_grow_the_book_without_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "DELIVERY_BOOK_MAX", 50)
    store = SqliteStore(tmp_path / "relay.db")
    try:
        book = DeliveryBook(store)
        track = b"\x01" * 32
        for seq in range(1, 1_000):  # a client paying for plays and never fetching a segment
            book.new_receipt(b"\x02" * 32, track, seq)
        assert len(book._served) <= 51
        # what is served still counts once per receipt and segment across the reset
        assert book.record(b"\x02" * 32, track, 999, 0, 2_000, None, 0.0) == SERVED
        assert book.record(b"\x02" * 32, track, 999, 0, 2_000, None, 0.0) == REPEAT
    finally:
        store.close()
