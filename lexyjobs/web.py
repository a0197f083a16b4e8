"""Web routes of the core: ``/healthz``, the audit page, htmx's static files and the error pages.
The panel is in ``lexyjobs.panel``, the API in ``lexyjobs.api``, ``/metrics`` in ``lexyjobs.metrics``;
``lexyjobs.guard`` decides who sees what."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from lexyjobs import audit
from lexyjobs.api.inputs import page_and_limit, pagination, query_text
from lexyjobs.errors import LexyjobsError
from lexyjobs.guard import actor, public
from lexyjobs.runtime import current

bp = Blueprint("core", __name__)
log = logging.getLogger(__name__)
# htmx 2 as shipped by the django-js-lib-htmx wheel (plain static files; Django is not imported).
HTMX_DIR = Path(importlib.util.find_spec("js_lib_htmx").origin or "").parent / "static" / "htmx"  # type: ignore[union-attr]
htmx = Blueprint("htmx", __name__, static_folder=str(HTMX_DIR), static_url_path="/vendor/htmx")


@bp.get("/healthz")
@public
def healthz() -> tuple[Response, int]:
    """200 when the database answers and the started threads are alive, else 503."""
    checks = current().health()
    ok = checks["database"] and all(v is not False for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503


@bp.get("/audit")
def audit_log() -> str:
    """Admins: the audit log, filtered by actor / action / target, 50 a page."""
    actor().require("admin")
    page, limit = page_and_limit()
    filters = {name: query_text(name) for name in ("actor", "action", "target")}
    found = audit.search(current().db, actor=filters["actor"], action=filters["action"], target=filters["target"],
                         limit=limit, offset=(page - 1) * limit)
    return render_template("lexyjobs/audit.html", entries=found.entries, filters=filters,
                           pagination=pagination(page, limit, found.total))


def _wants_json() -> bool:
    api = current_app.extensions["lexyjobs_extension"].url_prefix + "/api"
    return (request.blueprint == "lexyjobs.api" or request.path.startswith(api + "/") or request.path == api
            or request.accept_mimetypes.best == "application/json")


def _error_response(status: int, code: str, message: str, details: object = None) -> tuple[Response | str, int]:
    if _wants_json():
        return jsonify(error={"code": code, "message": message, "details": details}), status
    return render_template("lexyjobs/error.html", status=status, message=message), status


def _lexyjobs_error(exc: LexyjobsError) -> tuple[Response | str, int]:
    return _error_response(exc.status_code, exc.code, exc.message, exc.details)


def _http_error(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400:
        return exc
    body, status = _error_response(exc.code, (exc.name or "error").lower().replace(" ", "_"),
                                   exc.description or exc.name or "error")
    response = make_response(body, status)
    for name, value in exc.get_headers():
        if name in ("Allow", "Retry-After"):
            response.headers[name] = value
    return response


def _unexpected(exc: Exception) -> tuple[Response | str, int]:
    log.exception("unhandled error in %s %s", request.method, request.path)
    return _error_response(500, "internal_error", "something went wrong on the server; the details are in its log")


def init_app(app: Flask, parent: Blueprint) -> None:
    from lexyjobs import metrics

    parent.register_blueprint(bp)
    parent.register_blueprint(htmx)
    metrics.init_app(app, parent)  # GET /metrics (Prometheus)
    register_error_handlers(parent)


def register_error_handlers(target: Flask | Blueprint) -> None:
    """Our error pages and JSON errors: on lexyjobs' blueprint, and app-wide for the standalone app
    (its 404/405 for unknown URLs too)."""
    target.register_error_handler(LexyjobsError, _lexyjobs_error)
    target.register_error_handler(HTTPException, _http_error)
    target.register_error_handler(Exception, _unexpected)
