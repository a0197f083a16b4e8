"""Schedules (lexyjobs.cron) and human durations (lexyjobs.durations). Pure functions: every test
passes a fixed ``now``."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from croniter import croniter

from lexyjobs.cron import (ALIASES, INTERVAL_ANCHOR, Schedule, describe, dst_days, is_dst_change_day, next_fire,
                           next_fires, parse_schedule, parse_timezone, period_seconds, typical_period_seconds, upcoming_fire)
from lexyjobs.durations import format_duration, parse_duration
from lexyjobs.scheduler import CronTrigger

UTC = timezone.utc
BERLIN = parse_timezone("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(text: str, now: datetime, tz: str = "UTC", count: int = 5) -> list[datetime]:
    return next_fires(parse_schedule(text), parse_timezone(tz), now, count)


# ---------------------------------------------------------------- parse_schedule


@pytest.mark.parametrize("text", ["0 */6 * * *", "*/15 * * * *", "0 9 * * mon-fri", "30 2 1,15 * *", "0 0 29 2 *",
                                  "5 4 * jan-mar sun"])
def test_a_five_field_cron_expression_is_accepted(text: str) -> None:
    assert parse_schedule(text) == Schedule(text, cron=text)


def test_extra_whitespace_in_a_cron_expression_is_normalized() -> None:
    assert parse_schedule("  0   2 *  * * ") == Schedule("0 2 * * *", cron="0 2 * * *")


@pytest.mark.parametrize(("alias", "cron"), sorted(ALIASES.items()))
def test_an_alias_expands_to_its_cron_expression(alias: str, cron: str) -> None:
    assert parse_schedule(alias) == Schedule(alias, cron=cron)
    assert parse_schedule(alias.upper()).cron == cron


def test_the_aliases_mean_what_they_say() -> None:
    now = utc(2024, 6, 12, 10, 30)  # a Wednesday
    assert fires("@hourly", now, count=2) == [utc(2024, 6, 12, 11), utc(2024, 6, 12, 12)]
    assert fires("@daily", now, count=2) == [utc(2024, 6, 13), utc(2024, 6, 14)]
    assert fires("@weekly", now, count=2) == [utc(2024, 6, 16), utc(2024, 6, 23)]  # Sundays
    assert fires("@monthly", now, count=2) == [utc(2024, 7, 1), utc(2024, 8, 1)]
    assert fires("@yearly", now, count=2) == [utc(2025, 1, 1), utc(2026, 1, 1)]


@pytest.mark.parametrize(("text", "seconds"), [("every 15m", 900), ("every 1h30m", 5400), ("every 2d", 172800),
                                               ("Every 90s", 90), ("every  10 m", 600), ("every 1s", 1)])
def test_an_interval_is_parsed_to_seconds(text: str, seconds: float) -> None:
    schedule = parse_schedule(text)
    assert (schedule.interval, schedule.cron) == (seconds, None)


@pytest.mark.parametrize(("text", "message"), [
    ("0 0 * * * *", "'0 0 * * * *' has 6 fields; a cron expression has 5 (minute hour day-of-month month day-of-week)"),
    ("0 0 * *", "'0 0 * *' has 4 fields"),
    ("daily", "'daily' has 1 field; a cron expression has 5 (minute hour day-of-month month day-of-week). Use every 15m"),
    ("61 * * * *", "minute 61 is out of range 0–59"),
    ("61 25 * * *", "minute 61 is out of range 0–59; hour 25 is out of range 0–23"),
    ("0 24 * * *", "hour 24 is out of range 0–23"),
    ("0 0 32 * *", "day-of-month 32 is out of range 1–31"),
    ("0 0 0 * *", "day-of-month 0 is out of range 1–31"),
    ("0 0 * 13 *", "month 13 is out of range 1–12 or jan–dec"),
    ("0 0 * * 8", "day-of-week 8 is out of range 0–7 (0 and 7 are Sunday) or sun–sat"),
    ("0 0 * * 1-9", "day-of-week 9 is out of range 0–7"),
    ("5,70 * * * *", "minute 70 is out of range 0–59"),
    ("*/0 * * * *", "minute step '0' in '*/0' must be a whole number of 1 or more"),
    ("0 */x * * *", "hour step 'x' in '*/x' must be a whole number of 1 or more"),
    ("abc * * * *", "minute 'abc' is not a number (0–59), a range (1-5), a list (1,15) or a step (*/15)"),
    ("0 0 * foo *", "month 'foo' is not a number (1–12), a name (jan–dec), a range (1-5)"),
    ("0 0 * * funday", "day-of-week 'funday' is not a number (0–7), a name (sun–sat)"),
    ("1,,2 * * * *", "minute '' is not a number"),
    ("lorem ipsum dolor sit amet", "'lorem ipsum dolor sit amet' is not a schedule lexyjobs reads; use every 15m, "
     "every 2 hours, every 90 minutes, every 1 day (intervals), every day at 02:00, every weekday at 08:00, "
     "every monday at 09:30, a cron expression of 5 fields"),
    ("0 0 1#9 * *", "'0 0 1#9 * *' is not a valid cron expression"),  # croniter's syntax: croniter's verdict
    ("0 0 31 2 *", "'0 0 31 2 *' never fires"),
    ("@fortnightly", "unknown alias '@fortnightly' (use @hourly, @daily"),
    ("@reboot", "unknown alias '@reboot'"),
    ("every 0s", "an interval must be at least 1s"),
    ("every 500ms", "an interval must be at least 1s"),
    ("every fortnight", "'every fortnight' is not a schedule lexyjobs reads; use every 15m, every 2 hours, "
     "every 90 minutes, every 1 day (intervals), every day at 02:00, every weekday at 08:00, every monday at 09:30, "
     "a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. 0 */6 * * *) or an alias "
     "(@hourly, @daily, @weekly, @monthly, @yearly)"),
    ("every 2 parsecs", "'every 2 parsecs' is not a schedule lexyjobs reads; use every 15m"),
    ("every day at 25:00", "'25:00' is not a time of day (00:00 to 23:59)"),
    ("every day at 09:75", "'9:75' is not a time of day"),
    ("every funday at 10:00", "'funday' is not day, weekday or a day of the week (monday to sunday); use every 15m"),
    ("every monday", "'every monday' is not a schedule lexyjobs reads; use every 15m"),
    ("", "must be a schedule: every 15m, every 2 hours"),
    ("   ", "must be a schedule"),
])
def test_a_bad_schedule_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(text)
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "seconds"), [
    ("every 2 hours", 7200), ("every 90 minutes", 5400), ("every 1 day", 86400), ("every 30 seconds", 30),
    ("every 2 weeks", 1209600), ("every hour", 3600), ("every minute", 60), ("Every Day", 86400),
    ("every 5 mins", 300), ("every 1 hour 30 minutes", 5400), ("every 2h", 7200)])
def test_an_interval_in_words_is_parsed_to_seconds(text: str, seconds: float) -> None:
    assert parse_schedule(text) == Schedule(text, interval=seconds)


@pytest.mark.parametrize(("text", "cron", "words"), [
    ("every day at 02:00", "0 2 * * *", "At 02:00 every day (Europe/Berlin)"),
    ("every day at 7:05", "5 7 * * *", "At 07:05 every day (Europe/Berlin)"),
    ("every weekday at 08:00", "0 8 * * 1-5", "At 08:00 on Monday through Friday (Europe/Berlin)"),
    ("every monday at 09:30", "30 9 * * 1", "At 09:30 on Monday (Europe/Berlin)"),
    ("Every Sun at 23:59", "59 23 * * 0", "At 23:59 on Sunday (Europe/Berlin)"),
])
def test_a_time_of_day_phrase_becomes_a_cron_expression_in_the_jobs_timezone(text: str, cron: str, words: str) -> None:
    schedule = parse_schedule(text)
    assert schedule == Schedule(text, cron=cron)
    assert describe(schedule, "Europe/Berlin") == words
    assert fires(text, utc(2024, 6, 12, 0, 0), "Europe/Berlin", 1) == fires(cron, utc(2024, 6, 12, 0, 0), "Europe/Berlin", 1)


def test_a_cron_field_message_is_the_same_for_every_reader_of_a_definition() -> None:
    """The form, the API and jobs.toml load problems all read schedules with parse_schedule
    through the definition parser, whose message names the field."""
    from lexyjobs.definitions import InvalidDefinition, parse_definition
    with pytest.raises(InvalidDefinition) as info:
        parse_definition("bad", {"kind": "shell", "argv": ["true"], "schedule": "61 25 * * *"})
    assert info.value.field == "schedule"
    assert info.value.problem == "minute 61 is out of range 0–59; hour 25 is out of range 0–23"


@pytest.mark.parametrize("value", [None, 15, ["0", "*", "*", "*", "*"]])
def test_a_schedule_that_is_not_text_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="must be a schedule"):
        parse_schedule(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------- parse_timezone


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_an_iana_timezone_is_accepted(name: str) -> None:
    assert parse_timezone(name).key == name


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "Europe/", "../../etc/passwd", "CEST+2", None, 5])
def test_an_unknown_timezone_is_rejected_with_an_example(name: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_timezone(name)  # type: ignore[arg-type]
    assert f"'{name}' is not an IANA timezone (e.g. 'UTC', 'Europe/Berlin')" == str(info.value)


# ---------------------------------------------------------------- next_fires: cron


def test_a_daily_cron_in_berlin_fires_at_two_local_on_consecutive_days() -> None:
    got = fires("0 2 * * *", utc(2024, 6, 10, 12), "Europe/Berlin", count=3)
    assert got == [datetime(2024, 6, d, 2, tzinfo=BERLIN) for d in (11, 12, 13)]
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 6, d, 0) for d in (11, 12, 13)]  # CEST = UTC+2
    assert all(f.tzinfo == BERLIN for f in got)


def test_the_same_cron_fires_at_different_utc_times_in_winter() -> None:
    got = fires("0 2 * * *", utc(2024, 1, 10, 12), "Europe/Berlin", count=2)
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 1, 11, 1), utc(2024, 1, 12, 1)]  # CET = UTC+1


def test_fires_are_strictly_after_now() -> None:
    assert fires("0 2 * * *", utc(2024, 6, 10, 0), "Europe/Berlin", count=1) == [datetime(2024, 6, 11, 2,
                                                                                           tzinfo=BERLIN)]
    assert fires("*/15 * * * *", utc(2024, 6, 10, 8, 15), count=2) == [utc(2024, 6, 10, 8, 30),
                                                                      utc(2024, 6, 10, 8, 45)]


def test_a_weekday_cron_skips_the_weekend() -> None:
    got = fires("0 9 * * mon-fri", utc(2024, 6, 13, 18), "America/New_York", count=3)  # Thu 14:00 local
    assert [(f.strftime("%a"), f.hour) for f in got] == [("Fri", 9), ("Mon", 9), ("Tue", 9)]


def test_a_daily_cron_in_the_skipped_hour_still_fires_once_on_the_spring_forward_day() -> None:
    got = fires("30 2 * * *", utc(2024, 3, 29, 12), "Europe/Berlin", count=3)  # 02:00→03:00 on 31 March
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)]


def test_an_hourly_cron_fires_every_real_hour_across_the_fall_back_night() -> None:
    got = fires("0 * * * *", utc(2024, 10, 26, 23, 30), "Europe/Berlin", count=4)
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 10, 27, h) for h in range(4)]


def test_a_daily_cron_in_the_repeated_hour_fires_once_on_the_fall_back_day() -> None:
    got = fires("30 2 * * *", utc(2024, 10, 25, 12), "Europe/Berlin", count=3)
    assert [f.date().isoformat() for f in got] == ["2024-10-26", "2024-10-27", "2024-10-28"]


def test_the_fall_back_fire_is_the_first_pass_of_the_repeated_hour() -> None:
    [fire] = fires("30 2 * * *", utc(2024, 10, 26, 12), "Europe/Berlin", count=1)
    assert fire.astimezone(UTC) == utc(2024, 10, 27, 0, 30) and fire.utcoffset() == timedelta(hours=2)  # 02:30 CEST


def test_a_daily_cron_asked_during_the_repeated_hour_waits_for_the_next_day_once_its_fire_passed() -> None:
    first_pass_after_fire = utc(2024, 10, 27, 0, 40)   # 02:40 CEST
    second_pass_before_time = utc(2024, 10, 27, 1, 10)  # 02:10 CET: 02:30 comes round again, but already fired
    assert fires("30 2 * * *", first_pass_after_fire, "Europe/Berlin", 1)[0].astimezone(UTC) == utc(2024, 10, 28, 1, 30)
    assert fires("30 2 * * *", second_pass_before_time, "Europe/Berlin", 1)[0].astimezone(UTC) == utc(2024, 10, 28, 1, 30)
    assert fires("30 2 * * *", utc(2024, 10, 27, 0, 10), "Europe/Berlin", 1)[0].astimezone(UTC) == utc(2024, 10, 27, 0, 30)


def test_several_skipped_times_of_one_job_collapse_into_one_fire_after_the_jump() -> None:
    got = fires("0,30 2 * * *", utc(2024, 3, 30, 12), "Europe/Berlin", count=3)
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 3, 31, 1), utc(2024, 4, 1, 0), utc(2024, 4, 1, 0, 30)]
    assert got[0].strftime("%H:%M %Z") == "03:00 CEST"


def test_a_quarter_hourly_cron_fires_in_both_passes_of_the_repeated_hour() -> None:
    got = fires("*/15 * * * *", utc(2024, 10, 26, 23, 50), "Europe/Berlin", count=10)
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 10, 27, 0) + timedelta(minutes=15 * i) for i in range(10)]
    assert [f.strftime("%H:%M%z") for f in got] == [
        "02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200",
        "02:00+0100", "02:15+0100", "02:30+0100", "02:45+0100", "03:00+0100", "03:15+0100"]


def test_a_quarter_hourly_cron_asked_late_in_the_first_pass_continues_with_the_second_pass() -> None:
    got = fires("*/15 * * * *", utc(2024, 10, 27, 0, 50), "Europe/Berlin", count=2)  # 02:50 CEST
    assert [f.strftime("%H:%M%z") for f in got] == ["02:00+0100", "02:15+0100"]


def test_a_quarter_hourly_cron_runs_on_real_time_through_the_spring_forward_jump() -> None:
    got = fires("*/15 * * * *", utc(2024, 3, 31, 0, 40), "Europe/Berlin", count=3)
    assert [f.strftime("%H:%M%z") for f in got] == ["01:45+0100", "03:00+0200", "03:15+0200"]
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 3, 31, 0, 45), utc(2024, 3, 31, 1), utc(2024, 3, 31, 1, 15)]


def test_a_stepped_hour_cron_fires_at_both_two_oclocks_of_the_fall_back_night() -> None:
    got = fires("0 */2 * * *", utc(2024, 10, 26, 21), "Europe/Berlin", count=4)
    assert [f.strftime("%H:%M%z") for f in got] == ["00:00+0200", "02:00+0200", "02:00+0100", "04:00+0100"]


def test_a_wildcard_minute_in_a_skipped_hour_does_not_fire_that_day() -> None:
    got = fires("*/20 2 * * *", utc(2024, 3, 30, 12), "Europe/Berlin", count=3)
    assert [f.isoformat() for f in got] == ["2024-04-01T02:00:00+02:00", "2024-04-01T02:20:00+02:00",
                                            "2024-04-01T02:40:00+02:00"]


def test_a_weekly_cron_on_dst_sundays_fires_once_each() -> None:
    spring = fires("30 2 * * sun", utc(2024, 3, 25), "Europe/Berlin", count=2)
    assert [f.isoformat() for f in spring] == ["2024-03-31T03:00:00+02:00", "2024-04-07T02:30:00+02:00"]
    autumn = fires("30 2 * * sun", utc(2024, 10, 21), "Europe/Berlin", count=2)
    assert [f.isoformat() for f in autumn] == ["2024-10-27T02:30:00+02:00", "2024-11-03T02:30:00+01:00"]


def test_a_monthly_cron_on_a_dst_day_fires_once() -> None:
    spring = fires("30 2 31 * *", utc(2024, 3, 1), "Europe/Berlin", count=2)
    assert [f.isoformat() for f in spring] == ["2024-03-31T03:00:00+02:00", "2024-05-31T02:30:00+02:00"]
    autumn = fires("30 2 27 * *", utc(2024, 10, 1), "Europe/Berlin", count=2)
    assert [f.isoformat() for f in autumn] == ["2024-10-27T02:30:00+02:00", "2024-11-27T02:30:00+01:00"]


def test_a_us_cron_in_the_repeated_hour_fires_once() -> None:
    got = fires("30 1 * * *", utc(2024, 11, 2, 12), "America/New_York", count=3)
    assert [f.isoformat() for f in got] == ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00",
                                            "2024-11-05T01:30:00-05:00"]


def test_a_midnight_cron_fires_at_the_first_instant_of_a_day_that_starts_at_one() -> None:
    got = fires("0 0 * * *", utc(2024, 9, 7, 12), "America/Santiago", count=2)  # 00:00 -> 01:00 on 8 September
    assert [f.isoformat() for f in got] == ["2024-09-08T01:00:00-03:00", "2024-09-09T00:00:00-03:00"]


# A reference cron daemon that ticks every real minute and applies vixie cron's DST rules directly
# ("wildcard" jobs follow the wall clock; fixed-time jobs fire for every newly reached wall minute,
# skipped ones included, and never for a wall minute seen before). next_fires must agree with it.

DST_CHANGES = [("Europe/Berlin", date(2024, 3, 31)), ("Europe/Berlin", date(2024, 10, 27)),
               ("America/New_York", date(2024, 3, 10)), ("America/New_York", date(2024, 11, 3)),
               ("Australia/Lord_Howe", date(2024, 4, 7)), ("Australia/Lord_Howe", date(2024, 10, 6)),
               ("America/Santiago", date(2024, 4, 6)), ("America/Santiago", date(2024, 9, 8))]
REFERENCE_CRONS = ["30 2 * * *", "0,30 2 * * *", "15 1-3 * * *", "0 3 * * *", "45 1 * * *", "10 2,3 * * *",
                   "0 0 * * *", "30 23 * * *", "59 23 * * *", "*/15 * * * *", "0 * * * *", "*/20 2 * * *",
                   "0 */2 * * *", "*/10 23 * * *"]


def offset_change(tz: ZoneInfo, day: date) -> datetime:
    """The instant (UTC) at which ``tz`` changes its offset during ``day``."""
    low = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC) - timedelta(hours=2)
    high = low + timedelta(hours=28)
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        low, high = (middle, high) if middle.astimezone(tz).utcoffset() == before else (low, middle)
    return high.replace(second=0, microsecond=0)


def reference_fires(expression: str, tz: ZoneInfo, start: datetime, minutes: int) -> list[datetime]:
    minute_set, hour_set = (set(range(60)) if f == ["*"] else set(f) for f in croniter(expression).expanded[:2])
    fields = expression.split()
    wildcard = fields[0].startswith("*") or fields[1].startswith("*")
    found, newest_wall = [], None
    for i in range(minutes):
        now = start + timedelta(minutes=i)
        wall = now.astimezone(tz).replace(tzinfo=None)
        if wildcard:
            reached = [wall]
        elif newest_wall is None:
            reached = [wall]
        else:
            reached = [newest_wall + timedelta(minutes=k) for k in range(1, int((wall - newest_wall).total_seconds() // 60) + 1)]
        if not wildcard:
            newest_wall = wall if newest_wall is None else max(newest_wall, wall)
        if any(w.minute in minute_set and w.hour in hour_set for w in reached):
            found.append(now)
    return found


@pytest.mark.parametrize(("zone", "day"), DST_CHANGES, ids=[f"{z}-{d}" for z, d in DST_CHANGES])
def test_fires_around_a_dst_change_match_a_minute_by_minute_vixie_cron(zone: str, day: date) -> None:
    tz = parse_timezone(zone)
    start = offset_change(tz, day) - timedelta(hours=4)
    for expression in REFERENCE_CRONS:
        expected = [f for f in reference_fires(expression, tz, start, 8 * 60) if f > start]
        got = next_fires(parse_schedule(expression), tz, start, len(expected) + 1)
        assert [f.astimezone(UTC) for f in got[:-1]] == expected, expression
        assert got[-1] >= start + timedelta(hours=8), expression
        assert all(f.tzinfo == tz for f in got)


@pytest.mark.parametrize(("zone", "day"), DST_CHANGES, ids=[f"{z}-{d}" for z, d in DST_CHANGES])
def test_chaining_next_fire_from_each_previous_fire_gives_the_same_fires(zone: str, day: date) -> None:
    """The scheduler's trigger asks for the fire after the previous fire, one at a time."""
    tz = parse_timezone(zone)
    start = offset_change(tz, day) - timedelta(hours=4)
    for expression in REFERENCE_CRONS:
        schedule = parse_schedule(expression)
        chained, previous = [], start
        for _ in range(12):
            previous = next_fire(schedule, tz, previous)
            chained.append(previous)
        assert chained == next_fires(schedule, tz, start, 12), expression


