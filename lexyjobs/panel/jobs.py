"""Panel pages: the jobs list (grouped by category, with health, schedule and last run), pause /
resume, and the run-now form generated from a job's parameter schema."""
from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions, load_problems, queries, runs
from lexyjobs.api.inputs import BadInput, query_choices, query_text
from lexyjobs.db import utcnow
from lexyjobs.definitions import JobDefinition, parse_run_at
from lexyjobs.errors import InvalidParams
from lexyjobs.guard import actor
from lexyjobs.health import JobOverview, jobs_overview
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import due_args, no_change, render, unchanged, wants_partial
from lexyjobs.panel.run_now import one_click
from lexyjobs.redirects import safe_next
from lexyjobs.runtime import current
from lexyjobs.serialize import schedule_summary

HEALTH_STATES = ("ok", "warning", "error", "unknown")
SOURCE_LABELS = {"code": "code", "file": "jobs.toml", "db": "panel / API"}


@bp.get("/jobs")
def jobs() -> str | Response:
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        stamp = queries.activity_stamp(session)
        problems = load_problems.list_problems(session)
    if unchanged(stamp):
        return no_change()
    category, text, states = query_text("category"), query_text("q"), query_choices("health", HEALTH_STATES)
    every = jobs_overview(lexy.db, now, stale_after=lexy.settings.stale_after)
    shown = [o for o in every if (category is None or o.job.category == category) and
             (not states or o.health.state in states) and (text is None or _matches(o, text))]
    groups: dict[str, list[dict[str, Any]]] = {}
    for overview in shown:
        groups.setdefault(overview.job.category, []).append(_row(overview, now))
    args: dict[str, Any] = {**request.args.to_dict(flat=False), "stamp": stamp}  # every health= chosen
    args.pop("due", None)
    poll_url = url_for("lexyjobs.panel.jobs", **args, **due_args(o.health.changes_at for o in every))
    return render("lexyjobs/jobs.html", "lexyjobs/_partials/_jobs_table.html", groups=groups, poll_url=poll_url, now=now,
                  categories=sorted({o.job.category for o in every}), filters={"category": category, "q": text},
                  states=states, health_counts=Counter(o.health.state for o in every), total=len(every),
                  problems=problems)


def _matches(overview: JobOverview, text: str) -> bool:
    needle = text.lower()
    return needle in overview.job.name.lower() or needle in overview.job.title.lower()


def _row(overview: JobOverview, now: Any) -> dict[str, Any]:
    words, upcoming = schedule_summary(overview.definition, overview.job, now)
    return {"o": overview, "job": overview.job, "schedule": words, "next_fire": upcoming,
            "timezone": overview.definition.timezone if overview.definition else "UTC",
            "source": SOURCE_LABELS.get(overview.job.source, overview.job.source),
            "one_click": one_click(overview.definition)}


@bp.post("/jobs/<job_name:name>/pause")
def job_pause(name: str) -> str | BaseResponse:
    return _set_paused(name, True)


@bp.post("/jobs/<job_name:name>/resume")
def job_resume(name: str) -> str | BaseResponse:
    return _set_paused(name, False)


def _set_paused(name: str, paused: bool) -> str | BaseResponse:
    lexy, now = current(), utcnow()
    actions.set_paused(lexy.db, actor(), name, paused)
    if not wants_partial():
        return redirect(safe_next(request.form.get("next")) or url_for("lexyjobs.panel.jobs"))
    [overview] = jobs_overview(lexy.db, now, [name], stale_after=lexy.settings.stale_after)
    return render_template("lexyjobs/_partials/_job_row.html", row=_row(overview, now))


@bp.route("/jobs/<job_name:name>/run", methods=["GET", "POST"])
def run_form(name: str) -> str | BaseResponse | tuple[str, int]:
    """Run now, with a form generated from the job's params; ``?from_run=ID`` prefills it."""
    definition = current().catalog.get(name)
    if request.method != "POST":  # GET, and HEAD (no CSRF check): only show the form
        values = _prefill(definition)
        return render_template("lexyjobs/run_form.html", definition=definition, values=values, errors={},
                               priority=values.pop("__priority", ""), run_at="")
    actor().require("operator")
    values = {spec.name: _form_value(spec) for spec in definition.params.values()}
    priority, run_at = request.form.get("priority", "").strip(), request.form.get("run_at", "").strip()
    errors: dict[str, str] = {}
    priority_value, when = _priority(priority, errors), _run_at(run_at, definition, errors)
    done = None
    if not errors:
        try:
            done = actions.run_job(current().db, actor(), name, {k: v for k, v in values.items() if v is not None},
                                   priority=priority_value, scheduled_for=when, trigger="manual",
                                   params_from_strings=True)
        except InvalidParams as exc:
            errors.update(exc.errors)
    if done is None:
        return render_template("lexyjobs/run_form.html", definition=definition, values=values, errors=errors,
                               priority=priority, run_at=run_at), 422
    if done.existing:  # a unique job's duplicate: its run's page says so
        flash(done.existing.message)
    target = url_for("lexyjobs.panel.run_detail", run_id=done.run_id)
    if wants_partial():
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target)


def _prefill(definition: JobDefinition) -> dict[str, Any]:
    """The form's starting values: the params of run ``from_run`` (same job), else the defaults."""
    source = request.args.get("from_run", "")
    values = {spec.name: spec.default for spec in definition.params.values() if spec.has_default}
    if source.isdigit():
        run = runs.get_run(current().db, int(source))
        if run.job_name != definition.name:
            raise BadInput("from_run", f"run {run.id} is a run of {run.job_name}, not {definition.name}")
        values.update(run.params or {})
        values["__priority"] = run.priority
    return values


def _form_value(spec: Any) -> str | None:
    """The submitted text of one param (a checkbox sends nothing when off); None = not given."""
    if spec.type == "boolean":
        return "true" if request.form.get(spec.name) else "false"
    value = request.form.get(spec.name)
    return None if value is None or (value == "" and not spec.required and spec.type != "string") else value


def _priority(text: str, errors: dict[str, str]) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 10:
        errors["priority"] = "must be a whole number from 0 to 10"
        return None
    return int(text)


def _run_at(text: str, definition: JobDefinition, errors: dict[str, str]) -> Any:
    if not text:
        return None
    try:
        return parse_run_at(text, definition.timezone)
    except ValueError as exc:
        errors["run_at"] = str(exc)
        return None

