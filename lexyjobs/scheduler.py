"""Schedules → runs. APScheduler's BackgroundScheduler keeps the timers in its SQLAlchemyJobStore,
in the same database as our tables, so they survive restarts and every scheduling process reads
due timers from the one shared table. A fire never executes the job in APScheduler's thread: our
executor only records it, as a queued run (or a skipped entry) whose ``fire_key`` (job + fire
time) is unique, so N processes firing the same timer record each fire once.

What a fire records (``Scheduler.fire``):

- on time (at most ``ON_TIME_SECONDS`` late): one run per fire;
- missed while no scheduler was running: the fires within the job's ``misfire_grace`` are
  coalesced into one run (its first event says how many fires it stands for); older ones are
  recorded as one skipped entry. Nothing is dropped silently.
- while an earlier run of the job is queued or running, the job's ``overlap`` policy applies:
  ``queue`` enqueues anyway (``max_concurrency`` makes it wait), ``skip`` records a skipped
  entry naming the run, ``replace`` cancels the older run(s) and enqueues;
- a ``unique`` job whose duplicate is queued (or running, with ``unique_while = "active"``):
  a skipped entry naming that run (``lexyjobs.flow.unique``).

Each timer remembers the job version it was built from: a restart leaves the timers of unchanged
jobs alone (so fires missed while down are seen), while an edit, pause or resume is applied by
the refresh loop within ``REFRESH_SECONDS``, without restart."""
from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job as Timer
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lexyjobs import runs, store
from lexyjobs.cron import INTERVAL_ANCHOR, next_fire, parse_schedule, parse_timezone
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition, definition_from_job
from lexyjobs.durations import format_duration
from lexyjobs.errors import Conflict, LexyjobsError, RunNotFound
from lexyjobs.failures import FailureLog, failure_log
from lexyjobs.flow.unique import Existing
from lexyjobs.models import Job
from lexyjobs.states import RunStatus

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0   # how often the timers are matched to the jobs table (edits, pauses, new jobs)
ON_TIME_SECONDS = 10.0  # a fire this late is still on time: a busy or restarting process, or a peer
                        # taking over the timers of a dead one (it wakes within REFRESH_SECONDS)
RETRY_SECONDS = 2.0     # after a database error in the scheduler thread
TIMERS, INTERNAL = "default", "internal"  # APScheduler aliases: our shared job store / in-process jobs
REFRESH_JOB = "lexyjobs:refresh"
UTC = timezone.utc


class CronTrigger(BaseTrigger):
    """Standard 5-field cron semantics (lexyjobs.cron) in an IANA timezone."""

    def __init__(self, expression: str, tz_name: str) -> None:
        self.expression, self.tz_name = expression, tz_name

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        return next_fire(parse_schedule(self.expression), parse_timezone(self.tz_name), previous_fire_time or now)

    def __str__(self) -> str:
        return f"cron[{self.expression} {self.tz_name}]"


def trigger_for(definition: JobDefinition) -> BaseTrigger | None:
    """The APScheduler trigger of a job: cron, interval (fires at anchor + k × interval, the same
    instants in every process), one-off ``run_at``; None for a manual-only job."""
    if definition.run_at is not None:
        return DateTrigger(run_date=definition.run_at, timezone=UTC)
    schedule = definition.schedule
    if schedule is None:
        return None
    if schedule.cron:
        return CronTrigger(schedule.cron, definition.timezone)
    return IntervalTrigger(seconds=schedule.interval, start_date=INTERVAL_ANCHOR, timezone=UTC)


def first_fire(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The trigger's first fire time after ``after``; None when it never fires again (a one-off
    whose time has passed: it fired already, or it was set, resumed or restored too late)."""
    if isinstance(trigger, DateTrigger):
        return trigger.run_date if trigger.run_date > after else None
    return trigger.get_next_fire_time(None, after)


def is_fire_of(definition: JobDefinition, at: datetime) -> bool:
    """True when ``at`` is one of the job's fire times (to drop fires of an outdated timer)."""
    trigger = trigger_for(definition)
    if trigger is None:
        return False
    if isinstance(trigger, DateTrigger):
        return trigger.run_date == at
    return trigger.get_next_fire_time(None, at - timedelta(microseconds=1)) == at


