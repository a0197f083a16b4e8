"""Named rate limits (lexyjobs.flow.named): ``[limits.<name>]`` tables of jobs.toml are synced
into ``named_limits`` by the load (insert, update, delete when the server loads a file without
them); a bad table or a job naming an undefined limit is a load problem naming it; runs of jobs
that list a limit take a slot of its bucket, shared across jobs and per key value."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lexyjobs import load_problems, registry, runs, store
from lexyjobs.db import Database
from lexyjobs.errors import InvalidDefinition
from lexyjobs.models import NamedLimit

JOBS = '''
[jobs.summarize]
kind = "python"
func = "jobfuncs:noop"
limits = ["openai"]

[jobs.embed]
kind = "python"
func = "jobfuncs:noop"
limits = ["openai", "per-customer"]
params = { customer_id = { type = "integer" } }
'''
LIMITS = '''
[limits.openai]
rate = "500/m"

[limits.per-customer]
rate = "60/m per {customer_id}"
'''


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def stored(db: Database) -> dict[str, dict[str, Any]]:
    with db.read() as session:
        return {row.name: row.spec for row in session.query(NamedLimit).order_by(NamedLimit.name)}


def problems(db: Database) -> list[tuple[str | None, str | None, str]]:
    with db.read() as session:
        return [(p.job, p.field, p.message) for p in load_problems.list_problems(session)]


def test_limits_tables_are_inserted_updated_and_deleted_with_the_servers_load(db: Database, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    report = registry.sync_jobs(db, jobs_file=write(jobs_file, LIMITS + JOBS), archive_missing=True)
    assert sorted(report.loaded) == ["embed", "summarize"] and problems(db) == []
    assert stored(db) == {"openai": {"rate": "500/m"}, "per-customer": {"rate": "60/m per {customer_id}"}}
    registry.sync_jobs(db, jobs_file=write(jobs_file, LIMITS.replace("500/m", "100/s") + JOBS), archive_missing=True)
    assert stored(db)["openai"] == {"rate": "100/s"}
    registry.sync_jobs(db, jobs_file=write(jobs_file, '[limits.openai]\nrate = "10/m"\n'), archive_missing=True)
    assert stored(db) == {"openai": {"rate": "10/m"}}  # per-customer is gone from the file


def test_a_worker_loading_another_file_adds_limits_but_deletes_none(db: Database, tmp_path: Path) -> None:
    registry.sync_jobs(db, jobs_file=write(tmp_path / "server.toml", LIMITS), archive_missing=True)
    registry.sync_jobs(db, jobs_file=write(tmp_path / "worker.toml", '[limits.crawl]\nrate = "1/s"\n'))
    registry.sync_jobs(db, jobs_file=None)
    assert sorted(stored(db)) == ["crawl", "openai", "per-customer"]


def test_a_bad_limits_table_is_a_load_problem_naming_it_and_keeps_its_last_good_version(db: Database,
                                                                                        tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    registry.sync_jobs(db, jobs_file=write(jobs_file, LIMITS + JOBS), archive_missing=True)
    bad = LIMITS.replace('"500/m"', '"500 a minute"') + '[limits.slow]\nrat = "1/s"\n' + JOBS
    registry.sync_jobs(db, jobs_file=write(jobs_file, bad), archive_missing=True)
    found = problems(db)
    assert [(job, field) for job, field, _ in found] == [(None, "rate"), (None, "rat")]
    assert found[0][2].startswith("limit 'openai', field 'rate': must be a rate like")
    assert found[1][2].startswith("limit 'slow', field 'rat': unknown field")
    assert stored(db)["openai"] == {"rate": "500/m"}  # the last good version is still used
    with db.read() as session:
        shown = [load_problems.describe(p) for p in load_problems.list_problems(session)]
    assert shown[0] == f"{jobs_file.absolute()}: " + found[0][2]  # a file problem: no "the job keeps…"


def test_a_job_naming_an_undefined_limit_is_a_load_problem_and_is_not_loaded(db: Database, tmp_path: Path) -> None:
    report = registry.sync_jobs(db, jobs_file=write(tmp_path / "jobs.toml", JOBS), archive_missing=True)
    assert report.loaded == []
    assert [(job, field) for job, field, _ in problems(db)] == [("summarize", "limits"), ("embed", "limits")]
    assert "names limit 'openai', which no [limits.openai] table defines (none is defined)" in problems(db)[0][2]
    with db.read() as session:
        assert store.get_job(session, "summarize") is None


def test_a_per_key_limit_needs_the_jobs_param(db: Database, tmp_path: Path) -> None:
    text = LIMITS + '[jobs.other]\nkind = "python"\nfunc = "jobfuncs:noop"\nlimits = ["per-customer"]\n' \
        'params = { brand_id = { type = "integer" } }\n'
    registry.sync_jobs(db, jobs_file=write(tmp_path / "jobs.toml", text), archive_missing=True)
    [(job, field, message)] = problems(db)
    assert (job, field) == ("other", "limits") and "per {customer_id}, which is not one of the job's params" in message


def test_runs_take_the_named_buckets_shared_by_jobs_and_per_key_value(db: Database, tmp_path: Path) -> None:
    registry.sync_jobs(db, jobs_file=write(tmp_path / "jobs.toml", LIMITS + JOBS), archive_missing=True)
    ids = [runs.enqueue(db, "summarize"), runs.enqueue(db, "embed", {"customer_id": 7})]
    with db.read() as session:
        buckets = [store.get_run(session, i).rate_limits for i in ids]  # type: ignore[union-attr]
    assert buckets == [[{"bucket": "openai", "rate": 500, "per": 60.0}],
                       [{"bucket": "openai", "rate": 500, "per": 60.0},
                        {"bucket": "per-customer|7", "rate": 60, "per": 60.0}]]


def test_a_job_created_in_the_api_may_only_name_defined_limits(db: Database, tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        registry.create_job(db, "calls", {"kind": "python", "func": "jobfuncs:noop", "limits": ["openai"]})
    assert refused.value.field == "limits" and "no [limits.openai] table defines" in refused.value.message
    registry.sync_jobs(db, jobs_file=write(tmp_path / "jobs.toml", LIMITS), archive_missing=True)
    registry.create_job(db, "calls", {"kind": "python", "func": "jobfuncs:noop", "limits": ["openai"]})