def test_next_fires_match_the_scheduler_cron_trigger() -> None:
    trigger, now = CronTrigger("0 2 * * *", "Europe/Berlin"), utc(2024, 3, 29, 12)
    expected, previous = [], None
    for _ in range(5):
        previous = trigger.get_next_fire_time(previous, now)
        expected.append(previous)
    assert fires("0 2 * * *", now, "Europe/Berlin") == expected


# ---------------------------------------------------------------- next_fires: intervals


def test_interval_fires_are_evenly_spaced_and_strictly_after_now() -> None:
    now = utc(2024, 6, 10, 12, 7, 30)
    got = fires("every 15m", now, count=4)
    assert got == [utc(2024, 6, 10, 12, 15), utc(2024, 6, 10, 12, 30), utc(2024, 6, 10, 12, 45), utc(2024, 6, 10, 13)]
    assert fires("every 15m", utc(2024, 6, 10, 12, 15), count=1) == [utc(2024, 6, 10, 12, 30)]


def test_interval_fires_are_the_scheduler_fire_times() -> None:
    for text, seconds in (("every 15m", 900), ("every 7m", 420), ("every 1h30m", 5400), ("every 13s", 13)):
        now = utc(2024, 6, 10, 12, 7, 31)
        trigger = IntervalTrigger(seconds=seconds, start_date=INTERVAL_ANCHOR)
        expected, previous = [], None
        for _ in range(3):
            previous = trigger.get_next_fire_time(previous, now)
            expected.append(previous)
        assert fires(text, now, count=3) == expected, text


