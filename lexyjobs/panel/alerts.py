"""Panel page: alerts (everyone). What ``lexyjobs.alerts`` sent — or tried to: a target that
failed shows its error here, so a broken webhook or mail server is seen in the panel, not only
in the log. Filtered by job, event and delivery status, 50 a page."""
from __future__ import annotations

from flask import render_template

from lexyjobs.alerts import history
from lexyjobs.alerts.rules import AlertRule
from lexyjobs.api.inputs import page_and_limit, pagination, query_choices, query_text
from lexyjobs.panel import bp
from lexyjobs.runtime import current


@bp.get("/alerts")
def alerts() -> str:
    lexy = current()
    page, limit = page_and_limit()
    job, events = query_text("job"), query_choices("event", history.EVENTS)
    statuses = query_choices("status", history.STATUSES)
    found = history.search(lexy.db, job=job, events=events, statuses=statuses, limit=limit, offset=(page - 1) * limit)
    where = {"job": job, "event": ",".join(events), "status": ",".join(statuses)}
    return render_template("lexyjobs/alerts.html", alerts=found.alerts, where=where, events=history.EVENTS,
                           statuses=history.STATUSES, pager=pagination(page, limit, found.total),
                           pager_args={name: value for name, value in where.items() if value},
                           targets=AlertRule.from_settings(lexy.settings).has_targets)
