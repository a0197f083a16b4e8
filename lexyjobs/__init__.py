"""lexyjobs: a self-hosted job scheduler, queue and live control panel in one Python process."""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Mapping

from lexyjobs.context import JobFailed, RunCanceled, RunContext

if TYPE_CHECKING:
    from flask import Flask

    from lexyjobs.client import Client, ClientError
    from lexyjobs.code_api import cancel, get_run, list_runs, prune, retry, stats
    from lexyjobs.code_jobs import job
    from lexyjobs.enqueueing import InvalidArgument, enqueue
    from lexyjobs.errors import Conflict, InvalidParams, JobNotFound, LexyjobsError, RunNotFound
    from lexyjobs.extension import Lexyjobs
    from lexyjobs.handle import Run, RunTimeout
    from lexyjobs.host_session import OtherDatabase
    from lexyjobs.hostauth import HostUser

__version__ = "0.1.0"

# Public names imported on first use, name -> module: ``import lexyjobs`` stays light (no Flask,
# SQLAlchemy, APScheduler…; tests/test_package.py checks it in a fresh interpreter), so a module
# that only needs RunContext (say, the child process of an ``isolation = "process"`` job) or a host
# app's settings module imports nothing more. Add a new public name here and to ``__all__`` (and
# under TYPE_CHECKING above, for mypy).
_LAZY = {
    "job": "lexyjobs.code_jobs",
    "enqueue": "lexyjobs.enqueueing", "InvalidArgument": "lexyjobs.enqueueing",
    "Run": "lexyjobs.handle", "RunTimeout": "lexyjobs.handle",
    "get_run": "lexyjobs.code_api", "list_runs": "lexyjobs.code_api", "stats": "lexyjobs.code_api",
    "cancel": "lexyjobs.code_api", "retry": "lexyjobs.code_api", "prune": "lexyjobs.code_api",
    "OtherDatabase": "lexyjobs.host_session",
    "LexyjobsError": "lexyjobs.errors", "JobNotFound": "lexyjobs.errors", "RunNotFound": "lexyjobs.errors",
    "InvalidParams": "lexyjobs.errors", "Conflict": "lexyjobs.errors",
    "Client": "lexyjobs.client", "ClientError": "lexyjobs.client",
    "Lexyjobs": "lexyjobs.extension", "HostUser": "lexyjobs.hostauth",  # (the extension imports Flask)
}
__all__ = ["create_app", "RunContext", "RunCanceled", "JobFailed", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lexyjobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def create_app(config: Mapping[str, Any] | None = None, *, create_secret_key: bool = True) -> Flask:
    """Build the standalone Flask app: the ``Lexyjobs`` extension at ``/`` plus what only a
    standalone app owns (its session cookie, secret key, reverse-proxy handling, error pages for
    every URL, the commands on ``app.cli``). ``config`` overrides environment settings by field
    name (``{"database_url": ..., "workers": 2}``). Starts no threads and opens no connection; the
    only side effect is creating the secret key file on the very first start (see
    config.secret_key), which ``create_secret_key=False`` (the CLI's commands other than
    ``serve``) leaves out."""
    from flask import Flask

    from lexyjobs import cli, guard, web
    from lexyjobs.config import load_settings, secret_key
    from lexyjobs.extension import Lexyjobs

    settings = load_settings(config)
    app = Flask(__name__, static_folder=None, template_folder=None)
    app.config["SECRET_KEY"] = secret_key(settings, create=create_secret_key)
    app.extensions["lexyjobs_standalone"] = True
    guard.init_standalone(app, settings)
    web.register_error_handlers(app)
    Lexyjobs(app, config=config)
    cli.init_app(app)
    logging.getLogger("lexyjobs").setLevel(logging.INFO)
    return app
