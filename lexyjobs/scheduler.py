"""Schedules → runs. APScheduler's BackgroundScheduler keeps the timers; a fire never executes
the job in APScheduler's thread: our executor only enqueues a run whose ``fire_key`` (job +
fire time) is unique, so several processes scheduling against one database enqueue each fire
once. Jobs are re-read every few seconds, so edits, pauses and resumes apply without restart."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lexyjobs import store
from lexyjobs.cron import INTERVAL_ANCHOR, next_fire, parse_schedule, parse_timezone
from lexyjobs.db import Database
from lexyjobs.definitions import JobDefinition, definition_from_job
from lexyjobs.errors import LexyjobsError
from lexyjobs.runs import enqueue

log = logging.getLogger(__name__)
REFRESH_SECONDS = 5.0


class CronTrigger(BaseTrigger):
    """Standard 5-field cron semantics (croniter) in an IANA timezone."""

    def __init__(self, expression: str, tz_name: str) -> None:
        self.expression, self.tz_name = expression, tz_name

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        return next_fire(parse_schedule(self.expression), parse_timezone(self.tz_name), previous_fire_time or now)

    def __str__(self) -> str:
        return f"cron[{self.expression} {self.tz_name}]"


class _EnqueueExecutor(BaseExecutor):
    """Turns a fire into an enqueue, right in the scheduler thread (a short insert)."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self._owner = scheduler

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._owner.fire(job.id, run_times[-1])
        self._run_job_success(job.id, [])


class Scheduler:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._aps: BackgroundScheduler | None = None
        self._versions: dict[str, tuple[int, bool]] = {}

    def start(self) -> None:
        self._aps = BackgroundScheduler(timezone=timezone.utc, executors={"default": _EnqueueExecutor(self)},
                                        job_defaults={"coalesce": True, "max_instances": 1})
        self._aps.add_executor("threadpool", alias="internal")
        self._aps.start()
        self.refresh()
        self._aps.add_job(self.refresh, "interval", seconds=REFRESH_SECONDS, id="lexyjobs:refresh",
                          executor="internal", replace_existing=True)

    def stop(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)

    def alive(self) -> bool:
        return self._aps is not None and self._aps.running

    def refresh(self) -> None:
        """Add, change or remove timers to match the jobs table (enabled, scheduled, not archived)."""
        assert self._aps is not None
        try:
            with self.db.read() as session:
                rows = {j.name: j for j in store.list_jobs(session) if j.schedule}
        except SQLAlchemyError:
            log.exception("scheduler: cannot read jobs")
            return
        for name in set(self._versions) - set(rows):
            self._remove(name)
        for name, row in rows.items():
            state = (row.version, row.enabled)
            if self._versions.get(name) == state:
                continue
            self._remove(name)
            self._versions[name] = state
            if row.enabled:
                try:
                    self._add(definition_from_job(row))
                except LexyjobsError as exc:
                    log.error("scheduler: job %s not scheduled: %s", name, exc.message)

    def _add(self, definition: JobDefinition) -> None:
        assert self._aps is not None and definition.schedule is not None
        schedule = definition.schedule
        trigger: BaseTrigger = (CronTrigger(schedule.cron, definition.timezone) if schedule.cron
                                else IntervalTrigger(seconds=schedule.interval, start_date=INTERVAL_ANCHOR))
        self._aps.add_job(_never_called, trigger, id=definition.name, name=definition.name,
                          misfire_grace_time=int(definition.misfire_grace) or 1, replace_existing=True)

    def _remove(self, name: str) -> None:
        self._versions.pop(name, None)
        if self._aps is not None and self._aps.get_job(name) is not None:
            self._aps.remove_job(name)

    def fire(self, name: str, fire_time: datetime) -> int | None:
        """Enqueue the run for one fire unless another process already did."""
        key = f"{name}@{fire_time.astimezone(timezone.utc).isoformat()}"
        try:
            return enqueue(self.db, name, trigger="schedule", created_by="scheduler", fire_key=key)
        except IntegrityError:
            return None  # this fire was enqueued by another process
        except (LexyjobsError, SQLAlchemyError) as exc:
            log.error("scheduler: fire %s failed: %s", key, exc)
            return None


def _never_called() -> None:
    """Placeholder target: _EnqueueExecutor never calls job functions."""
