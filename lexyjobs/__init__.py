"""lexyjobs: a self-hosted job scheduler, queue and live control panel in one Python process."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from lexyjobs.context import JobFailed, RunCanceled, RunContext

if TYPE_CHECKING:
    from flask import Flask

    from lexyjobs.code_jobs import job
    from lexyjobs.extension import Lexyjobs
    from lexyjobs.hostauth import HostUser

__all__ = ["create_app", "job", "Lexyjobs", "HostUser", "RunContext", "RunCanceled", "JobFailed"]
__version__ = "0.1.0"



def __getattr__(name: str) -> Any:
    """``job`` (``lexyjobs.code_jobs``) is imported on first use: a module that only needs RunContext
    (say, in the child process of an ``isolation = "process"`` job) imports nothing more."""
    if name == "job":
        from lexyjobs.code_jobs import job
        return job
    if name == "Lexyjobs":  # (imports Flask: only on use)
        from lexyjobs.extension import Lexyjobs
        return Lexyjobs
    if name == "HostUser":
        from lexyjobs.hostauth import HostUser
        return HostUser
    raise AttributeError(f"module 'lexyjobs' has no attribute {name!r}")


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
