"""The scheduler: timers in APScheduler's SQLAlchemyJobStore (same database), fires recorded as
runs with a unique fire key, misfires coalesced or recorded as skipped, overlap policies,
pause/resume, edits without restart, one-off ``run_at``, several processes, ``flask run --debug``.

Fire times are checked on fixed clocks: the scheduler is started paused (its thread idle), timers
are built by ``refresh(now=…)`` and read back from the job store, and the fire path is called with
explicit fire times and ``now``. Fixed clocks lie in 2030, after the jobs' real ``updated_at``.
Only the restart, edit, process and reloader tests run the real APScheduler thread."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import PYTHON, ROOT, subprocess_env, wait_for

from lexyjobs import claiming, registry, runs, store
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import parse_definition
from lexyjobs.errors import InvalidDefinition
from lexyjobs.models import Job, Run
from lexyjobs.scheduler import FireOutcome, Scheduler, fire_key, plan_fires
from lexyjobs.states import RunStatus

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def schedulers(db: Database) -> Iterator[Callable[..., Scheduler]]:
    """Make schedulers on the test database (``paused=True``: thread idle); stopped afterwards."""
    made: list[Scheduler] = []

    def make(*, paused: bool = True, refresh_seconds: float = 5.0) -> Scheduler:
        sched = Scheduler(db, refresh_seconds=refresh_seconds)
        sched.start(paused=paused)
        made.append(sched)
        return sched
    yield make
    for sched in made:
        sched.stop()


@pytest.fixture
def sched(schedulers: Callable[..., Scheduler]) -> Scheduler:
    return schedulers()


def job_runs(db: Database, job: str) -> list[Run]:
    """The job's runs, oldest first."""
    with db.read() as session:
        return list(reversed(store.list_runs(session, job=job, limit=1000)))


def run_times(sched: Scheduler, job: str, now: datetime) -> list[datetime]:
    """The fire times APScheduler finds due at ``now`` for the job's stored timer."""
    assert sched.aps is not None
    timer = sched.aps.get_job(job, "default")
    assert timer is not None, f"no timer for {job}"
    return list(timer._get_run_times(now))


def first_note(db: Database, run_id: int) -> str | None:
    with db.read() as session:
        events = store.run_events(session, run_id)
    return events[0].note if events and events[0].from_status is None else None


# ---------------------------------------------------------------- fire times on fixed clocks


def test_a_cron_timer_fires_at_the_cron_times_in_its_timezone(db, make_job, sched) -> None:
    make_job("nightly", schedule="30 2 * * *", timezone="Europe/Berlin")
    sched.refresh(now=utc(2030, 6, 10, 12))
    assert sched.next_fire_time("nightly") == utc(2030, 6, 11, 0, 30)  # 02:30 CEST
    assert run_times(sched, "nightly", utc(2030, 6, 13, 1)) == [utc(2030, 6, 11, 0, 30), utc(2030, 6, 12, 0, 30),
                                                                utc(2030, 6, 13, 0, 30)]


def test_an_interval_timer_fires_on_the_same_grid_in_every_process(db, make_job, sched) -> None:
    make_job("quarterly", schedule="every 15m")
    sched.refresh(now=utc(2030, 6, 10, 10, 7, 30))
    assert sched.next_fire_time("quarterly") == utc(2030, 6, 10, 10, 15)
    due = run_times(sched, "quarterly", utc(2030, 6, 10, 11))
    assert due == [utc(2030, 6, 10, 10, 15), utc(2030, 6, 10, 10, 30), utc(2030, 6, 10, 10, 45), utc(2030, 6, 10, 11)]
    for at in due:  # each fire handled on time, as the running scheduler does
        assert len(sched.fire("quarterly", [at], now=at + timedelta(milliseconds=40)).queued) == 1
    assert [r.fire_key for r in job_runs(db, "quarterly")] == [fire_key("quarterly", at) for at in due]
    assert {(r.status, r.trigger) for r in job_runs(db, "quarterly")} == {("queued", "schedule")}


