"""``lexyjobs run NAME``, ``lexyjobs cancel ID`` and ``lexyjobs retry ID``: one-shot commands
that a shell script or a crontab calls, so they start fast. They need no Flask app: they read
the settings from the environment (``LEXYJOBS_*``, as ``create_app`` does) and open the database
themselves; under ``flask --app app enqueue`` (or a host app's ``flask lexyjobs run``) they use
that app's settings and database instead. The enqueue itself is the one every other caller
uses (``runs.submit``)."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import click

from lexyjobs import cancels, cli_database, runs
from lexyjobs.cli import fail, handle_errors, remember_database
from lexyjobs.config import Settings, load_settings
from lexyjobs.db import Database
from lexyjobs.durations import format_duration, parse_duration
from lexyjobs.flow.unique import idempotency_key
from lexyjobs.states import TERMINAL, RunStatus


@dataclass
class Target:
    """What a one-shot command works on."""

    settings: Settings
    db: Database


def writable_target() -> Target:
    """The settings and database of the command, the database checked and its schema brought up
    to date (``cli_database.for_writing``: none is ever created here)."""
    target = _app_target() or Target(*_from_environment())
    remember_database(target.db.url)
    target.db = cli_database.for_writing(target.db)
    return target


def _app_target() -> Target | None:
    """The Flask app's settings and database when the command runs under ``flask --app …``
    (its ``ScriptInfo`` is in the click context); None under the ``lexyjobs`` script."""
    flask_cli = sys.modules.get("flask.cli")  # not imported: no Flask app around (and none is wanted)
    info = click.get_current_context().find_object(flask_cli.ScriptInfo) if flask_cli else None
    if info is None:
        return None
    runtime = info.load_app().extensions["lexyjobs"]
    return Target(runtime.settings, runtime.db)


def _from_environment() -> tuple[Settings, Database]:
    settings = load_settings()
    return settings, Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)


@click.command("run")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="a run parameter (repeatable)")
@click.option("--priority", type=click.IntRange(0, 10), default=None, help="0–10 (default: the job's)")
@click.option("--delay", default=None, metavar="DURATION", help="start no earlier than this from now, e.g. 10m")
@click.option("--wait", is_flag=True, help="wait for the outcome; exit 1 unless it succeeds")
@click.option("--timeout", default=None, metavar="DURATION", help="with --wait: give up after this long")
@click.option("--key", default=None, metavar="KEY",
              help="idempotency key: repeated within LEXYJOBS_IDEMPOTENCY_WINDOW, it returns the first run")
@handle_errors
def run_command(name: str, params: tuple[str, ...], priority: int | None, delay: str | None, wait: bool,
                timeout: str | None, key: str | None) -> None:
    """Enqueue a run of job NAME (the server or a worker executes it). A repeated --key, or a
    duplicate of a unique job's active run, prints that run instead of enqueueing another."""
    target = writable_target()
    key_of = None if key is None else idempotency_key(key, target.settings.idempotency_window, field="--key")
    values: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param '{item}' must look like KEY=VALUE")
        values[key] = value
    scheduled_for = None
    try:
        if delay:
            scheduled_for = datetime.now(timezone.utc) + timedelta(seconds=parse_duration(delay))
        limit = parse_duration(timeout) if timeout else None
    except ValueError as exc:
        fail(str(exc))
    done = runs.submit(target.db, name, values, priority=priority, scheduled_for=scheduled_for, trigger="manual",
                       created_by="cli", params_from_strings=True, key=key_of)
    run_id = done.run_id
    click.echo(done.existing.message if done.existing else f"run {run_id} queued ({name})")
    if wait:
        sys.exit(_wait_for(target.db, run_id, limit))


def _wait_for(db: Database, run_id: int, limit: float | None) -> int:
    started = time.monotonic()
    while True:
        run = runs.get_run(db, run_id)
        if run.status in TERMINAL:
            break
        if limit is not None and time.monotonic() - started > limit:
            click.echo(f"run {run_id} still {run.status} after {format_duration(limit)}", err=True)
            return 124
        time.sleep(0.1)
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0
    click.echo(f"run {run_id} {run.status} after {run.attempt} attempt(s) in {format_duration(took)}")
    if run.status == RunStatus.SUCCEEDED:
        if run.result is not None:
            click.echo(json.dumps(run.result, indent=2, default=str))
        return 0
    click.echo(f"error: {run.error}", err=True)
    return 1


@click.command("cancel")
@click.argument("run_id", type=int)
@handle_errors
def cancel_command(run_id: int) -> None:
    """Cancel a queued run (at once) or a running one (its worker stops it; if it finishes first
    it keeps its outcome, noted). The request is recorded as a run event "by cli"."""
    outcome = runs.cancel(writable_target().db, run_id, by="cli")
    click.echo(f"run {run_id}: {outcome}: {cancels.meaning(outcome)}")


@click.command("retry")
@click.argument("run_id", type=int)
@handle_errors
def retry_command(run_id: int) -> None:
    """Enqueue a new run with the same job and params as a finished run."""
    done = runs.submit_retry(writable_target().db, run_id, by="cli")
    click.echo(done.existing.message if done.existing else f"run {done.run_id} queued (retry of {run_id})")