def test_interval_fires_are_real_time_apart_across_a_dst_change() -> None:
    got = fires("every 15m", utc(2024, 10, 27, 0, 40), "Europe/Berlin", count=4)
    assert [f.astimezone(UTC) for f in got] == [utc(2024, 10, 27, 0, 45), utc(2024, 10, 27, 1),
                                                utc(2024, 10, 27, 1, 15), utc(2024, 10, 27, 1, 30)]
    assert [f.utcoffset() for f in got] == [timedelta(hours=2), timedelta(hours=1), timedelta(hours=1),
                                            timedelta(hours=1)]


def test_interval_fires_are_given_in_the_requested_timezone() -> None:
    got = fires("every 1h", utc(2024, 6, 10, 12, 30), "Asia/Kolkata", count=1)
    assert got[0] == utc(2024, 6, 10, 13) and got[0].utcoffset() == timedelta(hours=5, minutes=30)


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("250ms", 0.25), ("1.5h", 5400),
    ("45", 45), ("0", 0), (" 5 m ", 300), ("5M", 300), ("1d2h3m4s", 93784), (30, 30), (2.5, 2.5),
    ("2 hours", 7200), ("90 minutes", 5400), ("1 day", 86400), ("1 week", 604800), ("30 secs", 30), ("5 mins", 300),
    ("1 hour 30 minutes", 5400), ("250 milliseconds", 0.25), ("2 hrs", 7200),
])
def test_a_duration_is_parsed_to_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(("value", "message"), [
    ("5 parsecs", "'5 parsecs' is not a duration like '30s', '5m', '1h30m', '2d' or '2 hours'"),
    ("", "is not a duration"), ("m", "is not a duration"), ("5x", "is not a duration"),
    ("1h-5m", "is not a duration"), ("-5s", "is not a duration"),
    (-1, "a duration cannot be negative"), (True, "expected a duration"), (None, "expected a duration"),
    ([5], "expected a duration"),
])
def test_a_bad_duration_says_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert message in str(info.value)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (0, "0ms"), (1, "1s"), (90, "1m30s"), (7200, "2h"), (86400, "1d"), (93784, "1d2h3m4s"),
    (3600.4, "1h"), (59.6, "1m"),
])
def test_a_duration_is_formatted_in_short_human_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 61, 3599, 3661, 90061, 604800])
def test_a_formatted_duration_parses_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# ---------------------------------------------------------------- periods and DST days