def test_a_one_off_run_at_fires_once_in_the_jobs_timezone(db, make_job, schedulers) -> None:
    first, second = schedulers(), schedulers()
    make_job("launch", run_at="2030-03-01T09:30", timezone="Europe/Berlin")
    first.refresh(now=utc(2030, 2, 1))
    assert first.next_fire_time("launch") == utc(2030, 3, 1, 8, 30)  # 09:30 CET
    assert run_times(first, "launch", utc(2030, 3, 2)) == [utc(2030, 3, 1, 8, 30)]
    at = utc(2030, 3, 1, 8, 30, 0, 20_000)
    assert len(first.fire("launch", [utc(2030, 3, 1, 8, 30)], now=at).queued) == 1
    assert second.fire("launch", [utc(2030, 3, 1, 8, 30)], now=at).duplicates == 1  # another process: same fire
    # APScheduler removes a fired one-off timer; later refreshes do not bring it back
    assert first.aps is not None
    first.aps.remove_job("launch", "default")
    first.refresh(now=utc(2030, 3, 1, 9))
    assert first.next_fire_time("launch") is None
    assert [r.fire_key for r in job_runs(db, "launch")] == ["launch@2030-03-01T08:30:00+00:00"]


def test_a_run_at_that_has_passed_is_not_scheduled(db, make_job, sched) -> None:
    make_job("too-late", run_at="2030-01-01T00:00:00+00:00")
    sched.refresh(now=utc(2030, 1, 2))
    assert sched.next_fire_time("too-late") is None
    assert job_runs(db, "too-late") == []


@pytest.mark.parametrize(("run_at", "tz", "expected"), [
    ("2030-03-01T09:30", "Europe/Berlin", utc(2030, 3, 1, 8, 30)),
    ("2030-07-01T09:30", "Europe/Berlin", utc(2030, 7, 1, 7, 30)),
    ("2030-03-01T09:30:00+05:30", "Europe/Berlin", utc(2030, 3, 1, 4)),
    ("2030-03-01T09:30:00Z", "America/New_York", utc(2030, 3, 1, 9, 30)),
    (datetime(2030, 3, 1, 9, 30), "Asia/Tokyo", utc(2030, 3, 1, 0, 30)),  # a TOML local datetime
])
def test_run_at_is_read_in_the_jobs_timezone_unless_it_has_an_offset(run_at: Any, tz: str, expected: datetime) -> None:
    definition = parse_definition("once", {"kind": "shell", "argv": ["true"], "run_at": run_at, "timezone": tz})
    assert definition.run_at == expected
    assert isinstance(definition.spec["run_at"], str)  # stored as text: the spec is JSON
    json.dumps(definition.spec)


@pytest.mark.parametrize(("fields", "message"), [
    ({"run_at": "next tuesday"}, "'next tuesday' is not an ISO 8601 datetime"),
    ({"run_at": 1_900_000_000}, "must be an ISO 8601 datetime"),
    ({"run_at": datetime(2030, 3, 1).date()}, "needs both a date and a time"),
    ({"run_at": "2030-03-01T09:30", "schedule": "@daily"}, "cannot be combined with schedule"),
])
def test_a_bad_run_at_is_rejected_with_the_field_named(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse_definition("once", {"kind": "shell", "argv": ["true"], **fields})
    assert info.value.field == "run_at" and message in info.value.message


def test_a_one_off_job_can_come_from_a_toml_datetime_in_the_jobs_file(db, tmp_path: Path, sched) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.toml-once]\nkind = "shell"\nargv = ["true"]\nrun_at = 2030-05-01T06:00:00\n'
                         'timezone = "UTC"\n', encoding="utf-8")
    report = registry.sync_jobs(db, jobs_file=str(jobs_file))
    assert report.loaded == ["toml-once"] and not report.errors
    sched.refresh(now=utc(2030, 4, 1))
    assert sched.next_fire_time("toml-once") == utc(2030, 5, 1, 6)


