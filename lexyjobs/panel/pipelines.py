"""Panel pages: the pipelines page (the ``depends_on`` graph of all jobs as server-side SVG, each
node showing the job's health and last run, and the recent pipeline runs) and one pipeline run
(the same graph, each step coloured by this pipeline's run of it). Both poll and answer 204 while
nothing changed."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from flask import Response, current_app, url_for
from sqlalchemy.orm import Session

from lexyjobs import queries, store
from lexyjobs.db import utcnow
from lexyjobs.errors import NotFound
from lexyjobs.graph_layout import Graph, components, layout
from lexyjobs.health import JobOverview, jobs_overview
from lexyjobs.panel import bp
from lexyjobs.panel.formatting import relative
from lexyjobs.panel.htmx import due_args, no_change, render, unchanged
from lexyjobs.pipelines import descendants
from lexyjobs.queries import PipelineRun
from lexyjobs.runtime import current
from lexyjobs.states import TERMINAL

RECENT = 20
TITLE_CHARS = 26    # what fits on one line of a node (the full title is in its tooltip)
CAPTION_CHARS = 34
HEALTH_LABELS = {"ok": "healthy", "warning": "warning", "error": "failed", "unknown": "unknown"}
NOT_REACHED, OUTSIDE = "not reached", "not in this pipeline"
_ENDED = {status.value for status in TERMINAL}
# Pipeline ids are uuid4().hex; the dashed form is accepted too (the column holds 36 characters).
PIPELINE_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class NodeView:
    """What one node of the drawing shows and where it links."""

    name: str
    title: str      # shortened to fit; the full one is in ``tooltip``
    href: str
    css: str        # health-<state> on the pipelines page, step-<status> on a pipeline run
    caption: str    # the second line
    tooltip: str


@bp.get("/pipelines")
def pipelines() -> str | Response:
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        stamp = queries.activity_stamp(session)
        if unchanged(stamp):
            return no_change()
        graph = store.job_dependencies(session)
        recent = queries.recent_pipelines(session, limit=RECENT)
        born = _job_births(session)
    overviews = {o.job.name: o for o in jobs_overview(lexy.db, now, stale_after=lexy.settings.stale_after)}
    drawing = layout(graph)
    nodes = {name: _job_node(o, now) for name, o in overviews.items()}
    return render("lexyjobs/pipelines.html", "lexyjobs/_partials/_pipeline_graph.html", layout=drawing, nodes=nodes, pipeline=None,
                  recent=[_summary(p, graph, born) for p in recent], titles={n: o.job.title for n, o in overviews.items()},
                  poll_url=url_for("lexyjobs.panel.pipelines", stamp=stamp,
                                   **due_args(o.health.changes_at for o in overviews.values())))


@bp.get("/pipelines/<pipeline_id>")
def pipeline_run(pipeline_id: str) -> str | Response:
    if not PIPELINE_ID.fullmatch(pipeline_id):
        raise NotFound(f"'{pipeline_id}' is not a pipeline id")
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        stamp = queries.pipeline_stamp(session, pipeline_id)
        if unchanged(stamp):
            return no_change()
        found = queries.pipeline_run(session, pipeline_id)
        if found is None:
            raise NotFound(f"no pipeline with id {pipeline_id}")
        graph = _around(store.job_dependencies(session), found)
        titles = {job.name: job.title for job in store.list_jobs(session, include_archived=True)}
        born = _job_births(session)
    summary = _summary(found, graph, born)
    nodes = {name: _step_node(name, titles.get(name, name), found, summary["steps"], now) for name in graph}
    return render("lexyjobs/pipeline_run.html", "lexyjobs/_partials/_pipeline_graph.html", layout=layout(graph), nodes=nodes,
                  pipeline=found, summary=summary, titles=titles,
                  poll_url=url_for("lexyjobs.panel.pipeline_run", pipeline_id=pipeline_id, stamp=stamp))


# ---------------------------------------------------------------- helpers


def _around(graph: Graph, found: PipelineRun) -> dict[str, tuple[str, ...]]:
    """The part of the job graph a pipeline run is drawn on: the connected group(s) of its jobs
    (a job that has since lost its dependencies still appears, on its own)."""
    jobs = {row.job_name for row in found.runs}
    group = {name for members in components(graph) if jobs & set(members) for name in members} | jobs
    return {name: tuple(u for u in graph.get(name, ()) if u in group) for name in sorted(group)}


def _job_births(session: Session) -> dict[str, datetime]:
    """When each job was created: a job added after a pipeline started is not one of its steps."""
    return {job.name: job.created_at for job in store.list_jobs(session, include_archived=True)}


def _summary(found: PipelineRun, graph: Graph, born: Mapping[str, datetime]) -> dict[str, Any]:
    """The pipeline's steps, the newest run of each, the count per status (``not reached``
    included) and one overall state. The steps are those it had when it started: once nothing is
    queued or running they are the jobs it ran (each step reached is queued or recorded blocked in
    the transaction that ends its upstream), so a job added to the graph later cannot turn a
    finished pipeline incomplete; while it runs, the root job and what is downstream of it among
    the jobs that existed at its start."""
    root = found.root.job_name
    latest = found.latest()
    if root not in graph or all(row.status in _ENDED for row in latest.values()):
        steps = list(latest)
    else:
        started = found.root.created_at
        steps = [root, *(job for job in descendants(graph, root) if job not in born or born[job] <= started)]
    steps += [job for job in latest if job not in steps]
    counts: dict[str, int] = {}
    for step in steps:
        status = latest[step].status if step in latest else NOT_REACHED
        counts[status] = counts.get(status, 0) + 1
    return {"pipeline_id": found.pipeline_id, "root": found.root, "steps": steps, "counts": counts,
            "state": _state(counts)}


def _state(counts: Mapping[str, int]) -> str:
    """running while a step is queued or running; else failed / canceled / blocked if a step
    ended so; succeeded when every step succeeded; else incomplete."""
    for state in ("running", "queued", "failed", "canceled", "blocked"):
        if counts.get(state):
            return "running" if state == "queued" else state
    return "succeeded" if set(counts) == {"succeeded"} else "incomplete"


def _job_node(o: JobOverview, now: datetime) -> NodeView:
    last = o.last
    if last.running_since is not None:
        run_text = f"running since {relative(last.running_since, now)}"
    elif last.last_status is not None:
        run_text = f"{last.last_status} {relative(last.last_finished_at, now)}"
    else:
        run_text = "never ran"
    health = HEALTH_LABELS[o.health.state]
    paused = "" if o.job.enabled else " · paused"
    tooltip = f"{o.job.title} ({o.job.name}){paused}\nhealth: {health}, {o.health.reason}\nlast run: {run_text}"
    return NodeView(o.job.name, _fit(o.job.title, TITLE_CHARS), _job_href(o.job.name),
                    f"health-{o.health.state}" + ("" if o.job.enabled else " paused"),
                    _fit(f"{health} · {run_text}", CAPTION_CHARS), tooltip)


def _step_node(name: str, title: str, found: PipelineRun, steps: list[str], now: datetime) -> NodeView:
    row = found.latest().get(name)
    if row is None:
        status = NOT_REACHED if name in steps else OUTSIDE
        return NodeView(name, _fit(title, TITLE_CHARS), _job_href(name), "step-" + status.replace(" ", "-"),
                        status, f"{title} ({name})\n{status}")
    when = row.finished_at or row.started_at
    caption = row.status
    if row.status == "running" and row.progress is not None:
        caption += f" {row.progress:.0f}%"
    if row.attempt > 1:
        caption += f" · attempt {row.attempt}/{row.max_attempts}"
    if when is not None and row.status != "running":
        caption += f" · {relative(when, now)}"
    error = f"\n{row.error.splitlines()[0]}" if row.error else ""
    href = url_for("lexyjobs.panel.run_detail", run_id=row.id) if "lexyjobs.panel.run_detail" in current_app.view_functions \
        else _job_href(name)
    return NodeView(name, _fit(title, TITLE_CHARS), href, f"step-{row.status}", _fit(caption, CAPTION_CHARS),
                    f"{title} ({name})\nrun #{row.id}: {row.status}{error}")


def _job_href(name: str) -> str:
    if "lexyjobs.panel.job_detail" in current_app.view_functions:
        return url_for("lexyjobs.panel.job_detail", name=name)
    return url_for("lexyjobs.panel.jobs", q=name)


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
