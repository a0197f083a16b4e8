"""Rate limits as sliding windows: a run may start when, for each of its buckets, fewer than
``rate`` starts happened in the last ``per`` seconds. Each start is a row of ``rate_slots``; the
window is counted on ``ix_rate_slots_bucket_at`` and slots that left it are deleted as a bucket
is used. Exact (never more than ``rate`` starts in any window of ``per``) and bursty (a fresh
bucket lets ``rate`` runs start at once), unlike a token bucket, which may let twice the rate
through around a refill.

Callers serialize the users of a bucket (the claim: SQLite's write transaction, or a Postgres
advisory lock per bucket)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence, cast

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session

from lexyjobs.models import RateSlot

SLOTS = cast(Table, RateSlot.__table__)


@dataclass
class Windows:
    """The claim's view of the buckets it used in one transaction: starts counted in each window
    (read once per bucket, then kept up to date) and the slots to insert."""

    now: datetime
    counts: dict[str, int] = field(default_factory=dict)
    taken: list[dict[str, Any]] = field(default_factory=list)
    free: dict[str, datetime] = field(default_factory=dict)  # full buckets' next slot (a full bucket stays full)

    def blocked_until(self, session: Session, buckets: Sequence[dict[str, Any]]) -> tuple[datetime, str] | None:
        """None when a run with these buckets may start now (and its slots are taken); else the
        earliest time it may and the bucket that holds it back."""
        worst: tuple[datetime, str] | None = None
        for bucket in buckets:
            name, rate, per = bucket["bucket"], int(bucket["rate"]), float(bucket["per"])
            if name not in self.counts:
                self.counts[name] = _count(session, name, self.now, per)
            if self.counts[name] >= rate:
                if name not in self.free:
                    self.free[name] = _free_at(session, name, rate, per, self.now, self.taken)
                free_at = self.free[name]
                if worst is None or free_at > worst[0]:
                    worst = (free_at, name)
        if worst is not None:
            return worst
        for bucket in buckets:
            self.counts[bucket["bucket"]] += 1
            self.taken.append({"bucket": bucket["bucket"], "at": self.now})
        return None

    def write(self, session: Session) -> None:
        """Insert the slots taken (in the claim's transaction)."""
        if not self.taken:
            return
        session.execute(insert(SLOTS), self.taken)
        self.taken = []


def _count(session: Session, bucket: str, now: datetime, per: float) -> int:
    """Starts in the bucket's window; older slots are deleted first (they never count again)."""
    start = now - timedelta(seconds=per)
    session.execute(delete(SLOTS).where(SLOTS.c.bucket == bucket, SLOTS.c.at <= start))
    return session.scalar(select(func.count()).select_from(SLOTS).where(SLOTS.c.bucket == bucket)) or 0


def _free_at(session: Session, bucket: str, rate: int, per: float, now: datetime,
             taken: Sequence[dict[str, Any]]) -> datetime:
    """When the bucket's window next has room: ``per`` after the ``rate``-th newest start."""
    mine = sorted((slot["at"] for slot in taken if slot["bucket"] == bucket), reverse=True)
    stored = list(session.scalars(select(SLOTS.c.at).where(SLOTS.c.bucket == bucket)
                                  .order_by(SLOTS.c.at.desc()).limit(rate)))
    newest = sorted(mine + stored, reverse=True)
    if len(newest) < rate:
        return now
    return max(newest[rate - 1] + timedelta(seconds=per), now)
