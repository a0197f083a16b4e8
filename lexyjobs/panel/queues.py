"""Panel page: named queues (everyone): per queue its depth (queued, due), oldest wait, running
runs, throughput, pause state and the live processes serving it, with pause / resume buttons for
operators. The table polls like the other pages and answers 204 while nothing it shows changed.
Also here: pausing or resuming every job of a category (the buttons of the jobs page)."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions
from lexyjobs.db import utcnow
from lexyjobs.flow import queue_state
from lexyjobs.guard import actor
from lexyjobs.panel import bp
from lexyjobs.panel.formatting import relative, short_duration
from lexyjobs.panel.htmx import no_change, render, unchanged, wants_partial
from lexyjobs.redirects import safe_next
from lexyjobs.runtime import current


@bp.get("/queues")
def queues() -> str | Response:
    """Every known queue with its figures."""
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        found = queue_state.overview(session, now=now, stale_after=lexy.settings.stale_after)
    stamp = _stamp(found, now)
    if unchanged(stamp):
        return no_change()
    return render("lexyjobs/queues.html", "lexyjobs/_partials/_queues_live.html", **_context(found, now, stamp))


def _context(found: list[queue_state.QueueInfo], now: datetime, stamp: str) -> dict[str, Any]:
    return {"queues": found, "now": now, "stamp": stamp,
            "window_minutes": int(queue_state.THROUGHPUT_WINDOW.total_seconds() // 60)}


def _stamp(found: list[queue_state.QueueInfo], now: datetime) -> str:
    """Changes with anything the table shows, times as they read (a wait of ``4 s``, paused ``2 min
    ago``): while runs wait the table refreshes as their wait grows; an idle one answers 204."""
    times = [(short_duration(q.oldest_wait(now)), relative(q.paused_at, now)) for q in found]
    return hashlib.sha1(repr((found, times)).encode()).hexdigest()[:16]


@bp.post("/queues/<queue_name:name>/pause")
def queue_pause(name: str) -> str | BaseResponse:
    return _set_queue(name, True)


@bp.post("/queues/<queue_name:name>/resume")
def queue_resume(name: str) -> str | BaseResponse:
    return _set_queue(name, False)


def _set_queue(name: str, paused: bool) -> str | BaseResponse:
    lexy = current()
    actions.set_queue_paused(lexy.db, actor(), name, paused, stale_after=lexy.settings.stale_after)
    if not wants_partial():
        flash(f"Queue {name} {'paused: no process claims its runs until it is resumed' if paused else 'resumed'}.")
        return redirect(url_for("lexyjobs.panel.queues"))
    now = utcnow()
    with lexy.db.read() as session:
        found = queue_state.overview(session, now=now, stale_after=lexy.settings.stale_after)
    return render_template("lexyjobs/_partials/_queues_live.html", **_context(found, now, _stamp(found, now)))


@bp.post("/categories/<path:category>/pause")
def category_pause(category: str) -> BaseResponse:
    return _set_category(category, True)


@bp.post("/categories/<path:category>/resume")
def category_resume(category: str) -> BaseResponse:
    return _set_category(category, False)


def _set_category(category: str, paused: bool) -> BaseResponse:
    """One action for the whole category, then back to the jobs page with what it did."""
    changed = actions.set_category_paused(current().db, actor(), category, paused)
    verb = "paused" if paused else "resumed"
    flash(f"{verb.capitalize()} {len(changed)} job{'s' if len(changed) != 1 else ''} of {category}."
          if changed else f"Every job of {category} was already {verb}.")
    return redirect(safe_next(request.form.get("next")) or url_for("lexyjobs.panel.jobs"))
