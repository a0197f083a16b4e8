"""The commands that work on the Flask app (``serve``, ``worker``, ``jobs``, ``runs``, ``show``,
``db``…), loaded by the ``lexyjobs`` entry point (``lexyjobs.cli``) when one of them runs."""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import signal
import sys
import time
import tomllib
from typing import Any, Callable

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from lexyjobs import cli_database, load_problems, registry, runs, schema, store, workers
from lexyjobs.cli import database_problem as _database_problem
from lexyjobs.cli import fail as _fail
from lexyjobs.cli import handle_errors as _handle_errors
from lexyjobs.cli import remember_database
from lexyjobs.durations import format_duration
from lexyjobs.errors import Conflict, InvalidDefinition, LexyjobsError
from lexyjobs.logs import configure_logging
from lexyjobs.runtime import Runtime, current
from lexyjobs.masking import mask_config
from lexyjobs.flow.waiting import waiting_for
from lexyjobs.serialize import run_dict
from lexyjobs.states import RunStatus

log = logging.getLogger("lexyjobs.cli")  # the name the server's log lines have always had


def _lexy() -> Runtime:
    """The app's Runtime for a write command: its database exists (none is ever created here,
    see lexyjobs.cli_database) and its schema is up to date. Only ``serve`` and ``worker`` load job
    definitions from code and the jobs file; other commands use what the database holds (so a
    command run in another folder never imports that folder's jobs.toml)."""
    lj = current()
    remember_database(lj.db.url)
    lj.db = cli_database.for_writing(lj.db)
    return lj


def _reader() -> Runtime:
    """The app's Runtime for a read command: nothing is created or upgraded, and a database
    this process may not write (0444, a read-only folder) is opened read-only."""
    lj = current()
    remember_database(lj.db.url)
    lj.db = cli_database.for_reading(lj.db)
    return lj


