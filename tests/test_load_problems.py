"""Rejected job definitions (lexyjobs.load_problems) are recorded by the load and shown by every
reader: ``/api/jobs`` and ``/api/jobs/<name>`` (``problems``), the panel's Jobs page and the job's
page (a banner), and ``lexyjobs jobs list`` — also from another process, after a real server
restart loaded an edited jobs.toml; fixing the file and restarting clears them."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

from conftest import PYTHON, ROOT
from liveserver import E2E_TOKEN, running_server

from lexyjobs import load_problems, registry, store

GOOD = '[jobs.nightly]\nkind = "shell"\nargv = ["echo", "nightly"]\nschedule = "@daily"\n'
TYPO = '[jobs.nightly]\nkind = "shell"\nargv = ["echo", "nightly"]\nschedul = "@hourly"\n'  # typo'd field
NEW_TYPO = '[jobs.fresh]\nkind = "shell"\nargv = ["echo"]\ntimout = "5m"\n'  # a new job that never loads


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def problems_in(db: Any, job: str | None = None) -> list[tuple[str | None, str | None]]:
    with db.read() as session:
        return [(p.job, p.field) for p in load_problems.list_problems(session, job)]


def test_a_rejected_definition_is_recorded_and_the_job_keeps_its_last_good_one(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    jobs_file = tmp_path / "jobs.toml"
    registry.sync_jobs(db, jobs_file=write(jobs_file, GOOD), archive_missing=True)
    assert problems_in(db) == []
    registry.sync_jobs(db, jobs_file=write(jobs_file, TYPO + NEW_TYPO), archive_missing=True)
    assert problems_in(db) == [("nightly", "schedul"), ("fresh", "timout")]
    with db.read() as session:
        [problem] = load_problems.list_problems(session, "nightly")
        job = store.get_job(session, "nightly")
    assert problem.origin == str(jobs_file) and "unknown field" in problem.problem
    assert job is not None and not job.archived and job.schedule == "@daily"  # the last good definition
    registry.sync_jobs(db, jobs_file=write(jobs_file, GOOD), archive_missing=True)
    assert problems_in(db) == []


def test_a_bad_cron_field_is_named_in_the_load_problem(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.sync_jobs(db, jobs_file=write(tmp_path / "jobs.toml", GOOD.replace("@daily", "61 25 * * *")),
                       archive_missing=True)
    with db.read() as session:
        [problem] = load_problems.list_problems(session, "nightly")
    assert problem.field == "schedule"
    assert problem.problem.endswith("minute 61 is out of range 0–59; hour 25 is out of range 0–23"), problem.problem


def test_a_file_level_problem_is_recorded_without_a_job(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.sync_jobs(db, jobs_file=write(tmp_path / "jobs.toml", '[jobs.x]\nkind = "shell"\nargv = [\n'),
                       archive_missing=True)
    [(job, _field)] = problems_in(db)
    assert job is None
    with db.read() as session:
        assert "cannot read jobs file" in load_problems.list_problems(session)[0].problem


def test_a_worker_replaces_only_the_problems_of_what_it_loaded(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server_file, worker_file = tmp_path / "server.toml", tmp_path / "worker.toml"
    registry.sync_jobs(db, jobs_file=write(server_file, TYPO), archive_missing=True)
    registry.sync_jobs(db, jobs_file=None)  # a worker without a jobs file: nothing of its own to judge
    assert problems_in(db) == [("nightly", "schedul")]
    registry.sync_jobs(db, jobs_file=write(worker_file, NEW_TYPO))
    assert problems_in(db) == [("nightly", "schedul"), ("fresh", "timout")]
    registry.sync_jobs(db, jobs_file=write(worker_file, ""))
    assert problems_in(db) == [("nightly", "schedul")]
    registry.sync_jobs(db, jobs_file=write(server_file, GOOD), archive_missing=True)  # the server: all
    assert problems_in(db) == []


def test_the_api_lists_the_problems_with_the_jobs_and_on_the_job(api_client, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    jobs_file = tmp_path / "jobs.toml"
    registry.sync_jobs(db, jobs_file=write(jobs_file, GOOD), archive_missing=True)
    assert api_client.ok(api_client.get("/api/jobs"))["problems"] == []
    registry.sync_jobs(db, jobs_file=write(jobs_file, TYPO + NEW_TYPO), archive_missing=True)
    listed = api_client.ok(api_client.get("/api/jobs", role="viewer"))  # checked against the OpenAPI schema
    assert [(p["job"], p["field"], p["source"], p["origin"]) for p in listed["problems"]] == [
        ("nightly", "schedul", "file", str(jobs_file)), ("fresh", "timout", "file", str(jobs_file))]
    assert [j["name"] for j in listed["jobs"]] == ["nightly"]
    detail = api_client.ok(api_client.get("/api/jobs/nightly"))
    assert [p["field"] for p in detail["problems"]] == ["schedul"]
    assert detail["schedule"] == "@daily"


def test_the_panel_shows_a_banner_on_the_jobs_page_and_on_the_job(panel_as: Callable[[str], Any], db,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    registry.sync_jobs(db, jobs_file=write(jobs_file, GOOD), archive_missing=True)
    viewer = panel_as("viewer")
    assert "load-problems" not in viewer.get("/jobs").get_data(as_text=True)
    registry.sync_jobs(db, jobs_file=write(jobs_file, TYPO + NEW_TYPO), archive_missing=True)
    jobs_page = viewer.get("/jobs").get_data(as_text=True)
    assert 'class="load-problems"' in jobs_page and "2 job definition problems" in jobs_page
    assert "job <code>nightly</code>, field <code>schedul</code>: unknown field" in jobs_page
    assert "job <code>fresh</code>, field <code>timout</code>" in jobs_page
    job_page = viewer.get("/jobs/nightly").get_data(as_text=True)
    assert 'class="load-problems"' in job_page and "field <code>schedul</code>" in job_page
    assert "timout" not in job_page  # another job's problem
    registry.sync_jobs(db, jobs_file=write(jobs_file, GOOD), archive_missing=True)
    assert "load-problems" not in viewer.get("/jobs/nightly").get_data(as_text=True)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "lexyjobs", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_restarted_server_shows_an_edited_jobs_file_problem_to_the_api_and_cli(db_url: str, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    write(jobs_file, GOOD)
    with running_server(db_url, jobs_file) as srv:
        assert srv.call("GET", "/api/jobs", E2E_TOKEN)[1]["problems"] == []
        env = srv.env
    write(jobs_file, TYPO)  # edited while the server runs; a restart loads it, as it does today
    with running_server(db_url, jobs_file) as srv:
        status, listed = srv.call("GET", "/api/jobs", E2E_TOKEN)
        assert status == 200 and [(p["job"], p["field"]) for p in listed["problems"]] == [("nightly", "schedul")]
        assert [j["schedule"] for j in listed["jobs"]] == ["@daily"]
    cli = _cli({**env, "LEXYJOBS_JOBS_FILE": ""}, "jobs", "list")  # another process, another jobs file setting
    assert cli.returncode == 0, cli.stderr
    assert "nightly" in cli.stdout and "warning: 1 job definition(s) rejected" in cli.stderr
    assert f"{jobs_file}: job 'nightly', field 'schedul': unknown field" in cli.stderr
    as_json = _cli(env, "jobs", "list", "--json")
    assert [p["field"] for p in json.loads(as_json.stdout)[0]["problems"]] == ["schedul"]
    write(jobs_file, GOOD.replace("@daily", "@hourly"))  # fixed
    with running_server(db_url, jobs_file) as srv:
        status, listed = srv.call("GET", "/api/jobs", E2E_TOKEN)
        assert listed["problems"] == [] and [j["schedule"] for j in listed["jobs"]] == ["@hourly"]
    cli = _cli(env, "jobs", "list")
    assert cli.returncode == 0 and "warning" not in cli.stderr
