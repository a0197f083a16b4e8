"""Reading the alerts that were sent (or tried): for ``lexyjobs alerts list``, ``GET /api/alerts``
and the panel's alerts page. A notifier's failure shows here as status ``failed`` with the
target's error in ``deliveries``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import func, select

from lexyjobs.config import ALERT_EVENTS
from lexyjobs.db import Database
from lexyjobs.models import Alert
from lexyjobs.serialize import iso

EVENTS = ALERT_EVENTS
STATUSES = ("sending", "sent", "failed")


@dataclass(frozen=True)
class AlertPage:
    alerts: list[Alert]
    total: int


def search(db: Database, *, job: str | None = None, events: Sequence[str] = (), statuses: Sequence[str] = (),
           limit: int = 50, offset: int = 0) -> AlertPage:
    """Alerts matching every given filter (an empty sequence: any), newest first."""
    conditions = []
    if job:
        conditions.append(Alert.job_name == job)
    if events:
        conditions.append(Alert.event.in_(events))
    if statuses:
        conditions.append(Alert.status.in_(statuses))
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(Alert).where(*conditions)) or 0
        alerts = list(session.scalars(select(Alert).where(*conditions)
                                      .order_by(Alert.id.desc()).limit(limit).offset(offset)))
    return AlertPage(alerts, total)


def alert_dict(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "job": alert.job_name, "event": alert.event, "run_id": alert.run_id,
            "message": alert.message, "status": alert.status, "deliveries": alert.deliveries or {},
            "created_at": iso(alert.created_at), "sent_at": iso(alert.sent_at)}
