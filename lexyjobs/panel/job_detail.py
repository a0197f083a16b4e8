"""Job detail: the job's masked configuration and param schema, its next fires (DST days flagged),
a duration sparkline and the paginated run history (polled), its upstream and downstream jobs,
the Run / Pause / Resume / "Run pipeline from here" buttons (through ``lexyjobs.actions``), and
the LLM usage of the last 14 days (``openai`` jobs)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Sequence

from flask import Response, flash, redirect, render_template, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions, backfill, load_problems, queries, store
from lexyjobs.alerts.targets import describe_for_job
from lexyjobs.api.inputs import pagination, query_int
from lexyjobs.cron import dst_days, is_dst_change_day, next_fires, parse_timezone
from lexyjobs.db import utcnow
from lexyjobs.definitions import JobDefinition
from lexyjobs.errors import JobNotFound
from lexyjobs.flow.usage import JobFlowUse, job_flow_use
from lexyjobs.flow.waiting import flow_stamp
from lexyjobs.guard import actor, identity
from lexyjobs.health import JobOverview, jobs_overview
from lexyjobs.kinds import unset_env
from lexyjobs.llm import usage_reads
from lexyjobs.masking import mask_config
from lexyjobs.models import Job
from lexyjobs.serialize import shown_spec
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import due_args, no_change, unchanged, wants_partial
from lexyjobs.panel.jobs import SOURCE_LABELS
from lexyjobs.panel.llm_charts import WIDE, usage_view
from lexyjobs.pipelines import descendants, downstream_map
from lexyjobs.queries import RunFilter
from lexyjobs.runtime import current
from lexyjobs.serialize import schedule_summary

FIRES = 5
RUNS_PER_PAGE = 20
SPARK_RUNS = 30
SPARK_WIDTH, SPARK_HEIGHT, SPARK_GAP = 300.0, 48.0, 2.0
MAX_DST_SPAN_DAYS = 5 * 366  # DST days are looked up between now and the last fire shown (yearly: 5 years)


@bp.get("/jobs/<job_name:name>")
def job_detail(name: str) -> str | Response:
    """The job's page; for htmx (its poll, its pager) the run history and the health line, 204
    when unchanged."""
    lexy, now, page = current(), utcnow(), query_int("page", 1, 1, 1_000_000)
    with lexy.db.read() as session:
        flow_changes = flow_stamp(session, now=now, stale_after=lexy.settings.stale_after)  # queue paused, workers
        stamp = f"{queries.activity_stamp(session)}{flow_changes}-{page}"
        if unchanged(stamp):
            return no_change()
        job = store.get_job(session, name)
        if job is None or job.archived:
            raise JobNotFound(name)
        history = _history(session, name, page, stamp)
        graph = {} if wants_partial() else store.job_dependencies(session)
        problems = [] if wants_partial() else load_problems.list_problems(session, name)
        llm = None if wants_partial() else _llm_usage(session, job, now)
    overview = _overview(name, now)
    flow = _flow_use(overview.definition, now)
    due = due_args([overview.health.changes_at])
    if wants_partial():  # the history, and the health line and the limits out of band
        return render_template("lexyjobs/_partials/_job_runs.html", job=job, **history, o=overview, oob=True, flow=flow,
                               due=due)
    return render_template("lexyjobs/job_detail.html", job=job, **history, **_page_context(overview, graph, now),
                           problems=problems, flow=flow, llm=llm, due=due)


@bp.post("/jobs/<job_name:name>/run-pipeline")
def job_run_pipeline(name: str) -> BaseResponse:
    """Start a pipeline here, then show its first run (htmx: ``HX-Redirect``)."""
    done = actions.run_pipeline_from(current().db, actor(), name)
    if done.existing:  # a unique job's duplicate is active: no pipeline started
        flash(done.existing.message)
    target = url_for("lexyjobs.panel.run_detail", run_id=done.run_id)
    if wants_partial():
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target, code=303)


def _overview(name: str, now: datetime) -> JobOverview:
    found = jobs_overview(current().db, now, [name], stale_after=current().settings.stale_after)
    if not found:  # deleted between the two reads
        raise JobNotFound(name)
    return found[0]


def _flow_use(definition: JobDefinition | None, now: datetime) -> JobFlowUse | None:
    """The job's limits and their use now (None when its definition no longer parses)."""
    if definition is None:
        return None
    lexy = current()
    with lexy.db.read() as session:
        return job_flow_use(session, definition, now=now, stale_after=lexy.settings.stale_after)


# ---------------------------------------------------------------- context pieces


def _history(session: Session, name: str, page: int, stamp: str) -> dict[str, Any]:
    """The run history page and the sparkline of recent durations (both live in the partial)."""
    where = RunFilter(job=name)
    found = queries.search_runs(session, where, limit=RUNS_PER_PAGE, offset=(page - 1) * RUNS_PER_PAGE)
    total = queries.count_runs(session, where)
    points = [(row.id, row.status, max(0.0, (row.finished_at - row.started_at).total_seconds()))
              for row in queries.recent_durations(session, name, limit=SPARK_RUNS)]
    return {"runs": [(run, _duration(run)) for run in found], "stamp": stamp, "page_number": page,
            "pagination": pagination(page, RUNS_PER_PAGE, total), "spark": sparkline(points)}


