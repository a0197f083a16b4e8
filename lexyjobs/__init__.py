"""lexyjobs: a self-hosted job scheduler, queue and live control panel in one Python process."""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Mapping

from lexyjobs.context import JobFailed, RunCanceled, RunContext

if TYPE_CHECKING:
    from flask import Flask

    from lexyjobs.code_jobs import job

__all__ = ["create_app", "job", "RunContext", "RunCanceled", "JobFailed"]
__version__ = "0.1.0"

# Public names imported on first use, name -> module: ``import lexyjobs`` stays light (no Flask,
# SQLAlchemy, APScheduler…; tests/test_package.py checks it in a fresh interpreter), so a module
# that only needs RunContext (say, the child process of an ``isolation = "process"`` job) or a host
# app's settings module imports nothing more. Add a new public name here and to ``__all__`` (and
# under TYPE_CHECKING above, for mypy).
_LAZY: dict[str, str] = {
    "job": "lexyjobs.code_jobs",
}


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
    """Build the Flask app. ``config`` overrides environment settings by field name
    (``{"database_url": ..., "workers": 2}``). Starts no threads and opens no connection; the only
    side effect is creating the secret key file on the very first start (see config.secret_key),
    which ``create_secret_key=False`` (the CLI's commands other than ``serve``) leaves out."""
    from flask import Flask

    from lexyjobs import api, cli, guard, login, panel, routing, runtime, web
    from lexyjobs.config import load_settings, secret_key
    from lexyjobs.resources import STATIC, TEMPLATES
    from lexyjobs.runtime import Runtime

    settings = load_settings(config)
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC))
    app.config["SECRET_KEY"] = secret_key(settings, create=create_secret_key)
    app.extensions["lexyjobs"] = Runtime(settings)
    runtime.set_default(app.extensions["lexyjobs"])
    routing.init_app(app)
    guard.init_app(app, settings)
    web.init_app(app)
    login.init_app(app)
    panel.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    runtime.init_app(app)
    logging.getLogger("lexyjobs").setLevel(logging.INFO)
    return app
