"""Job health (lexyjobs.health): the pure verdict on fixed clocks, the stale windows, and the run
summary read by ``store.health_inputs`` from real runs on both databases."""
from __future__ import annotations

from unittest.mock import ANY

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import wait_for
from sqlalchemy import event, update

from lexyjobs import claiming, runs, store
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition, parse_definition
from lexyjobs.health import Health, JobOverview, LastRuns, job_health, jobs_health, stale_window
from lexyjobs.models import Job
from lexyjobs.states import TERMINAL, RunStatus, transition

UTC = timezone.utc
NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)  # a Wednesday
HOUR, DAY = 3600.0, 86400.0
MakeJob = Callable[..., str]


def job(**fields: Any) -> JobDefinition:
    return parse_definition("nightly", {"kind": "shell", "argv": ["true"], **fields})


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def health(last: LastRuns, **fields: Any) -> Health:
    return job_health(job(**fields), last, NOW)


def succeeded(at: datetime) -> LastRuns:
    return LastRuns(last_status="succeeded", last_finished_at=at, last_success_at=at)


# ---------------------------------------------------------------- states (pure)


def test_a_job_that_never_ran_is_unknown() -> None:
    assert health(LastRuns(), schedule="@daily") == Health("unknown", "never ran", 2 * DAY + 0.1 * DAY)


def test_a_recent_success_is_ok() -> None:
    assert health(succeeded(ago(hours=5)), schedule="@daily") == Health("ok", "last success 5h ago", 2.1 * DAY)


def test_a_success_older_than_the_window_is_a_warning_saying_what_was_expected() -> None:
    verdict = health(succeeded(ago(days=3, hours=2)), schedule="@daily")
    assert (verdict.state, verdict.reason) == ("warning", "last success 3d ago, expected daily")


def test_the_window_edge_is_still_ok_and_one_second_past_it_is_a_warning() -> None:
    window = stale_window(job(schedule="@daily"), NOW)
    assert health(succeeded(NOW - timedelta(seconds=window)), schedule="@daily").state == "ok"
    assert health(succeeded(NOW - timedelta(seconds=window + 1)), schedule="@daily").state == "warning"


def test_a_running_job_is_a_warning() -> None:
    last = LastRuns(last_status="succeeded", last_finished_at=ago(hours=1), last_success_at=ago(hours=1),
                    running_since=ago(minutes=12))
    assert (health(last).state, health(last).reason) == ("warning", "running now (started 12m ago)")


def test_a_first_run_in_progress_is_a_warning_not_unknown() -> None:
    assert health(LastRuns(running_since=ago(seconds=30))).reason == "running now (started 30s ago)"


def test_an_age_under_a_second_reads_just_now() -> None:
    assert health(succeeded(ago(seconds=0.4))).reason == "last success just now"
    assert health(LastRuns(running_since=NOW)).reason == "running now (started just now)"


def test_a_failed_last_run_is_an_error_with_its_message() -> None:
    last = LastRuns(last_status="failed", last_finished_at=ago(hours=1), last_error="HTTP 503 from upstream",
                    last_success_at=ago(days=1), failure_streak=1)
    assert (health(last).state, health(last).reason) == ("error", "failed: HTTP 503 from upstream")


def test_repeated_failures_are_counted_in_the_reason() -> None:
    last = LastRuns(last_status="failed", last_finished_at=ago(hours=1), last_error="boom", failure_streak=2)
    assert health(last).reason == "failed 2 times in a row: boom"


def test_a_failure_stays_red_while_the_job_runs_again() -> None:
    last = LastRuns(last_status="failed", last_finished_at=ago(hours=1), last_error="boom", failure_streak=1,
                    running_since=ago(minutes=1))
    assert (health(last).state, health(last).reason) == ("error", "failed: boom; running again now")


