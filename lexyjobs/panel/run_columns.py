"""The runs list's work-surface columns: the sort order from the query string (``?sort=duration&
dir=desc``), the sortable headers' links and ``aria-sort``, one-line summaries of a run's params and
of its result or error (the full value goes in a title), and the job titles. The density toggle
("compact rows") is kept in the browser (static/app.js) and mirrored in a cookie so the page is
rendered with it, without a flash."""
from __future__ import annotations

import json
from typing import Any

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from lexyjobs.api.inputs import BadInput
from lexyjobs.masking import mask_config
from lexyjobs.models import Job, Run
from lexyjobs.run_sort import DEFAULT_SORT, SORT_KEYS, RunOrder

SUMMARY_CHARS = 80     # shown in the cell
TITLE_CHARS = 2000     # in its tooltip
DENSITY_COOKIE = "lexyjobs_density"
SORT_LABELS = {"created": "Created", "duration": "Duration", "queue": "Queue", "status": "Status"}


def run_order() -> RunOrder:
    """``sort`` (created, duration, queue or status) and ``dir`` (asc or desc; by default the
    header's first-click direction) from the query string."""
    key = request.args.get("sort") or DEFAULT_SORT
    if key not in SORT_KEYS:
        raise BadInput("sort", f"must be one of {', '.join(SORT_KEYS)}")
    direction = request.args.get("dir") or ""
    if direction not in ("", "asc", "desc"):
        raise BadInput("dir", "must be asc or desc")
    return RunOrder(key, direction == "desc" if direction else SORT_KEYS[key][1])


def sort_headers(order: RunOrder) -> dict[str, dict[str, Any]]:
    """Per sortable column: the query arguments of its header link (the other direction when it
    is the current order, else its first-click one) and its ``aria-sort`` (current order only)."""
    headers = {}
    for key, (_, first_descending) in SORT_KEYS.items():
        current = key == order.key
        descending = not order.descending if current else first_descending
        headers[key] = {"label": SORT_LABELS[key], "args": RunOrder(key, descending).args(),
                        "aria": ("descending" if order.descending else "ascending") if current else None,
                        "arrow": ("↓" if order.descending else "↑") if current else ""}
    return headers


def summary(value: Any) -> tuple[str, str]:
    """(the cell text, cut to SUMMARY_CHARS, and its title: the whole text up to TITLE_CHARS, or
    "" when the cell shows all of it). Autoescaping makes both safe."""
    text = value if isinstance(value, str) else _one_line(value)
    text = " ".join(text.split())
    if len(text) <= SUMMARY_CHARS:
        return text, ""
    return text[:SUMMARY_CHARS - 1] + "…", text[:TITLE_CHARS]


def params_summary(run: Run) -> tuple[str, str]:
    """``site=4, mode="full"`` (sensitive values masked, as on the run's page)."""
    params = mask_config(run.params or {})
    if not isinstance(params, dict) or not params:
        return "", ""
    return summary(", ".join(f"{name}={_one_line(value)}" for name, value in params.items()))


def outcome_summary(run: Run) -> tuple[str, str]:
    """The error of a run that has one, else its result (JSON), else nothing."""
    if run.error:
        return summary(run.error)
    if run.result is None:
        return "", ""
    return summary(mask_config(run.result))


def _one_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def job_titles(session: Session, names: set[str]) -> dict[str, str]:
    """The titles of the jobs named (a name without a job row, none)."""
    if not names:
        return {}
    return {name: title for name, title in session.execute(select(Job.name, Job.title).where(Job.name.in_(sorted(names))))}


def density() -> str:
    """The rows' density the browser asked for last ("compact" or "")."""
    return "compact" if request.cookies.get(DENSITY_COOKIE) == "compact" else ""