def _llm_usage(session: Session, job: Job, now: datetime) -> dict[str, Any] | None:
    """The "LLM usage" section: the job's last 14 days, for an ``openai`` job or any job with
    usage in them; without usage, whether it ever made a request (for the line said instead).
    None: no section."""
    found = usage_reads.window(session, now=now, job=job.name)
    if not found.empty:
        return {"usage": usage_view(found, width=WIDE), "days": len(found.days)}
    if job.kind != "openai":
        return None
    return {"usage": None, "days": len(found.days), "ever": usage_reads.has_usage(session, job.name)}


def _duration(run: Any) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return max(0.0, (run.finished_at - run.started_at).total_seconds())


def _page_context(overview: JobOverview, graph: dict[str, tuple[str, ...]], now: datetime) -> dict[str, Any]:
    job, definition = overview.job, overview.definition
    words, _ = schedule_summary(definition, job, now)
    fires = upcoming_fires(definition, now) if job.enabled else []
    downstream = downstream_map(graph).get(job.name, [])
    return {
        "o": overview, "definition": definition, "source": SOURCE_LABELS.get(job.source, job.source),
        "config": mask_config(shown_spec(job)), "schedule_words": words, "fires": fires,
        "unset_env": unset_env(definition.kind, definition.config) if definition else [],
        "dst_between": dst_days_between(definition, now, fires),
        "timezone": definition.timezone if definition else "UTC",
        "upstream": list(graph.get(job.name, ())), "downstream": downstream,
        "pipeline_steps": descendants(graph, job.name),
        "needs_params": definition is not None and any(p.required and not p.has_default
                                                         for p in definition.params.values()),
        "can_operate": identity().can("operator"),
        "alerting": describe_for_job(current().db, current().settings, job.name, job.category, definition.alerts)
        if definition else None,
        "backfills": backfill.recent(current().db, job.name),
    }


# ---------------------------------------------------------------- pure helpers (``now`` passed in)


@dataclass(frozen=True)
class Fire:
    """One upcoming fire, in the job's timezone."""

    at: datetime
    dst_change: bool  # the zone changes its UTC offset on this (local) day


def upcoming_fires(definition: JobDefinition | None, now: datetime, count: int = FIRES) -> list[Fire]:
    """The next ``count`` fires after ``now`` in the job's timezone (a ``run_at`` job: its one
    fire while it is ahead), each flagged when it falls on a day the clocks change."""
    if definition is None:
        return []
    zone = parse_timezone(definition.timezone)
    if definition.run_at is not None:
        # via UTC: astimezone() to the zone the value already has would keep a wall time that
        # does not exist (02:30 on a spring-forward day) instead of naming the real instant
        at = definition.run_at.astimezone(timezone.utc).astimezone(zone)
        times = [at] if at > now else []
    elif definition.schedule is not None:
        times = next_fires(definition.schedule, zone, now, count)
    else:
        times = []
    return [Fire(at, is_dst_change_day(zone, at.date())) for at in times]


def dst_days_between(definition: JobDefinition | None, now: datetime, fires: Sequence[Fire]) -> list[date]:
    """Days from ``now`` to the last fire on which the clocks change but no fire falls: a weekly
    job's next fire moves by an hour in UTC after such a day, though none is on it."""
    if definition is None or not fires:
        return []
    zone = parse_timezone(definition.timezone)
    start = now.astimezone(zone).date()
    span = min((fires[-1].at.date() - start).days + 1, MAX_DST_SPAN_DAYS)
    fire_days = {fire.at.date() for fire in fires}
    return sorted(day for day in dst_days(zone, start, max(span, 0)) if day not in fire_days)


@dataclass(frozen=True)
class Bar:
    """One run in the sparkline: a bar whose height is its duration."""

    run_id: int
    status: str
    seconds: float
    x: float
    y: float
    width: float
    height: float


def sparkline(points: Sequence[tuple[int, str, float]], *, width: float = SPARK_WIDTH,
              height: float = SPARK_HEIGHT) -> dict[str, Any]:
    """Bars for (run id, status, seconds), oldest first, scaled to the longest; a run that took
    no time still gets a 1-pixel bar. Also the numbers shown beside the chart."""
    if not points:
        return {"bars": [], "width": width, "height": height, "longest": None, "median": None, "failed": 0}
    longest = max(seconds for _, _, seconds in points) or 1.0
    slot = width / max(len(points), SPARK_RUNS)
    bars = []
    for index, (run_id, status, seconds) in enumerate(points):
        tall = max(1.0, round(seconds / longest * (height - 1), 2))
        bars.append(Bar(run_id, status, seconds, round(index * slot, 2), round(height - tall, 2),
                        round(max(slot - SPARK_GAP, 1.0), 2), tall))
    ordered = sorted(seconds for _, _, seconds in points)
    return {"bars": bars, "width": width, "height": height, "longest": ordered[-1],
            "median": ordered[len(ordered) // 2], "failed": sum(1 for _, status, _ in points if status == "failed")}