def period(text: str, now: datetime, tz: str = "UTC") -> float:
    return period_seconds(parse_schedule(text), parse_timezone(tz), now)


def test_an_interval_period_is_the_interval() -> None:
    assert period("every 15m", utc(2024, 6, 10)) == 900
    assert period("every 1h30m", utc(2024, 6, 10), "Europe/Berlin") == 5400


def test_a_cron_period_is_the_longest_gap_between_its_next_fires() -> None:
    now = utc(2024, 6, 12, 12)  # a Wednesday
    assert period("@daily", now) == 86400
    assert period("*/15 * * * *", now) == 900
    assert period("0 9 * * mon-fri", now, "Europe/Berlin") == 3 * 86400  # the weekend
    assert period("@weekly", now) == 7 * 86400
    assert period("@monthly", now) == 31 * 86400  # July -> August
    assert period("0 9,17 * * *", now) == 16 * 3600


def test_a_daily_period_across_the_fall_back_night_is_25_hours() -> None:
    assert period("30 2 * * *", utc(2024, 10, 25), "Europe/Berlin") == 25 * 3600
    assert period("30 2 * * *", utc(2024, 6, 1), "Europe/Berlin") == 24 * 3600


def test_the_typical_period_is_the_median_gap() -> None:
    schedule, berlin = parse_schedule("0 9 * * mon-fri"), parse_timezone("Europe/Berlin")
    assert typical_period_seconds(schedule, berlin, utc(2024, 6, 12, 12)) == 86400
    assert typical_period_seconds(parse_schedule("30 2 * * *"), berlin, utc(2024, 10, 25)) == 86400


def test_dst_days_are_the_days_the_offset_changes() -> None:
    assert dst_days(BERLIN, date(2024, 1, 1), 366) == {date(2024, 3, 31), date(2024, 10, 27)}
    assert dst_days(parse_timezone("America/New_York"), date(2024, 1, 1), 366) == {date(2024, 3, 10),
                                                                                  date(2024, 11, 3)}
    assert dst_days(parse_timezone("Australia/Sydney"), date(2024, 1, 1), 366) == {date(2024, 4, 7),
                                                                                  date(2024, 10, 6)}
    assert dst_days(parse_timezone("UTC"), date(2024, 1, 1), 366) == set()
    assert dst_days(parse_timezone("Asia/Kolkata"), date(2024, 1, 1), 366) == set()
    assert dst_days(BERLIN, date(2024, 3, 31), 1) == {date(2024, 3, 31)}
    assert dst_days(BERLIN, date(2024, 3, 30), 1) == set()


def test_a_fire_can_be_flagged_as_falling_on_a_dst_day() -> None:
    got = fires("30 2 * * *", utc(2024, 3, 29, 12), "Europe/Berlin", count=3)
    assert [is_dst_change_day(BERLIN, f.date()) for f in got] == [False, True, False]
    assert is_dst_change_day(parse_timezone("America/Santiago"), date(2024, 9, 8))


