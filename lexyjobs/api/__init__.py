"""The JSON API under ``/api`` (bearer tokens only; see ``lexyjobs.guard``). Routes are thin:
they read input strictly (``inputs``), call ``lexyjobs.actions`` or the read queries, and return
``lexyjobs.serialize`` data. Errors always have the shape ``{"error": {code, message, details}}``."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from werkzeug.routing import BaseConverter, IntegerConverter

from lexyjobs.definitions import NAME_PATTERN

bp = Blueprint("api", __name__, url_prefix="/api")


class RunIdConverter(IntegerConverter):
    """A run id: a whole number that fits the database's 64-bit key (bigger ones are 404)."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, max=2**63 - 1)


class JobNameConverter(BaseConverter):
    """A job name as definitions allow it (other text is 404 without touching the database)."""

    regex = NAME_PATTERN.pattern


def init_app(app: Flask) -> None:
    from lexyjobs.api import jobs, runs, system  # noqa: F401  (they add their routes to bp)

    app.url_map.converters.update(run_id=RunIdConverter, job_name=JobNameConverter)
    app.register_blueprint(bp)
