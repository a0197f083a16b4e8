"""Schemathesis against a real ``python app.py`` on SQLite and on Postgres: every operation of
``/api/openapi.json`` is exercised (seeded and bounded) with a bearer token, with every check: a
5xx, an undocumented status code, a wrong content type, a response breaking its schema, a request
the document forbids that is accepted (negative_data_rejection), a request it allows that is
refused (positive_data_acceptance), a route answering without the token… fails the test.

Only 127.0.0.1 is ever contacted: the schema and the base URL are the loopback server's, redirects
are not followed, proxies are bypassed. Generated job definitions may be saved and run by the
server, so its ``http`` jobs are sent to a dead loopback proxy and its ``PATH`` is empty."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import PYTHON, wait_for
from liveserver import LOOPBACK, Server, running_server


pytestmark = pytest.mark.slow

TOKEN = "schemathesis-token-0123456789abcdef"
SEED = 20260101
MAX_EXAMPLES = 10  # per operation and phase (fuzzing, stateful)
CHECKS = "all"
# The coverage phase (every boundary of the document, ~3,000 requests, ~20 s here) runs once, on
# SQLite: the document's boundaries do not depend on the database. Postgres gets the fuzzing and
# stateful phases.
PHASES = {"sqlite": "examples,coverage,fuzzing,stateful", "postgres": "examples,fuzzing,stateful"}
# Valid JSON Schema is not valid meaning for some bodies: whether a cron expression, timezone,
# duration or function reference means something, whether ``depends_on`` names existing jobs,
# whether a PATCH merged into the stored definition still suits its kind, and whether run params
# suit the job's parameter definitions. The server answers those 422 naming the field, so for
# the operations taking such bodies a 422 is an acceptable answer to schema-valid data.
CONFIG = r"""
[[operations]]
include-path-regex = '^/api/jobs(/\{name\}(/run)?)?$'
include-method = ["POST", "PUT", "PATCH"]
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "403", "404", "409", "422"]
"""
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so a proxied request fails at once
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

JOBS_TOML = f"""
[jobs.st-add]
title = "Schemathesis adder"
category = "API"
kind = "python"
func = "jobfuncs:add"
params = {{ a = {{ type = "integer", required = true }}, b = {{ type = "integer", default = 2 }} }}

[jobs.st-shell]
title = "Schemathesis shell"
kind = "shell"
argv = [{json.dumps(PYTHON)}, "-c", "print('hello from shell')"]
"""


def _without_proxies(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.lower() not in PROXY_VARS}


@pytest.fixture
def api_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """The server with a python job and a shell job, each with one finished run (so lists and
    details have real rows to check against the schema)."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_TOML)
    no_commands = tmp_path / "no-commands"
    no_commands.mkdir()
    proxies = {"http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "all_proxy": DEAD_PROXY, "no_proxy": "127.0.0.1"}
    guard = {"PATH": str(no_commands), **proxies, **{name.upper(): value for name, value in proxies.items()}}
    with running_server(db_url, jobs_file, LEXYJOBS_API_TOKEN=TOKEN, **guard) as srv:
        for name, body in (("st-add", {"params": {"a": 40}}), ("st-shell", None)):
            status, accepted = srv.call("POST", f"/api/jobs/{name}/run", TOKEN, body)
            assert status == 202, accepted
            wait_for(lambda: srv.call("GET", f"/api/runs/{accepted['run_id']}", TOKEN)[1]["status"] == "succeeded")
        yield srv


def run_schemathesis(base_url: str, report: Path, phases: str) -> subprocess.CompletedProcess[str]:
    """``st run`` (as a child process, in ``report``'s folder with CONFIG as its config file, so
    no config file or example database of the repository is used) against the loopback server."""
    assert base_url.startswith(LOOPBACK), base_url
    config = report.parent / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [PYTHON, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{base_url}/api/openapi.json",
            "--url", f"{base_url}/", "--phases", phases,
            "--header", f"Authorization: Bearer {TOKEN}", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED), "--workers", "1", "--max-redirects", "0", "--request-timeout", "10",
            "--generation-database", "none", "--no-color", "--report", "json", "--report-json-path", str(report)]
    env = {**_without_proxies(dict(os.environ)), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.run(argv, cwd=report.parent, env=env, capture_output=True, text=True, timeout=120)


def totals(report: dict[str, Any]) -> str:
    """One line of the report's totals, quoted in notes."""
    ops, cases = report["operations"], report["test_cases"]
    found = ", ".join(f"{f['code']} {f['title']} x{f['count']} ({'; '.join(f['operations'])})"
                      for f in report["failures"]) or "none"
    return (f"schemathesis seed {report['seed']}: {ops['tested']}/{ops['total']} operations tested, "
            f"{cases['generated']} test cases, {cases['with_failures']} with failures, "
            f"{cases['unique_failures']} unique failures, {len(report['errors'])} errors; failures: {found}")


def failures_section(stdout: str) -> str:
    """The FAILURES part of schemathesis' output (request, response and curl line of each)."""
    start, end = stdout.find("= FAILURES ="), stdout.find("= WARNINGS =")
    return stdout[start:end if end > start else None] if start >= 0 else stdout[-4000:]


def server_errors(stderr: list[str]) -> str:
    """Each ``unhandled error in METHOD PATH`` the server logged, with the exception it ended in."""
    found: list[str] = []
    request: str | None = None
    for line in stderr:
        if line.startswith("unhandled error in "):
            request = line.removeprefix("unhandled error in ").strip()
        elif request and line.strip() and not line[0].isspace() and not line.startswith("Traceback"):
            found.append(f"{request} -> {line.strip()}")
            request = None
    return "\n".join(dict.fromkeys(found)) or "none"


def test_every_api_operation_conforms_to_the_openapi_document(api_server: Server, db_url: str, tmp_path: Path) -> None:
    report_path = tmp_path / "schemathesis.json"
    result = run_schemathesis(api_server.url, report_path, PHASES["sqlite" if db_url.startswith("sqlite") else "postgres"])
    assert report_path.is_file(), f"schemathesis wrote no report (exit {result.returncode}):\n" \
                                  f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    report = json.loads(report_path.read_text())
    print(totals(report))
    assert report["complete"] and report["operations"]["tested"] == report["operations"]["total"] > 0, totals(report)
    assert report["test_cases"]["generated"] > 0
    assert not report["errors"], f"schemathesis errors: {report['errors']}\n{result.stdout[-4000:]}"
    found = {(failure["code"], op) for failure in report["failures"] for op in failure["operations"]}
    message = f"{totals(report)}\n{failures_section(result.stdout)}\nserver errors:\n{server_errors(api_server.stderr)}"
    assert result.returncode == 0 and not found, message
