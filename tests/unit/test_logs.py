"""The relay's JSON log lines (relay/logs.py): one object per line, and a key never printed in any case."""

from __future__ import annotations

import io
import json
import logging

from chainstream.relay.logs import configure_logging, key_secrets, reset_logging

KEY = "0x" + "ab12" * 16


def test_a_line_quoting_the_key_in_any_form_or_traceback_is_redacted_and_stays_one_json_object() -> None:
    """Code that logs the relay's key by mistake (bare, 0x-prefixed, upper case, in an exception) prints none."""
    out = io.StringIO()
    configure_logging("info", key_secrets(KEY), stream=out)
    logger = logging.getLogger("chainstream.test")
    try:
        logger.info("key %s / %s / %s", KEY, KEY[2:], KEY[2:].upper())
        try:
            raise ValueError(f"bad key {KEY}")
        except ValueError:
            logger.exception("failed")
    finally:
        reset_logging()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    entries = [json.loads(line) for line in lines]
    assert entries[0]["level"] == "info" and entries[0]["logger"] == "chainstream.test"
    assert entries[0]["msg"] == "key [redacted] / [redacted] / [redacted]"
    assert "ValueError" in entries[1]["exc"]
    assert KEY[2:].lower() not in out.getvalue().lower()