def _command(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    def decorate(func: Callable[..., Any]) -> click.Command:
        return click.command(name, **kwargs)(with_appcontext(_handle_errors(func)))
    return decorate


# ---------------------------------------------------------------- processes


def _until_signal(on_stop: Callable[[], None], ready: Callable[[], None] | None = None) -> None:
    """Block until SIGTERM/SIGINT, then call ``on_stop``; a second signal exits at once. ``ready``
    (the "serving on" line) runs once the handlers are in place, so a SIGTERM right after it is graceful."""
    stop = {"requested": False}

    def handler(signum: int, _frame: Any) -> None:
        if stop["requested"]:
            sys.exit(1)
        stop["requested"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        if ready is not None:
            ready()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        on_stop()


@click.command("serve")
@click.option("--host", default=None, help="address to bind (LEXYJOBS_HOST, default 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="port (LEXYJOBS_PORT, default 8080; 0 = any free port)")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="worker threads (LEXYJOBS_WORKERS; 0: run no jobs here)")
@click.option("--queues", default=None, metavar="NAMES",
              help="queues the worker serves, e.g. default,ai:2 (LEXYJOBS_QUEUES; default every queue)")
@with_appcontext
def serve_command(host: str | None, port: int | None, workers: int | None, queues: str | None) -> None:
    """Run the web server, the scheduler and the worker pool in this process."""
    serve(current_app._get_current_object(), host=host, port=port, workers=workers,  # type: ignore[attr-defined]
          queues=queues)


def serve(app: Flask, *, host: str | None = None, port: int | None = None, workers: int | None = None,
          queues: str | None = None) -> None:
    """Bind the port first (a busy port or bad host: one line, exit 2, nothing started or claimed),
    then start the worker pool and the scheduler, then serve until SIGTERM/SIGINT."""
    from lexyjobs import server as http

    lj: Runtime = app.extensions["lexyjobs"]
    if workers is not None:
        lj.settings = dataclasses.replace(lj.settings, workers=workers)
    _serve_queues(lj, queues)
    configure_logging(lj.settings)
    host = host or lj.settings.host
    port = lj.settings.port if port is None else port
    try:
        server = http.listen(app, lj.settings, host, port)
    except http.ListenError as exc:
        _fail(exc.message)
    try:
        lj.start()
    except (LexyjobsError, SQLAlchemyError) as exc:
        server.close()
        if isinstance(exc, LexyjobsError):
            _fail(exc.message)
        _fail(_database_problem(exc), code=1)
    _report_sync(lj)

    def announce() -> None:
        url = f"http://{http.endpoint(host, http.bound_port(server))}"
        database = lj.settings.database_url.split("://")[0]
        log.info("lexyjobs serving on %s (%s, %d worker threads)", url, database, lj.settings.workers,
                 extra={"url": url, "database": database, "workers": lj.settings.workers})

    def stop() -> None:
        log.info("lexyjobs stopping: waiting for running runs…")
        server.close()
        lj.stop()

    _until_signal_serving(server, stop, announce)


def _until_signal_serving(server: Any, on_stop: Callable[[], None], ready: Callable[[], None]) -> None:
    import threading

    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):  # select() on the sockets on_stop closed: expected once stopping
            if not closing.is_set():
                raise

    def stop() -> None:
        closing.set()
        on_stop()

    thread = threading.Thread(target=run, name="lexyjobs-http", daemon=True)
    thread.start()
    _until_signal(stop, ready)


def _report_sync(lj: Runtime) -> None:
    report = lj.sync_report
    if report is None:
        return
    # each rejected definition was logged by registry.sync_jobs ("job definition rejected: …")
    log.info("lexyjobs: %d jobs loaded from code and file%s", len(report.loaded),
             f", {len(report.errors)} rejected" if report.errors else "",
             extra={"loaded": len(report.loaded), "rejected": len(report.errors)})


def _serve_queues(lj: Runtime, queues: str | None) -> None:
    """Apply ``--queues`` over LEXYJOBS_QUEUES; a bad value: one line, exit 2."""
    from lexyjobs.flow.queues import parse_served

    if queues is None:
        return
    try:
        lj.settings = dataclasses.replace(lj.settings, queues=parse_served(queues))
    except ValueError as exc:
        _fail(f"--queues {queues!r} {exc}")


@click.command("worker")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="worker threads (LEXYJOBS_WORKERS)")
@click.option("--queues", default=None, metavar="NAMES",
              help="queues to serve, each with an optional thread cap, e.g. default,ai:2 (LEXYJOBS_QUEUES; "
                   "default every queue)")
@with_appcontext
def worker_command(threads: int | None, queues: str | None) -> None:
    """Claim and execute runs from the shared database (no web server, no scheduler)."""
    lj = current()
    if threads is not None:
        lj.settings = dataclasses.replace(lj.settings, workers=threads)
    _serve_queues(lj, queues)
    configure_logging(lj.settings)
    if lj.settings.workers < 1:
        _fail("a worker needs at least 1 thread: LEXYJOBS_WORKERS is 0 (use --threads N)")
    try:
        lj.start(worker=True, scheduler=False)
    except LexyjobsError as exc:
        _fail(exc.message)
    except SQLAlchemyError as exc:
        _fail(_database_problem(exc), code=1)
    _report_sync(lj)
    name = lj.worker.name if lj.worker else ""
    served = str(lj.settings.queues) if lj.settings.queues else "every queue"
    _until_signal(lj.stop, lambda: log.info("lexyjobs worker %s running %d threads, serving %s", name,
                                            lj.settings.workers, served,
                                            extra={"worker": name, "threads": lj.settings.workers, "queues": served}))


# ---------------------------------------------------------------- jobs


@click.group("jobs")
def jobs_group() -> None:
    """List and manage jobs."""


@jobs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@with_appcontext
@_handle_errors
def jobs_list(as_json: bool) -> None:
    """List jobs: schedule in words, next fire (in the job's timezone) and health."""
    from lexyjobs.db import utcnow
    from lexyjobs.definitions import definition_from_job
    from lexyjobs.health import Health, jobs_health
    from lexyjobs.serialize import health_dict, schedule_summary

    lj = _reader()
    now = utcnow()
    with lj.db.read() as session:
        jobs = store.list_jobs(session)
        problems = load_problems.list_problems(session)
    healths = jobs_health(lj.db, now, stale_after=lj.settings.stale_after)
    items = []
    for j in jobs:
        try:
            definition = definition_from_job(j)
        except InvalidDefinition:
            definition = None
        words, upcoming = schedule_summary(definition, j, now)
        items.append((j, words, upcoming, healths.get(j.name) or Health("unknown", "never ran", 0.0)))
    _warn_about(problems)
    if as_json:
        click.echo(json.dumps([{"name": j.name, "title": j.title, "category": j.category, "kind": j.kind,
                                "source": j.source, "schedule": j.schedule, "enabled": j.enabled, **mask_config(j.spec),
                                "schedule_description": words, "next_fire": upcoming and upcoming.isoformat(),
                                "health": health_dict(health),
                                "problems": [load_problems.problem_dict(p) for p in problems if p.job == j.name]}
                               for j, words, upcoming, health in items], indent=2, default=str))
        return
    rows = []
    for j, words, upcoming, health in items:
        verdict = f"{health.state}: {health.reason}"
        rows.append((j.name, j.kind, j.category, words, upcoming.strftime("%Y-%m-%d %H:%M %Z") if upcoming else "-",
                     j.source, "active" if j.enabled else "paused", verdict if len(verdict) <= 70 else verdict[:69] + "…"))
    _table(("NAME", "KIND", "CATEGORY", "SCHEDULE", "NEXT", "SOURCE", "STATE", "HEALTH"), rows)


def _warn_about(problems: list[Any]) -> None:
    """The definitions the last load rejected, one ``warning:`` line each on stderr (stdout keeps
    the table or the JSON), so the list never looks fine while jobs.toml was not loaded."""
    if problems:
        click.echo(f"warning: {len(problems)} job definition(s) rejected at the last load "
                   f"({problems[0].recorded_at:%Y-%m-%d %H:%M:%S} UTC):", err=True)
    for problem in problems:
        click.echo(f"warning:   {load_problems.describe(problem)}", err=True)


@jobs_group.command("add")
@click.argument("snippet", type=click.File("r"))
@click.option("--replace", is_flag=True, help="update the job if it exists (database jobs only)")
@with_appcontext
@_handle_errors
def jobs_add(snippet: Any, replace: bool) -> None:
    """Create jobs from a TOML ([jobs.<name>] tables) or JSON ({"name": …, …}) file; '-' reads stdin.
    All jobs in the snippet are checked before any is saved."""
    lj = _lexy()
    definitions = _parse_snippet(snippet.read())
    with lj.db.read() as session:
        for name, raw in definitions.items():
            registry.parse_definition(name, raw, source="db")
            row = store.get_job(session, name)
            if row is not None and not row.archived and replace:
                registry.editable_job(session, name)  # ReadOnlyJob for code/file jobs, before anything is saved
            elif row is not None and not row.archived:
                raise Conflict(f"a job named '{name}' already exists (use --replace to update it)",
                               details={"job": name})
    for name, raw in definitions.items():
        with lj.db.read() as session:
            exists = store.get_job(session, name) is not None
        if exists and replace:
            registry.update_job(lj.db, name, raw)
            click.echo(f"updated job {name}")
        else:
            registry.create_job(lj.db, name, raw)
            click.echo(f"created job {name}")


def _parse_snippet(text: str) -> dict[str, dict[str, Any]]:
    stripped = text.strip()
    if stripped.startswith("{") or re.match(r"\[\s*[{\]]", stripped):  # JSON object or list; "[jobs.x]" is TOML
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise LexyjobsError(f"invalid JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        out: dict[str, dict[str, Any]] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidDefinition("?", "name", "each JSON job needs a \"name\"")
            out[item["name"]] = {k: v for k, v in item.items() if k != "name"}
        return out
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LexyjobsError(f"invalid TOML: {exc}") from None
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or not jobs or set(data) - {"jobs"}:
        raise LexyjobsError("the TOML snippet must hold [jobs.<name>] tables and nothing else")
    return jobs


@jobs_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask")
@with_appcontext
@_handle_errors
def jobs_remove(name: str, yes: bool) -> None:
    """Delete a database job and its run history."""
    lj = _lexy()
    if not yes:
        click.confirm(f"Delete job {name} and all its runs?", abort=True)
    registry.delete_job(lj.db, name)
    click.echo(f"deleted job {name}")


def _set_enabled(name: str, enabled: bool) -> None:
    from lexyjobs.db import utcnow

    lj = _lexy()
    with lj.db.write() as session:
        if not store.set_job_enabled(session, name, enabled, now=utcnow()):
            raise registry.JobNotFound(name)
    click.echo(f"{'resumed' if enabled else 'paused'} job {name}")


@jobs_group.command("pause")
@click.argument("name")
@with_appcontext
@_handle_errors
def jobs_pause(name: str) -> None:
    """Pause a job: its schedule stops firing; it can still be run by hand."""
    _set_enabled(name, False)


@jobs_group.command("resume")
@click.argument("name")
@with_appcontext
@_handle_errors
def jobs_resume(name: str) -> None:
    """Resume a paused job."""
    _set_enabled(name, True)


# ---------------------------------------------------------------- runs


@_command("runs")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), default=None)
@click.option("--job", default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=20)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def runs_command(status: str | None, job: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first."""
    from lexyjobs.db import utcnow

    lj = _reader()
    with lj.db.read() as session:
        items = store.list_runs(session, status=status, job=job, limit=limit)
        waiting = waiting_for(session, items, now=utcnow(), stale_after=lj.settings.stale_after)
    if as_json:
        click.echo(json.dumps([run_dict(r, waiting[r.id].as_dict() if r.id in waiting else None) for r in items],
                              indent=2, default=str))
        return
    _table(("ID", "JOB", "STATUS", "TRIGGER", "ATTEMPT", "CREATED", "WAITING FOR", "ERROR"),
           [(r.id, r.job_name, r.status, r.trigger, f"{r.attempt}/{r.max_attempts}",
             r.created_at.strftime("%Y-%m-%d %H:%M:%S"), waiting[r.id].short if r.id in waiting else "",
             (r.error or "")[:60]) for r in items])


@_command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def show_command(run_id: int, as_json: bool) -> None:
    """Show one run: status, times, params, result or error, events and log."""
    from lexyjobs.db import utcnow

    lj = _reader()
    run = runs.get_run(lj.db, run_id)
    with lj.db.read() as session:
        events = store.run_events(session, run_id)
        text, _, trimmed = store.read_log(session, run_id)
        waiting = waiting_for(session, [run], now=utcnow(), stale_after=lj.settings.stale_after).get(run.id)
    data = run_dict(run, waiting.as_dict() if waiting else None)
    data["attempt"] = f"{run.attempt}/{run.max_attempts}"
    if as_json:
        data["events"] = [{"at": e.at, "from": e.from_status, "to": e.to_status, "attempt": e.attempt, "note": e.note}
                          for e in events]
        data["log"] = text
        click.echo(json.dumps(data, indent=2, default=str))
        return
    for key in ("id", "job", "status", "trigger", "created_by", "attempt", "priority", "created_at", "scheduled_for",
                "started_at", "finished_at", "queue_seconds", "processing_seconds", "worker", "progress", "error",
                "cancel_note"):
        if data.get(key) not in (None, ""):
            click.echo(f"{key:>18}: {data[key]}")
    if waiting:
        click.echo(f"{'waiting_for':>18}: {waiting.message}")
    for key in ("params", "result", "details"):
        if data.get(key):
            click.echo(f"{key:>18}: {json.dumps(data[key], default=str)}")
    if run.traceback:
        click.echo("\n" + run.traceback)
    click.echo("\nevents:")
    for e in events:
        click.echo(f"  {e.at:%H:%M:%S} {e.from_status or '-'} -> {e.to_status} (attempt {e.attempt}) {e.note or ''}")
    if text:
        click.echo("\nlog:" + (f" [… {trimmed} earlier characters trimmed …]" if trimmed else ""))
        click.echo(text.rstrip("\n"))


@_command("workers")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def workers_command(as_json: bool) -> None:
    """List the live worker processes (heartbeat within LEXYJOBS_STALE_AFTER) and their current runs."""
    from lexyjobs.db import utcnow

    lj = _reader()
    with lj.db.read() as session:
        found = workers.live_workers(session, now=utcnow(), stale_after=lj.settings.stale_after)
    if as_json:
        click.echo(json.dumps([w.as_dict() for w in found], indent=2))
        return
    now = utcnow()
    _table(("NAME", "HOST", "PID", "VERSION", "THREADS", "STARTED", "HEARTBEAT", "RUNNING"),
           [(w.name, w.host, w.pid, w.version, w.threads, w.started_at.strftime("%Y-%m-%d %H:%M:%S"),
             f"{format_duration(max(0.0, (now - w.heartbeat_at).total_seconds()))} ago",
             _current_runs(w)) for w in found])


def _current_runs(worker: workers.WorkerInfo, shown: int = 5) -> str:
    """``3: 41 (nightly), 42 (report), 43 (report)``; past ``shown`` runs, "+N more"."""
    if not worker.runs:
        return "0"
    listed = ", ".join(f"{run.id} ({run.job})" for run in worker.runs[:shown])
    more = f" +{len(worker.runs) - shown} more" if len(worker.runs) > shown else ""
    return f"{len(worker.runs)}: {listed}{more}"


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@with_appcontext
@_handle_errors
def db_upgrade() -> None:
    """Create or upgrade the schema (the server also does this at start); the one command that
    creates a database."""
    db = current().db
    try:
        cli_database.check_exists(db)
    except cli_database.DatabaseMissing:
        schema.upgrade(db)
        click.echo(f"created the database {cli_database.describe(db.url)}")
        return
    schema.upgrade(db)
    click.echo("database schema is up to date")


@db_group.command("recount")
@with_appcontext
@_handle_errors
def db_recount() -> None:
    """Rebuild the run counters the dashboard reads from the runs themselves (after restoring or
    editing the runs table by hand)."""
    from lexyjobs import run_counts

    with _lexy().db.write() as session:
        run_counts.recount(session)
        total = sum(run_counts.totals(session).values())
    click.echo(f"counted {total} runs")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
