"""The relay's two clocks: its wall clock (stamps payments, decides which UTC day a daily cap counts) and the
chain's, as far as the relay knows it (the contract judges session-key expiry and close windows on block time)."""

from __future__ import annotations

from collections.abc import Callable


class ChainClock:
    """The wall clock, and the latest block's time carried forward from when it was seen."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._chain_time: tuple[float, float] | None = None  # (latest block's timestamp, clock() when seen)

    def observe(self, block_timestamp: float) -> None:
        """The latest block's timestamp, as the watcher or the settler just read it."""
        self._chain_time = (float(block_timestamp), self.clock())

    def chain_now(self) -> float:
        """The earliest time a transaction sent now could be mined at, as far as the relay knows: the wall
        clock, or the latest block's time plus what elapsed since it was seen when the chain runs ahead
        (a devnet after time travel, a chain whose clock drifts)."""
        now = self.clock()
        if self._chain_time is None:
            return now
        block_time, seen_at = self._chain_time
        return max(now, block_time + (now - seen_at))
