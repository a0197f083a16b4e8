"""Schedules written as phrases starting with ``every``:

* an interval: ``every 15m``, ``every 1h30m``, ``every 2 hours``, ``every 90 minutes``,
  ``every 1 day``, ``every hour`` (any duration ``lexyjobs.durations`` reads); it steps in real
  (UTC) time from 2000-01-01 00:00 UTC, whatever the timezone;
* a time of day, in the job's timezone: ``every day at 02:00``, ``every weekday at 08:00``
  (Monday to Friday), ``every monday at 09:30`` (any weekday name, or its first three letters),
  which become the cron expressions ``0 2 * * *``, ``0 8 * * 1-5`` and ``30 9 * * 1``.

Anything else starting with ``every`` is refused with a message listing these forms."""
from __future__ import annotations

import re

from lexyjobs.durations import parse_duration

FORMS = ("every 15m, every 2 hours, every 90 minutes, every 1 day (intervals), every day at 02:00, "
         "every weekday at 08:00, every monday at 09:30, a cron expression of 5 fields "
         "(minute hour day-of-month month day-of-week, e.g. 0 */6 * * *) or an alias "
         "(@hourly, @daily, @weekly, @monthly, @yearly)")
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_AT = re.compile(r"(?P<days>[a-z]+) at (?P<hour>\d{1,2}):(?P<minute>\d{2})")
_BARE_UNIT = re.compile(r"(second|minute|hour|day|week)")


def parse_every(rest: str) -> float | str:
    """``rest`` is the text after ``every ``: the interval in seconds, or a cron expression for
    a time of day. ValueError names the accepted forms."""
    text = " ".join(rest.lower().split())
    at = _AT.fullmatch(text)
    if at:
        return _daily_cron(at["days"], int(at["hour"]), int(at["minute"]), rest)
    if _BARE_UNIT.fullmatch(text):  # "every hour" is "every 1 hour"
        text = "1 " + text
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ValueError(f"'every {rest.strip()}' is not a schedule lexyjobs reads; use {FORMS}") from None
    if seconds < 1:
        raise ValueError("an interval must be at least 1s")
    return seconds


def _daily_cron(days: str, hour: int, minute: int, rest: str) -> str:
    if hour > 23 or minute > 59:
        raise ValueError(f"'{hour}:{minute:02d}' is not a time of day (00:00 to 23:59)")
    if days == "day":
        dow = "*"
    elif days == "weekday":
        dow = "1-5"
    else:
        named = [i for i, name in enumerate(_DAYS) if days in (name, name[:3])]
        if not named:
            raise ValueError(f"'every {rest.strip()}': '{days}' is not day, weekday or a day of the week "
                             f"(monday to sunday); use {FORMS}")
        dow = str(named[0])
    return f"{minute} {hour} * * {dow}"
