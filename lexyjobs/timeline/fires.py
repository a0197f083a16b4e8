"""Upcoming scheduled fires of a job between now and the end of a timeline window.

The page asks for every job's fires on every poll; walking a cron expression costs tens of
microseconds a step, so each schedule's list is kept and reused while it still covers what is
asked (it is computed for twice the span asked for)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from lexyjobs.cron import Schedule, next_fires, parse_timezone
from lexyjobs.definitions import JobDefinition

KEPT = 1000
CHUNK = 8  # fires walked at a time
_kept: dict[tuple[str, str, int], _Fires] = {}


@dataclass(frozen=True)
class _Fires:
    since: datetime          # computed from this time
    fires: tuple[datetime, ...]
    complete_until: datetime  # every fire up to this time is in ``fires``


def upcoming(definition: JobDefinition | None, enabled: bool, now: datetime, until: datetime,
             cap: int) -> list[datetime]:
    """The job's fires after ``now`` up to ``until`` (UTC), at most ``cap``; none while paused."""
    if definition is None or not enabled:
        return []
    if definition.run_at is not None:
        at = definition.run_at.astimezone(timezone.utc)
        return [at] if now < at <= until else []
    if definition.schedule is None:
        return []
    return schedule_fires(definition.schedule, definition.timezone, now, until, cap)


def schedule_fires(schedule: Schedule, zone_name: str, now: datetime, until: datetime, cap: int) -> list[datetime]:
    """``schedule``'s fire times in (now, until], at most ``cap``, as UTC datetimes."""
    key = (schedule.text, zone_name, cap)
    kept = _kept.get(key)
    if kept is None or not _covers(kept, now, until, cap):
        kept = _compute(schedule, zone_name, now, until + (until - now), cap)
        if len(_kept) >= KEPT:
            _kept.clear()
        _kept[key] = kept
    return [f for f in kept.fires if now < f <= until][:cap]


def _covers(kept: _Fires, now: datetime, until: datetime, cap: int) -> bool:
    if kept.since > now:
        return False
    return kept.complete_until >= until or sum(1 for f in kept.fires if now < f <= kept.complete_until) >= cap


def _compute(schedule: Schedule, zone_name: str, now: datetime, horizon: datetime, cap: int) -> _Fires:
    """The fires in (now, horizon], at most ``2 × cap``, walked a few at a time: an hourly cron
    has 6 fires in 6 hours, and each step of a cron walk costs tens of microseconds."""
    count, zone = 2 * cap, parse_timezone(zone_name)
    found: list[datetime] = []
    after = now
    while len(found) < count:
        batch = [f.astimezone(timezone.utc) for f in next_fires(schedule, zone, after, min(CHUNK, count - len(found)))]
        found += [f for f in batch if f <= horizon]
        if not batch or batch[-1] > horizon:
            return _Fires(now, tuple(found), horizon)
        after = batch[-1]
    return _Fires(now, tuple(found), found[-1])
