"""``lexyjobs queues``, ``lexyjobs queue pause|resume NAME`` and ``lexyjobs category pause|resume
NAME``: named queues and whole categories of jobs from the command line. The CLI is trusted (it
reaches the database directly), so it acts as an admin, and each change is written to the audit
log as ``cli:<OS user>``, like ``lexyjobs users``. Loaded by lexyjobs.cli when one of its
commands runs; uses the helpers of lexyjobs.cli_commands."""
from __future__ import annotations

import getpass
import json

import click
from flask.cli import with_appcontext

from lexyjobs import actions
from lexyjobs.accounts import Identity
from lexyjobs.cli import handle_errors as _handle_errors
from lexyjobs.cli_commands import _lexy, _reader, _table
from lexyjobs.db import utcnow
from lexyjobs.durations import format_duration
from lexyjobs.flow import queue_state


def _actor() -> actions.Actor:
    try:
        user = getpass.getuser() or "cli"
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (e.g. a bare container uid)
        user = "cli"
    return actions.Actor(Identity(user, "admin", "cli"))


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@with_appcontext
@_handle_errors
def queues_command(as_json: bool) -> None:
    """List the named queues: paused, queued (due), oldest wait, running, throughput, workers."""
    lj, now = _reader(), utcnow()
    with lj.db.read() as session:
        found = queue_state.overview(session, now=now, stale_after=lj.settings.stale_after)
    if as_json:
        click.echo(json.dumps([q.as_dict(now) for q in found], indent=2))
        return
    rows = []
    for q in found:
        wait = q.oldest_wait(now)
        state = f"paused by {q.paused_by}" if q.paused else "active"
        served = ", ".join(name if cap is None else f"{name} (max {cap})" for name, cap in q.workers) or "none"
        rows.append((q.name, state, q.queued, q.due, "-" if wait is None else format_duration(wait), q.running,
                     f"{q.per_minute:g}", served))
    _table(("QUEUE", "STATE", "QUEUED", "DUE", "OLDEST WAIT", "RUNNING", "DONE/MIN", "WORKERS"), rows)


queue_group: click.Group = click.Group("queue", help="Pause and resume a named queue.")


@queue_group.command("pause")
@click.argument("name")
@with_appcontext
@_handle_errors
def queue_pause(name: str) -> None:
    """Pause a queue: no process claims its runs until it is resumed (schedules still fire and
    enqueue; the runs wait). Runs already running finish."""
    lj = _lexy()
    changed = actions.set_queue_paused(lj.db, _actor(), name, True, stale_after=lj.settings.stale_after)
    click.echo(f"paused queue {name}" if changed else f"queue {name} was already paused")


@queue_group.command("resume")
@click.argument("name")
@with_appcontext
@_handle_errors
def queue_resume(name: str) -> None:
    """Resume a paused queue: its waiting runs are claimed at once."""
    lj = _lexy()
    changed = actions.set_queue_paused(lj.db, _actor(), name, False, stale_after=lj.settings.stale_after)
    click.echo(f"resumed queue {name}" if changed else f"queue {name} was not paused")


category_group: click.Group = click.Group("category", help="Pause or resume every job of a category.")


@category_group.command("pause")
@click.argument("name")
@with_appcontext
@_handle_errors
def category_pause(name: str) -> None:
    """Pause the schedules of every job of category NAME (they can still be run by hand)."""
    _say_category("paused", name, actions.set_category_paused(_lexy().db, _actor(), name, True))


@category_group.command("resume")
@click.argument("name")
@with_appcontext
@_handle_errors
def category_resume(name: str) -> None:
    """Resume every job of category NAME."""
    _say_category("resumed", name, actions.set_category_paused(_lexy().db, _actor(), name, False))


def _say_category(verb: str, name: str, changed: list[str]) -> None:
    if not changed:
        click.echo(f"every job of category {name} was already {verb}")
        return
    click.echo(f"{verb} {len(changed)} job{'s' if len(changed) != 1 else ''} of category {name}: {', '.join(changed)}")
