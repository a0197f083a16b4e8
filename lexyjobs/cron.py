"""Schedules: 5-field cron expressions (plus @hourly/@daily/@weekly/@monthly/@yearly) in an IANA
timezone, intervals (``every 15m``, ``every 2 hours``) or times of day (``every day at 02:00``,
``every monday at 09:30``: see ``lexyjobs.every``). Pure functions; ``now`` is always passed in.

Daylight saving time follows vixie cron (the cron most Linux systems run):

* Spring forward (02:00 -> 03:00): a fixed-time job whose time falls in the skipped hour
  (``30 2 * * *``) fires once, right after the jump (03:00 local). Several skipped times of one
  job collapse into that one fire.
* Fall back (03:00 -> 02:00): a fixed-time job whose time falls in the repeated hour fires only
  the first time round.
* A job whose minute or hour field starts with ``*`` (``*/15 * * * *``, ``0 */6 * * *``, vixie's
  "wildcard" jobs) follows the wall clock: it fires in both passes of the repeated hour and not
  in the skipped one.
* Intervals (``every 15m``) step in real (UTC) time and ignore the wall clock.
"""
from __future__ import annotations

import functools
import heapq
import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lexyjobs.cron_fields import fields_problem
from lexyjobs.every import FORMS, parse_every

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
        raise ValueError(f"must be a schedule: {FORMS}")
    cleaned = " ".join(text.split())
    if cleaned.lower().startswith("every "):
        every = parse_every(cleaned[6:])
        if isinstance(every, str):
            return Schedule(cleaned, cron=every)
        return Schedule(cleaned, interval=every)
    expression = ALIASES.get(cleaned.lower(), cleaned)
    if cleaned.startswith("@") and cleaned.lower() not in ALIASES:
        raise ValueError(f"unknown alias '{cleaned}' (use {', '.join(ALIASES)})")
    fields = expression.split(" ")
    if len(fields) != 5:
        raise ValueError(f"'{cleaned}' has {len(fields)} field{'s' if len(fields) != 1 else ''}; "
                         f"a cron expression has 5 (minute hour day-of-month month day-of-week). Use {FORMS}")
    problem = fields_problem(fields, FORMS)
    if problem:
        raise ValueError(problem)
    # imported here: croniter (and dateutil) cost ~10 ms of start-up that a process enqueueing a
    # job without a cron schedule (``lexyjobs run``) never needs
    from croniter import CroniterBadDateError, croniter

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
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: 'Europe' is a folder
        raise ValueError(f"'{name}' is not an IANA timezone (e.g. 'UTC', 'Europe/Berlin')") from None


def next_fire(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware, in ``tz``). The scheduler's trigger
    and the previews both use this, so what is shown is what fires."""
    return next_fires(schedule, tz, after, 1)[0]


UPCOMING_KEPT = 1000
_upcoming: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def upcoming_fire(schedule: Schedule, tz: ZoneInfo, now: datetime) -> datetime:
    """``next_fire(schedule, tz, now)``, remembered per schedule and zone until that fire passes:
    the next fire seen from an earlier time is still the next one while it lies ahead (nothing
    fires in between). The jobs page and the dashboard ask it for every job on every render."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    key = (schedule.text, tz.key)
    seen = _upcoming.get(key)
    if seen is not None and seen[0] <= now < seen[1]:
        return seen[1]
    fire = next_fire(schedule, tz, now)
    if len(_upcoming) >= UPCOMING_KEPT:
        _upcoming.clear()
    _upcoming[key] = (now, fire)
    return fire


