"""lexyjobs: a self-hosted job scheduler, queue and live control panel in one Python process."""
from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

from lexyjobs.context import JobFailed, RunCanceled, RunContext
from lexyjobs.registry import job

__all__ = ["create_app", "job", "RunContext", "RunCanceled", "JobFailed"]
__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app. ``config`` overrides environment settings by field name
    (``{"database_url": ..., "workers": 2}``). Starts no threads and opens no connection."""
    from lexyjobs import cli, runtime, web
    from lexyjobs.config import load_settings
    from lexyjobs.runtime import Lexyjobs

    settings = load_settings(config)
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config["SECRET_KEY"] = settings.secret_key or secrets.token_hex(32)
    app.extensions["lexyjobs"] = Lexyjobs(settings)
    web.init_app(app)
    cli.init_app(app)
    runtime.init_app(app)
    logging.getLogger("lexyjobs").setLevel(logging.INFO)
    return app
