"""The control panel: server-rendered pages with htmx partials, behind the login (``guard``).

Each page lives in its own module and adds its routes to the one ``panel`` blueprint. Routes are
short: read the query, call ``lexyjobs.queries`` / ``lexyjobs.actions``, render the page — or only
its partial for an htmx request (``htmx.render``). Polled partials answer 204 when nothing changed
(``htmx.unchanged``), so an open page costs one cheap query per poll."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, g

bp = Blueprint("panel", __name__)

# (label, endpoint, least role); an entry whose page is not registered is not shown.
NAV: list[tuple[str, str, str]] = [
    ("Dashboard", "lexyjobs.panel.dashboard", "viewer"),
    ("Jobs", "lexyjobs.panel.jobs", "viewer"),
    ("Runs", "lexyjobs.panel.runs", "viewer"),
    ("Timeline", "lexyjobs.panel.timeline", "viewer"),
    ("Queues", "lexyjobs.panel.queues", "viewer"),
    ("Pipelines", "lexyjobs.panel.pipelines", "viewer"),
    ("Workers", "lexyjobs.panel.workers", "viewer"),
    ("Alerts", "lexyjobs.panel.alerts", "viewer"),
    ("Settings", "lexyjobs.panel.settings", "admin"),
    ("Audit log", "lexyjobs.core.audit_log", "admin"),
]


def _navigation() -> dict[str, Any]:
    who = getattr(g, "identity", None)
    items = [(label, endpoint) for label, endpoint, role in NAV
             if endpoint in current_app.view_functions and who is not None and who.can(role)]
    return {"nav_items": items, "nav_endpoints": set(current_app.view_functions)}


def init_app(app: Flask, parent: Blueprint) -> None:
    from lexyjobs.panel import (alert_targets, alerts, backfills, dashboard, events, formatting, job_detail, job_form,  # noqa: F401
                                jobs, pipelines, queues, run_detail, run_now, runs, settings, timeline,
                                workers)  # (each page module adds its routes to bp)

    parent.register_blueprint(bp)
    parent.context_processor(_navigation)
    formatting.init_app(app)
    events.init_app(app)
