"""Backfill (lexyjobs.backfill, ``lexyjobs backfill``), on SQLite and Postgres, with seed 000's
daily pipeline step "keyword metrics at 02:00" broken for a week: one run per missed fire time,
each seeing its own fire time, oldest first and one at a time with concurrency 1; the days that
already succeeded are skipped unless asked; the group's progress reads "5 of 5 fire times done";
cancelling the group cancels what has not finished; bad ranges are refused with the field named."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import wait_for

from lexyjobs import backfill, runs
from lexyjobs.cli import main
from lexyjobs.definitions import definition_from_job
from lexyjobs.scheduler import Scheduler
from lexyjobs.store import get_job

WEEK = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAILY = {"func": "jobfuncs:fire_time", "schedule": "0 2 * * *", "misfire_grace": "3650d"}


def definition(db: Any, name: str) -> Any:
    with db.read() as session:
        return definition_from_job(get_job(session, name))


def finished(db: Any, ids: list[int]) -> list[Any]:
    return wait_for(lambda: (found := [runs.get_run(db, i) for i in ids])
                    and all(r.status in ("succeeded", "failed", "canceled") for r in found) and found, timeout=30)


def test_the_fire_times_of_a_range_per_fire_or_per_day(db, make_job):
    make_job("keyword-metrics", **DAILY)
    make_job("by-hand", timezone="Europe/Paris")
    daily = backfill.times_in(definition(db, "keyword-metrics"), *WEEK, "fire")
    assert [at.isoformat() for at in daily[:2]] == ["2026-11-24T02:00:00+00:00", "2026-11-25T02:00:00+00:00"]
    assert len(daily) == 7 and daily == sorted(daily)
    days = backfill.times_in(definition(db, "by-hand"), *WEEK, "day")
    assert days[0].isoformat() == "2026-11-24T23:00:00+00:00" and len(days) == 7  # Paris midnights, in UTC
    with pytest.raises(backfill.InvalidBackfill, match="has no schedule"):
        backfill.times_in(definition(db, "by-hand"), *WEEK, "fire")
    make_job("every-minute", func="jobfuncs:noop", schedule="* * * * *")
    with pytest.raises(backfill.InvalidBackfill, match="more than 1000 fire times"):
        backfill.times_in(definition(db, "every-minute"), *WEEK, "fire")


def test_a_broken_week_is_backfilled_in_order_one_at_a_time_skipping_the_days_that_worked(db, make_job,
                                                                                         start_worker):
    make_job("keyword-metrics", **DAILY)
    worked = [Scheduler(db).fire("keyword-metrics", [at], now=at + timedelta(seconds=5)).queued[0]
              for at in (datetime(2026, 11, 25, 2, tzinfo=UTC), datetime(2026, 11, 28, 2, tzinfo=UTC))]
    worker = start_worker()
    finished(db, worked)
    started = backfill.start(db, "keyword-metrics", *WEEK, by="alice", now=NOW)
    assert [at.day for at in started.skipped] == [25, 28] and len(started.run_ids) == 5
    done = finished(db, started.run_ids)
    assert [run.result[:10] for run in done] == ["2026-11-24", "2026-11-26", "2026-11-27", "2026-11-29", "2026-11-30"]
    assert all(run.status == "succeeded" and run.created_by == "alice" for run in done)
    for before, after in zip(done, done[1:]):  # concurrency 1: each starts once the one before finished
        assert after.started_at >= before.finished_at
    assert backfill.progress(db, started.backfill_id).describe() == "5 of 5 fire times done"
    again = backfill.start(db, "keyword-metrics", *WEEK, include_succeeded=True, concurrency=3, now=NOW)
    assert len(again.run_ids) == 7 and again.skipped == []
    finished(db, again.run_ids)
    with pytest.raises(backfill.InvalidBackfill, match="already has a succeeded run"):
        backfill.start(db, "keyword-metrics", *WEEK, now=NOW)
    worker.stop(grace=0)


def test_cancelling_the_group_cancels_what_has_not_finished(db, make_job, start_worker):
    make_job("slow-daily", func="jobfuncs:sleepy", schedule="0 2 * * *", params={"seconds": {"type": "number",
                                                                                          "default": 30}})
    started = backfill.start(db, "slow-daily", *WEEK, now=NOW)
    start_worker()
    wait_for(lambda: runs.get_run(db, started.run_ids[0]).status == "running")
    assert backfill.cancel(db, started.backfill_id, by="alice") == (6, 1)
    assert {run.status for run in finished(db, started.run_ids)} == {"canceled"}
    described = backfill.progress(db, started.backfill_id).describe()
    assert described == "0 of 7 fire times done, canceled"


@pytest.mark.parametrize("change, field, words", [
    ({"end": NOW + timedelta(days=1)}, "end", "covers the past"),
    ({"start": WEEK[1], "end": WEEK[0]}, "end", "before start"),
    ({"concurrency": 0}, "concurrency", "1 to 50"),
    ({"per": "hour"}, "per", "fire or day"),
])
def test_bad_backfills_are_refused_naming_the_field(db, make_job, change, field, words):
    make_job("keyword-metrics", **DAILY)
    arguments = {"start": WEEK[0], "end": WEEK[1], **change}
    with pytest.raises(backfill.InvalidBackfill, match=words) as refused:
        backfill.start(db, "keyword-metrics", arguments.pop("start"), arguments.pop("end"), now=NOW, **arguments)
    assert refused.value.details == {"field": field}


def test_the_cli_starts_reports_and_cancels_a_backfill(db_url, db, make_job):
    make_job("keyword-metrics", **DAILY)
    runner = CliRunner()
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""}
    out = runner.invoke(main, ["backfill", "start", "keyword-metrics", "--from", "2026-11-24", "--to", "2026-11-30"],
                        env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "backfill 1: 7 run(s) queued for keyword-metrics" in out.output and "0 time(s) skipped" in out.output
    status = runner.invoke(main, ["backfill", "status", "1"], env=env, catch_exceptions=False)
    assert status.output == "backfill 1: 0 of 7 fire times done\n"
    canceled = runner.invoke(main, ["backfill", "cancel", "1"], env=env, catch_exceptions=False)
    assert canceled.output == "backfill 1: 7 queued run(s) canceled, 0 running run(s) asked to stop\n"
    bad = runner.invoke(main, ["backfill", "start", "keyword-metrics", "--from", "last week", "--to", "2026-11-30"],
                        env=env)
    assert bad.exit_code == 2 and "is not a date" in bad.output
    missing = runner.invoke(main, ["backfill", "status", "99"], env=env)
    assert missing.exit_code == 2 and "no backfill 99" in missing.output
