"""``lexyjobs.Client`` (issue 15 §3) against a real ``python app.py`` server on 127.0.0.1, with
real API tokens: the verbs, and the API's JSON errors as typed exceptions."""
from __future__ import annotations

import socket
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYTHON, ROOT
from lexyjobs import accounts, client
from lexyjobs.client import Client
from lexyjobs.db import Database
from liveserver import E2E_TOKEN, Server, running_server

pytestmark = pytest.mark.slow

JOBS_TOML = """
[jobs.add]
kind = "python"
func = "jobfuncs:add"
params = { a = { type = "integer", required = true }, b = { type = "integer", default = 2 } }

[jobs.slow]
kind = "python"
func = "jobfuncs:sleepy"
params = { seconds = { type = "number", default = 30 } }

[jobs.broken]
kind = "python"
func = "jobfuncs:boom"
max_attempts = 1
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_TOML)
    with running_server(db_url, jobs_file) as srv:
        yield srv


def test_the_client_runs_waits_lists_cancels_and_retries(server: Server) -> None:
    api = Client(server.url, E2E_TOKEN, timeout=10)
    run = api.run("add", {"a": 40})
    assert run.status == "queued" and run.status_url == f"{server.url}/api/runs/{run.id}"
    done = api.wait(run.id, timeout=20)
    assert done.succeeded and done.result == 42 and done.to_dict()["job"] == "add"

    broken = api.run("broken").wait(timeout=20)
    assert broken.status == "failed" and "boom" in (broken.error or "")
    again = broken.retry()
    assert again.to_dict()["retry_of"] == broken.id and api.wait(again.id, 20).status == "failed"

    later = api.run("add", {"a": 1}, priority=9, run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert api.get(later.id).to_dict()["priority"] == 9 and api.cancel(later.id) == "canceled"
    with pytest.raises(client.Conflict) as conflict:
        api.cancel(later.id)
    assert conflict.value.status == 409 and conflict.value.code == "conflict"

    assert [r.id for r in api.list(job="add", limit=5)] == [later.id, run.id]
    assert [r.id for r in api.list(status=["failed"])] == [again.id, broken.id]
    assert api.stats()["runs"]["canceled"] == 1

    slow = api.run("slow")
    with pytest.raises(client.WaitTimeout) as waited:
        api.wait(slow.id, timeout=0.5)
    assert isinstance(waited.value, TimeoutError) and waited.value.code == "timeout"
    assert slow.cancel() in ("canceled", "cancel requested")
    assert slow.wait(timeout=20).status == "canceled"


def test_api_errors_become_typed_exceptions(server: Server, db_url: str) -> None:
    api = Client(server.url, E2E_TOKEN)
    with pytest.raises(client.ValidationError) as invalid:
        api.run("add", {"a": "forty"})
    assert invalid.value.status == 422 and invalid.value.code == "invalid_params" and "a" in invalid.value.details
    assert isinstance(invalid.value, client.InvalidRequest)
    with pytest.raises(client.NotFound) as missing:
        api.run("no-such-job")
    assert missing.value.status == 404 and "no-such-job" in missing.value.message
    with pytest.raises(client.NotFound):
        api.get(999_999)
    with pytest.raises(client.InvalidRequest) as bad:
        api.list(status="pending")
    assert bad.value.status == 400 and "status" in bad.value.message
    with pytest.raises(client.Unauthorized) as unauthorized:
        Client(server.url, "not-a-token").get(1)
    assert unauthorized.value.code == "unauthorized"

    db = Database(db_url)
    try:
        viewer = accounts.create_token(db, "client-viewer", "viewer")
    finally:
        db.dispose()
    with pytest.raises(client.Forbidden) as forbidden:
        Client(server.url, viewer).run("add", {"a": 1})
    assert forbidden.value.status == 403 and forbidden.value.details["required_role"] == "operator"
    assert Client(server.url, viewer).list(limit=1) == []  # reading is allowed


def test_an_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(client.ConnectionFailed) as failed:
        Client(f"http://127.0.0.1:{port}", "token", timeout=2).get(1)
    assert failed.value.status is None and f"127.0.0.1:{port}" in failed.value.message


def test_the_client_module_imports_only_requests() -> None:
    probe = ("import sys, lexyjobs.client; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'flask', 'apscheduler', 'psycopg'}))")
    done = subprocess.run([PYTHON, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
