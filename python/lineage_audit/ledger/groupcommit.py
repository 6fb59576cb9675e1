"""Group commit: appends from many threads committed together, one transaction per group.

Leader/follower on one condition variable. A caller queues its records; if no commit is
running it becomes the leader at once (so a lone writer never waits) and appends everything
queued in ONE :meth:`LedgerStore.append` (one transaction, one fsync). Callers that arrive
while a commit runs wait; when it ends, one of them leads the next group with all of them.
Each caller returns only after the transaction holding its records has committed, with its
own entries; if that transaction fails, every caller of the group gets the same exception and
nothing of the group is written. Sequence numbers and tree nodes are assigned by the store
inside the transaction, in queue order. Works over any :class:`LedgerStore`; processes still
serialise on the store's own append lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .errors import AppendError
from .store import LedgerStore, PendingEntry, StoredEntry

__all__ = ["GroupCommit"]


class _Batch:
    """One caller's records and, once its group is done, its entries or the group's error."""

    __slots__ = ("done", "entries", "error", "pending")

    def __init__(self, pending: list[PendingEntry]) -> None:
        self.pending = pending
        self.done = False
        self.entries: list[StoredEntry] = []
        self.error: BaseException | None = None


class GroupCommit:
    """Thread-safe :meth:`append` that commits concurrent callers' records together."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._queue: list[_Batch] = []
        self._leading = False

    def append(self, pending: Sequence[PendingEntry]) -> list[StoredEntry]:
        """Append ``pending`` (all or nothing, contiguous seqs); returns once committed."""
        batch = _Batch(list(pending))
        if not batch.pending:
            return []
        with self._cond:
            self._queue.append(batch)
            while self._leading and not batch.done:
                self._cond.wait()
            group = None
            if not batch.done:  # no commit running: lead one with everything queued
                self._leading = True
                group, self._queue = self._queue, []
        if group is not None:
            self._commit(group, batch)
        if batch.error is not None:
            raise batch.error
        return batch.entries

    def _commit(self, group: list[_Batch], mine: _Batch) -> None:
        stored: list[StoredEntry] = []
        error: BaseException | None = None
        try:
            stored = self.store.append([item for batch in group for item in batch.pending])
        except BaseException as exc:  # every caller of the group gets it, the leader too
            error = exc
        with self._cond:
            start = 0
            for batch in group:
                if error is None:
                    batch.entries = stored[start : start + len(batch.pending)]
                    start += len(batch.pending)
                elif isinstance(error, Exception) or batch is mine:
                    batch.error = error
                else:  # an interrupt in the leader's thread is not the followers' to raise
                    batch.error = AppendError(f"append interrupted ({error!r}); nothing written")
                batch.done = True
            self._leading = False
            self._cond.notify_all()

    def queued(self) -> int:
        """Batches waiting for the next group (for tests and monitoring)."""
        with self._cond:
            return len(self._queue)