# ---------------------------------------------------------------- exactly once, catching up


def test_a_fire_is_recorded_once_however_many_schedulers_fire_it(db, make_job, schedulers) -> None:
    make_job("tick", schedule="every 1m")
    fired_at, now = utc(2030, 1, 1, 12), utc(2030, 1, 1, 12, 0, 0, 30_000)
    outcomes = [s.fire("tick", [fired_at], now=now) for s in (schedulers(), schedulers(), schedulers())]
    assert sum(len(o.queued) for o in outcomes) == 1 and sum(o.duplicates for o in outcomes) == 2
    assert [r.fire_key for r in job_runs(db, "tick")] == ["tick@2030-01-01T12:00:00+00:00"]


def test_a_scheduler_a_few_seconds_behind_enqueues_every_fire(db, make_job, sched) -> None:
    make_job("every-second", schedule="every 1s")
    fires = [utc(2030, 1, 1, 12, 0, s) for s in range(4)]
    outcome = sched.fire("every-second", fires, now=utc(2030, 1, 1, 12, 0, 4, 500_000))
    assert len(outcome.queued) == 4 and outcome.skipped == []
    assert [r.fire_key for r in job_runs(db, "every-second")] == [fire_key("every-second", t) for t in fires]


def test_fires_missed_within_the_grace_make_one_run_and_older_ones_one_skipped_entry(db, make_job, sched) -> None:
    make_job("quarterly", schedule="every 15m")  # misfire_grace: default 1h
    missed = [utc(2030, 1, 1, 10) + timedelta(minutes=15 * i) for i in range(9)]  # 10:00 … 12:00
    outcome = sched.fire("quarterly", missed, now=utc(2030, 1, 1, 12, 0, 30))
    assert len(outcome.queued) == 1 and len(outcome.skipped) == 1
    skipped, run = job_runs(db, "quarterly")
    assert (skipped.status, skipped.trigger, skipped.fire_key, skipped.scheduled_for) == (
        "skipped", "schedule", "quarterly@2030-01-01T11:00:00+00:00", utc(2030, 1, 1, 11))
    assert skipped.error == ("missed 5 fires between 10:00 and 11:00 UTC while no scheduler was running "
                             "(misfire grace 1h)")
    assert (run.status, run.trigger, run.fire_key) == ("queued", "schedule", "quarterly@2030-01-01T12:00:00+00:00")
    assert first_note(db, run.id) == ("stands for 4 fires from 11:15 to 12:00 UTC missed while no scheduler was "
                                      "running (within the misfire grace 1h)")
    # a second process catching up the same timer records nothing more
    assert sched.fire("quarterly", missed, now=utc(2030, 1, 1, 12, 0, 31)).duplicates == 2
    assert len(job_runs(db, "quarterly")) == 2


def test_fires_all_beyond_the_grace_leave_one_skipped_entry_and_no_run(db, make_job, sched) -> None:
    make_job("hourly", schedule="@hourly", misfire_grace="10m")
    missed = [utc(2030, 1, 1, h) for h in (8, 9, 10)]
    outcome = sched.fire("hourly", missed, now=utc(2030, 1, 2, 7, 30))
    assert outcome.queued == [] and len(outcome.skipped) == 1
    [entry] = job_runs(db, "hourly")
    assert entry.status == "skipped" and entry.error == (
        "missed 3 fires between 2030-01-01 08:00 and 2030-01-01 10:00 UTC while no scheduler was running "
        "(misfire grace 10m)")


def test_a_single_missed_fire_is_named_with_its_time(db, make_job, sched) -> None:
    make_job("daily", schedule="@daily", misfire_grace="1h")
    sched.fire("daily", [utc(2030, 1, 1)], now=utc(2030, 1, 1, 3, 0, 15))
    [entry] = job_runs(db, "daily")
    assert entry.error == "missed the fire at 00:00 UTC while no scheduler was running (misfire grace 1h)"


