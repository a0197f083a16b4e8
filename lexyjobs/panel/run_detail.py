"""Run detail: everything about one run, a live status block (polled until the run finishes), a
log tail that grows while it runs, and the Cancel / Retry buttons — which go through
``lexyjobs.actions``, so the role check and the audit entry are the API's."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, TypeVar

from flask import Response, flash, redirect, render_template, url_for
from sqlalchemy.orm import Session

from lexyjobs import actions, cancels, queries, store
from lexyjobs.api.inputs import query_int
from lexyjobs.api.runs import MAX_LOG_OFFSET
from lexyjobs.db import utcnow
from lexyjobs.errors import Conflict, RunNotFound
from lexyjobs.flow.waiting import WaitingFor, waiting_for
from lexyjobs.guard import actor, identity
from lexyjobs.masking import mask_config
from lexyjobs.models import Run
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import no_change, render, unchanged, wants_partial
from lexyjobs.panel.run_columns import job_titles
from lexyjobs.panel.run_llm import llm_context
from lexyjobs.runtime import current
from lexyjobs.serialize import seconds_between
from lexyjobs.states import TERMINAL, RunStatus

T = TypeVar("T")
LOG_PAGE_CHARS = 64 * 1024  # the page shows at most the log's last 64 KiB; the tail adds what follows
CANCELABLE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
RETRYABLE = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED})  # what runs.retry takes


@bp.get("/runs/<run_id:run_id>")
def run_detail(run_id: int) -> str | Response:
    """The run's page; for htmx (its poll) only the live block, or 204 when nothing changed."""
    with current().db.read() as session:
        waiting = _waiting(session, run_id)
        stamp = queries.run_stamp(session, run_id) + (waiting.stamp if waiting else "")
        if unchanged(stamp):
            return no_change()
        live = _live_context(session, run_id, stamp, waiting=waiting)
        page = {} if wants_partial() else _page_context(session, live["run"])
    return render("lexyjobs/run_detail.html", "lexyjobs/_partials/_run_live.html", **live, **page)


@bp.get("/runs/<run_id:run_id>/log")
def run_log(run_id: int) -> str | Response:
    """The log text after offset ``after``, appended out of band to the page's ``<pre id="log">``,
    plus the next poller — none once the run has finished, so the tail stops. 204: nothing new."""
    after = query_int("after", 0, 0, MAX_LOG_OFFSET)
    with current().db.read() as session:
        status = queries.run_status(session, run_id)
        if status is None:
            raise RunNotFound(run_id)
        # The status is read first: a run's last log lines commit together with its final status.
        finished = status in TERMINAL
        if not finished and queries.log_size(session, run_id) <= after:
            return no_change()
        text, size, start = store.read_log(session, run_id, after=after)
    log = {"text": text, "next_offset": max(size, after), "trimmed": max(start - after, 0)}
    return render_template("lexyjobs/_partials/_log_tail.html", run_id=run_id, log=log, finished=finished, append=True)


@bp.post("/runs/<run_id:run_id>/cancel")
def run_cancel(run_id: int) -> str | Response:
    outcome, notice = _attempt(lambda: actions.cancel_run(current().db, actor(), run_id))
    return _after_action(run_id, notice or (outcome and f"{outcome}: {cancels.meaning(outcome)}"))


@bp.post("/runs/<run_id:run_id>/retry")
def run_retry(run_id: int) -> str | Response:
    """Retry, then go to the new run's page (htmx: ``HX-Redirect``)."""
    done, notice = _attempt(lambda: actions.retry_run(current().db, actor(), run_id))
    if done is None:
        return _after_action(run_id, notice)
    if done.existing:  # a unique job's duplicate is active: go there, saying so
        flash(done.existing.message)
    target = url_for("lexyjobs.panel.run_detail", run_id=done.run_id)
    if wants_partial():
        return Response(status=200, headers={"HX-Redirect": target})
    return redirect(target, code=303)  # type: ignore[return-value]


def _attempt(action: Callable[[], T]) -> tuple[T | None, str | None]:
    """Do ``action``. A Conflict (the run moved on meanwhile) is the 409 error page for a plain
    form; htmx does not swap error responses, so there it becomes a notice in the live block."""
    try:
        return action(), None
    except Conflict as exc:
        if not wants_partial():
            raise
        return None, exc.message


def _after_action(run_id: int, notice: str | None) -> str | Response:
    """htmx: the refreshed live block showing ``notice``; a plain form: back to the run's page."""
    if not wants_partial():
        return redirect(url_for("lexyjobs.panel.run_detail", run_id=run_id), code=303)  # type: ignore[return-value]
    with current().db.read() as session:
        waiting = _waiting(session, run_id)
        stamp = queries.run_stamp(session, run_id) + (waiting.stamp if waiting else "")
        live = _live_context(session, run_id, stamp, notice=notice, waiting=waiting)
    return render_template("lexyjobs/_partials/_run_live.html", **live)


def _get_run_or_404(session: Session, run_id: int) -> Run:
    run = store.get_run(session, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def _waiting(session: Session, run_id: int) -> WaitingFor | None:
    """Why the run waits, if it is queued (its page polls while it does: a change of reason, or
    of the holders, is a change of the page)."""
    if queries.run_status(session, run_id) != RunStatus.QUEUED.value:
        return None
    run = _get_run_or_404(session, run_id)
    return waiting_for(session, [run], now=utcnow(), stale_after=current().settings.stale_after).get(run_id)


def _live_context(session: Session, run_id: int, stamp: str, *, notice: str | None = None,
                  waiting: WaitingFor | None = None) -> dict[str, Any]:
    """What the live block shows: status, why it waits, times, progress, result, error, details,
    events, buttons; for an ``openai`` run its prompt and answer, or its items."""
    run = _get_run_or_404(session, run_id)
    operator = identity().can("operator")
    return {"run": run, "stamp": stamp, "notice": notice, "finished": run.status in TERMINAL, "waiting": waiting,
            "times": _times(run, utcnow()), "events": store.run_events(session, run_id),
            "cancel_note": cancels.note(run),
            "can_operate": operator, "can_cancel": operator and run.status in CANCELABLE and not run.cancel_requested,
            "can_retry": operator and run.status in RETRYABLE, **llm_context(session, run)}


def _page_context(session: Session, run: Run) -> dict[str, Any]:
    """The rest of the page: the other attempts, masked params and the start of the log tail."""
    text, size, _ = store.read_log(session, run.id)
    text = text[-LOG_PAGE_CHARS:]
    return {"run_id": run.id, "attempts": queries.retry_family(session, run.id), "params": mask_config(run.params or {}),
            "job_title": job_titles(session, {run.job_name}).get(run.job_name),
            "log": {"text": text, "next_offset": size, "trimmed": size - len(text)}}


def _times(run: Run, now: datetime) -> dict[str, Any]:
    """Queue time (due → started) and processing time (started → finished, or → now while running)."""
    queue = seconds_between(run.scheduled_for, run.started_at) if run.started_at else None
    running = run.status == RunStatus.RUNNING and run.started_at is not None
    end = now if running else run.finished_at
    processing = seconds_between(run.started_at, end) if run.started_at and end else None
    return {"queue": queue, "processing": processing, "so_far": running}
