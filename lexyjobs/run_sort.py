"""The runs list's sort orders: by created (the default, newest first), duration, queue time or
status, each either way, ties broken by id in the same direction (a stable order, page after page).

Each order is one an index serves at a million runs: ``created`` is the id order (ids are handed
out in creation order; ix_runs_status_id, ix_runs_job_id when filtered), ``status`` is
ix_runs_status_id, ``duration`` and ``queue`` the expression indexes of migration 0019. A run
without a duration or queue time (not started or not finished yet) has none to sort by: those runs
come after the others in either direction, newest first — read by a second query once the
first runs out, so neither query sorts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lexyjobs.models import RUN_DURATION, RUN_QUEUE_TIME, Run
from lexyjobs.queries import RunFilter

# key: (the column or expression, whether the header's first click sorts descending)
SORT_KEYS: dict[str, tuple[Any, bool]] = {
    "created": (None, True), "duration": (RUN_DURATION, True), "queue": (RUN_QUEUE_TIME, True),
    "status": (Run.status, False),
}
DEFAULT_SORT = "created"


@dataclass(frozen=True)
class RunOrder:
    key: str = DEFAULT_SORT
    descending: bool = True

    @property
    def is_default(self) -> bool:
        return self.key == DEFAULT_SORT and self.descending

    def args(self) -> dict[str, str]:
        """The query arguments that give this order back (none for the default)."""
        return {} if self.is_default else {"sort": self.key, "dir": "desc" if self.descending else "asc"}


def sorted_runs(session: Session, where: RunFilter, order: RunOrder, *, limit: int, offset: int) -> list[Run]:
    """One page of the runs matching ``where`` in ``order``."""
    value, _ = SORT_KEYS[order.key]
    if value is None:
        return _page(session, where.conditions(), [_direction(Run.id, order)], limit, offset)
    if order.key == "status":  # never NULL
        return _page(session, where.conditions(), [_direction(value, order), _direction(Run.id, order)], limit, offset)
    having = [*where.conditions(), value.is_not(None)]
    found = _page(session, having, [_direction(value, order), _direction(Run.id, order)], limit, offset)
    if len(found) == limit:
        return found
    # past the end of the runs that have a value: those without one follow, newest first
    before = offset + len(found) if found or not offset else _count(session, having)
    rest = _page(session, [*where.conditions(), value.is_(None)], [Run.id.desc()], limit - len(found),
                 max(offset - before, 0))
    return found + rest


def _direction(column: Any, order: RunOrder) -> Any:
    return column.desc() if order.descending else column.asc()


def _page(session: Session, conditions: list[Any], ordering: list[Any], limit: int, offset: int) -> list[Run]:
    return list(session.scalars(select(Run).where(*conditions).order_by(*ordering).limit(limit).offset(offset)))


def _count(session: Session, conditions: list[Any]) -> int:
    return session.scalar(select(func.count()).select_from(Run).where(*conditions)) or 0
