"""The SQLite database and its -wal and -shm files hold password hashes, params and logs: they
are created 0600 whatever the umask (a real ``python app.py`` and a real CLI process), and a file
found readable by everyone is narrowed to 0600 at start with one log line."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from conftest import PYTHON, subprocess_env, wait_for
from liveserver import running_server

from lexyjobs.db import Database

SIDE_FILES = ("jobs.db", "jobs.db-wal", "jobs.db-shm")


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which SQLite alone would create 0644 files; child processes inherit it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(folder: Path) -> dict[str, str]:
    return {name: f"{stat.S_IMODE((folder / name).stat().st_mode):04o}" for name in SIDE_FILES
            if (folder / name).exists()}


def test_the_server_creates_the_database_and_its_wal_and_shm_private(tmp_path: Path, usual_umask: None) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("")
    with running_server(f"sqlite:///{tmp_path / 'jobs.db'}", jobs_file) as server:
        assert server.get("/healthz")[0] == 200
        found = wait_for(lambda: m if len(m := modes(tmp_path)) == 3 else None)
        assert found == {name: "0600" for name in SIDE_FILES}
        assert not any("readable by every user" in line for line in server.stderr)  # a new file: nothing to say


def test_the_cli_creates_a_private_database(tmp_path: Path, usual_umask: None) -> None:
    env = subprocess_env(f"sqlite:///{tmp_path / 'jobs.db'}", LEXYJOBS_JOBS_FILE="")
    done = subprocess.run([PYTHON, "-m", "lexyjobs", "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = modes(tmp_path)
    assert found["jobs.db"] == "0600" and set(found.values()) == {"0600"}, found


def test_a_world_readable_database_is_made_private_at_start_with_one_line(tmp_path: Path, usual_umask: None) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("")
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with running_server(url, jobs_file) as server:  # leaves jobs.db (-wal and -shm go at a clean stop)
        server.get("/healthz")
    for name in SIDE_FILES:  # as an older lexyjobs, or a copy, left them; -wal and -shm too
        path = tmp_path / name
        if not path.exists():
            path.write_bytes(b"")
        os.chmod(path, 0o644)
    with running_server(url, jobs_file) as server:
        assert server.get("/healthz")[0] == 200
        assert modes(tmp_path) == {name: "0600" for name in SIDE_FILES}
        said = [line for line in server.stderr if "readable by every user" in line]
    assert len(said) == 1 and "jobs.db 0644" in said[0] and "now 0600" in said[0], said


def test_a_database_shared_with_its_group_on_purpose_is_left_alone(tmp_path: Path, usual_umask: None) -> None:
    path = tmp_path / "jobs.db"
    Database(f"sqlite:///{path}").engine.connect().close()
    os.chmod(path, 0o640)
    db = Database(f"sqlite:///{path}")
    db.engine.connect().close()
    db.dispose()
    assert modes(tmp_path)["jobs.db"] == "0640"


def test_the_sqlite_path_of_a_url(tmp_path: Path) -> None:
    from lexyjobs.db import sqlite_file
    assert sqlite_file(f"sqlite:///{tmp_path}/jobs.db") == f"{tmp_path}/jobs.db"
    assert sqlite_file("sqlite:///relative.db") == "relative.db"
    assert sqlite_file(f"sqlite:///file:{tmp_path}/jobs.db?mode=ro&uri=true") is None  # SQLite opens URIs itself