def next_fires(schedule: Schedule, tz: ZoneInfo, now: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times strictly after ``now``, as aware datetimes in ``tz``
    (a naive ``now`` is taken as UTC). DST handling: see the module docstring."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if schedule.interval is not None:
        # the scheduler's fire times (anchor + k × interval), stepped in UTC: an hour is an hour across DST
        step = timedelta(seconds=schedule.interval)
        first = INTERVAL_ANCHOR + step * ((now - INTERVAL_ANCHOR) // step + 1)
        return [(first + step * i).astimezone(tz) for i in range(count)]
    assert schedule.cron is not None
    fires: list[datetime] = []
    for instant in _cron_instants(schedule.cron, tz, now):
        fires.append(instant.astimezone(tz))
        if len(fires) >= count:
            break
    return fires


def _cron_instants(expression: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants (UTC) strictly after ``after``, in order, without end.

    croniter walks the *wall clock* (it is given UTC datetimes standing for local wall times, so
    it never sees a DST change); each matching wall time is then mapped to the real instants it
    names in ``tz``: none, one, or two (see ``_instants_of``). A wall time in the repeated hour
    yields its second instant up to an hour after later wall times' first instants, so instants
    wait in a heap until no later wall time can produce an earlier one."""
    from croniter import croniter

    wildcard = _is_wildcard(expression)
    local = after.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if local.fold == 0:
        # ``after`` in the first pass of a repeated hour: the second passes of the wall times
        # just before it are still to come, so start the walk one DST shift earlier
        shift = (local.utcoffset() or timedelta(0)) - (local.replace(fold=1).utcoffset() or timedelta(0))
        wall -= max(shift, timedelta(0))
    walk = croniter(expression, wall.replace(tzinfo=timezone.utc))
    pending: list[datetime] = []
    last: datetime | None = None
    while True:
        candidate = walk.get_next(datetime).replace(tzinfo=None)
        instants, lower_bound = _instants_of(candidate, tz, wildcard)
        # every instant of this and later wall times is >= lower_bound
        while pending and pending[0] <= lower_bound:
            instant = heapq.heappop(pending)
            if instant > after and (last is None or instant > last):
                last = instant
                yield instant
        for instant in instants:
            heapq.heappush(pending, instant)


def _instants_of(wall: datetime, tz: ZoneInfo, wildcard: bool) -> tuple[list[datetime], datetime]:
    """The UTC instants at which the naive local ``wall`` time fires in ``tz``, and a lower
    bound for the instants of every later wall time."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    if first == second:                                   # an ordinary wall time
        return [first], first
    if first.astimezone(tz).replace(tzinfo=None) == wall:  # repeated (fall back): first < second
        return ([first, second] if wildcard else [first]), first
    # skipped (spring forward): ``second`` (new offset) lies before the jump, ``first`` after it
    return ([] if wildcard else [_jump_instant(second, first, tz)]), second


def _jump_instant(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The first second at or after the DST jump between ``before`` and ``after``."""
    offset = after.astimezone(tz).utcoffset()
    low, high = 0, int((after - before).total_seconds())  # the jump is in (low, high] seconds from before
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(tz).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def _is_wildcard(expression: str) -> bool:
    """vixie cron's MIN_STAR/HR_STAR: the minute or hour field starts with ``*``."""
    minute, hour = expression.split(" ")[:2]
    return minute.startswith("*") or hour.startswith("*")


# ---------------------------------------------------------------- periods and DST days


def fire_gaps(schedule: Schedule, tz: ZoneInfo, now: datetime) -> tuple[float, ...]:
    """Seconds between consecutive fires among the first 11 fires after the start of ``now``'s
    hour (the hour, so that a panel listing many jobs every few seconds hits the cache)."""
    if schedule.interval is not None:
        return (schedule.interval,)
    return _cron_gaps(schedule, tz, now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0))


@functools.lru_cache(maxsize=1024)
def _cron_gaps(schedule: Schedule, tz: ZoneInfo, hour: datetime) -> tuple[float, ...]:
    fires = [f.astimezone(timezone.utc) for f in next_fires(schedule, tz, hour, 11)]  # same-zone "-" ignores DST
    return tuple((b - a).total_seconds() for a, b in zip(fires, fires[1:]))


def period_seconds(schedule: Schedule, tz: ZoneInfo, now: datetime) -> float:
    """The longest gap between fires (the interval, or the largest gap among the next 10 cron
    fires): a weekday job's period is the weekend's 3 days, so its health window covers it."""
    return max(fire_gaps(schedule, tz, now))


def typical_period_seconds(schedule: Schedule, tz: ZoneInfo, now: datetime) -> float:
    """The median gap between fires (a weekday job is "daily"; DST days do not count)."""
    return float(statistics.median(fire_gaps(schedule, tz, now)))


def dst_days(tz: ZoneInfo, start: date, days: int) -> set[date]:
    """The dates in ``start`` .. ``start + days - 1`` on which ``tz`` changes its UTC offset."""
    return {start + timedelta(days=i) for i in range(days) if is_dst_change_day(tz, start + timedelta(days=i))}


def is_dst_change_day(tz: ZoneInfo, day: date) -> bool:
    """True when ``tz``'s UTC offset at the end of ``day`` differs from the one at its start."""
    begin = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return begin.utcoffset() != end.utcoffset()


# ---------------------------------------------------------------- describe


@functools.lru_cache(maxsize=1024)
def describe(schedule: Schedule, tz_name: str) -> str:
    """The schedule in words: "At 02:00 every day (UTC)", "Every 15 minutes", "Every 6 hours,
    at minute 0 (UTC)", "Every 15 minutes (interval)". Common shapes are worded here; others go
    to cron-descriptor; if that fails too, "cron: <expression> (<tz>)". Never raises."""
    if schedule.interval is not None:
        return f"Every {_amount(schedule.interval)} (interval)"
    assert schedule.cron is not None
    return _describe_cron(schedule.cron, tz_name) or _fallback(schedule.cron, tz_name)


_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_DAY_NUMBERS = {name[:3].lower(): i for i, name in enumerate(_DAYS)}
_MONTH_NUMBERS = {name[:3].lower(): i for i, name in enumerate(_MONTHS) if name}


def _describe_cron(expression: str, tz_name: str) -> str | None:
    """Words for the common shapes, or None."""
    minute, hour, dom, month, dow = expression.lower().split(" ")
    days = _days(dom, month, dow)
    minute_step, hour_step = _step(minute), _step(hour)
    if minute_step and 60 % minute_step:  # */45 is minutes 0 and 45, not every 45 minutes
        minute, minute_step = ",".join(str(m) for m in range(0, 60, minute_step)), None
    if hour_step and 24 % hour_step:      # */5 is hours 0, 5, 10, 15 and 20
        hour, hour_step = ",".join(str(h) for h in range(0, 24, hour_step)), None
    minutes, hours = _values(minute, 0, 59), _values(hour, 0, 23)
    if days is None:
        return None
    zone = f" ({tz_name})"
    if minutes and hours and len(minutes) * len(hours) <= 6:
        times = sorted(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
        return f"At {_join(times)} {days or 'every day'}{zone}"
    if hour_step == 1 and minute_step and 60 % minute_step == 0:
        every = "Every minute" if minute_step == 1 else f"Every {minute_step} minutes"
        return every + (f" {days}{zone}" if days else "")
    if hour_step and minute_step and not minutes:  # */20 */6: minutes 0, 20 and 40 of every 6th hour
        minutes = list(range(0, 60, minute_step))
    if minutes and hour_step and 24 % hour_step == 0:
        every = "Every hour" if hour_step == 1 else f"Every {hour_step} hours"
        at = f"at minute{'s' if len(minutes) > 1 else ''} {_join([str(m) for m in minutes])}"
        return f"{every}, {at}" + (f", {days}" if days else "") + zone
    return None


def _days(dom: str, month: str, dow: str) -> str | None:
    """The day part ("" = every day), or None for shapes left to the fallback."""
    weekdays = _values(dow, 0, 7, _DAY_NUMBERS)
    month_days = _values(dom, 1, 31)
    months = _values(month, 1, 12, _MONTH_NUMBERS)
    if dom == "*" and month == "*" and dow == "*":
        return ""
    if dom == "*" and month == "*" and weekdays:
        numbers = sorted({d % 7 for d in weekdays}, key=lambda d: (d - 1) % 7)  # Monday first; 7 = Sunday
        if len(numbers) == 7:
            return ""
        positions = [(d - 1) % 7 for d in numbers]
        if len(numbers) >= 3 and positions == list(range(positions[0], positions[-1] + 1)):
            return f"on {_DAYS[numbers[0]]} through {_DAYS[numbers[-1]]}"
        return "on " + _join([_DAYS[d] for d in numbers])
    if month == "*" and dow == "*" and month_days:
        plural = "s" if len(month_days) > 1 else ""
        return f"on day{plural} {_join([str(d) for d in month_days])} of the month"
    if dow == "*" and month_days and months and len(month_days) == 1 and len(months) == 1:
        return f"on {month_days[0]} {_MONTHS[months[0]]}"
    return None


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> list[int] | None:
    """The sorted values of a field made of numbers, names and ranges (no ``*``, no steps)."""
    values: set[int] = set()
    for part in field.split(","):
        bounds = part.split("-")
        if len(bounds) > 2:
            return None
        numbers = []
        for bound in bounds:
            if bound.isdigit():
                numbers.append(int(bound))
            elif names and bound in names:
                numbers.append(names[bound])
            else:
                return None
        if not all(low <= n <= high for n in numbers) or numbers[0] > numbers[-1]:
            return None
        values.update(range(numbers[0], numbers[-1] + 1))
    return sorted(values)


def _step(field: str) -> int | None:
    """1 for ``*``, N for ``*/N``, else None."""
    if field == "*":
        return 1
    if field.startswith("*/") and field[2:].isdigit() and int(field[2:]) > 0:
        return int(field[2:])
    return None


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _amount(seconds: float) -> str:
    """90 -> "90 seconds", 900 -> "15 minutes", 3600 -> "hour", 172800 -> "2 days"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def _fallback(expression: str, tz_name: str) -> str:
    try:
        from cron_descriptor import ExpressionDescriptor, Options

        options = Options()
        options.use_24hour_time_format = True
        return f"{ExpressionDescriptor(expression, options).get_description()} ({tz_name})"
    except Exception:  # a third-party formatter: any failure falls back to the expression itself
        return f"cron: {expression} ({tz_name})"
