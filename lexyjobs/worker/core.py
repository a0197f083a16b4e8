"""``Worker``: the worker pool of one process, as the rest of lexyjobs sees it. It builds the parts
(``Pool``, ``Dispatcher``, ``Executor``, ``Monitor``, ``Wakeups``), starts their threads, and
stops them gracefully: claim no more, let running runs finish within the grace, give back what
is left (``_requeue``), leave the workers registry."""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from lexyjobs import pipelines, store, workers
from lexyjobs.config import Settings
from lexyjobs.context import SHUTDOWN
from lexyjobs.db import Database, utcnow
from lexyjobs.errors import TransitionConflict
from lexyjobs.failures import failure_log
from lexyjobs.outcomes import Active
from lexyjobs.registry import JobCatalog
from lexyjobs.states import DECREMENT, RunStatus, transition
from lexyjobs.worker.dispatcher import Dispatcher
from lexyjobs.worker.executor import Executor
from lexyjobs.worker.monitor import Membership, Monitor
from lexyjobs.worker.pool import Pool
from lexyjobs.worker.wakeups import Wakeups

log = logging.getLogger("lexyjobs.worker")  # one logger for the whole pool (README: log lines)


class Worker:
    """The worker pool of one process (see the package docstring)."""

    def __init__(self, db: Database, settings: Settings, catalog: JobCatalog, *, name: str | None = None,
                 clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None) -> None:
        self.db, self.settings, self.catalog = db, settings, catalog
        self.failures = failure_log(db)  # repeated failures of the loops: logged once, then counted
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.size = max(1, settings.workers)
        self.clock = clock
        self.pool = Pool(self.size)
        self.executor = Executor(db, settings, catalog, self.pool, clock=clock)
        self.dispatcher = Dispatcher(db, settings, self.pool, self.failures, name=self.name, clock=clock,
                                     rng=rng or random.Random(), start_run=self.executor.submit)
        served = settings.queues
        self.registration = workers.Registration.of_this_process(
            self.name, threads=self.size, started_at=clock(),
            queues=tuple(served.entries()) if served is not None else None)
        self.membership = Membership(db, self.registration, self.failures, clock=clock)
        self.monitor = Monitor(db, settings, self.pool, self.membership, self.failures, clock=clock)
        self.wakeups = Wakeups(db, self.pool, self.failures, name=self.name,
                               anything_due=self.dispatcher.anything_due)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Register in the workers registry, rescue stale runs, then start the threads. Returns at once."""
        self.db.on_enqueue(self.wake)
        self.membership.register()
        self.monitor.rescue()
        loops: list[tuple[str, Callable[[], None]]] = [("dispatcher", self.dispatcher.loop),
                                                       ("monitor", self.monitor.loop)]
        for name, target in loops:
            self._spawn(f"lexyjobs-{name}", target, keep=True)
        # Woken by other processes' enqueues: LISTEN on Postgres, a data_version watch on SQLite.
        # Not joined on stop: they hold no locks and end within a second.
        self._spawn("lexyjobs-listener", self.wakeups.loop, keep=False)
        for i in range(self.size):
            self._spawn(f"lexyjobs-run-{i}", self.executor.loop, keep=False)
        log.info("worker %s started with %d threads", self.name, self.size)

    def _spawn(self, name: str, target: Callable[[], None], *, keep: bool) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        if keep:
            self._threads.append(thread)

    def wake(self) -> None:
        """Claim now (called after a local enqueue, a NOTIFY or a finished run)."""
        self.pool.wake()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads) and not self.pool.closed.is_set()

    def cancel_local(self, run_id: int) -> bool:
        """Stop a run of this process at once (see ``Pool.cancel_local``)."""
        return self.pool.cancel_local(run_id)

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running runs finish for up to ``grace`` seconds (default
        LEXYJOBS_SHUTDOWN_GRACE), then re-queue what is left (fail it if the job is not
        idempotent) and stop the threads."""
        pool = self.pool
        grace = self.settings.shutdown_grace if grace is None else grace
        pool.stopping.set()
        self.wake()
        with pool.handover:
            pass  # a claim in flight is now in pool.active; later cycles claim nothing
        if pool.busy and grace > 0:
            self.membership.mark_stopping()  # while its runs finish, the queued ones say why none starts here
        deadline = time.monotonic() + grace
        with pool.idle:
            while pool.busy and time.monotonic() < deadline:
                pool.idle.wait(min(0.1, max(deadline - time.monotonic(), 0.0)))
            leftovers = [a for a in pool.active.values() if not a.finished]
            for active in leftovers:
                if not active.executing:  # under the lock: no thread takes it up from here on
                    active.ctx.cancel(SHUTDOWN)
        for active in leftovers:  # stop them first, so nobody else claims a run still executing here
            active.ctx.cancel(SHUTDOWN)
        if leftovers:
            try:
                self._requeue(leftovers)
            except SQLAlchemyError:
                log.exception("worker %s: could not re-queue %d runs; they will be rescued when stale",
                              self.name, len(leftovers))
        pool.closed.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout=10)
        try:
            self.dispatcher.write_finished()  # anything finished while stopping
        except SQLAlchemyError:
            log.exception("worker %s: could not record runs that finished while stopping", self.name)
        self.executor.close()
        self.membership.unregister()
        log.info("worker %s stopped (%d runs re-queued)", self.name, len(leftovers))

    def _requeue(self, leftovers: list[Active]) -> None:
        """On shutdown: put unfinished runs back in the queue without counting the attempt;
        runs of non-idempotent jobs that had begun fail instead (at-most-once)."""
        now = self.clock()
        failed: list[pipelines.Finished] = []
        with self.db.write() as session:
            for active in leftovers:
                claim = active.claim
                try:
                    if store.cancel_requested(session, [claim.id]):
                        transition(session, claim.id, RunStatus.CANCELED, expected=RunStatus.RUNNING, lease=claim.lease,
                                   at=now, note="canceled (worker stopping)", finished_at=now, error="canceled")
                        failed.append(pipelines.Finished(claim.id, claim.job_name, claim.pipeline_id,
                                                         RunStatus.CANCELED))
                    elif not active.executing or active.definition is None or active.definition.idempotent:
                        ended = "finished" if active.executing else "started"
                        transition(session, claim.id, RunStatus.QUEUED, expected=RunStatus.RUNNING, lease=claim.lease,
                                   at=now, note=f"re-queued: worker {self.name} stopped before the run {ended}",
                                   attempt=DECREMENT, worker=None, heartbeat_at=None)  # keeps its place
                    else:
                        transition(session, claim.id, RunStatus.FAILED, expected=RunStatus.RUNNING, lease=claim.lease,
                                   at=now, note=f"interrupted: worker {self.name} stopped", finished_at=now,
                                   error="interrupted: worker stopped before the run finished")
                        failed.append(pipelines.Finished(claim.id, claim.job_name, claim.pipeline_id, RunStatus.FAILED))
                except TransitionConflict:
                    pass  # already finished or rescued: nothing to give back
            pipelines.advance(session, failed, now=now, postgres=self.db.is_postgres)  # blocks only
            self.db.enqueued(session)
