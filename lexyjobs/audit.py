"""The audit log: every manual action (run, cancel, retry, pause/resume, job and account changes,
logins) with who, when, what, target and client address.

Refused logins come from anyone, as fast as they can send them, so they do not get a row each
(``record_refused``): attempts with the same action, username and client address within
``REFUSED_WINDOW`` add to one row's ``details.count`` (with ``details.last``, the latest), and
at most ``REFUSED_ROWS_PER_WINDOW`` such rows start within any window; beyond that, the rest of
the window's refusals are counted in one row per action whose actor is ``OVERFLOW_ACTOR``. So
however many attempts arrive, refused logins add at most about ``REFUSED_ROWS_PER_WINDOW`` + 2
rows an hour, and retention (``LEXYJOBS_AUDIT_RETENTION_DAYS``) deletes them in the end."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lexyjobs.db import Database, utcnow
from lexyjobs.models import AuditEntry


def record(db: Database, actor: str, action: str, target: str | None = None, *,
           client: str | None = None, details: dict[str, Any] | None = None) -> None:
    """Write one entry in its own short transaction."""
    with db.write() as session:
        session.add(entry(actor, action, target, client=client, details=details))


def entry(actor: str, action: str, target: str | None = None, *, client: str | None = None,
          details: dict[str, Any] | None = None, at: datetime | None = None) -> AuditEntry:
    """One entry, for the caller to add to its own transaction (e.g. with the run it records)."""
    return AuditEntry(at=at or utcnow(), actor=_text(actor, 200), action=_text(action, 50),
                      target=None if target is None else _text(target, 200),
                      client=None if client is None else _text(client, 100), details=details)


REFUSED_ACTIONS = ("login.failure", "login.rate_limited", "login.sso_refused")
REFUSED_WINDOW = timedelta(hours=1)
REFUSED_ROWS_PER_WINDOW = 100
OVERFLOW_ACTOR = "(others)"


def record_refused(db: Database, action: str, username: str, *, client: str | None,
                   reason: str | None = None, now: datetime | None = None) -> None:
    """Count one refused login (``action`` in REFUSED_ACTIONS) on its aggregate row, starting a
    row when there is none for (action, username, client) within REFUSED_WINDOW — or, once the
    window holds REFUSED_ROWS_PER_WINDOW such rows, on the window's overflow row. ``reason``
    (single sign-on's) is kept as the row's ``details.reason``, the latest one. On Postgres the
    row is locked while counted; two first attempts at the same instant may start two rows."""
    now = now or utcnow()
    actor, target = _text(username or "-", 200), (_text(username, 200) if username else None)
    client = None if client is None else _text(client, 100)
    since = now - REFUSED_WINDOW
    with db.write() as session:
        entry = _latest(session, action, since, actor=actor, client=client)
        if entry is None and _refused_rows(session, since) >= REFUSED_ROWS_PER_WINDOW:
            actor, target, client = OVERFLOW_ACTOR, None, None
            entry = _latest(session, action, since, actor=actor, client=None)
        latest = {"last": now.isoformat()} | ({"reason": reason} if reason else {})
        if entry is None:
            session.add(AuditEntry(at=now, actor=actor, action=action, target=target, client=client,
                                   details={"count": 1, **latest}))
            return
        details = dict(entry.details or {})
        entry.details = {**details, "count": int(details.get("count", 1)) + 1, **latest}


def _latest(session: Session, action: str, since: datetime, *, actor: str, client: str | None) -> AuditEntry | None:
    same_client = AuditEntry.client.is_(None) if client is None else AuditEntry.client == client
    query = (select(AuditEntry).where(AuditEntry.action == action, AuditEntry.at >= since, AuditEntry.actor == actor,
                                      same_client).order_by(AuditEntry.id.desc()).limit(1).with_for_update())
    return session.scalars(query).first()


def _refused_rows(session: Session, since: datetime) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.at >= since, AuditEntry.action.in_(REFUSED_ACTIONS))) or 0


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
