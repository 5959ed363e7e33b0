"""Structured logs: one JSON object per line on stderr, through the standard logging setup (docs/OPERATIONS.md).

`configure_logging(level, secrets)` gives the `chainstream` loggers a handler (before, they had none, and
Python's last-resort handler dropped everything below WARNING) and formats each record as
`{"ts", "level", "logger", "msg", ["exc"]}`. Key material never appears: every configured secret (the relay's
private key, in hex with and without 0x) is replaced by `[redacted]` in the message and the traceback, whatever
logged it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import TextIO

HANDLER_NAME = "chainstream-json"


class JsonFormatter(logging.Formatter):
    """A record as one JSON line, with secrets redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 16}, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text or secret.lower() in text.lower():
                text = text.replace(secret, "[redacted]").replace(secret.lower(), "[redacted]")
                text = text.replace(secret.upper(), "[redacted]")
        return text

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self._redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=True)


def configure_logging(level: str = "warning", secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """JSON lines for the `chainstream` loggers at `level` (debug, info, warning, error); idempotent."""
    root = logging.getLogger("chainstream")
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter(secrets))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))
    root.propagate = False


def reset_logging() -> None:
    """Undo `configure_logging` (the `chainstream` loggers propagate to the root again, with no handler)."""
    root = logging.getLogger("chainstream")
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    root.setLevel(logging.NOTSET)
    root.propagate = True


def key_secrets(key_hex: str) -> list[str]:
    """The forms a hex private key can take in text."""
    bare = key_hex.removeprefix("0x").removeprefix("0X")
    return [bare, "0x" + bare]
