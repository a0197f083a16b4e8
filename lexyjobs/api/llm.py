"""``/api/llm/usage``: what ``openai`` jobs used per UTC day (``llm_usage_days``), of every job or
of one, over the last 1–90 days."""
from __future__ import annotations

from flask import Response, jsonify

from lexyjobs import store
from lexyjobs.api import bp
from lexyjobs.api.inputs import query_int, query_text
from lexyjobs.db import utcnow
from lexyjobs.errors import JobNotFound
from lexyjobs.llm import usage_reads
from lexyjobs.runtime import current


@bp.get("/llm/usage")
def llm_usage() -> Response:
    """Per-day rows (every day of the window, zeros included, oldest first) and their totals;
    costs per currency. ``job``: a job that exists (archived ones too: their history stays)."""
    days = query_int("days", usage_reads.DEFAULT_DAYS, 1, usage_reads.MAX_DAYS)
    job = query_text("job")
    with current().db.read() as session:
        if job is not None and store.get_job(session, job) is None:
            raise JobNotFound(job)
        found = usage_reads.window(session, now=utcnow(), days=days, job=job)
    return jsonify(days=days, job=job, first_day=found.first_day, last_day=found.last_day,
                   rows=[{"day": day, **usage.as_dict()} for day, usage in found.days.items()],
                   totals=found.total.as_dict())
