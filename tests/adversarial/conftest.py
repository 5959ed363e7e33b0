"""The attacker suite: one file per attacker, each case named for the attack and its expected outcome.

Real chains (eth-tester and anvil) and real relays, the same fixtures as the integration tests (the relay
fixtures come from tests/integration/relay_fixtures.py, a plugin of the whole suite).
"""

from tests.integration.conftest import *  # noqa: F403  (chain fixtures)
