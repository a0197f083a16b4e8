"""The timeline's upcoming fires (lexyjobs.timeline.fires): the scheduler's fire times between now
and the window's end, at most ``cap``, none while paused; the list kept between requests answers
exactly what a fresh computation would."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lexyjobs.cron import next_fires, parse_schedule, parse_timezone
from lexyjobs.definitions import parse_definition
from lexyjobs.timeline import fires

NOW = datetime(2030, 3, 30, 22, 7, tzinfo=timezone.utc)


def test_fires_are_the_schedules_times_after_now_up_to_the_end() -> None:
    got = fires.schedule_fires(parse_schedule("*/30 * * * *"), "UTC", NOW, NOW + timedelta(hours=2), 48)
    assert [f.strftime("%H:%M") for f in got] == ["22:30", "23:00", "23:30", "00:00"]
    assert all(f.tzinfo is not None and f.utcoffset() == timedelta(0) for f in got)


@pytest.mark.parametrize("text, expected", [("every 7m", 10), ("*/20 * * * *", 9), ("0 * * * *", 3)])
def test_a_kept_list_answers_like_a_fresh_one_as_time_moves_on(text: str, expected: int) -> None:
    schedule = parse_schedule(text)
    for minutes in range(0, 600, 13):
        now = NOW + timedelta(minutes=minutes)
        until = now + timedelta(hours=3)
        kept = fires.schedule_fires(schedule, "Europe/Berlin", now, until, 10)
        fires._kept.clear()
        fresh = fires.schedule_fires(schedule, "Europe/Berlin", now, until, 10)
        assert kept == fresh and fresh[:3] == [f.astimezone(timezone.utc) for f in next_fires(
            schedule, parse_timezone("Europe/Berlin"), now, 3)], now
        assert len(kept) == expected and kept[0] > now


def test_a_zone_with_a_clock_change_gives_its_real_instants() -> None:
    """Europe/Berlin springs forward at 01:00 UTC on 2030-03-31: 02:30 local does not exist."""
    got = fires.schedule_fires(parse_schedule("30 2 * * *"), "Europe/Berlin", NOW, NOW + timedelta(hours=12), 5)
    assert got == [datetime(2030, 3, 31, 1, 0, tzinfo=timezone.utc)]  # vixie cron: right after the jump


def test_paused_manual_and_one_off_jobs() -> None:
    until = NOW + timedelta(hours=3)
    scheduled = parse_definition("a", {"kind": "python", "func": "jobfuncs:noop", "schedule": "every 1h"})
    assert len(fires.upcoming(scheduled, True, NOW, until, 48)) == 3
    assert fires.upcoming(scheduled, False, NOW, until, 48) == []  # paused
    manual = parse_definition("b", {"kind": "python", "func": "jobfuncs:noop"})
    assert fires.upcoming(manual, True, NOW, until, 48) == [] and fires.upcoming(None, True, NOW, until, 48) == []
    once = parse_definition("c", {"kind": "python", "func": "jobfuncs:noop", "run_at": "2030-03-30T23:00:00Z"})
    assert fires.upcoming(once, True, NOW, until, 48) == [datetime(2030, 3, 30, 23, 0, tzinfo=timezone.utc)]
    assert fires.upcoming(once, True, NOW, NOW + timedelta(minutes=30), 48) == []
