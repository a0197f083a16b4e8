"""The audit log: every manual action (run, cancel, retry, pause/resume, job and account changes,
logins) with who, when, what, target and client address."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from lexyjobs.db import Database, utcnow
from lexyjobs.models import AuditEntry


def record(db: Database, actor: str, action: str, target: str | None = None, *,
           client: str | None = None, details: dict[str, Any] | None = None) -> None:
    """Write one entry in its own short transaction."""
    with db.write() as session:
        session.add(AuditEntry(at=utcnow(), actor=_text(actor, 200), action=_text(action, 50),
                               target=None if target is None else _text(target, 200),
                               client=None if client is None else _text(client, 100), details=details))


def _text(value: str, limit: int) -> str:
    """Storable text: NUL is shown escaped (databases refuse it), cut to the column's size."""
    return value.replace("\x00", "\\x00")[:limit]


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    total: int


def search(db: Database, *, actor: str | None = None, action: str | None = None, target: str | None = None,
           since: datetime | None = None, until: datetime | None = None,
           limit: int = 50, offset: int = 0) -> AuditPage:
    """Entries matching every given filter, newest first."""
    conditions = []
    if actor:
        conditions.append(AuditEntry.actor == actor)
    if action:
        conditions.append(AuditEntry.action == action)
    if target:
        conditions.append(AuditEntry.target == target)
    if since:
        conditions.append(AuditEntry.at >= since)
    if until:
        conditions.append(AuditEntry.at < until)
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
        entries = list(session.scalars(select(AuditEntry).where(*conditions)
                                       .order_by(AuditEntry.id.desc()).limit(limit).offset(offset)))
    return AuditPage(entries, total)
