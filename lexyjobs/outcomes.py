"""A run in this process's hands (``Active``) and how its attempt ended (``Outcome``), and what
that end writes (``change_of``): the status (a failure with attempts left goes back to queued after
the backoff), the values, and the note of its event — cancel requests included (``cancels``)."""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lexyjobs import cancels, claiming, store
from lexyjobs.context import CANCEL, LOST, SHUTDOWN, TIMEOUT, RunContext
from lexyjobs.definitions import JobDefinition
from lexyjobs.durations import format_duration
from lexyjobs.backoff import retry_delay
from lexyjobs.states import Change, RunStatus


@dataclass
class Active:
    """A run this process is executing."""

    claim: claiming.ClaimedRun
    ctx: RunContext
    definition: JobDefinition | None
    problem: str | None = None             # why it cannot run (definition unavailable)
    executing: bool = False                # a thread took it up (before that it waits, claimed ahead)
    finished: bool = False                 # its thread is done; the outcome awaits the dispatcher
    started: float = field(default_factory=time.monotonic)  # when it was claimed, then when it began
    deadline: float | None = None

    @property
    def lease(self) -> store.Lease:
        return store.Lease(self.claim.id, self.claim.lease)


@dataclass
class Outcome:
    """How an attempt ended, waiting to be written by the dispatcher."""

    active: Active
    status: RunStatus | None               # None: lease lost or shutting down, write nothing
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    retryable: bool = True
    retry_after: float | None = None       # least seconds before the next attempt (JobFailed.retry_after)
    log_text: str = ""
    progress: tuple[float | None, str | None] | None = None
    details: dict[str, Any] | None = None
    deferred: tuple[datetime, str] | None = None  # status QUEUED: held until then, by that (RunDeferred), uncounted

    def unrecordable(self, exc: BaseException) -> Outcome:
        """The same end as a plain failure, for an outcome the database refused to store."""
        summary = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        error = self.active.ctx.redactor.text(f"could not record the run's outcome: {summary}")
        return Outcome(self.active, RunStatus.FAILED, error=error, retryable=False)

    def redact(self) -> None:
        """Mask the run's secret values in what will be recorded (log text and progress were
        masked as the job wrote them). Done in the run thread, not in the write transaction."""
        redactor = self.active.ctx.redactor
        if redactor:
            self.error, self.traceback = redactor.value(self.error), redactor.value(self.traceback)
            self.result, self.details = redactor.value(self.result), redactor.value(self.details)


def success_of(active: Active, result: Any) -> Outcome:
    """A body's return value: the run succeeds with it, or fails when it is not storable JSON."""
    problem = json_problem(result)
    if problem:
        return Outcome(active, RunStatus.FAILED, error=f"the result is not JSON data: {problem}", retryable=False)
    return Outcome(active, RunStatus.SUCCEEDED, result=result)


def stopped_outcome(active: Active) -> Outcome | None:
    """How a run stopped by cancel, timeout, shutdown or a lost lease ends (None: not stopped)."""
    reason = active.ctx.cancel_reason
    if reason == CANCEL:
        return Outcome(active, RunStatus.CANCELED, error="canceled")
    if reason == TIMEOUT:
        return Outcome(active, RunStatus.FAILED, error=f"timed out after {format_duration(active.ctx.timeout or 0)}")
    if reason in (SHUTDOWN, LOST):
        return Outcome(active, None)
    return None


def change_of(outcome: Outcome, now: datetime, requested: dict[int, datetime | None], rng: random.Random) -> Change | None:
    """What one attempt's end writes: its status (a failure with attempts left goes back to
    queued, delayed by the backoff, or longer when the attempt asked: JobFailed.retry_after)
    and values. None: nothing to write (stopped by shutdown or a lost lease; the run is
    re-queued or rescued). A run in ``requested`` (asked to cancel, and when) that finished
    before its worker stopped it keeps its outcome with a note saying so; one that failed
    with attempts left is not retried but canceled."""
    active, claim = outcome.active, outcome.active.claim
    if outcome.status is None:
        return None
    error = clean(outcome.error)
    values: dict[str, Any] = {"details": outcome.details or None}
    if outcome.progress is not None:
        values["progress"], values["progress_message"] = outcome.progress
    status, note = outcome.status, None
    cancel_asked = claim.id in requested
    if status == RunStatus.SUCCEEDED:
        values.update(finished_at=now, result=outcome.result, error=None, traceback=None)
        note = cancels.finished_first(requested[claim.id]) if cancel_asked else None
    elif status == RunStatus.CANCELED:
        values.update(finished_at=now, error=error)
    elif status == RunStatus.QUEUED and cancel_asked:  # deferred, but asked to stop: do not wait
        status = RunStatus.CANCELED
        values.update(finished_at=now, error="canceled")
        note = f"{(error or '')[:300]}; not re-queued: cancel requested at {cancels.when(requested[claim.id])}"
    elif status == RunStatus.QUEUED:  # deferred (RunDeferred): back to the queue, the attempt not counted
        until, by = outcome.deferred or (now, "")
        # held like a run over a rate limit, keeping its place; the attempt the lease fences is the
        # one given back (a batch's UPDATE takes plain values)
        values.update(error=error, held_until=until, held_by=by[:300], attempt=claim.attempt - 1, worker=None,
                      heartbeat_at=None)
        note = f"attempt {claim.attempt} deferred, not counted: {(error or '')[:300]}"
    else:
        values.update(error=error, traceback=clean(outcome.traceback))
        note = f"attempt {claim.attempt} of {claim.max_attempts} failed: {(error or '')[:300]}"
        retry = outcome.retryable and claim.attempt < claim.max_attempts and active.definition is not None
        if retry and cancel_asked:  # asked to stop: do not try again
            status, retry, values["error"] = RunStatus.CANCELED, False, "canceled"
            note = f"{note}; not retried: cancel requested at {cancels.when(requested[claim.id])}"
        elif cancel_asked:
            note = f"{note}; {cancels.finished_first(requested[claim.id])}"
        if retry and active.definition is not None:
            delay = retry_delay(claim.attempt, active.definition.retry, rng, outcome.retry_after)
            status, note = RunStatus.QUEUED, f"{note}; retrying in {format_duration(delay)}"
            values.update(scheduled_for=now + timedelta(seconds=delay), worker=None, heartbeat_at=None)
        else:
            values.update(finished_at=now)
    return Change(claim.id, claim.lease, status, values, note)


def clean(text: str | None) -> str | None:
    """Text Postgres can store (no NUL characters)."""
    return text.replace("\x00", "\\x00") if text else text


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON in both databases (NaN/Infinity and the NUL
    character are refused by Postgres), or None."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return "it contains the NUL character (\\u0000)" if "\\u0000" in text else None


def json_details(details: dict[str, Any]) -> dict[str, Any] | None:
    """A run's kind details, or a note in their place when they are not storable JSON."""
    if not details:
        return None
    problem = json_problem(details)
    return {"note": f"details dropped: {problem}"} if problem else details
