"""Flow control across real processes: four ``lexyjobs worker`` processes (4 threads each) on
one database (SQLite file, Postgres) drain runs of two jobs sharing a per-brand concurrency key
(2 per brand, 5 brands) and a shared named rate limit. Every run records when it began and
ended; no brand ever has more than 2 runs executing at once, and no window of the rate limit
ever saw more starts (as recorded by the claim) than the limit allows."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from conftest import wait_for
from test_processes import Child, spawn, status_counts  # noqa: F401  (the fixture)

from sqlalchemy import select

from lexyjobs import registry, runs, store
from lexyjobs.db import Database
from lexyjobs.models import Run
from lexyjobs.runs import RunRequest

BRANDS, PER_BRAND, RATE, PER = 5, 2, 8, 1.0
JOBS = f'''
[limits.shared]
rate = "{RATE}/s"
''' + "".join(f'''
[jobs.{name}]
kind = "python"
func = "jobfuncs:timed"
max_concurrency = 0
concurrency_key = "brand:{{brand_id}}"
concurrency_limit = {PER_BRAND}
limits = ["shared"]
params = {{ brand_id = {{ type = "integer" }}, seconds = {{ type = "number", default = 0.5 }} }}
''' for name in ("post", "refresh"))


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end before a start at the same instant)."""
    edges = sorted([(began, 1) for began, _ in intervals] + [(ended, -1) for _, ended in intervals],
                   key=lambda edge: (edge[0], edge[1]))
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def test_worker_processes_never_exceed_a_shared_key_limit_or_rate_limit(db: Database, db_url: str, tmp_path: Path,
                                                                        spawn: Callable[..., Child]) -> None:  # noqa: F811
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS)
    report = registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True)
    assert sorted(report.loaded) == ["post", "refresh"], report.errors
    total = 48
    ids = runs.enqueue_many(db, [RunRequest("post" if i % 2 else "refresh", {"brand_id": i % BRANDS})
                                 for i in range(total)])
    workers = [spawn("worker", db_url, LEXYJOBS_WORKERS="4", LEXYJOBS_HEARTBEAT_INTERVAL="5",
                     LEXYJOBS_STALE_AFTER="30") for _ in range(4)]
    for worker in workers:
        worker.wait_ready()
    wait_for(lambda: status_counts(db) == {"succeeded": total}, timeout=120, interval=0.2)

    with db.read() as session:
        done = list(session.scalars(select(Run).where(Run.id.in_(ids))))
    results: list[dict[str, Any]] = [run.result for run in done]  # type: ignore[misc]
    by_brand: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for run, result in zip(done, results):
        by_brand[run.concurrency_key].append((result["began"], result["ended"]))
    assert sorted(by_brand) == [f"brand:{b}" for b in range(BRANDS)]
    assert max(most_at_once(intervals) for intervals in by_brand.values()) <= PER_BRAND
    assert max(most_at_once(intervals) for intervals in by_brand.values()) == PER_BRAND  # the limit was used

    starts = sorted(run.started_at for run in done if run.started_at)  # the claim's time: what the limit counts
    assert len(starts) == total
    for i, first in enumerate(starts):
        assert sum(first <= at < first + timedelta(seconds=PER) for at in starts[i:]) <= RATE, starts
    assert starts[-1] - starts[0] >= timedelta(seconds=PER * (total // RATE - 1))  # the limit did hold them back
    pids = {result["pid"] for result in results}
    assert len(pids) > 1, "only one process did any work"
    with db.read() as session:
        assert all(e.to_status != "failed" for run_id in ids for e in store.run_events(session, run_id))
