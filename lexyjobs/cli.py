"""The ``lexyjobs`` command line (also ``python -m lexyjobs`` and ``flask --app app …``, where
``run`` is Flask's dev server, so enqueue with ``flask --app app enqueue NAME``).

This module is the console script's entry point and stays light: each command's module is
imported only when that command runs (``LazyGroup``), so ``lexyjobs run NAME`` — a one-shot
enqueue, often called from cron or a shell script — loads neither Flask nor the panel, the
scheduler or Alembic (``lexyjobs.cli_runs``), while ``serve``, ``jobs``, ``users``… build the
Flask app as before (``lexyjobs.cli_commands``)."""
from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import click

if TYPE_CHECKING:
    from flask import Flask

# command name -> "module:attribute" of its click command, imported when the command is used
COMMANDS = {
    "serve": "lexyjobs.cli_commands:serve_command", "worker": "lexyjobs.cli_commands:worker_command",
    "jobs": "lexyjobs.cli_commands:jobs_group", "run": "lexyjobs.cli_runs:run_command",
    "runs": "lexyjobs.cli_commands:runs_command", "show": "lexyjobs.cli_commands:show_command",
    "cancel": "lexyjobs.cli_runs:cancel_command", "retry": "lexyjobs.cli_runs:retry_command",
    "workers": "lexyjobs.cli_commands:workers_command", "users": "lexyjobs.cli_accounts:users_group",
    "tokens": "lexyjobs.cli_accounts:tokens_group", "db": "lexyjobs.cli_commands:db_group",
    "prune": "lexyjobs.cli_maintenance:prune_command", "alerts": "lexyjobs.cli_maintenance:alerts_group",
    "queues": "lexyjobs.cli_queues:queues_command", "queue": "lexyjobs.cli_queues:queue_group",
    "category": "lexyjobs.cli_queues:category_group", "backfill": "lexyjobs.cli_backfill:backfill_group",
}
# the commands that work without the Flask app (they open the database themselves, lexyjobs.cli_runs)
WITHOUT_APP = frozenset({"run", "cancel", "retry", "backfill"})
_DATABASE_URL = "lexyjobs.database_url"  # click context meta: the database the command works on


def load_command(name: str) -> click.Command:
    """The click command ``name`` of ``COMMANDS``, importing its module."""
    module, attribute = COMMANDS[name].split(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use (click's documented lazy-loading
    pattern): ``lexyjobs --help`` loads them all, ``lexyjobs run`` only its own."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return load_command(cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """lexyjobs: job scheduler, queue and control panel. Settings come from LEXYJOBS_* variables."""
    _working_directory_on_path()
    if ctx.invoked_subcommand in WITHOUT_APP:
        return
    from flask.cli import ScriptInfo

    from lexyjobs import create_app

    # only the web server signs cookies: other commands never leave a secret_key file behind
    serving = ctx.invoked_subcommand == "serve"
    ctx.obj = ScriptInfo(create_app=lambda: create_app(create_secret_key=serving))


def _working_directory_on_path() -> None:
    """Put the current folder first on ``sys.path``, as ``python -m lexyjobs`` does, so that the
    ``lexyjobs`` console script (whose ``sys.path`` starts with its own bin folder) imports the
    modules of ``LEXYJOBS_IMPORTS`` and python jobs' ``func`` from there too."""
    try:
        folder = os.getcwd()
    except OSError:  # the folder was deleted under us: nothing to import from it
        return
    if folder not in sys.path and "" not in sys.path:
        sys.path.insert(0, folder)


def init_app(app: Flask) -> None:
    """Make the commands available as ``flask --app app …`` (``enqueue`` instead of ``run``)."""
    for name in COMMANDS:
        app.cli.add_command(load_command(name), name="enqueue" if name == "run" else name)


def init_host_app(app: Flask) -> None:
    """On a host app, the commands form one group: ``flask --app host:app lexyjobs worker|jobs|runs|…``."""
    group = click.Group("lexyjobs", help="lexyjobs: the jobs, runs, workers and users of this app.")
    for name in COMMANDS:
        group.add_command(load_command(name), name=name)
    app.cli.add_command(group)


# ---------------------------------------------------------------- shared by the commands


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: message`` on stderr, then exit with ``code`` (2: bad input, 1: the database)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def remember_database(url: str) -> None:
    """Note the database the running command works on, for the "in the database …" of its errors."""
    click.get_current_context().meta[_DATABASE_URL] = url


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn lexyjobs and database errors into one ``error:`` line and an exit code."""
    from sqlalchemy.exc import SQLAlchemyError

    from lexyjobs import cli_database
    from lexyjobs.errors import LexyjobsError, NotFound

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except cli_database.DatabaseMissing as exc:
            fail(exc.message, code=1)
        except NotFound as exc:  # "no job named 'x'" says where it looked: the wrong folder shows
            fail(f"{exc.message} in the database {cli_database.describe(_database_url())}")
        except LexyjobsError as exc:
            fail(exc.message)
        except SQLAlchemyError as exc:
            fail(database_problem(exc), code=1)
    return wrapper


def _database_url() -> str:
    url = click.get_current_context().meta.get(_DATABASE_URL)
    if url is None:  # a command of the Flask app that did not say (lexyjobs.cli_commands)
        from lexyjobs.runtime import current

        url = current().db.url
    return str(url)


def database_problem(exc: Exception) -> str:
    return f"database error: {type(exc).__name__}: {str(exc).splitlines()[0]}"
