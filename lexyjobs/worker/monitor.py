"""The monitor thread, every MONITOR_TICK: timeouts, cancel requests, runs' progress and log lines
and heartbeats (fenced by lease: a run rescued elsewhere is stopped here), this process's own
heartbeat in the workers registry (``Membership``), and every quarter of LEXYJOBS_STALE_AFTER the
rescue of dead workers' runs and the pruning of their registry rows.

It is the one loop that writes while runs execute, so a run that runs for hours still looks alive
and its log appears as it is written, not only at its end."""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lexyjobs import store, workers
from lexyjobs.config import Settings
from lexyjobs.context import LOST, TIMEOUT
from lexyjobs.db import Database
from lexyjobs.durations import format_duration
from lexyjobs.errors import LexyjobsError
from lexyjobs.failures import FailureLog
from lexyjobs.outcomes import Active
from lexyjobs.runs import rescue_stale
from lexyjobs.worker.pool import Pool

log = logging.getLogger("lexyjobs.worker")  # one logger for the whole pool (README: log lines)
MONITOR_TICK = 0.2
FLUSH_INTERVAL = 1.0


class Membership:
    """This process's row in the workers registry (``lexyjobs.workers``). Failures are logged,
    never raised: a row that is missing or stale is written again by the next heartbeat."""

    def __init__(self, db: Database, registration: workers.Registration, failures: FailureLog, *,
                 clock: Callable[[], datetime]) -> None:
        self.db, self.registration, self.failures, self.clock = db, registration, failures, clock
        self.name = registration.name

    def register(self) -> None:
        try:
            with self.db.write() as session:
                workers.register(session, self.registration, now=self.clock())
        except SQLAlchemyError as exc:
            self.failures.failed(log, f"worker {self.name}: could not register; the next heartbeat retries", exc)

    def beat(self, session: Session) -> None:
        if not workers.heartbeat(session, self.registration, now=self.clock()):
            log.warning("worker %s: its registry row was gone (pruned while this process stalled); written again",
                        self.name)

    def mark_stopping(self) -> None:
        try:
            with self.db.write() as session:
                workers.mark_stopping(session, self.name, now=self.clock())
        except SQLAlchemyError as exc:
            log.warning("worker %s: could not record that it is stopping (%s)", self.name, type(exc).__name__)

    def unregister(self) -> None:
        try:
            with self.db.write() as session:
                workers.unregister(session, self.name)
        except SQLAlchemyError:
            log.exception("worker %s: could not leave the registry; live workers prune it when stale", self.name)


class Monitor:
    """Watches the pool's runs (``loop``) and rescues dead workers' runs (``rescue``)."""

    def __init__(self, db: Database, settings: Settings, pool: Pool, membership: Membership, failures: FailureLog,
                 *, clock: Callable[[], datetime]) -> None:
        self.db, self.settings, self.pool, self.membership = db, settings, pool, membership
        self.failures, self.clock, self.name = failures, clock, membership.name

    def loop(self) -> None:
        last_flush = last_heartbeat = last_rescue = time.monotonic()
        rescue_every = max(1.0, self.settings.stale_after / 4)
        while not self.pool.closed.wait(MONITOR_TICK):
            now = time.monotonic()
            # Every run whose thread still executes keeps its heartbeat, even one asked to stop
            # (python jobs stop cooperatively): otherwise it would be rescued and run twice.
            actives = self.pool.unfinished()
            try:
                for active in actives:
                    if active.deadline is not None and now > active.deadline and not active.ctx.cancelled:
                        log.warning("run %s timed out after %s", active.claim.id,
                                    format_duration(active.ctx.timeout or 0),
                                    extra={"run_id": active.claim.id, "job": active.claim.job_name,
                                           "attempt": active.claim.attempt})
                        active.ctx.cancel(TIMEOUT)
                heartbeat_due = now - last_heartbeat >= self.settings.heartbeat_interval
                if actives and (now - last_flush >= FLUSH_INTERVAL or heartbeat_due):
                    self._sync(actives, heartbeat=heartbeat_due)
                    last_flush = now
                    last_heartbeat = now if heartbeat_due else last_heartbeat
                elif heartbeat_due:  # idle: only this process's row in the registry
                    last_heartbeat = now  # first: a failing write is retried next interval, not every tick
                    with self.db.write() as session:
                        self.membership.beat(session)
                if now - last_rescue >= rescue_every:
                    self.rescue()
                    last_rescue = now
            except Exception as exc:  # the worker boundary: the monitor must outlive any one problem
                self.failures.failed(log, f"worker {self.name}: monitor cycle failed; retrying", exc)

    def _sync(self, actives: list[Active], *, heartbeat: bool) -> None:
        """Apply cancel requests, heartbeat the runs and this process (its own transaction, so
        nothing else can hold it back), then write each run's progress and log lines (a
        savepoint each). Runs whose lease is gone (rescued by another process) are stopped here."""
        with self.db.read() as session:
            for run_id in store.cancel_requested(session, [a.claim.id for a in actives if not a.ctx.cancelled]):
                self.pool.cancel_local(run_id)
        lost: set[int] = set()
        if heartbeat or self.pool.begins:
            with self.db.write() as session:
                self.pool.begins.write(session, now=self.clock())
                if heartbeat:
                    lost.update(store.heartbeat(session, [a.lease for a in actives], now=self.clock()))
                    self.membership.beat(session)
        with self.pool.log_order:  # what it takes is stored before a run's last lines are taken
            dirty = [(a, *a.ctx.take_updates()) for a in actives]
            dirty = [(a, progress, text) for a, progress, text in dirty if progress is not None or text]
            if dirty:
                with self.db.write() as session:
                    for active, progress, text in dirty:
                        if not self._flush(session, active, progress, text):
                            lost.add(active.claim.id)
        for active in actives:
            # a run that finished meanwhile is no longer running: that is not a lost lease
            if active.claim.id in lost and not active.finished:
                log.warning("run %s: lease %d lost (rescued elsewhere); stopping it here", active.claim.id,
                            active.claim.lease)
                active.ctx.cancel(LOST)

    def _flush(self, session: Session, active: Active, progress: tuple[float | None, str | None] | None,
               text: str) -> bool:
        """Write one run's new progress and log text, fenced by its lease; False if it is gone.
        A run that just finished keeps its lease, so its last lines still land."""
        percent, message = progress or active.ctx.current_progress() or (None, None)
        try:
            with session.begin_nested():
                if store.save_progress(session, active.lease, percent, message) or (
                        active.finished and store.holds_lease(session, active.lease, running=False)):
                    store.append_log(session, active.claim.id, text, max_chars=self.settings.log_max_bytes)
                    return True
                return False
        except SQLAlchemyError as exc:
            self.failures.failed(log, f"run {active.claim.id}: could not write its progress/log; dropped this part", exc)
            return True

    def rescue(self) -> None:
        """Rescue the runs of dead workers and delete those workers' rows (same window)."""
        try:
            rescue_stale(self.db, stale_after=self.settings.stale_after, now=self.clock(),
                         postgres=self.db.is_postgres)
        except (SQLAlchemyError, LexyjobsError) as exc:
            self.failures.failed(log, f"worker {self.name}: could not rescue stale runs", exc)
        try:
            for name in workers.prune_dead(self.db, now=self.clock(), stale_after=self.settings.stale_after):
                log.warning("worker %s: removed worker %s from the registry (no heartbeat for %s)", self.name, name,
                            format_duration(self.settings.stale_after))
        except SQLAlchemyError as exc:
            self.failures.failed(log, f"worker {self.name}: could not prune dead workers", exc)
