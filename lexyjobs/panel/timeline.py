"""Panel page: the timeline (everyone). Every job a row, its runs as bars over the last hour,
day or week (``?window=1h|24h|7d``), the next hours' scheduled fires as ticks. Server-rendered
SVG: ``lexyjobs.timeline.runs`` reads only the window, ``lexyjobs.timeline.layout`` places it.
The chart polls on its own timer (time moves the now line even when no run changes) and answers
204 until a run changes or the clock has moved about a pixel."""
from __future__ import annotations

import hashlib
from typing import Any

from flask import Response, request, url_for

from lexyjobs import queries, store
from lexyjobs.api.inputs import BadInput
from lexyjobs.db import utcnow
from lexyjobs.definitions import JobDefinition, definition_from_job
from lexyjobs.errors import InvalidDefinition
from lexyjobs.models import Job
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import no_change, render, unchanged
from lexyjobs.runtime import current
from lexyjobs.serialize import schedule_summary
from lexyjobs.timeline import fires
from lexyjobs.timeline.layout import (CAP, DEFAULT_WINDOW, LABEL_WIDTH, TICK_CAP, WINDOWS, Frame, RowInput, Window,
                                      layout)
from lexyjobs.timeline.runs import JobRuns, window_runs
from lexyjobs.timeline.svg import rows_markup

# seconds between polls: a run can change what a bar of the hour shows within seconds, of the week
# hardly within half a minute (a busy week's chart is a megabyte; it is not sent every 2 s)
POLL = {"1h": 2, "24h": 10, "7d": 30}


@bp.get("/timeline")
def timeline() -> str | Response:
    """The timeline of ``?window=`` (default 24h)."""
    window, now = _window(), utcnow()
    frame = Frame.of(window, now)
    with current().db.read() as session:
        stamp = _stamp(queries.activity_stamp(session), window, frame)
        if unchanged(stamp):
            return no_change()
        jobs = store.list_jobs(session)
        found = window_runs(session, [job.name for job in jobs], start=frame.start, end=now, per_job=CAP)
    chart = layout([_row(job, found[job.name], frame) for job in jobs], frame, window)
    links = _links(frame)
    return render("lexyjobs/timeline.html", "lexyjobs/_partials/_timeline_live.html", chart=chart, window=window,
                  windows=list(WINDOWS.values()), stamp=stamp, label_width=LABEL_WIDTH, links=links,
                  body=rows_markup(chart.rows, links["run"], lambda job: url_for("lexyjobs.panel.runs", job=job,
                                                                                  since=links["since"])),
                  poll=POLL[window.key])


def _window() -> Window:
    key = request.args.get("window") or DEFAULT_WINDOW
    if key not in WINDOWS:
        raise BadInput("window", f"must be one of {', '.join(WINDOWS)}")
    return WINDOWS[key]


def _stamp(activity: str, window: Window, frame: Frame) -> str:
    """Changes with any run or job, and whenever the now line has moved about a pixel."""
    pixel = (frame.end - frame.start).total_seconds() / frame.width
    tick = int(frame.now.timestamp() // max(pixel, 1.0))
    return hashlib.sha1(f"{activity}|{window.key}|{tick}".encode()).hexdigest()[:16]


def _row(job: Job, runs: JobRuns, frame: Frame) -> RowInput:
    definition: JobDefinition | None
    try:
        definition = definition_from_job(job)
    except InvalidDefinition:
        definition = None
    words, _ = schedule_summary(definition, job, frame.now)
    caption = "paused" if not job.enabled else ("invalid definition" if definition is None else words)
    upcoming = fires.upcoming(definition, job.enabled, frame.now, frame.end, TICK_CAP)
    return RowInput(job.name, job.title, job.category, caption, runs.spans, runs.more, upcoming, runs.more_capped)


def _links(frame: Frame) -> dict[str, Any]:
    """URL prefixes, built once: a url_for per bar would cost more than the rest of the page."""
    run = url_for("lexyjobs.panel.run_detail", run_id=1)
    since = frame.start.replace(tzinfo=None, microsecond=0).isoformat(timespec="minutes")
    return {"run": run[:-1], "since": since}
