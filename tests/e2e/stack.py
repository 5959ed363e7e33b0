"""The browser tests' stack is the product's dev stack (`chainstream dev`): see src/chainstream/devstack.py."""

from chainstream.devstack import ANVIL_KEYS, CHALLENGE_PERIOD, ROLES, Stack, start_stack

__all__ = ["ANVIL_KEYS", "CHALLENGE_PERIOD", "ROLES", "Stack", "start_stack"]
