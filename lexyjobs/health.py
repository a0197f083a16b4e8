"""Job health (SPEC §1, seed 000's green/orange/red): a pure function of the job, a summary of its
recent runs and ``now``.

States, first match wins:

* ``error`` (red): the latest run with an outcome failed. Stays red while a re-run is running,
  until a run succeeds: a failure is never hidden behind a retry in progress.
* ``warning`` (orange): a run is running now.
* ``unknown``: no run has an outcome yet (never ran).
* ``warning``: the latest outcome is ``blocked`` (an upstream in its pipeline failed, so this
  job's data was not refreshed), or the last success is older than the stale window.
* ``ok`` (green): the last success is within the window.

Which runs count: ``succeeded`` and ``failed`` are outcomes of the job itself; ``blocked`` is an
outcome too (the job should have run and did not), but never counts as a failure of the job.
``canceled`` (someone stopped it) and ``skipped`` (a fire that did not run: overlap policy or
missed while down) are neutral: they neither refresh the last success nor break or extend a
failure streak; if they keep a job from succeeding, the stale window turns it orange.

The stale window is the job's ``stale_after`` when set; else, for a scheduled job, 2 × its
period + a grace of 10 % of the period (at least 5 minutes), where the period is the longest gap
between its next fires (see ``cron.period_seconds``; a weekday job's weekend counts); 48 h for
a manual job. A paused job is judged like any other: if it stops succeeding, it turns orange.

On top of that state come the *signals* of ``lexyjobs.health_signals`` (``too_long``,
``too_short``, ``too_often``, ``late_start``): each one makes an ``ok`` or ``unknown`` job a
``warning`` (an ``error`` stays one) and adds its message to the reason.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Literal

from sqlalchemy.orm import Session

from lexyjobs import health_reads, store
from lexyjobs.config import Settings
from lexyjobs.cron import parse_timezone, period_seconds, typical_period_seconds
from lexyjobs.db import Database
from lexyjobs.definitions import JobDefinition, definition_from_job
from lexyjobs.durations import format_duration
from lexyjobs.errors import InvalidDefinition
from lexyjobs.health_signals import RecentRuns, Signal, judge, next_signal_at
from lexyjobs.models import Job
from lexyjobs.states import RunStatus

HealthState = Literal["unknown", "ok", "warning", "error"]
MANUAL_WINDOW = 48 * 3600.0
MIN_GRACE = 300.0
GRACE_FRACTION = 0.1


@dataclass(frozen=True)
class LastRuns:
    """What health needs to know about a job's runs (``store.health_inputs`` computes it)."""

    last_status: str | None = None            # latest outcome: succeeded, failed or blocked (by finished_at)
    last_started_at: datetime | None = None   # when that run's last attempt started (None if blocked)
    last_finished_at: datetime | None = None  # when that run finished
    last_error: str | None = None             # its error (failed / blocked)
    last_success_at: datetime | None = None   # latest succeeded run's finished_at
    failure_streak: int = 0                   # failed runs that finished after the last success
    running_since: datetime | None = None     # earliest started_at of the runs running now, else None


@dataclass(frozen=True)
class Health:
    state: HealthState
    outcome_reason: str     # short, human, from the outcomes alone: "last success 3d ago, expected daily"
    window_seconds: float   # the stale window used
    signals: tuple[Signal, ...] = ()  # too_long, too_short, too_often, late_start (lexyjobs.health_signals)
    # orange for want of a success within the window (what the stale alert watches)
    stale: bool = field(default=False, compare=False)
    # the next moment the passing of time alone changes it (a success ages past the window, a
    # signal starts); None when none is coming. Live pages refresh then.
    changes_at: datetime | None = field(default=None, compare=False)

    @property
    def reason(self) -> str:
        """The outcome's reason, then each signal's message (the panel lists those apart)."""
        return "; ".join([self.outcome_reason, *(s.message for s in self.signals)])


def stale_window(definition: JobDefinition, now: datetime) -> float:
    """Seconds without a success before the job turns orange (see the module docstring)."""
    if definition.stale_after is not None:
        return definition.stale_after
    if definition.schedule is None:
        return MANUAL_WINDOW
    period = period_seconds(definition.schedule, parse_timezone(definition.timezone), now)
    return 2 * period + max(GRACE_FRACTION * period, MIN_GRACE)


def job_health(definition: JobDefinition, last: LastRuns, now: datetime, recent: RecentRuns | None = None) -> Health:
    """The job's health at ``now`` (pure: the runs summaries and the clock are passed in); with
    ``recent``, its signals too."""
    verdict = _outcome_health(definition, last, now)
    signals = judge(definition, recent, now) if recent is not None else ()
    coming = [at for at in (_ages_out_at(verdict, last),
                            next_signal_at(definition, recent, now) if recent is not None else None) if at is not None]
    state = "warning" if signals and verdict.state != "error" else verdict.state
    return dataclasses.replace(verdict, state=state, signals=signals, changes_at=min(coming, default=None))


def _ages_out_at(verdict: Health, last: LastRuns) -> datetime | None:
    """When an ``ok`` job's last success leaves its window (it turns orange then)."""
    if verdict.state != "ok" or last.last_success_at is None:
        return None
    return last.last_success_at + timedelta(seconds=verdict.window_seconds)


