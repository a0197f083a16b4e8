"""The JSON API under ``/api`` (bearer tokens only; see ``lexyjobs.guard``). Routes are thin:
they read input strictly (``inputs``), call ``lexyjobs.actions`` or the read queries, and return
``lexyjobs.serialize`` data. Errors always have the shape ``{"error": {code, message, details}}``."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")


def init_app(parent: Blueprint) -> None:
    from lexyjobs.api import backfills, jobs, llm, queues, runs, system  # noqa: F401  (they add their routes to bp)

    parent.register_blueprint(bp)
