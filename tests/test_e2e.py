"""End to end, as the README says: ``python app.py`` serves (web + scheduler + workers) and a
separate ``python -m lexyjobs run NAME --wait`` process enqueues and waits. Real processes on
127.0.0.1, on SQLite and on Postgres."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import PYTHON, ROOT, subprocess_env, wait_for

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


E2E_TOKEN = "e2e-token-0123456789abcdef"


@dataclass
class Server:
    process: subprocess.Popen[str]
    env: dict[str, str]
    stderr: list[str] = field(default_factory=list)
    url: str = ""

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m lexyjobs ARGS`` as its own process against the server's database."""
        return subprocess.run([PYTHON, "-m", "lexyjobs", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@contextlib.contextmanager
def running_server(db_url: str, jobs_file: Path, **env_extra: str) -> Iterator[Server]:
    """``python app.py --port 0`` on ``db_url`` loading ``jobs_file``; stopped with SIGTERM afterwards,
    which must end it with exit code 0."""
    env = subprocess_env(db_url, LEXYJOBS_JOBS_FILE=str(jobs_file), LEXYJOBS_WORKERS="2",
                         LEXYJOBS_POLL_INTERVAL="0.05", LEXYJOBS_HEARTBEAT_INTERVAL="0.2",
                         LEXYJOBS_SHUTDOWN_GRACE="5", LEXYJOBS_HTTP_THREADS="4", LEXYJOBS_API_TOKEN=E2E_TOKEN,
                         **env_extra)
    process = subprocess.Popen([PYTHON, "app.py", "--port", "0"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    srv = Server(process, env)

    def drain() -> None:  # keep reading so the server never blocks on a full pipe
        assert process.stderr is not None
        for line in process.stderr:
            srv.stderr.append(line)
    threading.Thread(target=drain, daemon=True).start()
    try:
        def serving() -> str | None:
            assert process.poll() is None, "server exited early:\n" + "".join(srv.stderr)
            found = [m for line in list(srv.stderr) if (m := re.search(r"lexyjobs serving on (http://\S+)", line))]
            return found[0].group(1) if found else None
        srv.url = wait_for(serving, timeout=30)
        yield srv
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, "server did not stop cleanly:\n" + "".join(srv.stderr)


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
