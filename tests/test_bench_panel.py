"""The panel benchmark (``bench/panel.py``) on a tiny history, so the harness never rots; and, on
its generated history, the panel's index-friendly queries against the plain grouped queries
they replace (same answers, on SQLite and Postgres)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import func, select

from bench import panel
from conftest import drive_run
from lexyjobs import queries, runs, store
from lexyjobs.db import Database
from lexyjobs.finished_hours import FinishedHours
from lexyjobs.models import Run
from lexyjobs.states import RunStatus


def test_the_panel_bench_fills_a_history_and_times_every_page(tmp_path: Path) -> None:
    out = tmp_path / "panel.json"
    report = panel.main(["--db", "sqlite", "--jobs", "5", "--runs", "300", "--requests", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["runs"] == 300 and report["events"] > 300 and report["logs"] >= 1
    assert set(report["pages"]) == {"dashboard", "jobs", "runs", "runs status=failed", "runs job=busiest",
                                    "runs sort=duration", "runs sort=queue asc", "runs sort=status",
                                    "job detail", "run detail", "pipelines", "queues", "timeline", "timeline window=1h",
                                    "timeline window=7d", "dashboard poll (unchanged)"}
    for figures in report["pages"].values():
        assert figures["requests"] == 2 and 0 < figures["min_ms"] <= figures["median_ms"] <= figures["p90_ms"]


def test_the_generated_history_looks_like_a_month_of_runs() -> None:
    now = datetime(2030, 6, 1, tzinfo=timezone.utc)
    rows = panel.generate(panel.job_definitions(20), 2000, now, postgres=False)
    statuses = [row[2] for row in rows.runs]
    assert [row[0] for row in rows.runs] == list(range(1, 2001))
    assert statuses.count("succeeded") > 1500 and statuses.count("failed") > 20
    assert {"canceled", "blocked", "queued", "running"} <= set(statuses)
    created = [row[7] for row in rows.runs]
    assert created == sorted(created) and created[0] >= "2030-05-02" and created[-1] < "2030-06-01"
    assert any(row[23] for row in rows.runs) and any(row[25] for row in rows.runs)  # pipelines, retries


@pytest.fixture
def history(db_url: str) -> Iterator[Database]:
    """The bench's generated history (20 jobs, 800 runs over 30 days) in a fresh database; it
    holds runs of every status, pipelines, retries and failure streaks."""
    panel.fill(db_url, 20, 800)
    db = Database(db_url)
    yield db
    db.dispose()


def test_status_counts_agree_with_a_grouped_count(history: Database) -> None:
    with history.read() as session:
        fast = queries.status_counts(session)
        plain = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
    assert fast == {"total": sum(plain.values()), **{s.value: plain.get(s.value, 0) for s in RunStatus}}


@pytest.mark.parametrize("where", [
    queries.RunFilter(), queries.RunFilter(statuses=("failed",)), queries.RunFilter(statuses=("failed", "canceled", "failed")),
    queries.RunFilter(job="job-001"), queries.RunFilter(job="job-001", statuses=("succeeded", "running")),
    queries.RunFilter(text="TimeoutError", statuses=("failed",)), queries.RunFilter(statuses=("skipped",), category="Reports")])
def test_a_lists_total_taken_from_its_status_counts_is_its_count(history: Database, where: queries.RunFilter) -> None:
    with history.read() as session:
        assert queries.matching(queries.status_counts(session, where), where) == queries.count_runs(session, where)


@pytest.mark.parametrize("hours, hourly", [(40, True), (24 * 30, True), (24 * 10, False), (24 * 90, False)])
def test_throughput_agrees_with_grouping_by_the_formatted_time(history: Database, hours: int, hourly: bool) -> None:
    """From a day and a half to three months (past the hours a process remembers), asked twice:
    counted, then from memory."""
    now = datetime.now(timezone.utc)
    since = now - timedelta(hours=hours, minutes=17)  # not on a bucket edge
    memory = FinishedHours()
    with history.read() as session:
        counted, remembered = (queries.throughput(session, since=since, hourly=hourly, postgres=history.is_postgres,
                                                  hours=memory, now=now) for _ in range(2))
        plain: dict[str, dict[str, int]] = {}
        key = func.substr(_formatted(Run.finished_at, history.is_postgres), 1, 13 if hourly else 10).label("key")
        for key, status, count in session.execute(
                select(key, Run.status, func.count()).where(Run.finished_at >= since).group_by(key, Run.status)):
            plain.setdefault(key, {})[status] = count
    assert counted == remembered == plain and sum(sum(bucket.values()) for bucket in plain.values()) > 0


def _formatted(column: Any, postgres: bool) -> Any:
    if postgres:
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24')
    return func.strftime("%Y-%m-%dT%H", column)


def test_the_last_days_queue_figures_agree_with_a_grouped_query(history: Database) -> None:
    now = datetime.now(timezone.utc)
    memory = FinishedHours()
    with history.read() as session:
        fast, again = (queries.queue_stats(session, now=now, postgres=history.is_postgres, hours=memory)["last_24h"]
                       for _ in range(2))
        rows = session.execute(select(Run.status, Run.scheduled_for, Run.started_at, Run.finished_at).where(
            Run.finished_at >= now - timedelta(hours=24), Run.started_at.is_not(None))).all()
    assert fast == again and fast["finished"] == len(rows) > 0
    assert fast["succeeded"] == sum(row.status == "succeeded" for row in rows)
    assert fast["failed"] == sum(row.status == "failed" for row in rows)
    waited = sum((row.started_at - row.scheduled_for).total_seconds() for row in rows) / len(rows)
    busy = sum((row.finished_at - row.started_at).total_seconds() for row in rows) / len(rows)
    assert fast["avg_queue_seconds"] == pytest.approx(waited, abs=1e-3)
    assert fast["avg_processing_seconds"] == pytest.approx(busy, abs=1e-3)


def test_recent_pipelines_agree_with_ordering_every_pipeline_by_its_first_run(history: Database,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "PIPELINE_WALK", 7)  # walk in many small steps
    with history.read() as session:  # steps of older pipelines run again: their runs come first in the walk
        older = session.execute(select(Run.pipeline_id, Run.job_name, func.max(Run.id)).where(Run.pipeline_id.is_not(None))
                                .group_by(Run.pipeline_id, Run.job_name).order_by(func.max(Run.id).desc())
                                .offset(20).limit(12)).all()
    runs.enqueue_many(history, [runs.RunRequest(job, params={"day": "today", "limit": 1} if _has_params(job) else None,
                                                trigger="retry", pipeline_id=pipeline_id, retry_of=run_id)
                                for pipeline_id, job, run_id in older])
    with history.read() as session:
        plain = list(session.scalars(select(Run.pipeline_id).where(Run.pipeline_id.is_not(None))
                                     .group_by(Run.pipeline_id).order_by(func.min(Run.id).desc()).limit(9)))
        for limit in (1, 9):
            found = queries.recent_pipelines(session, limit=limit)
            assert [p.pipeline_id for p in found] == plain[:limit]
            assert all(p.root.id == min(row.id for row in p.runs) for p in found)


def _has_params(job: str) -> bool:
    return int(job.removeprefix("job-")) % 3 == 0  # see panel.job_definitions


def test_health_inputs_agree_with_ranking_every_run(history: Database) -> None:
    first, second = runs.enqueue(history, "job-004"), runs.enqueue(history, "job-004")
    drive_run(history, first, RunStatus.FAILED, queued_for=0, ran_for=20, error="slow failure")
    drive_run(history, second, RunStatus.FAILED, queued_for=0, ran_for=1, error="quick failure")  # ends first
    with history.read() as session:
        fast = store.health_inputs(session)
        plain = _ranked_health_inputs(session)
        some = sorted(plain)[:3]
        assert store.health_inputs(session, some) == {name: plain[name] for name in some}
    assert fast == plain and any("failure_streak" in entry for entry in fast.values())
    assert fast["job-004"]["last_error"] == "slow failure"  # the latest to finish, not the latest created


def _ranked_health_inputs(session: Any) -> dict[str, dict[str, Any]]:
    """health_inputs as first written: window functions and groupings over every run."""
    runs = Run.__table__.c
    out: dict[str, dict[str, Any]] = {}
    ranked = (select(runs.job_name, runs.status, runs.started_at, runs.finished_at, runs.error,
                     func.row_number().over(partition_by=runs.job_name,
                                            order_by=(runs.finished_at.desc(), runs.id.desc())).label("position"))
              .where(runs.status.in_(store.HEALTH_OUTCOMES)).subquery())
    for row in session.execute(select(ranked).where(ranked.c.position == 1)):
        out[row.job_name] = {"last_status": row.status, "last_started_at": row.started_at,
                             "last_finished_at": row.finished_at, "last_error": row.error}
    successes = (select(runs.job_name, func.max(runs.finished_at).label("at"))
                 .where(runs.status == "succeeded").group_by(runs.job_name).subquery())
    for name, at in session.execute(select(successes)):
        out.setdefault(name, {})["last_success_at"] = at
    streaks = (select(runs.job_name, func.count()).select_from(Run.__table__.outerjoin(
        successes, successes.c.job_name == runs.job_name))
        .where(runs.status == "failed", successes.c.at.is_(None) | (runs.finished_at > successes.c.at))
        .group_by(runs.job_name))
    for name, count in session.execute(streaks):
        out.setdefault(name, {})["failure_streak"] = count
    for name, since in session.execute(select(runs.job_name, func.min(runs.started_at))
                                       .where(runs.status == "running").group_by(runs.job_name)):
        out.setdefault(name, {})["running_since"] = since
    return out
