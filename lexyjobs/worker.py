"""The worker pool of one process: claims runs, executes them on its threads, heartbeats them,
enforces timeouts and cancels, rescues runs of dead workers, and stops gracefully.

Threads:
- dispatcher: writes finished runs and claims new ones, both in one transaction per cycle
  (batches of up to ``workers`` runs), then waits for a wake-up (local enqueue, a finished run,
  Postgres NOTIFY) or the poll interval;
- run threads (daemon, so a stuck job never blocks exit): execute one run at a time;
- monitor: timeouts, cancel requests, progress/log flush and heartbeats (fenced by lease), the
  process's own heartbeat in the workers registry (``lexyjobs.workers``), periodic rescue of
  stale runs and pruning of dead workers;
- listener (Postgres only): LISTEN for enqueues from other processes."""
from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
import traceback
from collections import Counter
from datetime import datetime
from typing import Any, Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lexyjobs import begun, children, claiming, pipelines, store, workers
from lexyjobs.outcomes import Active, Outcome, change_of, json_details, stopped_outcome, success_of
from lexyjobs.config import Settings
from lexyjobs.context import CANCEL, LOST, SHUTDOWN, TIMEOUT, ChildError, JobFailed, RunCanceled, RunContext
from lexyjobs.db import NOTIFY_CHANNEL, Database, utcnow
from lexyjobs.durations import format_duration
from lexyjobs.errors import LexyjobsError, TransitionConflict
from lexyjobs.failures import failure_log
from lexyjobs.kinds import kinds
from lexyjobs.masking import Redactor
from lexyjobs.registry import JobCatalog
from lexyjobs.runs import rescue_stale
from lexyjobs.states import DECREMENT, RunStatus, insert_events, transition, transition_each

log = logging.getLogger(__name__)
MONITOR_TICK = 0.2
WATCH_INTERVAL = 0.025  # seconds between SQLite data_version reads (cross-process wake-ups)
AHEAD_WAIT = 0.1  # seconds: claim ahead what the threads would start within this, at the recent pace
FLUSH_INTERVAL = 1.0


