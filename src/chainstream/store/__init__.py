"""Durable relay state: accepted payments (the voucher log), channels, settlements, the outbox, cursors.

`open_store` picks the backend from the database setting: a `postgresql://` (or `postgres://`) URL opens a
PostgresStore (needs the `postgres` extra); `sqlite:///path` or a plain file path opens a SqliteStore.
"""

from __future__ import annotations

import re

from chainstream.errors import ConfigurationError
from chainstream.store.base import Store
from chainstream.store.records import (
    CLOSE_PENDING,
    ChannelRecord,
    ClaimRow,
    CoopClose,
    EarningRow,
    OutboxRecord,
    PaymentRecord,
    SettledRecord,
)
from chainstream.store.sqlite import SqliteStore

__all__ = [
    "CLOSE_PENDING",
    "ChannelRecord",
    "ClaimRow",
    "CoopClose",
    "EarningRow",
    "OutboxRecord",
    "PaymentRecord",
    "SettledRecord",
    "SqliteStore",
    "Store",
    "open_store",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(database: str) -> Store:
    """The store named by `database`: `postgresql://…`/`postgres://…`, `sqlite:///path`, or a file path.

    `sqlite:///relay.db` is relative to the working directory and `sqlite:////var/lib/relay.db` absolute (the
    SQLAlchemy convention)."""
    match = _SCHEME.match(database)
    if match is None:
        return SqliteStore(database)
    scheme = match.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        try:
            from chainstream.store.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigurationError(
                f"a PostgreSQL database needs psycopg: pip install 'chainstream[postgres]' ({exc})"
            ) from exc
        return PostgresStore(database)
    if scheme == "sqlite":
        path = database[len(match.group(0)) :]
        if not path.startswith("/"):
            raise ConfigurationError(
                f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, not {database!r}"
            )
        return SqliteStore(path[1:] or ":memory:")
    raise ConfigurationError(
        f"unknown database URL scheme {scheme!r}: use postgresql://…, sqlite:///path or a file path"
    )
