"""The store tests' fixtures: a throwaway PostgreSQL server (tests/store/postgres_server.py) and each backend."""

from tests.store.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures
