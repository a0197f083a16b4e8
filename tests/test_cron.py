"""Schedules (lexyjobs.cron) and human durations (lexyjobs.durations). Pure functions: every test
passes a fixed ``now``."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from lexyjobs.cron import ALIASES, INTERVAL_ANCHOR, Schedule, next_fires, parse_schedule, parse_timezone
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
    ("61 * * * *", "'61 * * * *' is not a valid cron expression"),
    ("0 24 * * *", "not a valid cron expression"),
    ("0 0 32 * *", "not a valid cron expression"),
    ("0 0 * 13 *", "not a valid cron expression"),
    ("0 0 * * 8", "not a valid cron expression"),
    ("*/0 * * * *", "not a valid cron expression"),
    ("lorem ipsum dolor sit amet", "not a valid cron expression"),
    ("0 0 31 2 *", "'0 0 31 2 *' never fires"),
    ("@fortnightly", "unknown alias '@fortnightly' (use @hourly, @daily"),
    ("@reboot", "unknown alias '@reboot'"),
    ("every 0s", "an interval must be at least 1s"),
    ("every 500ms", "an interval must be at least 1s"),
    ("every fortnight", "'fortnight' is not a duration like '30s', '5m', '1h30m' or '2d'"),
    ("", "must be a cron expression like '0 */6 * * *', an alias like '@daily', or 'every 15m'"),
    ("   ", "must be a cron expression"),
])
def test_a_bad_schedule_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(text)
    assert message in str(info.value)


@pytest.mark.parametrize("value", [None, 15, ["0", "*", "*", "*", "*"]])
def test_a_schedule_that_is_not_text_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="must be a cron expression"):
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


@pytest.mark.xfail(strict=True, reason="croniter fires a fixed-time daily job twice in the repeated hour of a "
                                       "DST fall-back night (02:30 CEST and 02:30 CET); cron convention is once")
def test_a_daily_cron_in_the_repeated_hour_fires_once_on_the_fall_back_day() -> None:
    got = fires("30 2 * * *", utc(2024, 10, 25, 12), "Europe/Berlin", count=3)
    assert [f.date().isoformat() for f in got] == ["2024-10-26", "2024-10-27", "2024-10-28"]


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
])
def test_a_duration_is_parsed_to_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(("value", "message"), [
    ("5 parsecs", "'5 parsecs' is not a duration like '30s', '5m', '1h30m' or '2d'"),
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
