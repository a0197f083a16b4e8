"""``/api/stats``, ``/api/health``, ``/api/workers``, ``/api/alerts``, ``/api/audit``, ``/api/me`` and
``/api/openapi.json``."""
from __future__ import annotations

from collections import Counter

from flask import Response, jsonify

from lexyjobs import audit, queries, store, workers
from lexyjobs.alerts import history
from lexyjobs.api import bp
from lexyjobs.api.inputs import page_and_limit, pagination, query_choices, query_datetime, query_text
from lexyjobs.api.openapi import document
from lexyjobs.db import utcnow
from lexyjobs.guard import actor, identity
from lexyjobs.health import jobs_health
from lexyjobs.runtime import current
from lexyjobs.serialize import audit_dict, signal_dict

HEALTH_STATES = ("ok", "warning", "error", "unknown")


@bp.get("/stats")
def stats() -> Response:
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        runs = queries.status_counts(session)
        queue = queries.queue_stats(session, now=now, postgres=lexy.db.is_postgres, hours=lexy.finished_hours)
        jobs = store.list_jobs(session)
    return jsonify(runs=runs, queue=queue, jobs={"total": len(jobs), "paused": sum(not j.enabled for j in jobs),
                                                 "scheduled": sum(j.schedule is not None for j in jobs)})


@bp.get("/health")
def health() -> Response:
    """Each job's health and the counts per state, plus the process checks of /healthz."""
    lexy, now = current(), utcnow()
    healths = jobs_health(lexy.db, now, stale_after=lexy.settings.stale_after)
    with lexy.db.read() as session:
        jobs = {j.name: j for j in store.list_jobs(session)}
    counts: Counter[str] = Counter(h.state for h in healths.values())
    checks = lexy.health()
    return jsonify(
        status="ok" if checks["database"] and all(v is not False for v in checks.values()) else "unavailable",
        checks=checks, counts={state: counts[state] for state in HEALTH_STATES},
        jobs=[{"name": name, "title": jobs[name].title, "category": jobs[name].category, "state": h.state,
               "reason": h.reason, "signals": [signal_dict(s) for s in h.signals]} for name, h in sorted(healths.items()) if name in jobs])


@bp.get("/workers")
def live_workers() -> Response:
    """The live worker processes (heartbeat within LEXYJOBS_STALE_AFTER) with their current runs."""
    lexy = current()
    with lexy.db.read() as session:
        found = workers.live_workers(session, now=utcnow(), stale_after=lexy.settings.stale_after)
    return jsonify(workers=[w.as_dict() for w in found], total=len(found))


@bp.get("/audit")
def audit_log() -> Response:
    actor().require("admin")
    page, limit = page_and_limit()
    found = audit.search(current().db, actor=query_text("actor"), action=query_text("action"),
                         target=query_text("target"), since=query_datetime("since"), until=query_datetime("until"),
                         limit=limit, offset=(page - 1) * limit)
    return jsonify(entries=[audit_dict(e) for e in found.entries], pagination=pagination(page, limit, found.total))


@bp.get("/alerts")
def alerts() -> Response:
    """The alerts sent (or tried), newest first, with what each target answered."""
    page, limit = page_and_limit()
    found = history.search(current().db, job=query_text("job"), events=query_choices("event", history.EVENTS),
                           statuses=query_choices("status", history.STATUSES), limit=limit, offset=(page - 1) * limit)
    return jsonify(alerts=[history.alert_dict(a) for a in found.alerts], pagination=pagination(page, limit, found.total))


@bp.get("/me")
def me() -> Response:
    who = identity()
    return jsonify(name=who.name, role=who.role, kind=who.kind)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
