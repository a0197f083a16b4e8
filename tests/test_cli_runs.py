"""``lexyjobs run``, ``cancel`` and ``retry`` (lexyjobs.cli_runs) start light: in a real child
process they enqueue, cancel and retry exactly as before (messages, params, counters, a repeated
key) without importing Flask, the panel, the scheduler or Alembic (issue 18: a shell script's
enqueue). Under ``flask --app``, they use the app's database."""
from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import subprocess_env

from lexyjobs import run_counts, store
from lexyjobs.db import utcnow

# Runs the CLI's entry point, then names (on stderr) the heavy modules the command imported.
CLI_THEN_MODULES = """
import sys
from lexyjobs.cli import main
try:
    main(sys.argv[1:])
finally:
    heavy = ("flask", "werkzeug", "jinja2", "alembic", "apscheduler", "requests", "lexyjobs.runtime",
             "lexyjobs.panel", "lexyjobs.scheduler", "lexyjobs.alerts.alerter", "lexyjobs.cli_commands")
    print("imported:", ",".join(name for name in heavy if name in sys.modules), file=sys.stderr)
"""


def light_cli(db_url: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI_THEN_MODULES, *args], cwd=folder,
                          env=subprocess_env(db_url, LEXYJOBS_JOBS_FILE=""), capture_output=True, text=True,
                          timeout=120)


def heavy_modules(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.splitlines()[-1].removeprefix("imported:").strip()


def test_run_enqueues_with_params_and_key_without_loading_the_app(db_url: str, db: Any, make_job: Any,
                                                                   tmp_path: Path) -> None:
    make_job("greet", kind="shell", argv=["echo", "hi"],
             params={"who": {"type": "string", "required": True}, "n": {"type": "integer", "default": 1}})

    done = light_cli(db_url, tmp_path, "run", "greet", "-p", "who=ann", "-p", "n=3", "--key", "nightly-1",
                     "--delay", "10m")
    assert done.returncode == 0, done.stderr
    assert heavy_modules(done) == ""
    assert done.stdout.strip() == "run 1 queued (greet)"
    with db.read() as session:
        run = store.get_run(session, 1)
        assert run is not None
        assert (run.status, run.params, run.trigger, run.created_by) == ("queued", {"who": "ann", "n": 3}, "manual", "cli")
        assert run.scheduled_for > utcnow() + timedelta(minutes=9)
        assert run_counts.totals(session, "greet") == {"queued": 1}

    again = light_cli(db_url, tmp_path, "run", "greet", "-p", "who=ann", "-p", "n=3", "--key", "nightly-1")
    assert again.returncode == 0, again.stderr
    assert "run 1" in again.stdout and "queued (greet)" not in again.stdout  # the first run answers
    with db.read() as session:
        assert run_counts.totals(session, "greet") == {"queued": 1}


def test_run_refuses_bad_params_and_unknown_jobs_as_before(db_url: str, db: Any, make_job: Any,
                                                           tmp_path: Path) -> None:
    make_job("greet", kind="shell", argv=["echo", "hi"], params={"n": {"type": "integer", "required": True}})

    bad = light_cli(db_url, tmp_path, "run", "greet", "-p", "n=many")
    assert bad.returncode == 2 and "error: param 'n': must be a whole number" in bad.stderr
    unknown = light_cli(db_url, tmp_path, "run", "nope")
    assert unknown.returncode == 2 and "error: no job named 'nope' in the database" in unknown.stderr
    assert heavy_modules(bad) == heavy_modules(unknown) == ""
    with db.read() as session:
        assert run_counts.totals(session) == {}


def test_cancel_and_retry_work_without_loading_the_app(db_url: str, db: Any, make_job: Any, tmp_path: Path) -> None:
    make_job("hello", kind="shell", argv=["echo", "hi"])
    assert light_cli(db_url, tmp_path, "run", "hello").returncode == 0

    canceled = light_cli(db_url, tmp_path, "cancel", "1")
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.startswith("run 1: canceled:") and heavy_modules(canceled) == ""
    retried = light_cli(db_url, tmp_path, "retry", "1")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == "run 2 queued (retry of 1)" and heavy_modules(retried) == ""
    with db.read() as session:
        assert run_counts.totals(session, "hello") == {"canceled": 1, "queued": 1}


HOST_APP = """
from flask import Flask
from lexyjobs import Lexyjobs

app = Flask(__name__)
app.config["LEXYJOBS_DATABASE_URL"] = {url!r}
Lexyjobs(app, url_prefix="/jobs")
"""


def test_under_flask_the_commands_use_the_apps_database(db_url: str, db: Any, make_job: Any, tmp_path: Path) -> None:
    make_job("hello", kind="shell", argv=["echo", "hi"])
    (tmp_path / "host.py").write_text(HOST_APP.format(url=db_url))
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # the environment's database: not the app's

    done = subprocess.run([sys.executable, "-m", "flask", "--app", "host:app", "lexyjobs", "run", "hello"],
                          cwd=tmp_path, env=subprocess_env(elsewhere), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "run 1 queued (hello)"
    with db.read() as session:
        assert run_counts.totals(session, "hello") == {"queued": 1}
    assert not (tmp_path / "elsewhere.db").exists()