def test_only_the_first_line_of_a_long_error_is_shown_and_it_is_clipped() -> None:
    error = "x" * 300 + "\nTraceback (most recent call last): ..."
    reason = health(LastRuns(last_status="failed", last_error=error, failure_streak=1)).reason
    assert reason == "failed: " + "x" * 199 + "…"
    assert health(LastRuns(last_status="failed", failure_streak=1)).reason == "failed: no error message"


def test_a_blocked_latest_run_is_a_warning_naming_the_upstream() -> None:
    last = LastRuns(last_status="blocked", last_finished_at=ago(hours=1), last_error="upstream keywords failed",
                    last_success_at=ago(hours=20), failure_streak=0)
    assert (health(last, schedule="@daily").state, health(last, schedule="@daily").reason) == (
        "warning", "blocked: upstream keywords failed (last success 20h ago)")
    never = LastRuns(last_status="blocked", last_finished_at=ago(hours=1), last_error="upstream keywords failed")
    assert health(never).reason == "blocked: upstream keywords failed (no success yet)"


# ---------------------------------------------------------------- stale windows (pure)


@pytest.mark.parametrize(("fields", "window"), [
    ({}, 48 * HOUR),                                              # manual
    ({"stale_after": "6h"}, 6 * HOUR),
    ({"stale_after": "6h", "schedule": "@daily"}, 6 * HOUR),      # stale_after wins over the schedule
    ({"schedule": "@daily"}, 2 * DAY + 0.1 * DAY),
    ({"schedule": "every 1h"}, 2 * HOUR + 360),                   # grace 10 % = 6 min
    ({"schedule": "every 30m"}, HOUR + 300),                      # grace 10 % = 3 min -> at least 5 min
    ({"schedule": "*/15 * * * *"}, 1800 + 300),
    ({"schedule": "0 9 * * mon-fri", "timezone": "Europe/Berlin"}, 2 * 3 * DAY + 0.3 * DAY),  # the weekend gap
    ({"schedule": "@weekly"}, 14 * DAY + 0.7 * DAY),
])
def test_the_default_window_is_two_periods_plus_grace_or_48_hours_for_manual_jobs(fields: dict[str, Any],
                                                                                  window: float) -> None:
    assert stale_window(job(**fields), NOW) == pytest.approx(window)
    assert health(LastRuns(), **fields).window_seconds == pytest.approx(window)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"schedule": "0 9 * * mon-fri"}, "last success 20d ago, expected daily"),
    ({"schedule": "@weekly"}, "last success 20d ago, expected weekly"),
    ({"schedule": "@hourly"}, "last success 20d ago, expected hourly"),
    ({"schedule": "every 15m"}, "last success 20d ago, expected every 15m"),
    ({}, "last success 20d ago, window 2d"),
    ({"schedule": "@daily", "stale_after": "6h"}, "last success 20d ago, window 6h"),
])
def test_a_stale_reason_says_how_often_the_job_was_expected_to_succeed(fields: dict[str, Any], reason: str) -> None:
    assert health(succeeded(ago(days=20, hours=3)), **fields) == Health("warning", reason, stale_window(job(**fields),
                                                                                                         NOW))


def test_a_monthly_job_is_fine_for_two_months_then_says_monthly() -> None:
    assert health(succeeded(ago(days=40)), schedule="@monthly").state == "ok"
    assert health(succeeded(ago(days=70)), schedule="@monthly").reason == "last success 70d ago, expected monthly"


# ---------------------------------------------------------------- store.health_inputs on both databases

T0 = datetime(2100, 1, 4, 12, 0, tzinfo=UTC)  # ahead of real time, so every run enqueued "now" is due


def start_run(db: Database, name: str, at: datetime = T0) -> int:
    """Enqueue a run of ``name`` and claim it (it is then running since ``at``)."""
    run_id = runs.enqueue(db, name)
    with db.write() as session:
        [claimed] = claiming.claim_runs(session, 1, worker="test:1", now=at, postgres=db.is_postgres)
    assert claimed.id == run_id
    return run_id


