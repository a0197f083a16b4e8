"""Retention (SPEC §2): finished runs older than ``LEXYJOBS_RETENTION_DAYS`` (failed ones:
``LEXYJOBS_RETENTION_FAILED_DAYS``) are deleted with their events and logs.

Deletion goes in batches of ``BATCH`` runs, each its own short write transaction, so workers and
the scheduler never wait long for the write lock (on SQLite there is one for the whole file).
Events and logs go with their run through ``ON DELETE CASCADE``; runs that pointed at a deleted
run (``retry_of``, ``parent_run_id``) keep existing with the pointer set to NULL. Queued and
running runs are never touched, whatever their age. Audit-log entries older than
``LEXYJOBS_AUDIT_RETENTION_DAYS`` go too (by their time ``at``), in batches the same way. The
scheduler process runs ``prune`` every ``INTERVAL`` seconds (``lexyjobs.maintenance``);
``lexyjobs prune [--dry-run]`` runs it by hand."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from lexyjobs import run_counts
from lexyjobs.db import Database, utcnow
from lexyjobs.models import Alert, AuditEntry
from lexyjobs.states import RUNS, TERMINAL, RunStatus

BATCH = 500
PAUSE_SECONDS = 0.02  # between batches: lets a waiting worker or the scheduler take the write lock
ALERTS = cast(Table, Alert.__table__)
AUDIT = cast(Table, AuditEntry.__table__)


@dataclass(frozen=True)
class Policy:
    """How many days finished runs (and audit-log entries) are kept; 0 keeps them forever."""

    days: int = 30
    failed_days: int = 90
    audit_days: int = 365

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per terminal status, the finish time before which a run goes."""
        out: dict[str, datetime] = {}
        for status in sorted(TERMINAL):
            days = self.failed_days if status == RunStatus.FAILED else self.days
            if days > 0:
                out[status.value] = now - timedelta(days=days)
        return out


@dataclass
class PruneReport:
    runs: dict[str, int] = field(default_factory=dict)  # status -> runs deleted (or that would be)
    alerts: int = 0
    audit: int = 0  # audit-log entries deleted (or that would be)
    oldest: datetime | None = None  # finish time of the oldest run concerned

    @property
    def total(self) -> int:
        return sum(self.runs.values())


def prune(db: Database, policy: Policy, *, now: datetime | None = None, dry_run: bool = False,
          batch: int = BATCH) -> PruneReport:
    """Delete (or with ``dry_run`` only count) what ``policy`` says has expired at ``now``."""
    now = now or utcnow()
    report = PruneReport()
    for status, cutoff in policy.cutoffs(now).items():
        with db.read() as session:
            report.oldest = _earliest(report.oldest, _oldest_finish(session, status, cutoff))
            if dry_run:
                report.runs[status] = _count(session, status, cutoff)
                continue
        report.runs[status] = _delete_in_batches(db, RUNS, _expired(status, cutoff), RUNS.c.finished_at, batch)
    alert_cutoff = now - timedelta(days=max(policy.days, policy.failed_days))
    if policy.days > 0 and policy.failed_days > 0:
        with db.read() as session:
            report.alerts = session.execute(select(func.count()).select_from(ALERTS)
                                            .where(ALERTS.c.created_at < alert_cutoff)).scalar_one()
        if not dry_run and report.alerts:
            with db.write() as session:
                session.execute(delete(ALERTS).where(ALERTS.c.created_at < alert_cutoff))
    if policy.audit_days > 0:
        report.audit = _prune_audit(db, now - timedelta(days=policy.audit_days), dry_run, batch)
    return report


def _prune_audit(db: Database, cutoff: datetime, dry_run: bool, batch: int) -> int:
    """Audit entries older than ``cutoff``: deleted oldest first, ``batch`` per transaction (or counted)."""
    if dry_run:
        with db.read() as session:
            return session.execute(select(func.count()).select_from(AUDIT).where(AUDIT.c.at < cutoff)).scalar_one()
    return _delete_in_batches(db, AUDIT, AUDIT.c.at < cutoff, AUDIT.c.at, batch)


def _expired(status: str, cutoff: datetime) -> Any:
    # the status as a literal: each status is its own range of ix_runs_status_finished_times
    return (RUNS.c.status == status) & (RUNS.c.finished_at < cutoff)


def _oldest_finish(session: Session, status: str, cutoff: datetime) -> datetime | None:
    return session.execute(select(func.min(RUNS.c.finished_at)).where(_expired(status, cutoff))).scalar()


def _count(session: Session, status: str, cutoff: datetime) -> int:
    return session.execute(select(func.count()).select_from(RUNS).where(_expired(status, cutoff))).scalar_one()


def _delete_in_batches(db: Database, table: Table, where: Any, oldest_first: Any, batch: int) -> int:
    """Delete the rows of ``table`` matching ``where``, oldest first, ``batch`` per transaction.
    Oldest first also when interrupted: ``lexyjobs.finished_hours`` relies on every deleted run
    of a status being older than every remaining one."""
    deleted = 0
    while True:
        with db.write() as session:
            ids = session.execute(select(table.c.id).where(where).order_by(oldest_first).limit(batch)).scalars().all()
            if ids:
                if table is RUNS:
                    _uncount(session, ids)
                session.execute(delete(table).where(table.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch:
            return deleted
        time.sleep(PAUSE_SECONDS)


def _uncount(session: Session, ids: Sequence[int]) -> None:
    """Take the runs about to be deleted off their job's counters (lexyjobs.run_counts)."""
    grouped = select(RUNS.c.job_name, RUNS.c.status, func.count()).where(RUNS.c.id.in_(ids)).group_by(
        RUNS.c.job_name, RUNS.c.status)
    run_counts.add(session, ((job, status, -n) for job, status, n in session.execute(grouped)))


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)
