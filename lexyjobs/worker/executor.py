"""The run threads: each takes one claimed run at a time from the executor's queue, begins it
(unless it was stopped while it waited), runs its job, and hands the outcome to the pool for the
dispatcher to write.

The threads are daemons, so a stuck job never blocks the process's exit. ``_execute`` is the only
place that catches every exception a job can raise: whatever the job does, the thread lives on
and the run gets an outcome."""
from __future__ import annotations

import logging
import queue
import time
import traceback
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from lexyjobs import begun, children, claiming, store, tracing
from lexyjobs.config import Settings
from lexyjobs.context import LOST, ChildError, JobFailed, RunCanceled, RunContext, RunDeferred
from lexyjobs.db import Database
from lexyjobs.errors import LexyjobsError
from lexyjobs.kinds import kind
from lexyjobs.masking import Redactor
from lexyjobs.outcomes import Active, Outcome, json_details, stopped_outcome, success_of
from lexyjobs.registry import JobCatalog
from lexyjobs.states import RunStatus
from lexyjobs.worker.pool import Pool

log = logging.getLogger("lexyjobs.worker")  # one logger for the whole pool (README: log lines)


class Executor:
    """Executes the runs handed to ``submit`` on the pool's run threads (``loop``, one per thread)."""

    def __init__(self, db: Database, settings: Settings, catalog: JobCatalog, pool: Pool, *,
                 clock: Callable[[], datetime]) -> None:
        self.db, self.settings, self.catalog, self.pool, self.clock = db, settings, catalog, pool, clock
        self._work: queue.SimpleQueue[Active | None] = queue.SimpleQueue()

    def submit(self, claim: claiming.ClaimedRun) -> None:
        """Hold a claimed run in the pool and queue it for the next free thread."""
        definition, problem = None, None
        try:
            definition = self.catalog.get(claim.job_name, claim.job_version)
        except LexyjobsError as exc:
            problem = f"job definition unavailable: {exc.message}"
        except SQLAlchemyError as exc:
            problem = f"job definition unavailable: {type(exc).__name__}"
        timeout = definition.timeout if definition else None
        redactor = Redactor.for_names(definition.secret_names if definition else ())  # lexyjobs' own secrets at least
        ctx = RunContext(run_id=claim.id, job_name=claim.job_name, params=claim.params, attempt=claim.attempt,
                         max_attempts=claim.max_attempts, timeout=timeout, kill_grace=self.settings.kill_grace,
                         redactor=redactor)
        if claim.attempt > 1:  # the log spans attempts: show where this one starts
            ctx.write(f"--- attempt {claim.attempt} of {claim.max_attempts} ---\n")
        ctx.db, ctx.limits = self.db, tuple(definition.flow.limits) if definition else ()
        active = Active(claim, ctx, definition, problem)
        ctx.on_process = lambda pgid: self._record_process(active, pgid)
        self.pool.add(active)
        self._work.put(active)

    def close(self) -> None:
        """End every run thread once it is done with its current run."""
        for _ in range(self.pool.size):
            self._work.put(None)

    def loop(self) -> None:
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
            self.pool.release(active, outcome)

    def _execute_safely(self, active: Active) -> Outcome:
        """``_execute``, and whatever escapes it (say, writing the traceback failed) a failure;
        traced as the attempt's span when tracing is on (``lexyjobs.tracing``)."""
        with tracing.attempt(self.db, active.claim, started=self.clock()) as span:
            try:
                outcome = self._execute(active)
            except BaseException as exc:  # never lose the slot or the run, whatever the job did
                outcome = Outcome(active, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                                  traceback=traceback.format_exc())
            with self.pool.log_order:  # after lines the monitor took are stored: they come first
                outcome.progress, outcome.log_text = active.ctx.take_updates()
            outcome.details = json_details(active.ctx.details)
            outcome.redact()
            tracing.outcome(span, outcome.status.value if outcome.status else None, outcome.error)
        return outcome

    def _begin(self, active: Active) -> bool:
        """Mark a run as executing, unless it was stopped while it waited (canceled, or the worker
        is stopping: ``stop`` re-queues it, whatever the job, since it never began). A
        claimed-ahead run is recorded as begun first (see ``lexyjobs.begun``)."""
        durable = not active.claim.begun and active.definition is not None and not active.definition.idempotent
        if durable and (active.ctx.cancel_reason is not None or not self._mark_begun_now(active)):
            return False
        with self.pool.lock:
            if active.ctx.cancel_reason is not None:
                return False
            active.executing, active.started = True, time.monotonic()
        if not active.claim.begun and not durable:
            self.pool.begins.add(active.lease)
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
        runner = kind(active.definition.kind) if active.definition is not None else None
        if active.definition is None or runner is None:
            return Outcome(active, RunStatus.FAILED, error=active.problem or "unknown job kind", retryable=False)
        log.info("run %s (%s) started, attempt %d/%d", claim.id, claim.job_name, claim.attempt, claim.max_attempts,
                 extra={"run_id": claim.id, "job": claim.job_name, "attempt": claim.attempt,
                        "max_attempts": claim.max_attempts, "from_status": "queued", "status": "running"})
        try:
            result = runner.run(ctx, active.definition.config)
            return stopped_outcome(active) or success_of(active, result)
        except RunCanceled as exc:
            return stopped_outcome(active) or Outcome(active, RunStatus.CANCELED, error=str(exc))
        except JobFailed as exc:
            return stopped_outcome(active) or Outcome(active, RunStatus.FAILED, error=str(exc),
                                                      retry_after=exc.retry_after, retryable=exc.retryable)
        except RunDeferred as exc:
            return stopped_outcome(active) or Outcome(active, RunStatus.QUEUED, error=str(exc),
                                                      deferred=(exc.until, exc.by))
        except ChildError as exc:  # python isolation=process: the child's exception and traceback
            return stopped_outcome(active) or Outcome(active, RunStatus.FAILED, error=exc.error,
                                                      traceback=exc.traceback)
        except BaseException as exc:  # SystemExit from a reused script included: the run fails, the thread lives
            return stopped_outcome(active) or Outcome(
                active, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