def finish_run(db: Database, name: str, status: RunStatus, at: datetime, error: str | None = None) -> int:
    """A run of ``name`` that went queued -> running -> ``status``, finishing at ``at``."""
    run_id = start_run(db, name)
    with db.write() as session:
        transition(session, run_id, status, expected=RunStatus.RUNNING, at=at, finished_at=at, error=error)
    return run_id


def before(**delta: float) -> datetime:
    return T0 - timedelta(**delta)


def inputs(db: Database, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    with db.read() as session:
        return store.health_inputs(session, names)


def test_health_inputs_summarize_each_jobs_runs(db: Database, make_job: MakeJob) -> None:
    for name in ("flaky", "downstream", "busy", "never", "idle"):
        make_job(name)
    finish_run(db, "flaky", RunStatus.SUCCEEDED, before(hours=10))
    finish_run(db, "flaky", RunStatus.FAILED, before(hours=9), "old failure")
    finish_run(db, "flaky", RunStatus.SUCCEEDED, before(hours=8))
    finish_run(db, "flaky", RunStatus.FAILED, before(hours=7), "first")
    finish_run(db, "flaky", RunStatus.CANCELED, before(hours=6), "canceled by cli")
    runs.record_not_run(db, "flaky", RunStatus.SKIPPED, reason="overlap: skipped", trigger="schedule", now=before(hours=5))
    finish_run(db, "flaky", RunStatus.FAILED, before(hours=4), "second")
    finish_run(db, "downstream", RunStatus.FAILED, before(hours=3), "own failure")
    runs.record_not_run(db, "downstream", RunStatus.BLOCKED, reason="upstream flaky failed", trigger="dependency",
                        now=before(hours=2))
    finish_run(db, "busy", RunStatus.SUCCEEDED, before(hours=1))
    start_run(db, "busy", at=before(minutes=10))
    runs.record_not_run(db, "never", RunStatus.SKIPPED, reason="missed while down", trigger="schedule",
                        now=before(hours=1))
    assert inputs(db) == {
        "flaky": {"last_status": "failed", "last_started_at": ANY, "last_finished_at": before(hours=4), "last_error": "second",
                  "last_success_at": before(hours=8), "failure_streak": 2},
        "downstream": {"last_status": "blocked", "last_started_at": None, "last_finished_at": before(hours=2),
                       "last_error": "upstream flaky failed", "failure_streak": 1},
        "busy": {"last_status": "succeeded", "last_started_at": ANY, "last_finished_at": before(hours=1), "last_error": None,
                 "last_success_at": before(hours=1), "running_since": before(minutes=10)},
    }
    verdicts = {name: (h.state, h.reason) for name, h in jobs_health(db, T0).items()}
    assert verdicts == {
        "flaky": ("error", "failed 2 times in a row: second"),
        "downstream": ("warning", "blocked: upstream flaky failed (no success yet)"),
        "busy": ("warning", "running now (started 10m ago)"),
        "never": ("unknown", "never ran"),
        "idle": ("unknown", "never ran"),
    }


def test_the_latest_outcome_is_the_last_to_finish_not_the_last_created(db: Database, make_job: MakeJob) -> None:
    make_job("slow", max_concurrency=0)
    finish_run(db, "slow", RunStatus.SUCCEEDED, before(minutes=5))  # created first, finished last
    finish_run(db, "slow", RunStatus.FAILED, before(minutes=30), "boom")
    assert inputs(db)["slow"] == {"last_status": "succeeded", "last_started_at": ANY, "last_finished_at": before(minutes=5),
                                  "last_error": None, "last_success_at": before(minutes=5)}
    assert jobs_health(db, T0)["slow"] == Health("ok", "last success 5m ago", 48 * HOUR)


def test_canceled_and_skipped_runs_neither_refresh_a_success_nor_hide_a_failure(db: Database,
                                                                               make_job: MakeJob) -> None:
    make_job("daily", schedule="@daily")
    make_job("broken", schedule="@daily")
    finish_run(db, "daily", RunStatus.SUCCEEDED, before(days=4))
    finish_run(db, "daily", RunStatus.CANCELED, before(days=1), "canceled")
    runs.record_not_run(db, "daily", RunStatus.SKIPPED, reason="missed", trigger="schedule", now=before(hours=1))
    finish_run(db, "broken", RunStatus.FAILED, before(days=1), "disk full")
    finish_run(db, "broken", RunStatus.CANCELED, before(hours=2), "canceled")
    verdicts = jobs_health(db, T0)
    assert (verdicts["daily"].state, verdicts["daily"].reason) == ("warning", "last success 4d ago, expected daily")
    assert (verdicts["broken"].state, verdicts["broken"].reason) == ("error", "failed: disk full")


def test_health_inputs_can_be_limited_to_named_jobs(db: Database, make_job: MakeJob) -> None:
    for name in ("a", "b", "c"):
        make_job(name)
        finish_run(db, name, RunStatus.SUCCEEDED, before(hours=1))
    assert set(inputs(db, ["a", "c"])) == {"a", "c"}
    assert inputs(db, []) == {}
    assert set(jobs_health(db, T0, names=["b"])) == {"b"}


def test_health_inputs_take_the_same_few_queries_for_one_job_or_many(db: Database, make_job: MakeJob) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def queries() -> int:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            inputs(db)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return sum(1 for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH")))

    make_job("first")
    finish_run(db, "first", RunStatus.FAILED, before(hours=1), "boom")
    one = queries()
    for i in range(6):
        make_job(f"job-{i}")
        finish_run(db, f"job-{i}", RunStatus.SUCCEEDED, before(hours=2))
        start_run(db, f"job-{i}")
    assert len(inputs(db)) == 7
    assert queries() == one <= 4


def test_a_job_whose_stored_definition_no_longer_parses_is_an_error(db: Database, make_job: MakeJob) -> None:
    make_job("fine")
    make_job("rotten")
    with db.write() as session:
        session.execute(update(Job).where(Job.name == "rotten").values(spec={"kind": "teleport"}))
    verdicts = jobs_health(db, T0)
    assert verdicts["fine"].state == "unknown"
    assert verdicts["rotten"].state == "error"
    assert verdicts["rotten"].reason.startswith("invalid definition: job 'rotten', field 'kind': 'teleport' is not")


def test_runs_executed_by_a_real_worker_turn_jobs_green_and_red(db: Database, make_job: MakeJob,
                                                                start_worker: Callable[..., Any]) -> None:
    make_job("good", schedule="@daily")
    make_job("bad", func="jobfuncs:boom", max_attempts=1)
    start_worker()
    ids = [runs.enqueue(db, "good"), runs.enqueue(db, "bad"), runs.enqueue(db, "bad")]
    wait_for(lambda: all(runs.get_run(db, i).status in TERMINAL for i in ids))
    verdicts = jobs_health(db, utcnow())
    assert verdicts["good"].state == "ok" and verdicts["good"].reason.startswith("last success ")
    assert verdicts["good"].window_seconds == pytest.approx(2.1 * DAY)
    assert (verdicts["bad"].state, verdicts["bad"].reason) == (
        "error", "failed 2 times in a row: ValueError: boom: something broke")


def test_only_a_missing_success_makes_a_job_stale() -> None:
    """``JobOverview.stale`` is what the stale alert watches: orange for want of a success, not
    for a failure, a run in progress or a block."""
    def stale(last: LastRuns) -> bool:
        return JobOverview(Job(name="j"), job(schedule="@daily"), last, health(last, schedule="@daily")).stale
    assert stale(succeeded(ago(days=20)))
    assert not stale(succeeded(ago(hours=1)))
    assert not stale(LastRuns(last_status="failed", last_error="x", failure_streak=1))
    assert not stale(LastRuns(last_status="succeeded", last_success_at=ago(days=20), running_since=ago(minutes=1)))
    assert not stale(LastRuns(last_status="blocked", last_error="upstream failed", last_success_at=ago(days=20)))
    assert not stale(LastRuns())
