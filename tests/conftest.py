"""Shared test helpers: deterministic keys and the CI switch; the fixture modules every directory may use."""

from __future__ import annotations

import hashlib
import os

from chainstream.protocol import PrivateKey

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: fixtures registered once for the whole suite (a test asks for one by name; nothing imports them). Their
#: longest-lived fixtures are module-scoped: each test module gets its own chain, relays and PostgreSQL server.
pytest_plugins = ["tests.integration.relay_fixtures", "tests.store.postgres_server"]


def test_key(label: str) -> PrivateKey:
    """A deterministic private key for a named test actor."""
    return PrivateKey(hashlib.sha256(f"chainstream-test-{label}".encode()).digest())


test_key.__test__ = False  # type: ignore[attr-defined]  # not a test despite the name
