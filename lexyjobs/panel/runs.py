"""The runs list: filters, sort orders (``run_columns``), 50 a page, live status, bulk cancel /
retry, CSV export."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, NamedTuple

from flask import Response, flash, g, redirect, request, stream_with_context, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions, queries
from lexyjobs.actions import BULK_LIMIT, BulkOutcome
from lexyjobs.api.inputs import BadInput, page_and_limit, pagination
from lexyjobs.api.runs import TRIGGERS, run_filter
from lexyjobs.db import Database, utcnow
from lexyjobs.flow.scheduled import count_scheduled, scheduled_runs
from lexyjobs.flow.waiting import WaitingFor, flow_stamp, waiting_for
from lexyjobs.guard import actor
from lexyjobs.models import Run
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import due_args, no_change, render, unchanged, wants_partial
from lexyjobs.panel.run_columns import density, job_titles, outcome_summary, params_summary, run_order, sort_headers
from lexyjobs.queries import RunFilter
from lexyjobs.run_sort import RunOrder, sorted_runs
from lexyjobs.runtime import current
from lexyjobs.serialize import iso, seconds_between
from lexyjobs.states import RunStatus

PAGE_SIZE = 50
CSV_CHUNK = 1000
CSV_COLUMNS = ("id", "job", "status", "trigger", "created_by", "created_at", "started_at", "finished_at",
               "queue_seconds", "processing_seconds", "attempt", "max_attempts", "error")
STATUSES = tuple(s.value for s in RunStatus)
BULK: dict[str, Callable[..., BulkOutcome]] = {"cancel": actions.bulk_cancel, "retry": actions.bulk_retry}


class RunRow(NamedTuple):
    """A run as the list shows it: queue time (due → started), duration (so far, if running),
    when queued why it waits, its job's title and (text, title) summaries of its params and of
    its result or error."""

    run: Run
    queue_seconds: float | None
    duration_seconds: float | None
    waiting: WaitingFor | None = None
    title: str = ""
    params: tuple[str, str] = ("", "")
    outcome: tuple[str, str] = ("", "")


@bp.get("/runs", endpoint="runs")
def runs_page() -> str | Response:
    """The runs list; ``view=scheduled``: the queued runs due later, soonest first."""
    where, (page, limit), checked, view = _filter(), page_and_limit(PAGE_SIZE), _checked_ids(), _view()
    args = _view_args(where, view)
    now = utcnow()
    with _db().read() as session:
        stamp = _stamp(queries.activity_stamp(session) + flow_stamp(session, now=now, stale_after=_stale_after()),
                       args, page, limit)
        if unchanged(stamp):
            return no_change()
        listing = _listing(session, where, page, limit, view=view, now=now)
        choices = None if wants_partial() else queries.job_choices(session)
    return render("lexyjobs/runs.html", "lexyjobs/_partials/_runs_table.html", **listing, where=where, args=args, stamp=stamp,
                  choices=choices, checked=checked, view=view)


def _view_args(where: RunFilter, view: str | None) -> dict[str, str]:
    """The query arguments of this view: the filter, then the Scheduled view or a sort order
    (the Scheduled view has its own: soonest first)."""
    return {**filter_args(where), **({"view": view} if view else run_order().args())}


def _view() -> str | None:
    view = request.args.get("view") or None
    if view not in (None, "scheduled"):
        raise BadInput("view", "must be scheduled (or left out for every run)")
    return view


def _stale_after() -> float:
    return current().settings.stale_after


@bp.post("/runs/bulk", endpoint="runs_bulk")
def runs_bulk() -> str | BaseResponse | tuple[str, int]:
    """Cancel or retry the selected runs, or (scope=matching, after a confirmation that states
    the count) every run matching the filter given in the query string."""
    who, action = actor(), _bulk_action()
    who.require("operator")
    where, (page, limit) = _filter(), page_and_limit(PAGE_SIZE)
    if request.form.get("scope") == "matching":
        target = _matching(where, action)
        if request.form.get("confirm") != "yes" or target["too_many"]:
            return _confirmation(target, action, where, page)
        flash(_summary(action, BULK[action](_db(), who, target["ids"], matching=filter_args(where))))
    else:
        ids = _selected_ids()
        flash(_summary(action, BULK[action](_db(), who, ids)) if ids
              else f"Select the runs to {action} first (the boxes in the first column).")
    return _after_bulk(where, page, limit)


@bp.get("/runs.csv", endpoint="runs_csv")
def runs_csv() -> Response:
    """Every run matching the filter as CSV, streamed in chunks (not only the page shown)."""
    where = _filter()
    name = f"runs-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(stream_with_context(_csv_lines(_db(), where)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---------------------------------------------------------------- reading the request

def _filter() -> RunFilter:
    """``run_filter()`` (the API's rules), taking repeated ``status``/``trigger`` arguments too:
    checkboxes send ``status=a&status=b`` where the API takes ``status=a,b``."""
    where = run_filter()
    return dataclasses.replace(where, statuses=_repeated("status", STATUSES), triggers=_repeated("trigger", TRIGGERS))


def _repeated(name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = [v.strip() for raw in request.args.getlist(name) for v in raw.split(",") if v.strip()]
    for value in values:
        if value not in allowed:
            raise BadInput(name, f"'{value[:50]}' is not one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def filter_args(where: RunFilter) -> dict[str, str]:
    """The query arguments that give ``where`` back (for links, the poll, the CSV and bulk forms)."""
    args = {"status": ",".join(where.statuses), "job": where.job, "category": where.category,
            "trigger": ",".join(where.triggers), "since": _local(where.since), "until": _local(where.until),
            "q": where.text}
    return {name: value for name, value in args.items() if value}


def _local(value: datetime | None) -> str | None:
    """A UTC time as a ``datetime-local`` input value (no offset; the form says UTC)."""
    if value is None:
        return None
    utc = value.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="minutes" if not utc.second and not utc.microsecond else "seconds")


def _ids(values: list[str], name: str) -> list[int]:
    try:
        ids = [int(value) for value in values if value.strip()]
    except ValueError:
        raise BadInput(name, "must be run ids (whole numbers)") from None
    return list(dict.fromkeys(ids))


def _checked_ids() -> set[int]:
    """Boxes ticked on the page when it polled (htmx sends them), so a refresh keeps them ticked."""
    return set(_ids(request.args.getlist("run_id"), "run_id"))


def _selected_ids() -> list[int]:
    ids = _ids(request.form.getlist("run_id"), "run_id")
    if len(ids) > BULK_LIMIT:
        raise BadInput("run_id", f"select at most {BULK_LIMIT:,} runs")
    return ids


def _bulk_action() -> str:
    action = request.form.get("action", "")
    if action not in BULK:
        raise BadInput("action", "must be cancel or retry")
    return action


# ---------------------------------------------------------------- building the views

def _db() -> Database:
    return current().db


def _stamp(activity: str, args: dict[str, str], page: int, limit: int) -> str:
    """The activity stamp bound to this view: another filter or page never matches it."""
    view = repr((activity, sorted(args.items()), page, limit))
    return hashlib.blake2b(view.encode(), digest_size=8).hexdigest()


def _listing(session: Session, where: RunFilter, page: int, limit: int, *, view: str | None = None,
             now: datetime | None = None) -> dict[str, Any]:
    """One page of runs (or of the Scheduled view), the pager and the stat cards (counts ignore
    the status filter), each queued run with why it waits."""
    now = now or utcnow()
    counts = queries.status_counts(session, where)
    order = RunOrder() if view else run_order()
    if view == "scheduled":
        total = count_scheduled(session, where, now=now)
        found = scheduled_runs(session, where, now=now, limit=limit, offset=(page - 1) * limit)
    else:
        total = queries.matching(counts, where)
        found = sorted_runs(session, where, order, limit=limit, offset=(page - 1) * limit)
    waiting = waiting_for(session, found, now=now, stale_after=_stale_after())
    titles = job_titles(session, {run.job_name for run in found})
    link_args: dict[str, Any] = {**_view_args(where, view), **({"limit": limit} if limit != PAGE_SIZE else {})}
    upcoming = [w.until for w in waiting.values() if w.until is not None and w.until > now]
    rows = [_row(run, now, waiting.get(run.id), titles.get(run.job_name, "")) for run in found]
    return {"rows": rows, "pager": pagination(page, limit, total), "order": order,
            "headers": None if view else sort_headers(order), "density": density(),
            "due": due_args(upcoming),
            "counts": counts, "can_bulk": g.identity.can("operator"),
            "any_runs": total > 0 or _any_runs(session, where), "link_args": link_args,
            "statuses": STATUSES, "triggers": TRIGGERS}


def _any_runs(session: Session, where: RunFilter) -> bool:
    """Whether the empty list is empty because of the filter (else: no runs at all yet)."""
    return where != RunFilter() and bool(queries.run_ids(session, RunFilter(), limit=1))


def _row(run: Run, now: datetime, waiting: WaitingFor | None = None, title: str = "") -> RunRow:
    queue = seconds_between(run.scheduled_for, run.started_at) if run.started_at else None
    end = run.finished_at or (now if run.status == RunStatus.RUNNING.value else None)
    return RunRow(run, queue, seconds_between(run.started_at, end) if run.started_at and end else None, waiting,
                  title, params_summary(run), outcome_summary(run))


def _matching(where: RunFilter, action: str) -> dict[str, Any]:
    """For a matching-scope bulk action: how many runs match, which of them it applies to (their
    ids), and whether that is more than one bulk may touch."""
    narrowed = actions.bulk_filter(where, action)
    with _db().read() as session:
        matching = queries.count_runs(session, where)
        ids = queries.run_ids(session, narrowed, limit=BULK_LIMIT + 1) if narrowed else []
        count = queries.count_runs(session, narrowed) if narrowed and len(ids) > BULK_LIMIT else len(ids)
    return {"matching": matching, "count": count, "ids": ids, "too_many": count > BULK_LIMIT, "limit": BULK_LIMIT}


def _confirmation(target: dict[str, Any], action: str, where: RunFilter, page: int) -> tuple[str, int]:
    """"Cancel 1,234 runs matching …?" — or, past the limit, why it cannot (422 if confirmed anyway)."""
    status = 422 if target["too_many"] and request.form.get("confirm") == "yes" else 200
    context: dict[str, Any] = {**target, "action": action, "where": where, "args": filter_args(where), "at_page": page}
    return render("lexyjobs/runs_bulk_confirm.html", "lexyjobs/_partials/_runs_bulk_confirm.html", **context), status


def _after_bulk(where: RunFilter, page: int, limit: int) -> str | BaseResponse:
    """htmx: the table again (with the message); a plain form: back to the list (the same view)."""
    view = _view()
    args = _view_args(where, view)
    if not wants_partial():
        query: dict[str, Any] = {**args, "page": page} if page > 1 else dict(args)
        return redirect(url_for("lexyjobs.panel.runs", **query))
    with _db().read() as session:
        stamp = _stamp(queries.activity_stamp(session) + flow_stamp(session, now=utcnow(), stale_after=_stale_after()),
                       args, page, limit)
        listing = _listing(session, where, page, limit, view=view)
    return render("lexyjobs/runs.html", "lexyjobs/_partials/_runs_table.html", **listing, where=where, args=args, stamp=stamp,
                  choices=None, checked=set(), view=view)


def _summary(action: str, outcome: BulkOutcome) -> str:
    if action == "cancel":
        text = f"Canceled {outcome.done:,} run{'s' if outcome.done != 1 else ''}"
        if outcome.requested:
            text += (f" ({outcome.requested:,} running: their workers were asked to stop them; one that finishes"
                     " first keeps its outcome, noted on the run)")
        why = "already finished"
    else:
        text = (f"Retried {outcome.done:,} runs as new queued runs" if outcome.done != 1
                else "Retried 1 run as a new queued run")
        why = "not finished, or their job no longer accepts them"
    return text + (f"; skipped {outcome.skipped:,} ({why})." if outcome.skipped else ".")


# ---------------------------------------------------------------- CSV export

def _csv_lines(db: Database, where: RunFilter) -> Iterator[str]:
    """The header, then the matching runs newest first, CSV_CHUNK per read (keyset on id)."""
    yield _csv_text([CSV_COLUMNS])
    before: int | None = None
    while True:
        with db.read() as session:
            chunk = queries.export_rows(session, where, before=before, limit=CSV_CHUNK)
        if not chunk:
            return
        yield _csv_text([_csv_row(row) for row in chunk])
        before = chunk[-1].id


def _csv_row(row: Any) -> list[Any]:
    """A row of ``queries.EXPORT_COLUMNS`` as CSV_COLUMNS (the times as in the API: ISO 8601, UTC)."""
    queue = seconds_between(row.scheduled_for, row.started_at) if row.started_at else None
    processing = seconds_between(row.started_at, row.finished_at) if row.started_at and row.finished_at else None
    return [row.id, row.job_name, row.status, row.trigger, row.created_by, iso(row.created_at), iso(row.started_at),
            iso(row.finished_at), queue, processing, row.attempt, row.max_attempts, row.error]


def _csv_text(rows: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerows([[_safe_cell(cell) for cell in row] for row in rows])
    return out.getvalue()


def _safe_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) gets
    a leading quote: run params and errors are written by whoever can enqueue runs."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