def test_the_fire_plan_treats_a_few_seconds_of_lateness_as_on_time() -> None:
    base = utc(2030, 1, 1)
    fires = [base, base + timedelta(seconds=1)]
    assert plan_fires(fires, now=base + timedelta(seconds=9), grace=0).runs == ((fires[0],), (fires[1],))
    late = plan_fires(fires, now=base + timedelta(seconds=10.5), grace=0)
    assert late.runs == ((fires[1],),) and late.missed == (fires[0],)
    assert plan_fires([], now=base, grace=3600) == plan_fires([], now=base, grace=0)


# ---------------------------------------------------------------- restarts (real scheduler thread)


def _pretend_down_since(db: Database, job: str, since: datetime, schedulers: Callable[..., Scheduler]) -> None:
    """Move the job's stored timer back to ``since``, as if no scheduler had run since then (and
    the job as if it had been defined a day before that)."""
    with db.write() as session:
        row = session.get(Job, job)
        assert row is not None
        row.created_at = row.updated_at = since - timedelta(days=1)
    down = schedulers()
    assert down.aps is not None
    down.aps.modify_job(job, "default", next_run_time=since)
    down.stop()


def test_a_restart_keeps_the_timer_and_catches_up_the_fires_missed_while_down(db, make_job, schedulers) -> None:
    make_job("hourly", schedule="every 1h", misfire_grace="3h")
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    _pretend_down_since(db, "hourly", hour - timedelta(hours=4), schedulers)
    restarted = schedulers(paused=False)
    wait_for(lambda: len(job_runs(db, "hourly")) == 2, timeout=10)
    skipped, run = job_runs(db, "hourly")
    assert skipped.status == "skipped" and skipped.fire_key == fire_key("hourly", hour - timedelta(hours=3))
    assert skipped.error.startswith("missed 2 fires between ") and "(misfire grace 3h)" in skipped.error
    assert run.status in ("queued", "running", "succeeded") and run.fire_key == fire_key("hourly", hour)
    assert (first_note(db, run.id) or "").startswith("stands for 3 fires from ")
    assert restarted.next_fire_time("hourly") == hour + timedelta(hours=1)


def test_a_job_edited_while_down_starts_its_new_schedule_from_now(db, make_job, schedulers) -> None:
    make_job("hourly", schedule="every 1h")
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    _pretend_down_since(db, "hourly", hour - timedelta(hours=4), schedulers)
    registry.update_job(db, "hourly", {"kind": "python", "func": "jobfuncs:noop", "schedule": "every 2h"})
    restarted = schedulers(paused=False)
    next_fire = restarted.next_fire_time("hourly")
    assert next_fire is not None and next_fire > utcnow() and next_fire.hour % 2 == 0
    assert job_runs(db, "hourly") == []


def test_a_timer_removed_by_another_process_does_not_stop_the_scheduler(db, make_job, schedulers) -> None:
    make_job("every-second", schedule="every 1s")
    running = schedulers(paused=False, refresh_seconds=0.3)
    wait_for(lambda: job_runs(db, "every-second"), timeout=5)
    other = schedulers()
    assert running.aps is not None and other.aps is not None
    timer = running.aps.get_job("every-second", "default")
    other.aps.remove_job("every-second", "default")
    # what the running scheduler does after a fire of a timer that is gone: update it, or remove a one-off
    shared = running.aps._lookup_jobstore("default")
    shared.update_job(timer)
    shared.remove_job("every-second")
    seen = len(job_runs(db, "every-second"))
    wait_for(lambda: len(job_runs(db, "every-second")) >= seen + 2, timeout=5)  # re-added by the refresh
    assert running.alive()


# ---------------------------------------------------------------- overlap policies


def claim(db: Database) -> None:
    """Move the oldest queued run to running, as a worker would."""
    with db.write() as session:
        assert claiming.claim_runs(session, 1, worker="test", now=utcnow(), postgres=db.is_postgres)


def fire_now(sched: Scheduler, job: str) -> FireOutcome:
    at = utcnow().replace(microsecond=0)
    return sched.fire(job, [at], now=at + timedelta(milliseconds=30))


