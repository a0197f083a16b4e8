"""The dashboard: run counts, job health, throughput charts, queue times, recent failures,
upcoming fires and, once openai jobs have used any, the last 14 days' LLM usage."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from flask import Response
from sqlalchemy.orm import Session

from lexyjobs import queries, store
from lexyjobs.db import utcnow
from lexyjobs.definitions import InvalidDefinition, definition_from_job
from lexyjobs.finished_hours import FinishedHours
from lexyjobs.health import jobs_health
from lexyjobs.llm import usage_reads
from lexyjobs.panel import bp
from lexyjobs.panel.charts import Chart, bucket_keys, throughput_chart
from lexyjobs.panel.htmx import due_args, no_change, render, unchanged, wants_partial
from lexyjobs.panel.llm_charts import WIDE, cost_text, usage_view
from lexyjobs.panel.run_now import one_click
from lexyjobs.queries import RunFilter
from lexyjobs.runtime import current
from lexyjobs.serialize import schedule_summary

HEALTH_STATES = ("ok", "warning", "error", "unknown")
RECENT_FAILURES = 8
UPCOMING = 8


@bp.get("/")
def dashboard() -> str | Response:
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        stamp = queries.activity_stamp(session)
        if unchanged(stamp):
            return no_change()
        counts = queries.status_counts(session)
        queue = queries.queue_stats(session, now=now, postgres=lexy.db.is_postgres, hours=lexy.finished_hours)
        failures = queries.search_runs(session, RunFilter(statuses=("failed",)), limit=RECENT_FAILURES)
        jobs = store.list_jobs(session)
        charts = _charts(session, now, postgres=lexy.db.is_postgres, hours=lexy.finished_hours)
        llm = None if wants_partial() else _llm_usage(session, now)  # outside the polled part
    healths = jobs_health(lexy.db, now, stale_after=lexy.settings.stale_after)
    health: Counter[str] = Counter(h.state for h in healths.values())
    signaled = [(job, healths[job.name]) for job in jobs if job.name in healths and healths[job.name].signals]
    return render("lexyjobs/dashboard.html", "lexyjobs/_partials/_dashboard_live.html", stamp=stamp, counts=counts, queue=queue,
                  failures=failures, health={s: health[s] for s in HEALTH_STATES}, signaled=signaled, jobs=jobs,
                  upcoming=_upcoming(jobs, now), charts=charts, now=now, one_click=_one_click(jobs),
                  titles={job.name: job.title for job in jobs}, llm=llm,
                  due=due_args(h.changes_at for h in healths.values()))


def _charts(session: Any, now: datetime, *, postgres: bool, hours: FinishedHours) -> dict[str, Chart]:
    """Finished runs per hour over 24 hours and per day over 7, both from one read of the week's
    hourly tallies (the day's hours are among them)."""
    days = bucket_keys(now, hourly=False)
    week = hours.since(session, datetime.fromisoformat(days[0][0]).replace(tzinfo=timezone.utc), now=now,
                       postgres=postgres)
    return {"24 hours": throughput_chart(queries.buckets(week, hourly=True), bucket_keys(now, hourly=True)),
            "7 days": throughput_chart(queries.buckets(week, hourly=False), days)}


def _llm_usage(session: Session, now: datetime) -> dict[str, Any] | None:
    """The "LLM usage" card: every job's last 14 days (one read of that range of the primary
    key) and the jobs that spent most; None while nothing was used."""
    found = usage_reads.window(session, now=now)
    if found.empty:
        return None
    top = [{"name": name, "requests": usage.requests, "tokens": usage.tokens,
            "cost": cost_text(usage.cost) if usage.cost else ""} for name, usage in found.top_jobs()]
    return {"usage": usage_view(found, width=WIDE), "top": top}


def _one_click(jobs: list[Any]) -> set[str]:
    """The jobs that run with one click (no input needed), for the Jobs table's Run buttons."""
    found = set()
    for job in jobs:
        try:
            if one_click(definition_from_job(job)):
                found.add(job.name)
        except InvalidDefinition:
            continue
    return found


def _upcoming(jobs: list[Any], now: datetime) -> list[tuple[datetime, Any]]:
    """The next fire of every scheduled, active job, soonest first."""
    fires = []
    for job in jobs:
        if not job.enabled or (job.schedule is None and "run_at" not in job.spec):
            continue
        try:
            _, at = schedule_summary(definition_from_job(job), job, now)
        except InvalidDefinition:
            continue
        if at is not None:
            fires.append((at, job))
    return sorted(fires, key=lambda fire: fire[0])[:UPCOMING]
