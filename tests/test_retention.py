"""Retention (lexyjobs.retention): which runs go, in batches, with their events and logs; the
``lexyjobs prune`` command; the housekeeping thread that runs it. Both databases."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner
from conftest import drive_run, wait_for
from sqlalchemy import func, select

from lexyjobs import retention, runs, store
from lexyjobs.alerts.alerter import ALERTS
from lexyjobs.cli import main
from lexyjobs.db import Database, utcnow
from lexyjobs.maintenance import Periodic
from lexyjobs.models import RunEvent, RunLog
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus

DAY = timedelta(days=1)


def old_run(db: Database, job: str, status: RunStatus, age: timedelta, **request: Any) -> int:
    """A run of ``job`` created ``age`` ago and brought to ``status`` (its events written by the
    state machine), with a line of log."""
    created = utcnow() - age
    run_id = runs.enqueue_many(db, [runs.RunRequest(job, trigger="api", **request)], now=created)[0]
    drive_run(db, run_id, status)
    with db.write() as session:
        store.append_log(session, run_id, f"log of run {run_id}\n", max_chars=1000)
    return run_id


def skipped_run(db: Database, job: str, age: timedelta) -> int:
    return runs.record_not_run(db, job, RunStatus.SKIPPED, reason="missed while down", trigger="schedule",
                               now=utcnow() - age)


def existing(db: Database, ids: list[int]) -> set[int]:
    with db.read() as session:
        return {r.id for r in store.list_runs(session, limit=1000) if r.id in ids}


def rows_of(db: Database, model: Any, ids: list[int]) -> int:
    with db.read() as session:
        return session.execute(select(func.count()).select_from(model).where(model.run_id.in_(ids))).scalar_one()


@pytest.fixture
def history(db: Database, make_job: Callable[..., str]) -> dict[str, int]:
    make_job("etl")
    return {
        "old_succeeded": old_run(db, "etl", RunStatus.SUCCEEDED, 40 * DAY),
        "old_canceled": old_run(db, "etl", RunStatus.CANCELED, 31 * DAY),
        "old_failed": old_run(db, "etl", RunStatus.FAILED, 40 * DAY),
        "ancient_failed": old_run(db, "etl", RunStatus.FAILED, 100 * DAY),
        "old_skipped": skipped_run(db, "etl", 35 * DAY),
        "recent_succeeded": old_run(db, "etl", RunStatus.SUCCEEDED, 2 * DAY),
        "old_queued": old_run(db, "etl", RunStatus.QUEUED, 60 * DAY),
        "old_running": old_run(db, "etl", RunStatus.RUNNING, 60 * DAY),
    }


GONE = ("old_succeeded", "old_canceled", "ancient_failed", "old_skipped")


def test_prune_deletes_expired_finished_runs_with_their_events_and_logs(db: Database, history: dict[str, int]) -> None:
    gone = [history[k] for k in GONE]
    assert rows_of(db, RunEvent, gone) > 0 and rows_of(db, RunLog, gone) == 3  # the skipped run has no log

    report = retention.prune(db, retention.Policy(days=30, failed_days=90))

    assert existing(db, list(history.values())) == {v for k, v in history.items() if k not in GONE}
    assert rows_of(db, RunEvent, gone) == 0 and rows_of(db, RunLog, gone) == 0
    assert report.runs == {"blocked": 0, "canceled": 1, "failed": 1, "skipped": 1, "succeeded": 1}
    assert report.total == 4
    assert report.oldest is not None and utcnow() - report.oldest > 99 * DAY


def test_a_dry_run_counts_the_same_runs_and_deletes_nothing(db: Database, history: dict[str, int]) -> None:
    report = retention.prune(db, retention.Policy(days=30, failed_days=90), dry_run=True)
    assert report.total == 4 and report.runs["failed"] == 1
    assert existing(db, list(history.values())) == set(history.values())
    assert retention.prune(db, retention.Policy(days=30, failed_days=90)).total == 4


def test_queued_and_running_runs_are_kept_whatever_their_age(db: Database, history: dict[str, int]) -> None:
    retention.prune(db, retention.Policy(days=1, failed_days=1), now=utcnow() + 365 * DAY)
    assert existing(db, list(history.values())) == {history["old_queued"], history["old_running"]}


def test_zero_days_keeps_that_kind_of_run_forever(db: Database, history: dict[str, int]) -> None:
    assert retention.prune(db, retention.Policy(days=0, failed_days=0)).total == 0
    report = retention.prune(db, retention.Policy(days=0, failed_days=30))
    assert report.runs == {"failed": 2}
    assert existing(db, [history["old_failed"], history["ancient_failed"]]) == set()


def test_runs_pointing_at_a_pruned_run_keep_existing_without_the_pointer(db: Database, make_job: Callable[..., str]) -> None:
    make_job("etl")
    first = old_run(db, "etl", RunStatus.FAILED, 100 * DAY)
    retry = old_run(db, "etl", RunStatus.QUEUED, 1 * DAY, retry_of=first, parent_run_id=first)
    retention.prune(db, retention.Policy(days=30, failed_days=90))
    survivor = runs.get_run(db, retry)
    assert existing(db, [first, retry]) == {retry}
    assert survivor.retry_of is None and survivor.parent_run_id is None


def test_deletion_goes_in_batches_each_its_own_transaction(db: Database, make_job: Callable[..., str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_job("etl")
    ids = [old_run(db, "etl", RunStatus.SUCCEEDED, (40 + i) * DAY) for i in range(5)]
    writes = []
    original = db.write

    def counting_write() -> Any:
        writes.append(1)
        return original()
    monkeypatch.setattr(db, "write", counting_write)
    report = retention.prune(db, retention.Policy(days=30, failed_days=90), batch=2)
    assert report.runs["succeeded"] == 5 and existing(db, ids) == set()
    assert len(writes) >= 3 + 4  # 2 + 2 + 1 succeeded runs, plus one (empty) pass per other status


def test_old_alerts_are_pruned_with_the_longer_window(db: Database) -> None:
    now = utcnow()
    with db.write() as session:
        for key, age in (("a", 100 * DAY), ("b", 50 * DAY), ("c", 1 * DAY)):
            session.execute(ALERTS.insert().values(key=key, job_name="etl", event="failed", message="m",
                                                   status="sent", created_at=now - age))
    report = retention.prune(db, retention.Policy(days=30, failed_days=90))
    assert report.alerts == 1
    with db.read() as session:
        assert sorted(session.execute(select(ALERTS.c.key)).scalars()) == ["b", "c"]


def test_the_prune_command_shows_and_then_deletes(db_url: str, db: Database, history: dict[str, int],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": "", "LEXYJOBS_RETENTION_FAILED_DAYS": "30"}
    dry = CliRunner().invoke(main, ["prune", "--dry-run"], env=env, catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert "would delete 5 runs, 0 alerts and 0 audit entries" in dry.output
    assert any(line.split() == ["failed", "30d", "2"] for line in dry.output.splitlines())
    assert existing(db, list(history.values())) == set(history.values())

    done = CliRunner().invoke(main, ["prune", "--days", "0"], env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "deleted 2 runs" in done.output  # --days 0 keeps everything but the failures
    assert any(line.split() == ["succeeded", "forever", "0"] for line in done.output.splitlines())


def test_a_periodic_task_survives_its_failures_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[datetime] = []
    ran_twice = threading.Event()

    def task() -> None:
        calls.append(utcnow())
        if len(calls) == 1:
            raise RuntimeError("database went away")
        ran_twice.set()
    periodic = Periodic("test-task", 0.02, task, first=0.01)
    periodic.start()
    assert ran_twice.wait(5)
    periodic.stop()
    assert not periodic.alive()
    assert "test-task failed" in caplog.text and "database went away" in caplog.text


def test_the_scheduling_process_runs_retention_and_alerts(lj: Runtime) -> None:
    lj.start(worker=False)
    try:
        names = {thread.name for thread in lj.housekeeping}
        assert names == {"alerts", "retention"}
        assert all(thread.alive() for thread in lj.housekeeping)
    finally:
        lj.stop(grace=0)
    wait_for(lambda: not any(thread.alive() for thread in lj.housekeeping))
