"""Python SDK: Listener and Artist clients over the relay's HTTP API and the chain."""

from chainstream.sdk.artist import Artist
from chainstream.sdk.client import RelayClient, RelayError
from chainstream.sdk.listener import Listener, Paid, payment_body

__all__ = ["Artist", "Listener", "Paid", "RelayClient", "RelayError", "payment_body"]