@pytest.mark.parametrize("state", ["queued", "running"])
def test_overlap_skip_records_the_fire_as_skipped_naming_the_earlier_run(db, make_job, sched, state: str) -> None:
    make_job("slow", schedule="@hourly", overlap="skip")
    earlier = runs.enqueue(db, "slow")
    if state == "running":
        claim(db)
    outcome = fire_now(sched, "slow")
    assert outcome.queued == [] and len(outcome.skipped) == 1
    entry = runs.get_run(db, outcome.skipped[0])
    assert (entry.status, entry.trigger) == ("skipped", "schedule") and entry.fire_key is not None
    assert entry.error == f"run {earlier} still {state} (overlap = skip)"
    assert runs.get_run(db, earlier).status == state


def test_overlap_skip_enqueues_when_nothing_else_is_active(db, make_job, sched) -> None:
    make_job("slow", schedule="@hourly", overlap="skip")
    done = runs.record_not_run(db, "slow", RunStatus.SKIPPED, reason="an old entry", trigger="schedule")
    outcome = fire_now(sched, "slow")
    assert len(outcome.queued) == 1 and outcome.skipped == [] and done not in outcome.queued


def test_overlap_replace_cancels_the_queued_and_running_runs_and_enqueues(db, make_job, sched) -> None:
    make_job("fresh", schedule="@hourly", overlap="replace", max_concurrency=0)
    running = runs.enqueue(db, "fresh")
    claim(db)
    queued = runs.enqueue(db, "fresh")
    outcome = fire_now(sched, "fresh")
    assert len(outcome.queued) == 1 and sorted(outcome.replaced) == sorted([running, queued])
    assert runs.get_run(db, queued).status == "canceled"
    assert "replaced by run" in (runs.get_run(db, queued).error or "")
    still = runs.get_run(db, running)
    assert still.status == "running" and still.cancel_requested  # its worker stops it
    assert runs.get_run(db, outcome.queued[0]).status == "queued"


def test_overlap_queue_enqueues_behind_the_earlier_run(db, make_job, sched) -> None:
    make_job("patient", schedule="@hourly")  # overlap = queue is the default
    earlier = runs.enqueue(db, "patient")
    claim(db)
    outcome = fire_now(sched, "patient")
    assert len(outcome.queued) == 1 and outcome.skipped == [] and outcome.replaced == []
    assert [r.status for r in job_runs(db, "patient")] == ["running", "queued"]
    assert runs.get_run(db, earlier).status == "running"


# ---------------------------------------------------------------- pause, resume, edit


def set_enabled(db: Database, job: str, enabled: bool) -> None:
    with db.write() as session:
        assert store.set_job_enabled(session, job, enabled, now=utcnow())


def test_a_paused_job_does_not_fire_but_can_still_run_by_hand(db, make_job, sched) -> None:
    make_job("pausable", schedule="every 15m")
    sched.refresh(now=utc(2030, 1, 1, 10, 1))
    set_enabled(db, "pausable", False)
    sched.refresh(now=utc(2030, 1, 1, 10, 2))
    assert sched.next_fire_time("pausable") is None
    # a fire already under way when the pause landed is dropped too
    assert sched.fire("pausable", [utc(2030, 1, 1, 10, 15)], now=utc(2030, 1, 1, 10, 15, 1)) == FireOutcome()
    manual = runs.enqueue(db, "pausable", trigger="manual")
    assert [(r.id, r.trigger) for r in job_runs(db, "pausable")] == [(manual, "manual")]


def test_resume_counts_the_next_fire_from_now_without_a_burst_or_skipped_entries(db, make_job, sched) -> None:
    make_job("pausable", schedule="every 15m")
    sched.refresh(now=utc(2030, 1, 1, 10, 1))
    set_enabled(db, "pausable", False)
    sched.refresh(now=utc(2030, 1, 1, 10, 2))
    set_enabled(db, "pausable", True)
    sched.refresh(now=utc(2030, 1, 1, 13, 2))  # three hours later
    assert sched.next_fire_time("pausable") == utc(2030, 1, 1, 13, 15)
    assert run_times(sched, "pausable", utc(2030, 1, 1, 13, 16)) == [utc(2030, 1, 1, 13, 15)]
    assert job_runs(db, "pausable") == []


