"""``POST /api/jobs/<name>/backfill``, ``GET /api/backfills/<id>``, ``POST /api/backfills/<id>/cancel``
(lexyjobs.backfill)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify, url_for

from lexyjobs import actions, backfill
from lexyjobs.api import bp
from lexyjobs.api.inputs import InvalidInput, json_object
from lexyjobs.guard import actor
from lexyjobs.runtime import current

FIELDS = ("start", "end", "per", "concurrency", "include_succeeded")


@bp.post("/jobs/<job_name:name>/backfill")
def start_backfill(name: str) -> tuple[Response, int, dict[str, str]]:
    body = json_object(FIELDS)
    start, end = _time(body, "start"), _time(body, "end")
    per = body.get("per", "fire")
    concurrency = body.get("concurrency", 1)
    include = body.get("include_succeeded", False)
    if not isinstance(per, str):
        raise InvalidInput("per", f"must be {' or '.join(backfill.PER)}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise InvalidInput("concurrency", f"must be a whole number from 1 to {backfill.MAX_CONCURRENCY}")
    if not isinstance(include, bool):
        raise InvalidInput("include_succeeded", "must be true or false")
    started = actions.start_backfill(current().db, actor(), name, start, end, per=per, concurrency=concurrency,
                                     include_succeeded=include)
    status_url = url_for("lexyjobs.api.get_backfill", backfill_id=started.backfill_id)
    return (jsonify(backfill_id=started.backfill_id, run_ids=started.run_ids,
                    skipped=[at.isoformat() for at in started.skipped], status_url=status_url),
            202, {"Location": status_url})


@bp.get("/backfills/<int(max=2147483647):backfill_id>")
def get_backfill(backfill_id: int) -> Response:
    return jsonify(backfill_dict(backfill.progress(current().db, backfill_id)))


@bp.post("/backfills/<int(max=2147483647):backfill_id>/cancel")
def cancel_backfill(backfill_id: int) -> Response:
    canceled, asked = actions.cancel_backfill(current().db, actor(), backfill_id)
    return jsonify(backfill_id=backfill_id, canceled=canceled, cancel_requested=asked)


def backfill_dict(found: backfill.Progress) -> dict[str, Any]:
    row = found.backfill
    return {"id": row.id, "job": row.job_name, "start": row.range_start.isoformat(), "end": row.range_end.isoformat(),
            "per": row.per, "concurrency": row.concurrency, "total": row.total, "skipped": row.skipped,
            "created_by": row.created_by, "created_at": row.created_at.isoformat(),
            "canceled_at": row.canceled_at.isoformat() if row.canceled_at else None,
            "counts": found.counts, "done": found.done, "finished": found.finished, "progress": found.describe()}


def _time(body: dict[str, Any], field: str) -> datetime:
    value = body.get(field)
    if not isinstance(value, str):
        raise InvalidInput(field, "is required: an ISO 8601 date-time, e.g. 2026-11-24T00:00:00Z")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 date-time, e.g. 2026-11-24T00:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
