"""End to end, as the README says: ``python app.py`` serves (web + scheduler + workers) and a
separate ``python -m lexyjobs run NAME --wait`` process enqueues and waits. Real processes on
127.0.0.1, on SQLite and on Postgres."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import PYTHON, ROOT
from liveserver import E2E_TOKEN, Server, running_server

pytestmark = pytest.mark.slow

JOBS_TOML = f"""
[jobs.e2e-add]
title = "E2E adder"
category = "End to end"
kind = "python"
func = "jobfuncs:add"
params = {{ a = {{ type = "integer", required = true }}, b = {{ type = "integer", default = 2 }} }}

[jobs.e2e-shell]
title = "E2E shell"
kind = "shell"
argv = [{json.dumps(PYTHON)}, "-c", "import os; print('hello from shell', os.environ['LEXYJOBS_PARAM_WHO'])"]
params = {{ who = "world" }}

[jobs.e2e-shell-fails]
kind = "shell"
argv = [{json.dumps(PYTHON)}, "-c", "import sys; print('about to fail'); sys.exit(3)"]
max_attempts = 1
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """The server with a temp jobs.toml holding a python job and two shell jobs."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_TOML)
    with running_server(db_url, jobs_file) as srv:
        yield srv


def show(srv: Server, run_id: int) -> dict[str, Any]:
    result = srv.cli("show", str(run_id), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def queued_id(stdout: str) -> int:
    match = re.search(r"^run (\d+) queued", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1))


def test_the_server_is_healthy_and_lists_the_file_jobs(server: Server) -> None:
    status, body = server.get("/healthz")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok" and health["checks"] == {"database": True, "worker": True, "scheduler": True}
    status, page = server.get("/")
    assert status == 200 and "Log in" in page  # the panel is locked
    status, body = server.get("/api/jobs", token=E2E_TOKEN)
    assert status == 200
    jobs = json.loads(body)["jobs"]
    assert {"E2E adder", "E2E shell"} <= {job["title"] for job in jobs}
    assert "End to end" in {job["category"] for job in jobs}
    assert any("3 jobs loaded from code and file" in line for line in server.stderr)


def test_a_python_run_enqueued_by_the_cli_succeeds(server: Server) -> None:
    result = server.cli("run", "e2e-add", "--param", "a=40", "--wait", "--timeout", "30s")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = queued_id(result.stdout)
    assert re.search(rf"^run {run_id} succeeded after 1 attempt\(s\)", result.stdout, re.MULTILINE)
    assert result.stdout.rstrip().endswith("42")
    run = show(server, run_id)
    assert (run["status"], run["result"], run["params"], run["created_by"]) == ("succeeded", 42, {"a": 40, "b": 2},
                                                                                "cli")
    assert run["worker"].endswith(f":{server.process.pid}")  # executed by the server's worker pool


def test_a_shell_run_enqueued_by_the_cli_succeeds_with_its_output_logged(server: Server) -> None:
    result = server.cli("run", "e2e-shell", "-p", "who=e2e", "--wait", "--timeout", "30s")
    assert result.returncode == 0, result.stdout + result.stderr
    run = show(server, queued_id(result.stdout))
    assert run["status"] == "succeeded"
    assert "hello from shell e2e" in run["log"]


def test_a_failing_shell_run_makes_the_cli_exit_1(server: Server) -> None:
    result = server.cli("run", "e2e-shell-fails", "--wait", "--timeout", "30s")
    assert result.returncode == 1, result.stdout + result.stderr
    run = show(server, queued_id(result.stdout))
    assert run["status"] == "failed" and "about to fail" in run["log"]
    assert "error:" in result.stderr


def test_the_cli_rejects_bad_params_before_anything_is_queued(server: Server) -> None:
    result = server.cli("run", "e2e-add", "--param", "a=forty")
    assert result.returncode == 2 and "param 'a': must be a whole number" in result.stderr
    listed = server.cli("runs", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_the_server_stops_cleanly_on_sigterm(server: Server) -> None:
    assert server.stop() == 0
    assert any("lexyjobs stopping" in line for line in server.stderr)


def test_the_readme_quickstart_runs_the_demo_jobs(db_url: str, tmp_path: Path) -> None:
    with running_server(db_url, ROOT / "jobs.toml", LEXYJOBS_DEMO_DIR=str(tmp_path / "demo-data")) as srv:
        assert srv.get("/healthz")[0] == 200
        result = srv.cli("run", "crunch-numbers", "--param", "steps=5", "--param", "pause=0", "--wait",
                         "--timeout", "30s")
        assert result.returncode == 0, result.stdout + result.stderr
        run = show(srv, queued_id(result.stdout))
        assert run["result"] == {"steps": 5, "sum_of_squares": 55} and run["progress"] == 100
        runs_listed = srv.cli("runs")
        assert runs_listed.returncode == 0 and "crunch-numbers" in runs_listed.stdout
