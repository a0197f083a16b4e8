"""Reading a batch run's items (``run_items``, written by ``lexyjobs.llm.items``) for the run page
and ``GET /api/runs/<id>/items``.

Both reads are cheap whatever the batch's size: a page of items is one range of the primary key
``(run_id, idx)`` read in index order with a LIMIT, and the counts are one grouped count over the
same range. A status filter is applied while walking that range (there is no index by status: a
run has at most 100,000 items, and the page stops at its LIMIT)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from lexyjobs.models import RunItem

ITEMS = cast(Table, RunItem.__table__)
STATUSES = ("ok", "failed")  # what lexyjobs.llm.items records
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_INDEX = 2**31 - 1  # idx is a 32-bit column; an ``after`` beyond it is refused, not sent to the database


@dataclass(frozen=True)
class ItemRow:
    """One item's outcome: ``result`` when it succeeded (None with a ``save`` hook), ``error`` when it failed."""

    idx: int
    status: str
    result: Any
    error: str | None
    attempt: int
    finished_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"idx": self.idx, "status": self.status, "result": self.result, "error": self.error,
                "attempt": self.attempt, "finished_at": self.finished_at.isoformat()}


@dataclass(frozen=True)
class ItemPage:
    items: list[ItemRow]
    next_after: int | None  # the ``after`` of the next page; None: nothing follows


@dataclass(frozen=True)
class ItemCounts:
    ok: int = 0
    failed: int = 0

    @property
    def stored(self) -> int:
        """Items with an outcome recorded for this run (0: not a batch run, or none finished yet)."""
        return self.ok + self.failed


def item_counts(session: Session, run_id: int) -> ItemCounts:
    """The run's recorded items by status: one grouped count over its primary-key range."""
    rows = session.execute(select(ITEMS.c.status, func.count()).where(ITEMS.c.run_id == run_id)
                           .group_by(ITEMS.c.status)).all()
    found = {status: int(count) for status, count in rows}
    return ItemCounts(ok=found.get("ok", 0), failed=found.get("failed", 0))


def item_page(session: Session, run_id: int, *, status: str | None = None, after: int = -1,
              limit: int = DEFAULT_PAGE) -> ItemPage:
    """The run's items with an index above ``after``, in index order, at most ``limit`` (only
    ``status`` ones when given). One query: ``limit + 1`` rows, the extra one only telling
    whether another page follows."""
    query = (select(ITEMS.c.idx, ITEMS.c.status, ITEMS.c.result, ITEMS.c.error, ITEMS.c.attempt,
                    ITEMS.c.finished_at)
             .where(ITEMS.c.run_id == run_id, ITEMS.c.idx > after)
             .order_by(ITEMS.c.idx).limit(limit + 1))
    if status is not None:
        query = query.where(ITEMS.c.status == status)
    rows = [ItemRow(*row) for row in session.execute(query).all()]
    more = len(rows) > limit
    items = rows[:limit]
    return ItemPage(items, items[-1].idx if more else None)