def fire_key(job: str, at: datetime) -> str:
    """The unique key of one fire: ``job@fire-time`` (UTC, ISO 8601)."""
    return f"{job}@{at.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class FirePlan:
    """How a batch of fire times is recorded: each group in ``runs`` becomes one run (keyed by
    its newest fire), the ``missed`` fires one skipped entry."""

    runs: tuple[tuple[datetime, ...], ...]
    missed: tuple[datetime, ...] = ()


def plan_fires(run_times: Sequence[datetime], *, now: datetime, grace: float) -> FirePlan:
    """Split the fire times APScheduler found due. All on time: one run each (a scheduler a few
    seconds behind catches up without gaps). Otherwise fires were missed while no scheduler ran:
    those within ``grace`` (at least ON_TIME_SECONDS) make one run, the older ones are missed."""
    times = sorted(run_times)
    on_time = timedelta(seconds=ON_TIME_SECONDS)
    if all(now - t <= on_time for t in times):
        return FirePlan(tuple((t,) for t in times))
    window = max(timedelta(seconds=grace), on_time)
    within = tuple(t for t in times if now - t <= window)
    return FirePlan((within,) if within else (), tuple(t for t in times if now - t > window))


@dataclass
class FireOutcome:
    """What one call of ``Scheduler.fire`` recorded."""

    queued: list[int] = field(default_factory=list)    # runs enqueued
    skipped: list[int] = field(default_factory=list)   # skipped entries (missed fires, overlap = skip)
    replaced: list[int] = field(default_factory=list)  # older runs canceled by overlap = replace
    duplicates: int = 0                                # fires another process had already recorded


class _EnqueueExecutor(BaseExecutor):
    """APScheduler's executor for our timers: hands the fire times to ``Scheduler.fire`` in the
    scheduler thread (a few short transactions). No job function runs, so there are no
    instances to count."""

    def __init__(self, owner: Scheduler) -> None:
        super().__init__()
        self._owner = owner

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._owner.fire(job.id, run_times, version=job.kwargs.get("version"))

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        """Required by BaseExecutor; ``submit_job`` above bypasses it, this keeps both paths one."""
        self.submit_job(job, run_times)


class _SharedJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store on our engine, shared by every scheduling process.
    Another process may remove a timer (a one-off that fired, a deleted job) between this
    process's read and its write; updating or removing a timer that is gone is then a no-op
    instead of an error escaping APScheduler's loop."""

    def update_job(self, job: Any) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            pass

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            pass

    def shutdown(self) -> None:
        """Keep the engine: it belongs to our Database (APScheduler would dispose of it)."""


class _BackgroundScheduler(BackgroundScheduler):
    failures: FailureLog | None = None  # set by Scheduler.start

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            # shutdown() wakes the loop, which then makes one more pass over due timers: it must
            # not fire anything (a paused scheduler would fire; a stopping one fire twice).
            return None
        # A database error while updating a timer would otherwise end the scheduler thread for good.
        try:
            return super()._process_jobs()
        except Exception as exc:
            where = f"scheduler: processing due timers failed; retrying in {RETRY_SECONDS:g}s"
            if self.failures is None:
                log.exception(where)
            else:
                self.failures.failed(log, where, exc)
            return RETRY_SECONDS