def test_a_job_paused_and_resumed_while_no_scheduler_ran_skips_the_paused_period(db, make_job, schedulers) -> None:
    make_job("hourly", schedule="every 1h")
    _pretend_down_since(db, "hourly", utcnow() - timedelta(hours=5), schedulers)
    set_enabled(db, "hourly", False)  # `lexyjobs jobs pause` / `resume` while the server is down
    set_enabled(db, "hourly", True)
    restarted = schedulers(paused=False)
    next_fire = restarted.next_fire_time("hourly")
    assert next_fire is not None and next_fire > utcnow()
    assert job_runs(db, "hourly") == []


def test_a_schedule_edit_takes_effect_without_restart(db, make_job, schedulers) -> None:
    make_job("editable", schedule="@yearly")
    live = schedulers(paused=False, refresh_seconds=0.2)
    assert live.aps is not None
    assert live.next_fire_time("editable") is not None and live.next_fire_time("editable") > utcnow() + timedelta(days=1)
    registry.update_job(db, "editable", {"kind": "python", "func": "jobfuncs:noop", "schedule": "every 1s"})
    wait_for(lambda: job_runs(db, "editable"), timeout=5)
    timer = live.aps.get_job("editable", "default")
    with db.read() as session:
        version = store.get_job(session, "editable").version  # type: ignore[union-attr]
    assert timer.kwargs == {"version": version}
    assert all(r.trigger == "schedule" and r.fire_key for r in job_runs(db, "editable"))


def test_a_fire_of_the_old_schedule_is_dropped_after_an_edit(db, make_job, sched) -> None:
    make_job("editable", schedule="every 1m")
    registry.update_job(db, "editable", {"kind": "python", "func": "jobfuncs:noop", "schedule": "every 1h"})
    # the timer still carries version 1: 12:01 is not a fire of "every 1h", 13:00 is
    assert sched.fire("editable", [utc(2030, 1, 1, 12, 1)], now=utc(2030, 1, 1, 12, 1, 1), version=1) == FireOutcome()
    assert len(sched.fire("editable", [utc(2030, 1, 1, 13)], now=utc(2030, 1, 1, 13, 0, 1), version=1).queued) == 1


def test_an_archived_or_deleted_job_loses_its_timer(db, make_job, sched) -> None:
    make_job("doomed", schedule="@daily")
    sched.refresh()
    assert sched.next_fire_time("doomed") is not None
    registry.delete_job(db, "doomed")
    sched.refresh()
    assert sched.aps is not None and sched.aps.get_job("doomed", "default") is None


def test_a_test_client_request_starts_nothing(app, lj) -> None:
    assert app.test_client().get("/healthz").status_code == 200
    assert not lj.started and lj.scheduler is None and lj.worker is None


# ---------------------------------------------------------------- real processes

