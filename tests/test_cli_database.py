"""Which database the CLI works on (lexyjobs.cli_database), through the real ``lexyjobs`` console
script and ``python -m lexyjobs`` run in temp folders: a command typed in the wrong folder creates
nothing (no jobs.db, no secret_key) and says which database it looked for; a database this
process may not write (file 0444, a read-only folder) still serves the read commands."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from conftest import PYTHON, ROOT
from sqlalchemy import create_engine, inspect

LEXYJOBS = str(Path(PYTHON).parent / "lexyjobs")
NOBODY = 65534
READ_COMMANDS = [["jobs", "list"], ["runs"], ["show", "1"], ["workers"], ["users", "list"], ["tokens", "list"],
                 ["alerts", "list"], ["prune", "--dry-run"], ["jobs", "list", "--json"]]
WRITE_COMMANDS = [["run", "nightly"], ["jobs", "pause", "nightly"], ["cancel", "1"], ["retry", "1"],
                  ["tokens", "create", "--name", "ci", "--role", "viewer"], ["prune"],
                  ["users", "add", "bob", "--role", "viewer", "--password-stdin"]]
JOB = '[jobs.nightly]\nkind = "shell"\nargv = ["echo", "hi"]\n'


@pytest.fixture
def folder() -> Iterator[Path]:
    """An empty folder any user may enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="lexyjobs-cli-"))
    path.chmod(0o755)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def cli(folder: Path, *args: str, module: bool = False, user: int | None = None,
        stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``folder`` with no LEXYJOBS_* setting: the default ``sqlite:///jobs.db``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
    command = [PYTHON, "-m", "lexyjobs", *args] if module else [LEXYJOBS, *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd=folder, env={**clean, "HOME": str(folder), **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_a_read_command_in_a_folder_without_database_creates_nothing_and_names_the_path(
        folder: Path, args: list[str]) -> None:
    result = cli(folder, *args)
    assert result.returncode == 1
    assert f"no database at {folder / 'jobs.db'}" in one_line_error(result)
    assert sorted(p.name for p in folder.iterdir()) == []  # no jobs.db, no secret_key


@pytest.mark.parametrize("args", WRITE_COMMANDS, ids=" ".join)
def test_a_write_command_refuses_a_missing_database_naming_it(folder: Path, args: list[str]) -> None:
    result = cli(folder, *args, module=True, stdin="a-long-password\n")
    assert result.returncode == 1
    error = one_line_error(result)
    assert f"no database at {folder / 'jobs.db'}" in error and "lexyjobs db upgrade" in error
    assert sorted(p.name for p in folder.iterdir()) == []


def test_db_upgrade_is_the_command_that_creates_a_database_and_it_says_so(folder: Path) -> None:
    created = cli(folder, "db", "upgrade")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"created the database {folder / 'jobs.db'}"
    assert "secret_key" not in {p.name for p in folder.iterdir()}
    again = cli(folder, "db", "upgrade")
    assert again.stdout.strip() == "database schema is up to date"


def test_every_not_found_names_the_database_it_looked_in(folder: Path) -> None:
    assert cli(folder, "db", "upgrade").returncode == 0
    where = f"in the database {folder / 'jobs.db'}"
    for args in (["run", "nightly"], ["show", "7"], ["cancel", "7"], ["jobs", "pause", "nightly"],
                 ["alerts", "test", "--job", "nightly"], ["users", "remove", "bob", "--yes"],
                 ["tokens", "revoke", "ci"]):
        result = cli(folder, *args, module=True)
        assert result.returncode != 0 and where in one_line_error(result), (args, result.stderr)


def _database_with_a_run(folder: Path) -> None:
    assert cli(folder, "db", "upgrade").returncode == 0
    assert cli(folder, "jobs", "add", "-", stdin=JOB).returncode == 0
    queued = cli(folder, "run", "nightly")
    assert queued.returncode == 0 and queued.stdout.startswith("run 1 queued"), queued.stderr


def _as_another_user(folder: Path) -> int | None:
    """root reads every file whatever its mode: run the CLI as nobody then (files owned by root)."""
    if os.geteuid() != 0:
        return None
    if shutil.which("setpriv") is None:
        pytest.skip("running as root: a read-only database needs another user, and setpriv is missing")
    return NOBODY


@pytest.mark.parametrize("what", ["file 0444", "read-only folder"])
def test_a_read_only_database_serves_the_read_commands(folder: Path, what: str) -> None:
    _database_with_a_run(folder)
    for path in folder.iterdir():
        path.chmod(0o444)
    if what == "read-only folder":
        folder.chmod(0o555)
    before = sorted(p.name for p in folder.iterdir())
    user = _as_another_user(folder)
    listed = cli(folder, "jobs", "list", user=user)
    assert listed.returncode == 0, listed.stderr
    assert "nightly" in listed.stdout
    shown = cli(folder, "show", "1", user=user, module=True)
    assert shown.returncode == 0 and "status: queued" in shown.stdout, shown.stderr
    for args in READ_COMMANDS:
        result = cli(folder, *args, user=user)
        assert result.returncode == 0, (args, result.stderr)
    if what == "read-only folder":
        assert sorted(p.name for p in folder.iterdir()) == before
    refused = cli(folder, "run", "nightly", user=user)  # writing cannot work: one line, no traceback
    assert refused.returncode == 1 and "database error" in one_line_error(refused)


def test_a_read_command_on_a_postgres_schema_without_tables_creates_none(pg_schema_url: str, folder: Path) -> None:
    result = cli(folder, "jobs", "list", env={"LEXYJOBS_DATABASE_URL": pg_schema_url})
    assert result.returncode == 1
    assert "no lexyjobs tables in the database postgresql" in one_line_error(result)
    engine = create_engine(pg_schema_url)
    with engine.connect() as connection:
        assert inspect(connection).get_table_names() == []
    engine.dispose()
    assert sorted(p.name for p in folder.iterdir()) == []


def test_the_console_script_is_the_one_this_checkout_installs() -> None:
    assert Path(LEXYJOBS).is_file(), f"{LEXYJOBS}: pip install -r requirements.txt installs it"
    assert str(ROOT) in subprocess.run([PYTHON, "-c", "import lexyjobs; print(lexyjobs.__file__)"],
                                       capture_output=True, text=True, check=True).stdout
