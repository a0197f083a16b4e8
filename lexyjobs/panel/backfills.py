"""Backfill in the panel: "Backfill…" on a job's page opens a form (a past range in the job's
timezone, per fire time or per day, a concurrency, whether to run again what already succeeded)
whose Preview says what would run; Start enqueues the group (``lexyjobs.actions.start_backfill``)
and opens its page — its progress ("5 of 7 days done"), its runs in fire-time order, polled, and
Cancel for the whole group."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions, backfill, queries
from lexyjobs.cron import parse_timezone
from lexyjobs.db import utcnow
from lexyjobs.definitions import JobDefinition, parse_run_at
from lexyjobs.errors import LexyjobsError
from lexyjobs.guard import actor
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import no_change, render, unchanged
from lexyjobs.runtime import current

DEFAULT_DAYS = 7
PREVIEW_TIMES = 5  # the first and the last few times shown by the preview


@dataclass
class BackfillForm:
    """The form's fields as typed (``start``/``end``: ``datetime-local`` values in the job's timezone)."""

    start: str
    end: str
    per: str
    concurrency: str
    include_succeeded: bool

    @classmethod
    def default(cls, definition: JobDefinition) -> BackfillForm:
        """The last ``DEFAULT_DAYS`` whole days before today, in the job's timezone."""
        today = utcnow().astimezone(parse_timezone(definition.timezone)).date()
        start = datetime.combine(today - timedelta(days=DEFAULT_DAYS), time())
        end = datetime.combine(today, time()) - timedelta(minutes=1)
        return cls(start.strftime("%Y-%m-%dT%H:%M"), end.strftime("%Y-%m-%dT%H:%M"),
                   "fire" if definition.schedule is not None else "day", "1", False)

    @classmethod
    def posted(cls) -> BackfillForm:
        form = request.form
        return cls(form.get("start", "").strip(), form.get("end", "").strip(), form.get("per", "fire"),
                   form.get("concurrency", "1").strip(), form.get("include_succeeded") == "yes")


@bp.route("/jobs/<job_name:name>/backfill", methods=["GET", "POST"], endpoint="job_backfill")
def job_backfill(name: str) -> str | BaseResponse | tuple[str, int]:
    """The form (GET); Preview or Start (POST, operator)."""
    definition = current().catalog.get(name)
    if request.method == "GET":
        return _form(definition, BackfillForm.default(definition), {})[0]
    actor().require("operator")
    form, errors = BackfillForm.posted(), dict[str, str]()
    start, end = _when(form.start, "start", definition, errors), _when(form.end, "end", definition, errors)
    concurrency = _concurrency(form.concurrency, errors)
    if errors or start is None or end is None or concurrency is None:
        return _form(definition, form, errors)
    try:
        if request.form.get("action") == "preview":
            found = backfill.plan(current().db, name, start, end, per=form.per,
                                  include_succeeded=form.include_succeeded)
            return _form(definition, form, {}, preview=_preview(found, definition))[0]
        started = actions.start_backfill(current().db, actor(), name, start, end, per=form.per,
                                         concurrency=concurrency, include_succeeded=form.include_succeeded)
    except LexyjobsError as refused:
        field = (refused.details or {}).get("field", "form")
        return _form(definition, form, {field if field in ("start", "end", "per", "concurrency",
                                                           "include_succeeded") else "form": refused.message})
    skipped = len(started.skipped)
    flash(f"Backfill #{started.backfill_id} queued {len(started.run_ids)} run{'s' if len(started.run_ids) != 1 else ''}"
          + (f"; skipped {skipped} that already succeeded." if skipped else "."))
    return redirect(url_for("lexyjobs.panel.backfill_detail", backfill_id=started.backfill_id), code=303)


@bp.get("/backfills/<int(max=2147483647):backfill_id>", endpoint="backfill_detail")
def backfill_detail(backfill_id: int) -> str | Response:
    """The group: progress, its runs in fire-time order, Cancel; the htmx poll gets the live part."""
    lexy = current()
    with lexy.db.read() as session:
        stamp = queries.activity_stamp(session)
    found = backfill.progress(lexy.db, backfill_id)  # NotFound for an unknown id
    stamp += "-canceled" if found.backfill.canceled_at else ""
    if unchanged(stamp):
        return no_change()
    try:
        definition: JobDefinition | None = lexy.catalog.get(found.backfill.job_name)
    except LexyjobsError:  # the job was deleted since, or no longer parses
        definition = None
    return render("lexyjobs/backfill.html", "lexyjobs/_partials/_backfill_live.html", progress=found,
                  group=backfill.group_runs(lexy.db, backfill_id), definition=definition,
                  poll_url=url_for("lexyjobs.panel.backfill_detail", backfill_id=backfill_id, stamp=stamp))


@bp.post("/backfills/<int(max=2147483647):backfill_id>/cancel", endpoint="backfill_cancel")
def backfill_cancel(backfill_id: int) -> BaseResponse:
    canceled, asked = actions.cancel_backfill(current().db, actor(), backfill_id)
    message = f"Canceled {canceled} queued run{'s' if canceled != 1 else ''} of backfill #{backfill_id}"
    flash(message + (f"; asked the workers to stop {asked} running." if asked else "."))
    return redirect(url_for("lexyjobs.panel.backfill_detail", backfill_id=backfill_id), code=303)


def _form(definition: JobDefinition, form: BackfillForm, errors: dict[str, str],
          preview: dict[str, Any] | None = None) -> tuple[str, int]:
    """The form page; 422 when it has errors."""
    return render_template("lexyjobs/backfill_form.html", definition=definition, form=form, errors=errors,
                           preview=preview, max_runs=backfill.MAX_RUNS,
                           max_concurrency=backfill.MAX_CONCURRENCY), 422 if errors else 200


def _when(text: str, field: str, definition: JobDefinition, errors: dict[str, str]) -> datetime | None:
    if not text:
        errors[field] = "is required: a date and time"
        return None
    try:
        return parse_run_at(text, definition.timezone)
    except ValueError as exc:
        errors[field] = str(exc)
        return None


def _concurrency(text: str, errors: dict[str, str]) -> int | None:
    if text.isdigit() and 1 <= int(text) <= backfill.MAX_CONCURRENCY:
        return int(text)
    errors["concurrency"] = f"must be a whole number from 1 to {backfill.MAX_CONCURRENCY}"
    return None


def _preview(found: backfill.Plan, definition: JobDefinition) -> dict[str, Any]:
    """The preview's facts: counts, and the first and last times it would run (in the job's timezone)."""
    tz = parse_timezone(definition.timezone)
    shown = found.todo if len(found.todo) <= 2 * PREVIEW_TIMES else [*found.todo[:PREVIEW_TIMES], None,
                                                                      *found.todo[-PREVIEW_TIMES:]]
    return {"times": len(found.times), "todo": len(found.todo), "skipped": len(found.skipped),
            "shown": [at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if at else None for at in shown]}
