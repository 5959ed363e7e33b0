"""Shared test helpers: deterministic keys and the CI switch."""

from __future__ import annotations

import hashlib
import os

from chainstream.protocol import PrivateKey

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_key(label: str) -> PrivateKey:
    """A deterministic private key for a named test actor."""
    return PrivateKey(hashlib.sha256(f"chainstream-test-{label}".encode()).digest())


test_key.__test__ = False  # type: ignore[attr-defined]  # not a test despite the name
