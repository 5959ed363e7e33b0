"""The media refusals: a stable code and the HTTP status the relay answers with."""

from __future__ import annotations

from typing import Any

from chainstream.errors import RecoverableError


class MediaError(RecoverableError):
    """An upload or a media request the relay refuses (bad file, not the owner, not paid for, ...).

    ``extra`` is merged into the JSON error body (the 402 body's ``payment`` block)."""

    def __init__(self, code: str, message: str, *, status: int = 422, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.extra = extra or {}
