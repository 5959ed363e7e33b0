"""In-process publish/subscribe for live updates (served as Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class EventBus:
    """Each subscriber gets its own bounded queue; a slow subscriber drops events rather than slowing payments."""

    def __init__(self, max_queue: int = 1_000) -> None:
        self._subscribers: set[tuple[asyncio.Queue[dict[str, Any] | None], frozenset[str]]] = set()
        self._max_queue = max_queue
        self._closed = False

    @property
    def has_subscribers(self) -> bool:
        """False when nobody listens: publishers may skip building the event."""
        return bool(self._subscribers)

    def publish(self, event: dict[str, Any], topics: set[str]) -> None:
        for queue, wanted in list(self._subscribers):
            if wanted & topics:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(event)

    async def subscribe(self, topics: set[str]) -> AsyncIterator[dict[str, Any]]:
        """Events for `topics` until the subscriber stops or the bus closes (the relay is shutting down)."""
        if self._closed:
            return
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self._max_queue)
        entry = (queue, frozenset(topics))
        self._subscribers.add(entry)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(entry)

    def close(self) -> None:
        """End every subscription (each gets an end marker, in place of its oldest event if its queue is full), so
        that live-event responses finish and a shutting-down server need not wait for their clients."""
        self._closed = True
        for queue, _ in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
