"""Group commit: one writer thread turns everything queued since its last commit into one transaction.

Each payment and its effects (per-payee earnings rows) commit together or not at all, and one durable commit
(one fsync) covers the whole group. A submitted list of payments is acknowledged, by resolving its future, only
after the transaction holding it committed. The backend supplies the transaction (`WriteGroup`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from chainstream.errors import UnrecoverableError
from chainstream.store.records import PaymentRecord, payment_rows

# Writes payment rows and earnings rows (of the records, in order) in ONE transaction and returns once it is
# durable, with the channels whose rows it left out because another relay instance sharing the database wrote
# to them first (empty for a store with one writer); raises UnrecoverableError (and has written nothing) if it
# could not. Called on the writer thread only.
WriteGroup = Callable[[list[PaymentRecord], list[tuple[Any, ...]], list[tuple[Any, ...]]], frozenset[bytes]]
_Item = tuple[list[PaymentRecord], "Future[frozenset[bytes]]"]


class GroupCommitter:
    """The writer thread and its queue; `submit` from any thread, `start`/`stop` from the owner."""

    def __init__(self, write: WriteGroup, *, max_group: int = 2_000, name: str = "chainstream-group-commit") -> None:
        self._write = write
        self._max_group = max_group
        self._name = name
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.groups_committed = 0

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Commit what is queued, then stop the thread."""
        if self.thread is not None:
            self._queue.put(None)
            self.thread.join(timeout=timeout)
            self.thread = None

    def submit(self, records: list[PaymentRecord]) -> Future[frozenset[bytes]]:
        """Queue payments for the next group commit; the future resolves once they are durable, with the
        channels whose payments were not written (see WriteGroup): those payments are not accepted."""
        if self.thread is None:
            raise UnrecoverableError("the store's writer is not running")
        future: Future[frozenset[bytes]] = Future()
        self._queue.put((records, future))
        return future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            group, stopping = self._gather(item)
            self._commit(group)

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """`first` and whatever else is queued, up to max_group payments; True if the stop sentinel came too."""
        group = [first]
        count = len(first[0])
        while count < self._max_group:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return group, True
            group.append(more)
            count += len(more[0])
        return group, False

    def _commit(self, group: list[_Item]) -> None:
        all_records: list[PaymentRecord] = []
        payments: list[tuple[Any, ...]] = []
        earnings: list[tuple[Any, ...]] = []
        for records, _ in group:
            all_records.extend(records)
            for record in records:
                payment, effects = payment_rows(record)
                payments.append(payment)
                earnings.extend(effects)
        # Payments whose caller stopped waiting (cancelled its future) are written all the same: they were
        # accepted in memory. Only the futures still wanted are resolved (a cancelled one cannot be).
        futures = [future for _, future in group if future.set_running_or_notify_cancel()]
        try:
            left_out = self._write(all_records, payments, earnings)
        except Exception as exc:  # never let the writer thread die: every waiter hears of the failure
            failure = exc if isinstance(exc, UnrecoverableError) else UnrecoverableError(f"could not store: {exc}")
            for future in futures:
                future.set_exception(failure)
            return
        self.groups_committed += 1
        for future in futures:
            future.set_result(left_out)
