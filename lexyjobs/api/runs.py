"""``/api/runs``: search with filters, pagination and stats; detail; cancel; retry; log tail; a
batch run's items."""
from __future__ import annotations

from flask import Response, jsonify, url_for

from lexyjobs import actions, cancels, queries, runs, store
from lexyjobs.api import bp
from lexyjobs.api.jobs import enqueued_response
from lexyjobs.api.inputs import (MAX_LOG_OFFSET, json_object, page_and_limit, pagination, query_choice, query_choices,
                                 query_datetime, query_int, query_text)
from lexyjobs.db import utcnow
from lexyjobs.errors import RunNotFound
from lexyjobs.flow.waiting import waiting_dicts
from lexyjobs.guard import actor
from lexyjobs.llm import item_reads
from lexyjobs.queries import RunFilter
from lexyjobs.runtime import current
from lexyjobs.serialize import event_dict, run_dict
from lexyjobs.states import TERMINAL, RunStatus

TRIGGERS = runs.TRIGGERS


def run_filter() -> RunFilter:
    """The run filter given by the query string (shared by the runs list and the panel)."""
    return RunFilter(statuses=query_choices("status", [s.value for s in RunStatus]), job=query_text("job"),
                     category=query_text("category"), triggers=query_choices("trigger", TRIGGERS),
                     since=query_datetime("since"), until=query_datetime("until"), text=query_text("q"))


@bp.get("/runs")
def list_runs() -> Response:
    where = run_filter()
    page, limit = page_and_limit()
    lexy = current()
    with lexy.db.read() as session:
        stats = queries.status_counts(session, where)
        items = queries.search_runs(session, where, limit=limit, offset=(page - 1) * limit)
        waiting = waiting_dicts(session, items, now=utcnow(), stale_after=lexy.settings.stale_after)
    return jsonify(runs=[run_dict(r, waiting.get(r.id)) for r in items], pagination=pagination(page, limit, queries.matching(stats, where)),
                   stats=stats)


@bp.get("/runs/<run_id:run_id>")
def get_run(run_id: int) -> Response:
    lexy = current()
    run = runs.get_run(lexy.db, run_id)
    with lexy.db.read() as session:
        events = store.run_events(session, run_id)
        _, log_size, _ = store.read_log(session, run_id, after=MAX_LOG_OFFSET)
        retries = queries.retries_of(session, run_id)
        waiting = waiting_dicts(session, [run], now=utcnow(), stale_after=lexy.settings.stale_after)
    data = run_dict(run, waiting.get(run.id))
    data.update(traceback=run.traceback, events=[event_dict(e) for e in events], log_size=log_size,
                retried_by=retries, log_url=url_for("lexyjobs.api.run_log", run_id=run_id))
    return jsonify(data)


@bp.post("/runs/<run_id:run_id>/cancel")
def cancel_run(run_id: int) -> tuple[Response, int]:
    json_object((), optional=True)
    outcome = actions.cancel_run(current().db, actor(), run_id)
    status = RunStatus.CANCELED.value if outcome == "canceled" else RunStatus.RUNNING.value
    return (jsonify(run_id=run_id, status=status, outcome=outcome, message=cancels.meaning(outcome),
                    status_url=url_for("lexyjobs.api.get_run", run_id=run_id)),
            202 if outcome != "canceled" else 200)


@bp.post("/runs/<run_id:run_id>/retry")
def retry_run(run_id: int) -> tuple[Response, int, dict[str, str]]:
    json_object((), optional=True)
    return enqueued_response(actions.retry_run(current().db, actor(), run_id), retry_of=run_id)


@bp.get("/runs/<run_id:run_id>/log")
def run_log(run_id: int) -> Response:
    """The run's log from character offset ``after`` (0 = all that is kept); poll with the
    returned ``next_offset`` to tail it."""
    after = query_int("after", 0, 0, MAX_LOG_OFFSET)
    run = runs.get_run(current().db, run_id)
    with current().db.read() as session:
        text, next_offset, trimmed = store.read_log(session, run_id, after=after)
    return jsonify(run_id=run_id, text=text, next_offset=next_offset, trimmed=trimmed,
                   finished=run.status in TERMINAL)


@bp.get("/runs/<run_id:run_id>/items")
def run_items(run_id: int) -> Response:
    """A batch run's items in index order, ``limit`` at a time from index ``after`` on (exclusive),
    only ``ok`` or ``failed`` ones with ``status``; ``next_after`` is the next page's ``after``."""
    status = query_choice("status", item_reads.STATUSES)
    after = query_int("after", -1, 0, item_reads.MAX_INDEX)
    limit = query_int("limit", item_reads.DEFAULT_PAGE, 1, item_reads.MAX_PAGE)
    with current().db.read() as session:
        if queries.run_status(session, run_id) is None:
            raise RunNotFound(run_id)
        page = item_reads.item_page(session, run_id, status=status, after=after, limit=limit)
    return jsonify(run_id=run_id, items=[item.as_json() for item in page.items], next_after=page.next_after)