def _outcome_health(definition: JobDefinition, last: LastRuns, now: datetime) -> Health:
    """The state from the runs' outcomes alone (the module's first list)."""
    window = stale_window(definition, now)
    if last.last_status == RunStatus.FAILED:
        times = "" if last.failure_streak <= 1 else f" {last.failure_streak} times in a row"
        running = "; running again now" if last.running_since is not None else ""
        return Health("error", f"failed{times}: {_short(last.last_error) or 'no error message'}{running}", window)
    if last.running_since is not None:
        return Health("warning", f"running now (started {_ago(now, last.running_since)})", window)
    if last.last_status is None:
        return Health("unknown", "never ran", window)
    success = (f"last success {_ago(now, last.last_success_at)}" if last.last_success_at is not None
               else "no success yet")
    if last.last_status == RunStatus.BLOCKED:
        return Health("warning", f"blocked: {_short(last.last_error) or 'an upstream did not succeed'} ({success})",
                      window)
    if last.last_success_at is None or (now - last.last_success_at).total_seconds() > window:
        return Health("warning", f"{success}, {_expected(definition, now, window)}", window, stale=True)
    return Health("ok", success, window)


@dataclass(frozen=True)
class JobOverview:
    """What the jobs page shows of one job: its definition (None if it no longer parses), the
    summary of its runs and its health."""

    job: Job
    definition: JobDefinition | None
    last: LastRuns
    health: Health

    @property
    def stale(self) -> bool:
        """Orange because there was no success within the window, not because a run is in
        progress, was blocked or a signal holds (what the stale alert watches)."""
        return self.health.stale

    @property
    def last_duration(self) -> float | None:
        if self.last.last_started_at is None or self.last.last_finished_at is None:
            return None
        return max(0.0, (self.last.last_finished_at - self.last.last_started_at).total_seconds())


def jobs_overview(db: Database, now: datetime, names: Iterable[str] | None = None, *,
                  stale_after: float = Settings.stale_after) -> list[JobOverview]:
    """Every job (or those in ``names``) with its runs summaries and health, in one read. A job
    whose stored definition no longer parses is ``error`` with the reason. ``stale_after`` is
    the workers' heartbeat limit (``LEXYJOBS_STALE_AFTER``), for why a late run still waits."""
    wanted = None if names is None else set(names)
    with db.read() as session:
        jobs = [j for j in store.list_jobs(session) if wanted is None or j.name in wanted]
        inputs = store.health_inputs(session, [j.name for j in jobs] if wanted is not None else None)
        definitions: dict[str, JobDefinition | InvalidDefinition] = {}
        for job in jobs:
            try:
                definitions[job.name] = definition_from_job(job)
            except InvalidDefinition as exc:
                definitions[job.name] = exc
        valid = {name: d for name, d in definitions.items() if isinstance(d, JobDefinition)}
        scheduled = [name for name, d in valid.items() if d.schedule is not None or d.run_at is not None]
        recent = health_reads.recent_runs(session, list(valid), scheduled, now=now)
        waiting = _late_waits(session, valid, recent, now, stale_after)
    found = []
    for job in jobs:
        last, definition = LastRuns(**inputs.get(job.name, {})), definitions[job.name]
        if isinstance(definition, InvalidDefinition):
            found.append(JobOverview(job, None, last, Health("error", f"invalid definition: {definition.message}",
                                                             MANUAL_WINDOW)))
            continue
        runs = recent[job.name]
        if any(r.id in waiting for r in runs.scheduled):
            runs = dataclasses.replace(runs, scheduled=tuple(dataclasses.replace(r, waiting=waiting.get(r.id))
                                                             for r in runs.scheduled))
        found.append(JobOverview(job, definition, last, job_health(definition, last, now, runs)))
    return found


def _late_waits(session: Session, definitions: dict[str, JobDefinition], recent: dict[str, RecentRuns],
                now: datetime, stale_after: float) -> dict[int, str]:
    """Why each scheduled run that is late and still queued waits (a few queries when there is one)."""
    late = [signal.run_id for name, definition in definitions.items()
            if any(run.started_at is None for run in recent[name].scheduled)
            for signal in judge(definition, recent[name], now)
            if signal.kind == "late_start" and signal.run_id is not None and not signal.details["started"]]
    return health_reads.waiting_messages(session, late, now=now, stale_after=stale_after)


def jobs_health(db: Database, now: datetime, names: Iterable[str] | None = None, *,
                stale_after: float = Settings.stale_after) -> dict[str, Health]:
    """Health of every job (or of ``names``): the API's and the dashboard's entry point."""
    return {o.job.name: o.health for o in jobs_overview(db, now, names, stale_after=stale_after)}


def _expected(definition: JobDefinition, now: datetime, window: float) -> str:
    """ "expected daily" for a scheduled job without stale_after, else "window 2d"."""
    if definition.schedule is None or definition.stale_after is not None:
        return f"window {format_duration(window)}"
    typical = typical_period_seconds(definition.schedule, parse_timezone(definition.timezone), now)
    words = {60.0: "every minute", 3600.0: "hourly", 86400.0: "daily", 604800.0: "weekly"}
    if typical in words:
        return f"expected {words[typical]}"
    if 28 * 86400 <= typical <= 31 * 86400:
        return "expected monthly"
    if 365 * 86400 <= typical <= 366 * 86400:
        return "expected yearly"
    return f"expected every {format_duration(typical)}"


def _ago(now: datetime, then: datetime) -> str:
    """The age in its largest unit, rounded down: "45s ago", "12m ago", "3d ago"; "just now"."""
    seconds = max((now - then).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def _short(error: str | None, limit: int = 200) -> str:
    """The first line of an error message, at most ``limit`` characters."""
    line = (error or "").strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[:limit - 1] + "…"
