"""Web routes of the core: ``/healthz`` and a read-only overview page. The panel and the JSON
API arrive in their own blueprints."""
from __future__ import annotations

from flask import Blueprint, Flask, jsonify, render_template

from lexyjobs import store
from lexyjobs.runtime import current

bp = Blueprint("core", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """200 when the database answers and the started threads are alive, else 503."""
    checks = current().health()
    ok = checks["database"] and all(v is not False for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503


@bp.get("/")
def overview():  # type: ignore[no-untyped-def]
    db = current().db
    with db.read() as session:
        jobs = store.list_jobs(session)
        runs = store.list_runs(session, limit=50)
        counts = store.count_runs_by_status(session)
    return render_template("overview.html", jobs=jobs, runs=runs, counts=counts)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
