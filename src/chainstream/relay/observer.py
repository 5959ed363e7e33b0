"""What the relay's components report as it happens (payments answered, verification and commit latency,
settlement batches, reorgs), to an observer they are given. The default observes nothing; relay/metrics.py's
`PrometheusObserver` counts (the process gives it to the service, settler and watcher it builds)."""

from __future__ import annotations


class RelayObserver:
    """Observes nothing: the default of every component. Calls are made on the thread the event happened on
    (the event loop, the store's writer thread, a settlement round's worker thread) and must not block."""

    def payment_answered(self, outcome: str, code: str) -> None:
        """A payment was answered: accepted, duplicate, rejected (with its code) or failed (its code, or the
        exception's class name)."""

    def payment_verified(self, seconds: float) -> None:
        """One payment went through verification (accepted or refused) in `seconds`."""

    def payments_committed(self, seconds: float) -> None:
        """A group of payments was committed (or failed to be) `seconds` after it was queued."""

    def settlement_sent(self, channels: int) -> None:
        """A settleBatch carrying `channels` channel entries was signed, recorded and sent."""

    def settlement_failed(self) -> None:
        """A settleBatch could not be built, recorded or sent."""

    def settlement_mined(self, gas_used: int) -> None:
        """A settlement's receipt was recorded, with the gas its transaction used."""

    def reorg_detected(self) -> None:
        """The watcher found a reorganisation of blocks it had processed and rolls it back."""


#: the observer of components built without one
NO_OBSERVER = RelayObserver()