# ---------------------------------------------------------------- describe


@pytest.mark.parametrize(("text", "tz", "words"), [
    ("0 2 * * *", "UTC", "At 02:00 every day (UTC)"),
    ("@daily", "UTC", "At 00:00 every day (UTC)"),
    ("*/15 * * * *", "Europe/Berlin", "Every 15 minutes"),
    ("* * * * *", "UTC", "Every minute"),
    ("0 0 * * 1", "Europe/Berlin", "At 00:00 on Monday (Europe/Berlin)"),
    ("0 */6 * * *", "UTC", "Every 6 hours, at minute 0 (UTC)"),
    ("@hourly", "UTC", "Every hour, at minute 0 (UTC)"),
    ("0,30 * * * *", "UTC", "Every hour, at minutes 0 and 30 (UTC)"),
    ("*/45 * * * *", "UTC", "Every hour, at minutes 0 and 45 (UTC)"),
    ("15 */5 * * *", "UTC", "At 00:15, 05:15, 10:15, 15:15 and 20:15 every day (UTC)"),
    ("*/20 */6 * * *", "UTC", "Every 6 hours, at minutes 0, 20 and 40 (UTC)"),
    ("*/5 * * * 1-5", "UTC", "Every 5 minutes on Monday through Friday (UTC)"),
    ("0 9 * * mon-fri", "America/New_York", "At 09:00 on Monday through Friday (America/New_York)"),
    ("0 9,17 * * *", "UTC", "At 09:00 and 17:00 every day (UTC)"),
    ("0 12 * * 1,3,5", "UTC", "At 12:00 on Monday, Wednesday and Friday (UTC)"),
    ("0 0 * * sat,sun", "UTC", "At 00:00 on Saturday and Sunday (UTC)"),
    ("@weekly", "UTC", "At 00:00 on Sunday (UTC)"),
    ("0 0 * * 7", "UTC", "At 00:00 on Sunday (UTC)"),
    ("0 0 * * 0-6", "UTC", "At 00:00 every day (UTC)"),
    ("@monthly", "UTC", "At 00:00 on day 1 of the month (UTC)"),
    ("30 2 1,15 * *", "Europe/Berlin", "At 02:30 on days 1 and 15 of the month (Europe/Berlin)"),
    ("@yearly", "UTC", "At 00:00 on 1 January (UTC)"),
    ("every 15m", "UTC", "Every 15 minutes (interval)"),
    ("every 1h", "Europe/Berlin", "Every hour (interval)"),
    ("every 1h30m", "UTC", "Every 90 minutes (interval)"),
    ("every 2d", "UTC", "Every 2 days (interval)"),
    ("every 1s", "UTC", "Every second (interval)"),
])
def test_a_schedule_is_described_in_words(text: str, tz: str, words: str) -> None:
    assert describe(parse_schedule(text), tz) == words


