"""The dispatcher thread: each cycle writes the runs that finished and claims new ones, both in one
transaction (batches of up to ``workers`` runs, plus some claimed ahead), then waits for a wake-up
(a local enqueue, a finished run, another process's enqueue) or the poll interval.

One transaction per cycle is what makes short runs cheap: ends, begun marks, pipeline steps and
starts share one commit (and on SQLite one hold of the write lock). A batch the database refuses
is written again run by run, so one bad outcome cannot hold back the others."""
from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from typing import Any, Callable

from sqlalchemy.orm import Session

from lexyjobs import claiming, pipelines, store
from lexyjobs.config import Settings
from lexyjobs.db import Database
from lexyjobs.durations import format_duration
from lexyjobs.failures import FailureLog
from lexyjobs.outcomes import Outcome, change_of
from lexyjobs.states import RunStatus, insert_events, read_runs, transition_each
from lexyjobs.worker.pool import Pool

log = logging.getLogger("lexyjobs.worker")  # one logger for the whole pool (README: log lines)
AHEAD_WAIT = 0.1  # seconds: claim ahead what the threads would start within this, at the recent pace


class Dispatcher:
    """Claims runs for ``start_run`` (the executor) and writes the outcomes the pool collects."""

    def __init__(self, db: Database, settings: Settings, pool: Pool, failures: FailureLog, *, name: str,
                 clock: Callable[[], datetime], rng: random.Random,
                 start_run: Callable[[claiming.ClaimedRun], None]) -> None:
        self.db, self.settings, self.pool, self.failures = db, settings, pool, failures
        self.name, self.clock, self.rng, self.start_run = name, clock, rng, start_run
        self.size = pool.size
        # Runs claimed beyond the free threads wait in memory (as ``running``) and start the
        # moment a thread frees up: each write cycle then finishes and claims a bigger batch.
        # Only as many as the threads would start within AHEAD_WAIT (see _ahead): runs that take
        # a while are not claimed ahead, since another process may be idle.
        self.most_ahead = self.size * settings.prefetch
        # Named queues (LEXYJOBS_QUEUES): None serves every queue, and the claim skips the queue
        # bookkeeping entirely; else each claim gets the room left per queue under its thread cap,
        # counting the runs this process holds (claimed-ahead ones included).
        self.served = settings.queues

    def loop(self) -> None:
        pool = self.pool
        pause, probe = 0.0, False
        while not pool.closed.is_set():
            with pool.handover:  # until the claimed runs are in pool.active (see Pool.handover)
                outcomes = pool.take_outcomes()
                with pool.lock:
                    free = 0 if pool.stopping.is_set() else self.size + self._ahead() - pool.busy
                    idle_threads = max(self.size - pool.busy, 0)  # the first claimed runs go to them
                    room = None if self.served is None else self.served.room(pool.busy_by_queue)
                    if room is not None and not any(n is None or n > 0 for n in room.values()):
                        free = 0  # every queue served is at its cap: no claim (nor write) until one frees
                try:
                    # An idle poll first asks with a cheap read whether anything is due, so idle
                    # processes do not take SQLite's write lock twice a second.
                    idle = probe and not outcomes and free and not self.anything_due()
                    claimed: list[claiming.ClaimedRun] | None = [] if idle else self._write_cycle(
                        outcomes, free, begin=idle_threads, queues=room)
                    pause = 0.0
                except Exception as exc:  # the worker boundary: log, isolate the outcomes, go on
                    self.failures.failed(log, f"worker {self.name}: could not write a batch; writing its runs one by one",
                                         exc)
                    claimed = None
                    if self._finish_separately(outcomes):
                        pause = 0.0
                    else:
                        pause = min(max(pause * 2, 0.1), 5.0)
                for claim in claimed or ():
                    self.start_run(claim)
            if claimed is None:
                pool.closed.wait(pause)  # zero after a bad outcome was isolated: claim again at once
                continue
            if outcomes or (free and len(claimed) == free):
                probe = False
                continue
            probe = not pool.wakeup.wait(self.settings.poll_interval)
            pool.wakeup.clear()

    def _ahead(self) -> int:
        """Runs to claim beyond the free threads: what they would start within AHEAD_WAIT at the
        recent pace (none for runs of a second or more), at most LEXYJOBS_PREFETCH per thread."""
        if self.pool.typical_run is None:  # nothing known yet: claim for the free threads only
            return 0
        return min(self.most_ahead, int(self.size * AHEAD_WAIT / max(self.pool.typical_run, 1e-6)))

    def _finish_separately(self, outcomes: list[Outcome]) -> bool:
        """Write each outcome in its own transaction, so one the database refuses (say a result
        Postgres cannot store) cannot hold back the others; a refused one is recorded as a
        failure instead. Outcomes that cannot be written at all (database unreachable) are kept
        for the next cycle. Returns True when there were outcomes and every one was written (the
        failure was theirs, not the database's, so the next cycle need not back off)."""
        ok = bool(outcomes)
        for outcome in outcomes:
            try:
                self._write_cycle([outcome], 0)
            except Exception as exc:
                try:
                    self._write_cycle([outcome.unrecordable(exc)], 0)
                    log.error("run %s: outcome refused by the database (%s); recorded as failed",
                              outcome.active.claim.id, exc)
                except Exception:
                    ok = False
                    self.pool.put_back(outcome)
        return ok

    def anything_due(self) -> bool:
        with self.db.read() as session:
            return claiming.has_due_runs(session, now=self.clock(),
                                         queues=None if self.served is None else self.served.names)

    def write_finished(self) -> None:
        """Write the outcomes collected so far, claiming nothing (on stop, after the loop ended)."""
        self._write_cycle(self.pool.take_outcomes(), 0)

    def _write_cycle(self, outcomes: list[Outcome], free: int, *, begin: int | None = None,
                     queues: dict[str, int | None] | None = None) -> list[claiming.ClaimedRun]:
        """Write finished runs and the begun marks of claimed-ahead runs, and claim up to ``free``
        new ones (the first ``begin`` of them for idle threads, the rest ahead; of ``queues`` with
        their room, None: any queue) in one transaction."""
        if not outcomes and free <= 0 and not self.pool.begins:
            return []
        now = self.clock()
        outcomes = sorted(outcomes, key=lambda o: o.active.claim.id)  # row locks in id order: no deadlocks
        with self.db.write() as session:
            events: list[dict[str, Any]] = []
            self.pool.begins.write(session, now=now, ended=[o.active.claim.id for o in outcomes])
            finished = self._finish(session, outcomes, now, events)
            if pipelines.advance(session, finished, now=now, postgres=self.db.is_postgres):
                self.db.enqueued(session)
            claimed = claiming.claim_runs(session, free, worker=self.name, now=now, postgres=self.db.is_postgres,
                                          events=events, begin=begin, queues=queues) if free > 0 else []
            insert_events(session, events)  # the batch's ends and starts in one statement
        with self.pool.lock:
            for outcome in outcomes:
                self.pool.active.pop(outcome.active.claim.id, None)
        return claimed

    def _finish(self, session: Session, outcomes: list[Outcome], now: datetime,
                events: list[dict[str, Any]]) -> list[pipelines.Finished]:
        """Write the attempts' ends, each fenced by its lease (a lost lease writes nothing), runs
        that end alike in one statement. Their event rows are added to ``events`` (written by the
        caller in the same transaction). Returns the runs that reached a terminal status (for
        their pipelines)."""
        # Read (and on Postgres lock) the cancel requests first: a request that came in after the
        # body finished is then either seen here (the run keeps its outcome, with a note) or
        # refused because the run is no longer running — never lost in between.
        current = read_runs(session, [o.active.claim.id for o in outcomes if o.status is not None],
                            postgres=self.db.is_postgres)
        requested = {run_id: row.cancel_requested_at for run_id, row in current.items() if row.cancel_requested}
        changes = {c.run_id: (o, c) for o, c in ((o, change_of(o, now, requested, self.rng)) for o in outcomes) if c}
        moved = set(transition_each(session, [c for _, c in changes.values()], expected=RunStatus.RUNNING, at=now,
                                    postgres=self.db.is_postgres, events=events, current=current))
        finished = []
        for run_id, (outcome, change) in changes.items():
            claim = outcome.active.claim
            if run_id not in moved:
                log.warning("run %s: lease %d lost before it finished; its outcome is discarded", run_id, claim.lease,
                            extra={"run_id": run_id, "job": claim.job_name, "attempt": claim.attempt})
                continue
            store.append_log(session, run_id, outcome.log_text, max_chars=self.settings.log_max_bytes)
            took = time.monotonic() - outcome.active.started
            log.info("run %s (%s) attempt %d -> %s in %s", run_id, claim.job_name, claim.attempt, change.to.value,
                     format_duration(took), extra={"run_id": run_id, "job": claim.job_name, "attempt": claim.attempt,
                                                   "from_status": "running", "status": change.to.value,
                                                   "duration_ms": round(took * 1000, 1)})
            if change.to != RunStatus.QUEUED:
                finished.append(pipelines.Finished(run_id, claim.job_name, claim.pipeline_id, change.to))
        return finished
