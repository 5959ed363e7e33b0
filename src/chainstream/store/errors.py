"""The store's one failure a client should wait out: the database takes no write (disk full, read-only, I/O error).

Raised as `UnrecoverableError` with the code `database_unavailable` and the driver's own reason in the message;
the relay answers it 503 with Retry-After (relay/app.py), and nothing it covered was acknowledged.
"""

from __future__ import annotations

import re
import sqlite3

from chainstream.codes import Code
from chainstream.errors import UnrecoverableError

#: seconds a client is told to wait before sending again what the database did not take
RETRY_AFTER = 2

#: driver errors that mean the database cannot be written now (not a bug, not a conflict)
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
try:  # PostgreSQL's driver, when installed: a lost or read-only server
    import psycopg

    UNAVAILABLE_ERRORS += (psycopg.OperationalError,)
except ImportError:  # pragma: no cover - SQLite-only installs
    pass


def public_reason(exc: BaseException) -> str:
    """The driver's reason, fit for an answer to anyone: its first line, without the server's address or user
    (PostgreSQL's connection errors name them: `connection to server at "10.0.0.5", port 5432 failed`)."""
    first = (str(exc).splitlines() or [""])[0]
    first = re.sub(r'(server at|host|user|database)\s*[=:]?\s*"[^"]*"', r"\1 [hidden]", first)
    first = re.sub(r"(port|host|user|dbname|password)=\S+", r"\1=[hidden]", first)
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def database_unavailable(what: str, exc: BaseException) -> UnrecoverableError:
    """`what` failed because the database takes no write; the message keeps the driver's reason."""
    return UnrecoverableError(
        f"{what}: the database takes no write ({public_reason(exc)})", code=Code.DATABASE_UNAVAILABLE
    )