class Scheduler:
    """The timers of every scheduled job, kept in the shared database. ``start`` runs them;
    ``fire`` records one batch of fire times (called by APScheduler, or by tests with a fixed
    ``now``); ``refresh`` matches the timers to the jobs table."""

    def __init__(self, db: Database, *, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.db = db
        self.failures = failure_log(db)  # repeated failures of the scheduler thread: logged once, then counted
        self.refresh_seconds = refresh_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.aps: BackgroundScheduler | None = None
        self._refresh_lock = threading.Lock()

    def start(self, *, paused: bool = False) -> None:
        """Start the scheduler thread. Timers are matched to the jobs table before the first due
        timer is processed, so a job paused or edited while no scheduler ran never fires its old
        timer. ``paused`` keeps the thread idle (tests drive ``refresh`` and ``fire`` by hand)."""
        timers = _SharedJobStore(engine=self.db.engine)
        with self.db.write() as session:
            store.create_jobstore_table(session, timers.jobs_t, postgres=self.db.is_postgres)
        aps = _BackgroundScheduler(
            timezone=UTC, jobstores={TIMERS: timers, INTERNAL: MemoryJobStore()},
            executors={TIMERS: _EnqueueExecutor(self), INTERNAL: ThreadPoolExecutor(1)},
            job_defaults={"coalesce": False, "max_instances": 1, "misfire_grace_time": None})
        aps.failures = self.failures
        aps.start(paused=True)
        self.aps = aps
        self.refresh()
        aps.add_job(self.refresh, "interval", seconds=self.refresh_seconds, id=REFRESH_JOB, jobstore=INTERNAL,
                    executor=INTERNAL, coalesce=True, replace_existing=True)
        if not paused:
            aps.resume()

    def stop(self) -> None:
        if self.aps is not None and self.aps.running:
            self.aps.shutdown(wait=False)

    def alive(self) -> bool:
        thread = getattr(self.aps, "_thread", None)
        return self.aps is not None and self.aps.running and thread is not None and thread.is_alive()

    def next_fire_time(self, name: str) -> datetime | None:
        """When the job's timer fires next (None: no timer, or paused)."""
        assert self.aps is not None
        timer = self.aps.get_job(name, TIMERS)
        return timer.next_run_time if timer is not None else None

    # ------------------------------------------------------------ timers

    def refresh(self, now: datetime | None = None) -> None:
        """Add, rebuild, pause, resume or remove timers to match the jobs table (enabled or
        paused, scheduled or one-off, not archived). A timer built from the job's current version
        is left alone, so its pending (maybe missed) fire survives restarts."""
        assert self.aps is not None
        now = now or utcnow()
        with self._refresh_lock:
            try:
                with self.db.read() as session:
                    rows = {j.name: j for j in store.list_jobs(session) if j.schedule or j.spec.get("run_at")}
                timers = {t.id: t for t in self.aps.get_jobs(jobstore=TIMERS)}
            except SQLAlchemyError as exc:
                self.failures.failed(log, "scheduler: cannot read jobs and timers", exc)
                return
            for name in set(timers) - set(rows):
                self.aps.remove_job(name, TIMERS)
            for name, row in rows.items():
                try:
                    self._sync(row, timers.get(name), now)
                except LexyjobsError as exc:
                    log.error("scheduler: job %s not scheduled: %s", name, exc.message)
                    if name in timers:
                        self.aps.remove_job(name, TIMERS)
                except JobLookupError:
                    pass  # another process removed the timer meanwhile; the next refresh rebuilds it
                except SQLAlchemyError as exc:
                    self.failures.failed(log, f"scheduler: cannot update the timer of job {name}", exc)

    def _sync(self, row: Job, timer: Timer | None, now: datetime) -> None:
        assert self.aps is not None
        if timer is not None and timer.kwargs.get("version") == row.version:
            if not row.enabled:
                if timer.next_run_time is not None:
                    self.aps.pause_job(row.name, TIMERS)
            elif timer.next_run_time is None:  # resumed: count from now, no burst for the paused period
                self._set_next(row.name, first_fire(timer.trigger, now))
            elif timer.next_run_time < row.updated_at <= now:
                # paused and resumed while no scheduler was running: fires before the resume do not count
                self._set_next(row.name, first_fire(timer.trigger, row.updated_at))
            return
        definition = definition_from_job(row)
        trigger = trigger_for(definition)
        next_run = first_fire(trigger, now) if trigger is not None else None
        if trigger is None or next_run is None:
            if timer is not None:
                self.aps.remove_job(row.name, TIMERS)
            return
        self.aps.add_job(_never_called, trigger, id=row.name, name=row.name, jobstore=TIMERS,
                         kwargs={"version": row.version}, next_run_time=next_run if row.enabled else None,
                         replace_existing=True)

    def _set_next(self, name: str, at: datetime | None) -> None:
        assert self.aps is not None
        if at is None:
            self.aps.remove_job(name, TIMERS)
        else:
            self.aps.modify_job(name, TIMERS, next_run_time=at)

    def _refresh_soon(self) -> None:
        if self.aps is not None and self.aps.running:
            self.aps.modify_job(REFRESH_JOB, INTERNAL, next_run_time=utcnow())

    # ------------------------------------------------------------ fires

    def fire(self, name: str, run_times: Sequence[datetime], *, now: datetime | None = None,
             version: int | None = None) -> FireOutcome:
        """Record the fires of job ``name`` at ``run_times`` (see the module docstring). ``now``
        is the clock for misfire decisions and the rows' times (default: the real time).
        ``version`` is the job version the timer was built from: after an edit, fire times the
        current definition does not have are dropped. Fires another process already recorded
        are counted in ``duplicates``; nothing is raised."""
        outcome = FireOutcome()
        clock = now or utcnow()
        try:
            with self.db.read() as session:
                row = store.get_job(session, name)
                if row is None or row.archived or not row.enabled:
                    return outcome  # deleted, archived or paused since the timer was set
                definition, current = definition_from_job(row), row.version
            if version is not None and version != current:
                run_times = [t for t in run_times if is_fire_of(definition, t)]
                self._refresh_soon()
            plan = plan_fires(run_times, now=clock, grace=definition.misfire_grace)
            if plan.missed:
                self._record_missed(definition, plan.missed, clock, now, outcome)
            for group in plan.runs:
                self._record_fire(definition, group, clock, now, outcome)
        except (LexyjobsError, SQLAlchemyError) as exc:
            log.error("scheduler: fire of %s at %s failed: %s", name, [t.isoformat() for t in run_times], exc,
                      extra={"job": name, "fire_at": [t.isoformat() for t in run_times]})
        return outcome

    def _record_missed(self, definition: JobDefinition, missed: Sequence[datetime], clock: datetime,
                       now: datetime | None, outcome: FireOutcome) -> None:
        reason = (f"{_fires_text(missed, clock, 'missed')} while no scheduler was running "
                  f"(misfire grace {format_duration(definition.misfire_grace)})")
        try:
            outcome.skipped.append(runs.record_not_run(
                self.db, definition.name, RunStatus.SKIPPED, reason=reason, trigger="schedule", now=now,
                fire_key=fire_key(definition.name, missed[-1]), scheduled_for=missed[-1],
                created_by=self._created_by))
        except IntegrityError:
            outcome.duplicates += 1  # another process recorded these missed fires
        else:
            log.warning("scheduler: job %s %s", definition.name, reason,
                        extra={"job": definition.name, "run_id": outcome.skipped[-1], "status": "skipped",
                               "event": "missed", "fires": len(missed), "fire_at": missed[-1].isoformat()})

    def _record_fire(self, definition: JobDefinition, group: Sequence[datetime], clock: datetime,
                     now: datetime | None, outcome: FireOutcome) -> None:
        name, key = definition.name, fire_key(definition.name, group[-1])
        note = (f"stands for {_fires_text(group, clock, '')} missed while no scheduler was running "
                f"(within the misfire grace {format_duration(definition.misfire_grace)})") if len(group) > 1 else None
        if definition.overlap == "skip":
            with self.db.read() as session:
                active = store.active_runs(session, name)
            if active:
                reason = _overlap_text(active) + " (overlap = skip)" + (f"; this fire {note}" if note else "")
                try:
                    outcome.skipped.append(runs.record_not_run(
                        self.db, name, RunStatus.SKIPPED, reason=reason, trigger="schedule", now=now, fire_key=key,
                        scheduled_for=group[-1], created_by=self._created_by))
                except IntegrityError:
                    outcome.duplicates += 1
                else:
                    log.info("scheduler: job %s fire at %s skipped: %s", name, group[-1].isoformat(), reason,
                             extra={"job": name, "run_id": outcome.skipped[-1], "status": "skipped",
                                    "event": "overlap", "fires": len(group), "fire_at": group[-1].isoformat()})
                return
        try:
            [done] = runs.submit_many(self.db, [runs.RunRequest(name, trigger="schedule", created_by=self._created_by,
                                                                fire_key=key)], now=now)
        except IntegrityError:
            outcome.duplicates += 1  # another process recorded this fire first
            return
        if done.existing is not None:  # a unique job whose duplicate is queued/running: recorded as skipped
            self._record_unique_skip(name, done.existing, group[-1], key, note, now, outcome)
            return
        run_id = done.run_id
        outcome.queued.append(run_id)
        log.info("scheduler: job %s fired at %s -> run %s%s", name, group[-1].isoformat(), run_id,
                 f" ({len(group)} fires coalesced)" if len(group) > 1 else "",
                 extra={"job": name, "run_id": run_id, "status": "queued", "event": "fire", "fires": len(group),
                        "fire_at": group[-1].isoformat()})
        if note:
            with self.db.write() as session:
                store.add_creation_note(session, run_id, note, status=RunStatus.QUEUED.value, at=now or utcnow())
        if definition.overlap == "replace":
            # only after our insert won: a process that lost the fire must not cancel the winner's run
            with self.db.read() as session:
                older = [run for run, _ in store.active_runs(session, name) if run < run_id]
            for run in older:
                try:
                    runs.cancel(self.db, run, by=f"scheduler (replaced by run {run_id}, overlap = replace)")
                    outcome.replaced.append(run)
                    log.info("scheduler: run %s of job %s canceled: replaced by run %s (overlap = replace)", run, name,
                             run_id, extra={"job": name, "run_id": run, "event": "replaced", "replaced_by": run_id})
                except (Conflict, RunNotFound):
                    pass  # it finished meanwhile

    def _record_unique_skip(self, name: str, existing: Existing, at: datetime, key: str, note: str | None,
                            now: datetime | None, outcome: FireOutcome) -> None:
        """Record a fire of a ``unique`` job that found its duplicate active as a skipped run
        saying which run holds it (another process recording the same fire: a duplicate)."""
        reason = f"{existing.reason} (unique)" + (f"; this fire {note}" if note else "")
        try:
            outcome.skipped.append(runs.record_not_run(
                self.db, name, RunStatus.SKIPPED, reason=reason, trigger="schedule", now=now, fire_key=key,
                scheduled_for=at, created_by=self._created_by))
        except IntegrityError:
            outcome.duplicates += 1
            return
        log.info("scheduler: job %s fire at %s skipped: %s", name, at.isoformat(), reason,
                 extra={"job": name, "run_id": outcome.skipped[-1], "status": "skipped", "event": "unique",
                        "fire_at": at.isoformat(), "existing_run_id": existing.run_id})

    @property
    def _created_by(self) -> str:
        return f"scheduler ({self.name})"


def _fires_text(times: Sequence[datetime], now: datetime, verb: str) -> str:
    """'missed 3 fires between 10:00 and 12:00 UTC' / '3 fires from 10:00 to 12:00 UTC' / one fire."""
    prefix = f"{verb} " if verb else ""
    if len(times) == 1:
        return f"{prefix}the fire at {_clock(times[0], now)} UTC"
    first, last = _clock(times[0], now), _clock(times[-1], now)
    return (f"{prefix}{len(times)} fires between {first} and {last} UTC" if verb
            else f"{len(times)} fires from {first} to {last} UTC")


def _clock(at: datetime, now: datetime) -> str:
    at = at.astimezone(UTC)
    text = at.strftime("%H:%M:%S" if at.second or at.microsecond else "%H:%M")
    return text if at.date() == now.astimezone(UTC).date() else f"{at:%Y-%m-%d} {text}"


def _overlap_text(active: Sequence[tuple[int, str]]) -> str:
    if len(active) == 1:
        return f"run {active[0][0]} still {active[0][1]}"
    states = " or ".join(sorted({status for _, status in active}))
    return f"runs {', '.join(str(run) for run, _ in active)} still {states}"


def _never_called(*, version: int) -> None:
    """Placeholder target of every timer (stored by reference, with the job version the timer
    was built from as its keyword argument): _EnqueueExecutor never calls it."""
