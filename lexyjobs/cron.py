"""Schedules: 5-field cron expressions (plus @hourly/@daily/@weekly/@monthly/@yearly) in an IANA
timezone, or intervals (``every 15m``). Pure functions; ``now`` is always passed in."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from lexyjobs.durations import parse_duration

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}

INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)  # interval fires are anchor + k × interval everywhere


@dataclass(frozen=True)
class Schedule:
    text: str
    cron: str | None = None         # 5-field expression (aliases expanded)
    interval: float | None = None   # seconds


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule string; ValueError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a cron expression like '0 */6 * * *', an alias like '@daily', or 'every 15m'")
    cleaned = " ".join(text.split())
    if cleaned.lower().startswith("every "):
        seconds = parse_duration(cleaned[6:])
        if seconds < 1:
            raise ValueError("an interval must be at least 1s")
        return Schedule(cleaned, interval=seconds)
    expression = ALIASES.get(cleaned.lower(), cleaned)
    if cleaned.startswith("@") and cleaned.lower() not in ALIASES:
        raise ValueError(f"unknown alias '{cleaned}' (use {', '.join(ALIASES)})")
    fields = expression.split(" ")
    if len(fields) != 5:
        raise ValueError(f"'{cleaned}' has {len(fields)} fields; a cron expression has 5 "
                         "(minute hour day-of-month month day-of-week)")
    if not croniter.is_valid(expression):
        raise ValueError(f"'{cleaned}' is not a valid cron expression")
    try:
        croniter(expression, INTERVAL_ANCHOR).get_next(datetime)
    except CroniterBadDateError:  # e.g. '0 0 31 2 *': valid fields, but no such date
        raise ValueError(f"'{cleaned}' never fires (no date matches it)") from None
    return Schedule(cleaned, cron=expression)


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ValueError for unknown names."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"'{name}' is not an IANA timezone (e.g. 'UTC', 'Europe/Berlin')") from None


def next_fire(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware, in ``tz``). The scheduler's trigger
    and the previews both use this, so what is shown is what fires."""
    return next_fires(schedule, tz, after, 1)[0]


def next_fires(schedule: Schedule, tz: ZoneInfo, now: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times strictly after ``now``, as aware datetimes in ``tz``."""
    if schedule.interval is not None:
        # the scheduler's fire times (anchor + k × interval), stepped in UTC: an hour is an hour across DST
        step = timedelta(seconds=schedule.interval)
        first = INTERVAL_ANCHOR + step * ((now - INTERVAL_ANCHOR) // step + 1)
        return [(first + step * i).astimezone(tz) for i in range(count)]
    it = croniter(schedule.cron, now.astimezone(tz))
    return [it.get_next(datetime) for _ in range(count)]
