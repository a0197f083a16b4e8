"""``lexyjobs serve`` binds its port before anything else starts (issue 14, A2): a busy port or a
host that is not this machine's is one stderr line and exit code 2, and the queued runs in the
database are left exactly as they were (not claimed, no attempt, no event). Real processes on
real databases, the port held by a real socket."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import PYTHON, ROOT, subprocess_env
from sqlalchemy import func, select

from lexyjobs import runs
from lexyjobs.db import Database
from lexyjobs.models import Run, RunEvent, WorkerProcess


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def queue_state(db: Database) -> tuple[list[tuple[int, str, int, str | None]], int, int]:
    """Every run's (id, status, attempt, worker), the number of run events and of registered workers."""
    with db.read() as session:
        rows = [(r.id, str(r.status), r.attempt, r.worker) for r in session.scalars(select(Run).order_by(Run.id))]
        events = session.scalar(select(func.count()).select_from(RunEvent)) or 0
        workers = session.scalar(select(func.count()).select_from(WorkerProcess)) or 0
    return rows, events, workers


def serve(db_url: str, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    settings = {"LEXYJOBS_JOBS_FILE": "", "LEXYJOBS_HOST": "127.0.0.1", "LEXYJOBS_POLL_INTERVAL": "0.05",
                "LEXYJOBS_ADMIN_PASSWORD": "admin-password-1", **env}
    return subprocess.run([PYTHON, *argv], cwd=ROOT, env=subprocess_env(db_url, **settings), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def queued(db: Database, make_job: Callable[..., str], tmp_path: Path) -> list[int]:
    """Three queued shell runs that would leave a mark in tmp_path if they ever started."""
    make_job("mark", kind="shell", argv=["sh", "-c", f"echo ran >> {tmp_path / 'ran.txt'}"], max_concurrency=0)
    return [runs.enqueue(db, "mark") for _ in range(3)]


@pytest.mark.parametrize("argv", [["app.py", "--port", "{port}"], ["-m", "lexyjobs", "serve", "--port", "{port}"]],
                         ids=["python app.py", "python -m lexyjobs serve"])
def test_a_busy_port_is_one_line_and_exit_2_with_nothing_claimed(db, db_url, queued, held_port, tmp_path, argv):
    before = queue_state(db)
    assert [status for _, status, _, _ in before[0]] == ["queued"] * 3

    done = serve(db_url, [arg.format(port=held_port) for arg in argv])

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{held_port}" in lines[0] and "already in use" in lines[0]
    assert queue_state(db) == before  # still queued, attempt 0, no worker, no event, no worker registered
    assert not (tmp_path / "ran.txt").exists()


@pytest.mark.parametrize(("host", "says"), [
    ("10.255.255.254", "10.255.255.254 is not an address of this machine"),
    ("no-such-host.invalid", "does not resolve"),
])
def test_a_host_that_is_not_this_machines_is_one_line_and_exit_2_with_nothing_claimed(db, db_url, queued, tmp_path,
                                                                                       host, says):
    before = queue_state(db)

    done = serve(db_url, ["app.py", "--port", "0"], LEXYJOBS_HOST=host)

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and says in lines[0] and "LEXYJOBS_HOST" in lines[0], done.stderr
    assert queue_state(db) == before
    assert not (tmp_path / "ran.txt").exists()