class Worker:
    def __init__(self, db: Database, settings: Settings, catalog: JobCatalog, *, name: str | None = None,
                 clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None) -> None:
        self.db, self.settings, self.catalog = db, settings, catalog
        self.failures = failure_log(db)  # repeated failures of the loops below: logged once, then counted
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.size = max(1, settings.workers)
        # Runs claimed beyond the free threads wait in memory (as ``running``) and start the
        # moment a thread frees up: each write cycle then finishes and claims a bigger batch.
        # Only as many as the threads would start within AHEAD_WAIT (see _ahead): runs that take
        # a while are not claimed ahead, since another process may be idle.
        self.most_ahead = self.size * settings.prefetch
        self._typical_run: float | None = None  # moving average of the seconds a run takes here
        self.clock = clock
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        # Held by the monitor from taking runs' new log lines to storing them, and by a run thread
        # taking its last lines (which the dispatcher stores with the run's end): lines are then
        # stored in the order they were written, and a finished run never lacks some.
        self._log_order = threading.Lock()
        self._active: dict[int, Active] = {}
        self._busy = 0
        # Named queues (LEXYJOBS_QUEUES): None serves every queue, and the claim skips the queue
        # bookkeeping entirely; else each claim gets the room left per queue under its thread cap,
        # counting the runs this process holds (claimed-ahead ones included).
        self.served = settings.queues
        self._busy_by_queue: Counter[str] = Counter()
        self._outcomes: list[Outcome] = []
        self._begins = begun.PendingBegins()  # claimed-ahead runs that began, to record as begun
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._work: queue.SimpleQueue[Active | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._handover = threading.Lock()
        self.registration = workers.Registration.of_this_process(
            self.name, threads=self.size, started_at=clock(),
            queues=tuple(self.served.entries()) if self.served is not None else None)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Register in the workers registry, rescue stale runs, then start the threads. Returns at once."""
        self.db.on_enqueue(self.wake)
        self._register()
        self._rescue()
        loops: list[tuple[str, Callable[[], None]]] = [("dispatcher", self._dispatch_loop), ("monitor", self._monitor_loop)]
        for name, target in loops:
            self._spawn(f"lexyjobs-{name}", target, keep=True)
        # Woken by other processes' enqueues: LISTEN on Postgres, a data_version watch on SQLite.
        # Not joined on stop: they hold no locks and end within a second.
        self._spawn("lexyjobs-listener", self._listen_loop if self.db.is_postgres else self._watch_loop, keep=False)
        for i in range(self.size):
            self._spawn(f"lexyjobs-run-{i}", self._run_loop, keep=False)
        log.info("worker %s started with %d threads", self.name, self.size)

    def _spawn(self, name: str, target: Callable[[], None], *, keep: bool) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        if keep:
            self._threads.append(thread)

    def wake(self) -> None:
        """Claim now (called after a local enqueue, a NOTIFY or a finished run)."""
        self._wake.set()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads) and not self._closed.is_set()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running runs finish for up to ``grace`` seconds (default
        LEXYJOBS_SHUTDOWN_GRACE), then re-queue what is left (fail it if the job is not
        idempotent) and stop the threads."""
        grace = self.settings.shutdown_grace if grace is None else grace
        self._stopping.set()
        self.wake()
        with self._handover:
            pass  # a claim in flight is now in _active; later cycles claim nothing
        if self._busy and grace > 0:
            self._mark_stopping()  # while its runs finish, the queued ones say why none starts here
        deadline = time.monotonic() + grace
        with self._idle:
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(min(0.1, max(deadline - time.monotonic(), 0.0)))
            leftovers = [a for a in self._active.values() if not a.finished]
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
        self._closed.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout=10)
        try:
            self._write_cycle(self._take_outcomes(), 0)  # anything finished while stopping
        except SQLAlchemyError:
            log.exception("worker %s: could not record runs that finished while stopping", self.name)
        for _ in range(self.size):
            self._work.put(None)
        self._unregister()
        log.info("worker %s stopped (%d runs re-queued)", self.name, len(leftovers))

    def cancel_local(self, run_id: int) -> bool:
        """Stop a run of this process at once (after the database was flagged). One still waiting
        for a thread ends here, canceled without ever beginning."""
        with self._idle:
            active = self._active.get(run_id)
            if active is None:
                return False
            if not active.executing and not active.finished:
                active.ctx.cancel(CANCEL)  # under the lock: no thread begins it now (and it has no callbacks)
                active.finished = True
                self._outcomes.append(Outcome(active, RunStatus.CANCELED, error="canceled"))
                self._busy -= 1
                self._busy_by_queue[active.claim.queue] -= 1
                self._idle.notify_all()
        self.wake()
        active.ctx.cancel(CANCEL)
        return True

    # ------------------------------------------------------------ dispatcher

    def _dispatch_loop(self) -> None:
        pause, probe = 0.0, False
        while not self._closed.is_set():
            # Held from the claim until the claimed runs are registered as active, so stop()
            # never misses a run that is already ``running`` in the database.
            with self._handover:
                outcomes = self._take_outcomes()
                with self._lock:
                    free = 0 if self._stopping.is_set() else self.size + self._ahead() - self._busy
                    idle_threads = max(self.size - self._busy, 0)  # the first claimed runs go to them
                    room = None if self.served is None else self.served.room(self._busy_by_queue)
                    if room is not None and not any(n is None or n > 0 for n in room.values()):
                        free = 0  # every queue served is at its cap: no claim (nor write) until one frees
                try:
                    # An idle poll first asks with a cheap read whether anything is due, so idle
                    # processes do not take SQLite's write lock twice a second.
                    idle = probe and not outcomes and free and not self._anything_due()
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
                    self._start_run(claim)
            if claimed is None:
                self._closed.wait(pause)  # zero after a bad outcome was isolated: claim again at once
                continue
            if outcomes or (free and len(claimed) == free):
                probe = False
                continue
            probe = not self._wake.wait(self.settings.poll_interval)
            self._wake.clear()

    def _ahead(self) -> int:
        """Runs to claim beyond the free threads: what they would start within AHEAD_WAIT at the
        recent pace (none for runs of a second or more), at most LEXYJOBS_PREFETCH per thread."""
        if self._typical_run is None:  # nothing known yet: claim for the free threads only
            return 0
        return min(self.most_ahead, int(self.size * AHEAD_WAIT / max(self._typical_run, 1e-6)))

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
                    with self._lock:
                        self._outcomes.append(outcome)
        return ok

    def _anything_due(self) -> bool:
        with self.db.read() as session:
            return claiming.has_due_runs(session, now=self.clock(),
                                         queues=None if self.served is None else self.served.names)

    def _write_cycle(self, outcomes: list[Outcome], free: int, *, begin: int | None = None,
                     queues: dict[str, int | None] | None = None) -> list[claiming.ClaimedRun]:
        """Write finished runs and the begun marks of claimed-ahead runs, and claim up to ``free``
        new ones (the first ``begin`` of them for idle threads, the rest ahead; of ``queues`` with
        their room, None: any queue) in one transaction."""
        if not outcomes and free <= 0 and not self._begins:
            return []
        now = self.clock()
        outcomes = sorted(outcomes, key=lambda o: o.active.claim.id)  # row locks in id order: no deadlocks
        with self.db.write() as session:
            events: list[dict[str, Any]] = []
            self._begins.write(session, now=now, ended=[o.active.claim.id for o in outcomes])
            finished = self._finish(session, outcomes, now, events)
            if pipelines.advance(session, finished, now=now, postgres=self.db.is_postgres):
                self.db.enqueued(session)
            claimed = claiming.claim_runs(session, free, worker=self.name, now=now, postgres=self.db.is_postgres,
                                          events=events, begin=begin, queues=queues) if free > 0 else []
            insert_events(session, events)  # the batch's ends and starts in one statement
        with self._lock:
            for outcome in outcomes:
                self._active.pop(outcome.active.claim.id, None)
        return claimed

    def _take_outcomes(self) -> list[Outcome]:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def _start_run(self, claim: claiming.ClaimedRun) -> None:
        definition, problem = None, None
        try:
            definition = self.catalog.get(claim.job_name, claim.job_version)
        except LexyjobsError as exc:
            problem = f"job definition unavailable: {exc.message}"
        except SQLAlchemyError as exc:
            problem = f"job definition unavailable: {type(exc).__name__}"
        timeout = definition.timeout if definition else None
        redactor = Redactor.for_config(definition.config if definition else None)  # lexyjobs' own secrets at least
        ctx = RunContext(run_id=claim.id, job_name=claim.job_name, params=claim.params, attempt=claim.attempt,
                         max_attempts=claim.max_attempts, timeout=timeout, kill_grace=self.settings.kill_grace,
                         redactor=redactor)
        if claim.attempt > 1:  # the log spans attempts: show where this one starts
            ctx.write(f"--- attempt {claim.attempt} of {claim.max_attempts} ---\n")
        active = Active(claim, ctx, definition, problem)
        ctx.on_process = lambda pgid: self._record_process(active, pgid)
        with self._lock:
            self._active[claim.id] = active
            self._busy += 1
            self._busy_by_queue[claim.queue] += 1
        self._work.put(active)

    # ------------------------------------------------------------ execution

    def _run_loop(self) -> None:
        while True:
            active = self._work.get()
            if active is None:
                return
            if not self._begin(active):  # stopped while it waited
                if active.finished:  # canceled: cancel_local recorded it
                    continue
                outcome = stopped_outcome(active) or Outcome(active, None)
            else:
                outcome = self._execute_safely(active)
            self._done(active, outcome)

    def _execute_safely(self, active: Active) -> Outcome:
        """``_execute``, and whatever escapes it (say, writing the traceback failed) a failure."""
        try:
            outcome = self._execute(active)
        except BaseException as exc:  # never lose the slot or the run, whatever the job did
            outcome = Outcome(active, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc())
        with self._log_order:  # after lines the monitor took are stored: they come first
            outcome.progress, outcome.log_text = active.ctx.take_updates()
        outcome.details = json_details(active.ctx.details)
        outcome.redact()
        return outcome

    def _done(self, active: Active, outcome: Outcome) -> None:
        """Hand the outcome to the dispatcher and free the slot."""
        with self._idle:
            active.finished = True
            if active.executing:
                took = time.monotonic() - active.started
                self._typical_run = took if self._typical_run is None else self._typical_run + 0.1 * (
                    took - self._typical_run)
            self._outcomes.append(outcome)
            self._busy -= 1
            self._busy_by_queue[active.claim.queue] -= 1
            self._idle.notify_all()
        self.wake()

    def _begin(self, active: Active) -> bool:
        """Mark a run as executing, unless it was stopped while it waited (canceled, or the worker
        is stopping: ``stop`` re-queues it, whatever the job, since it never began). A
        claimed-ahead run is recorded as begun first (see ``lexyjobs.begun``)."""
        durable = not active.claim.begun and active.definition is not None and not active.definition.idempotent
        if durable and (active.ctx.cancel_reason is not None or not self._mark_begun_now(active)):
            return False
        with self._lock:
            if active.ctx.cancel_reason is not None:
                return False
            active.executing, active.started = True, time.monotonic()
        if not active.claim.begun and not durable:
            self._begins.add(active.lease)
        if active.ctx.timeout:
            active.deadline = active.started + active.ctx.timeout
        return True

    def _mark_begun_now(self, active: Active) -> bool:
        """Record durably that a claimed-ahead run of a job that is not idempotent begins. If that
        cannot be done (lease lost, database unreachable), it does not begin: it is left for
        the rescue, which re-queues it uncounted."""
        try:
            if begun.mark_now(self.db, active.lease, now=self.clock()):
                return True
            log.warning("run %s: lease %d lost before it began; not starting it", active.claim.id, active.claim.lease)
        except SQLAlchemyError:
            log.exception("run %s: could not record that it begins; not starting it (it will be rescued)",
                          active.claim.id)
        active.ctx.cancel(LOST)
        return False

    def _record_process(self, active: Active, pgid: int) -> None:
        """Write the run's job process group (``RunContext.process_started``) at once. A lost lease
        stops the run here; a failed write is logged (the process dies with lexyjobs anyway)."""
        try:
            with self.db.write() as session:
                held = store.record_process(session, active.lease, pgid=pgid, host=children.HOST, now=self.clock())
        except SQLAlchemyError:
            log.exception("run %s: could not record its process group %d", active.claim.id, pgid)
            return
        if not held:
            log.warning("run %s: lease %d lost as its process started; stopping it", active.claim.id,
                        active.claim.lease)
            active.ctx.cancel(LOST)

    def _execute(self, active: Active) -> Outcome:
        """Run the job; the only place that catches every exception a job can raise."""
        claim, ctx = active.claim, active.ctx
        if active.definition is None:
            return Outcome(active, RunStatus.FAILED, error=active.problem, retryable=False)
        log.info("run %s (%s) started, attempt %d/%d", claim.id, claim.job_name, claim.attempt, claim.max_attempts,
                 extra={"run_id": claim.id, "job": claim.job_name, "attempt": claim.attempt,
                        "max_attempts": claim.max_attempts, "from_status": "queued", "status": "running"})
        try:
            result = kinds()[active.definition.kind].run(ctx, active.definition.config)
            return stopped_outcome(active) or success_of(active, result)
        except RunCanceled as exc:
            return stopped_outcome(active) or Outcome(active, RunStatus.CANCELED, error=str(exc))
        except JobFailed as exc:
            return stopped_outcome(active) or Outcome(active, RunStatus.FAILED, error=str(exc),
                                                            retry_after=exc.retry_after, retryable=exc.retryable)
        except ChildError as exc:  # python isolation=process: the child's exception and traceback
            return stopped_outcome(active) or Outcome(active, RunStatus.FAILED, error=exc.error,
                                                            traceback=exc.traceback)
        except BaseException as exc:  # SystemExit from a reused script included: the run fails, the thread lives
            return stopped_outcome(active) or Outcome(
                active, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())

    def _finish(self, session: Session, outcomes: list[Outcome], now: datetime,
                events: list[dict[str, Any]]) -> list[pipelines.Finished]:
        """Write the attempts' ends, each fenced by its lease (a lost lease writes nothing), runs
        that end alike in one statement. Their event rows are added to ``events`` (written by the
        caller in the same transaction). Returns the runs that reached a terminal status (for
        their pipelines)."""
        # Read (and on Postgres lock) the cancel requests first: a request that came in after the
        # body finished is then either seen here (the run keeps its outcome, with a note) or
        # refused because the run is no longer running — never lost in between.
        requested = store.cancel_requests(session, [o.active.claim.id for o in outcomes if o.status is not None],
                                          lock=self.db.is_postgres)
        changes = {c.run_id: (o, c) for o, c in ((o, change_of(o, now, requested, self.rng)) for o in outcomes) if c}
        moved = set(transition_each(session, [c for _, c in changes.values()], expected=RunStatus.RUNNING, at=now,
                                    postgres=self.db.is_postgres, events=events))
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

    # ------------------------------------------------------------ monitor

    def _monitor_loop(self) -> None:
        last_flush = last_heartbeat = last_rescue = time.monotonic()
        rescue_every = max(1.0, self.settings.stale_after / 4)
        while not self._closed.wait(MONITOR_TICK):
            now = time.monotonic()
            # Every run whose thread still executes keeps its heartbeat, even one asked to stop
            # (python jobs stop cooperatively): otherwise it would be rescued and run twice.
            with self._lock:
                actives = [a for a in self._active.values() if not a.finished]
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
                        self._beat(session)
                if now - last_rescue >= rescue_every:
                    self._rescue()
                    last_rescue = now
            except Exception as exc:  # the worker boundary: the monitor must outlive any one problem
                self.failures.failed(log, f"worker {self.name}: monitor cycle failed; retrying", exc)

    def _sync(self, actives: list[Active], *, heartbeat: bool) -> None:
        """Apply cancel requests, heartbeat the runs and this process (its own transaction, so
        nothing else can hold it back), then write each run's progress and log lines (a
        savepoint each). Runs whose lease is gone (rescued by another process) are stopped here."""
        with self.db.read() as session:
            for run_id in store.cancel_requested(session, [a.claim.id for a in actives if not a.ctx.cancelled]):
                self.cancel_local(run_id)
        lost: set[int] = set()
        if heartbeat or self._begins:
            with self.db.write() as session:
                self._begins.write(session, now=self.clock())
                if heartbeat:
                    lost.update(store.heartbeat(session, [a.lease for a in actives], now=self.clock()))
                    self._beat(session)
        with self._log_order:  # what it takes is stored before a run's last lines are taken
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

    def _rescue(self) -> None:
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

    # ------------------------------------------------------------ registry

    def _register(self) -> None:
        """Enter the workers registry. A failure is logged, not raised: the next heartbeat
        writes the row again."""
        try:
            with self.db.write() as session:
                workers.register(session, self.registration, now=self.clock())
        except SQLAlchemyError as exc:
            self.failures.failed(log, f"worker {self.name}: could not register; the next heartbeat retries", exc)

    def _beat(self, session: Session) -> None:
        if not workers.heartbeat(session, self.registration, now=self.clock()):
            log.warning("worker %s: its registry row was gone (pruned while this process stalled); written again",
                        self.name)

    def _mark_stopping(self) -> None:
        try:
            with self.db.write() as session:
                workers.mark_stopping(session, self.name, now=self.clock())
        except SQLAlchemyError as exc:
            log.warning("worker %s: could not record that it is stopping (%s)", self.name, type(exc).__name__)

    def _unregister(self) -> None:
        try:
            with self.db.write() as session:
                workers.unregister(session, self.name)
        except SQLAlchemyError:
            log.exception("worker %s: could not leave the registry; live workers prune it when stale", self.name)

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

    # ------------------------------------------------------------ Postgres LISTEN

    def _listen_loop(self) -> None:
        import psycopg

        while not self._closed.is_set():
            try:
                with psycopg.connect(self.db.psycopg_conninfo(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = row[0] if row else None
                    self.wake()  # catch what was enqueued while we were not listening
                    while not self._closed.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            if notice.payload == schema:  # not another instance's (same database, other schema)
                                self.wake()
            except psycopg.Error as exc:
                self.failures.failed(log, f"worker {self.name}: LISTEN connection failed; reconnecting", exc)
                self._closed.wait(1.0)


    def _watch_loop(self) -> None:
        """SQLite has no NOTIFY. ``PRAGMA data_version`` changes when another connection (another
        process's enqueue included) has committed; it reads the file's header, takes no lock and
        costs microseconds, so it is read every WATCH_INTERVAL; after a change, the dispatcher is
        woken if a run is due (heartbeats, finishes and this process's own commits change it too,
        and should not each cost a claim under the write lock)."""
        while not self._closed.is_set():
            try:
                raw = self.db.engine.raw_connection()  # autocommit (see db.py): no transaction is held
                try:
                    seen = raw.execute("PRAGMA data_version").fetchone()
                    while not self._closed.wait(WATCH_INTERVAL):
                        version = raw.execute("PRAGMA data_version").fetchone()
                        if version != seen:  # most commits are not enqueues: a cheap read, not a claim
                            seen = version
                            if self._anything_due():
                                self.wake()
                finally:
                    raw.close()
            except Exception as exc:  # e.g. the file is gone or locked for long: say so, retry
                self.failures.failed(log, f"worker {self.name}: watching the database for changes failed; retrying",
                                     exc)
                self._closed.wait(1.0)
