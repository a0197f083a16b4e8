"""Recording that a claimed-ahead run began (``runs.begun_at``), so that only attempts whose
body started count.

A worker claims short runs ahead of its free threads (``lexyjobs.worker``); they wait in memory
as ``running``, not begun. If the process dies, the rescue gives a run that never began back to
the queue without counting the attempt, whatever the job (nothing ran). So a run must be
recorded as begun before its body runs, and how soon decides what a crash costs:

- a job that is not idempotent: durably, before the body starts (one small write per such run
  taken up from the claimed-ahead ones). Otherwise a crash could make the rescue re-queue a run
  whose body did run, and execute it twice;
- any other job: with the worker's next write (the dispatcher's batch, which follows within
  milliseconds while runs are short — the only ones claimed ahead — or the monitor's flush). A
  write per run would cost the batching its point (SQLite 5,600 runs/s). A crash in between
  re-queues a run that did begin without counting that attempt; it may run again, as an
  idempotent job may. A run rescued "before it began" as often as it has attempts is counted
  anyway (``lexyjobs.runs``), so a job that kills its process at once cannot loop forever.

Runs claimed for idle threads are recorded as begun by the claim itself (``claiming.claim_runs``)."""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Iterable

from sqlalchemy.orm import Session

from lexyjobs import store
from lexyjobs.db import Database


class PendingBegins:
    """Claimed-ahead runs that began and await their ``begun_at`` write. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: list[store.Lease] = []

    def __bool__(self) -> bool:
        return bool(self._leases)

    def add(self, lease: store.Lease) -> None:
        with self._lock:
            self._leases.append(lease)

    def write(self, session: Session, *, now: datetime, ended: Iterable[int] = ()) -> None:
        """Write the pending marks in the caller's transaction (one UPDATE). Runs in ``ended``
        (their outcome is written in the same transaction) need none: a retry keeps the attempt
        counted, any other end is final. If the transaction fails the marks are lost, as the
        runs' heartbeats would be; a rescue of such a run does not count the attempt."""
        with self._lock:
            leases, self._leases = self._leases, []
        skip = set(ended)
        store.mark_begun(session, [lease for lease in leases if lease.run_id not in skip], now=now)


def mark_now(db: Database, lease: store.Lease, *, now: datetime) -> bool:
    """Record durably, in its own transaction, that the run begins; False when its lease is gone."""
    with db.write() as session:
        return bool(store.mark_begun(session, [lease], now=now)) or store.holds_lease(session, lease)