CHILD_ENV = {"LEXYJOBS_POLL_INTERVAL": "0.05", "LEXYJOBS_HEARTBEAT_INTERVAL": "0.5", "LEXYJOBS_STALE_AFTER": "10",
             "LEXYJOBS_SHUTDOWN_GRACE": "2", "LEXYJOBS_WORKERS": "2"}


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    output_path: Path

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_line(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.output()}")
            return text in self.output()
        wait_for(seen, timeout, interval=0.05)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start a child in its own process group (``flask run`` forks a reloader child); every
    group is killed after the test."""
    jobs_file = tmp_path / "no-jobs.toml"
    jobs_file.write_text("# the tests create their jobs in the database\n", encoding="utf-8")
    children: list[Child] = []

    def start(argv: list[str], db_url: str) -> Child:
        env = subprocess_env(db_url, LEXYJOBS_JOBS_FILE=str(jobs_file), **CHILD_ENV)
        path = tmp_path / f"child-{len(children)}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        children.append(Child(proc, path))
        return children[-1]
    yield start
    for child in children:
        if child.proc.poll() is None:
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(timeout=10)


def fire_times(db: Database, job: str) -> list[datetime]:
    return sorted(datetime.fromisoformat(r.fire_key.split("@", 1)[1]) for r in job_runs(db, job) if r.fire_key)


def fired_after(db: Database, job: str, at: datetime) -> bool:
    return any(t > at for t in fire_times(db, job))


@pytest.mark.slow
def test_three_serving_processes_record_every_fire_exactly_once(db, db_url, make_job, spawn) -> None:
    make_job("tick", schedule="every 1s", max_concurrency=0)
    servers = [spawn([PYTHON, "-m", "lexyjobs", "serve", "--port", "0"], db_url) for _ in range(3)]
    for server in servers:
        server.wait_for_line("lexyjobs serving on http://")
    ready = utcnow()
    wait_for(lambda: fired_after(db, "tick", ready + timedelta(seconds=3)), timeout=15)
    os.killpg(servers[0].proc.pid, signal.SIGKILL)  # the others keep firing its timers
    killed = utcnow()
    wait_for(lambda: fired_after(db, "tick", killed + timedelta(seconds=3)), timeout=15)
    for server in servers[1:]:
        os.killpg(server.proc.pid, signal.SIGKILL)
    times = fire_times(db, "tick")
    window = [t for t in times if ready <= t]
    assert len(window) >= 7
    assert all(b - a == timedelta(seconds=1) for a, b in zip(window, window[1:])), f"gaps or repeats: {window}"
    assert len(job_runs(db, "tick")) == len(set(times))  # one row per fire
    assert {r.status for r in job_runs(db, "tick")} <= {"queued", "running", "succeeded"}
    assert all(r.trigger == "schedule" and (r.created_by or "").startswith("scheduler (") for r in job_runs(db, "tick"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.slow
def test_flask_run_debug_starts_one_scheduler_in_the_reloader_child_on_the_first_request(
        db, db_url, make_job, spawn) -> None:
    make_job("tick", schedule="every 1s", max_concurrency=0)
    port = _free_port()
    # The reloader runs (parent + child); only its file watching is told to ignore edits made to
    # the checkout while the test runs, which would restart the child mid-test.
    flask = spawn([PYTHON, "-m", "flask", "--app", "app", "run", "--debug", "--port", str(port),
                   "--exclude-patterns", "*"], db_url)
    flask.wait_for_line("Debugger is active")
    assert "scheduler started" not in flask.output()  # nothing starts before a request is served
    assert job_runs(db, "tick") == []
    status, body = wait_for(lambda: (r := _get(f"http://127.0.0.1:{port}/healthz"))[0] and r, timeout=20)
    assert status == 200 and json.loads(body)["checks"] == {"database": True, "worker": True, "scheduler": True}
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    try:
        wait_for(lambda: len(fire_times(db, "tick")) >= 3, timeout=15)
    except AssertionError:
        raise AssertionError(f"fewer than 3 fires:\n{flask.output()}") from None
    started = [line for line in flask.output().splitlines() if "lexyjobs: scheduler started in pid" in line]
    assert len(started) == 1, flask.output()
    pid = int(started[0].rsplit(" ", 1)[1])
    assert pid != flask.proc.pid  # the reloader child, not the reloader parent
    assert {r.created_by for r in job_runs(db, "tick")} == {f"scheduler ({socket.gethostname()}:{pid})"}


def test_a_scheduled_upstream_starts_a_pipeline(db, make_job, sched) -> None:
    make_job("upstream-step", schedule="* * * * *")
    make_job("downstream-step", depends_on=["upstream-step"])
    fire_now(sched, "upstream-step")
    [run] = job_runs(db, "upstream-step")
    assert run.trigger == "schedule" and run.pipeline_id