@pytest.mark.parametrize(("text", "words"), [
    ("*/10 8-18 * * 1-5", "Every 10 minutes, between 08:00 and 18:59, Monday through Friday (UTC)"),
    ("5 4 * jan-mar sun", "At 04:05, only on Sunday, January through March (UTC)"),
    ("0 0 L * *", "At 00:00, on the last day of the month (UTC)"),
    ("0 0 * * mon#2", "At 00:00, on the second Monday of the month (UTC)"),
])
def test_an_uncommon_cron_is_described_in_24_hour_words_with_its_timezone(text: str, words: str) -> None:
    assert describe(parse_schedule(text), "UTC") == words


@pytest.mark.parametrize("text", ["0 0 1-7 * 1", "0 0 15W * *", "0 0 * * L5", "0 0 ? * *", "0-59/61 * * * *",
                                  "0 0 1,L * *", "0 0 29-31 2 *", "7 7 7 7 *", "1-5,10-15/2 3 */2 * *"])
def test_describing_any_valid_cron_gives_text_naming_the_timezone(text: str) -> None:
    words = describe(parse_schedule(text), "Asia/Kolkata")
    assert words and words.endswith("(Asia/Kolkata)")


@pytest.mark.parametrize("text, zone", [("*/7 * * * *", "UTC"), ("30 2 * * *", "Europe/Berlin"), ("every 90s", "UTC"),
                                        ("0 1-3 * * *", "America/New_York")])
def test_the_remembered_upcoming_fire_is_always_the_next_fire(text: str, zone: str) -> None:
    """Walked minute by minute (and back in time, which must not reuse a fire from later), across
    fires and the DST changes of 2025: the memo never answers anything but next_fire."""
    schedule, tz = parse_schedule(text), ZoneInfo(zone)
    starts = [datetime(2025, 3, 30, 0, 0, tzinfo=timezone.utc), datetime(2025, 11, 2, 4, 0, tzinfo=timezone.utc),
              datetime(2025, 3, 29, 23, 0, tzinfo=timezone.utc)]
    for start in starts:
        for step in range(0, 8 * 60, 7):
            now = start + timedelta(minutes=step, seconds=step % 60)
            assert upcoming_fire(schedule, tz, now) == next_fire(schedule, tz, now), now
    naive = datetime(2025, 6, 1, 12, 0)
    assert upcoming_fire(schedule, tz, naive) == next_fire(schedule, tz, naive.replace(tzinfo=timezone.utc))
