"""``/api/queues``: each named queue's state and figures, pause and resume; and
``/api/categories/<category>/pause|resume``: every job of a category in one action."""
from __future__ import annotations

from flask import Response, jsonify

from lexyjobs import actions
from lexyjobs.api import bp
from lexyjobs.db import utcnow
from lexyjobs.errors import NotFound
from lexyjobs.flow import queue_state
from lexyjobs.guard import actor
from lexyjobs.runtime import current


@bp.get("/queues")
def list_queues() -> Response:
    """Every known queue: paused or not, queued and due runs, oldest wait, running runs,
    throughput and the live processes serving it."""
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        found = queue_state.overview(session, now=now, stale_after=lexy.settings.stale_after)
    return jsonify(queues=[q.as_dict(now) for q in found], total=len(found))


@bp.post("/queues/<queue_name:name>/pause")
def pause_queue(name: str) -> Response:
    return _set_queue(name, True)


@bp.post("/queues/<queue_name:name>/resume")
def resume_queue(name: str) -> Response:
    return _set_queue(name, False)


def _set_queue(name: str, paused: bool) -> Response:
    lexy, now = current(), utcnow()
    changed = actions.set_queue_paused(lexy.db, actor(), name, paused, stale_after=lexy.settings.stale_after)
    with lexy.db.read() as session:
        found = {q.name: q for q in queue_state.overview(session, now=now, stale_after=lexy.settings.stale_after)}
    if name not in found:  # deleted in between: say so rather than answer with nothing
        raise NotFound(f"no queue named '{name}'", details={"queue": name})
    return jsonify(queue=found[name].as_dict(now), changed=changed)


@bp.post("/categories/<path:category>/pause")
def pause_category(category: str) -> Response:
    jobs = actions.set_category_paused(current().db, actor(), category, True)
    return jsonify(category=category, paused=True, changed=jobs)


@bp.post("/categories/<path:category>/resume")
def resume_category(category: str) -> Response:
    jobs = actions.set_category_paused(current().db, actor(), category, False)
    return jsonify(category=category, paused=False, changed=jobs)
