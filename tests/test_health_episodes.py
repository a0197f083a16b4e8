"""Property tests (hypothesis) of "once per episode": over any sequence of successes, the short
ones alert exactly once per streak; and the alerter's test of whether a burst of runs cleared
(``_within_limit_since``) agrees with counting the trailing hour at every second."""
from __future__ import annotations

import bisect
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from lexyjobs.alerts.alerter import _within_limit_since
from lexyjobs.definitions import parse_definition
from lexyjobs.health_signals import RecentRuns, SUCCESSES_READ, judge

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=timezone.utc)
STATED = parse_definition("ingest", {"kind": "shell", "argv": ["true"], "expected_duration": "10m..40m"})
SHORT, NORMAL = 60.0, 1200.0  # under and within 10m..40m


def streaks(shorts: list[bool]) -> int:
    """How many maximal runs of consecutive True there are."""
    return sum(1 for i, short in enumerate(shorts) if short and (i == 0 or not shorts[i - 1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=3 * SUCCESSES_READ))
def test_short_successes_alert_once_per_streak(shorts: list[bool]) -> None:
    told: list[str] = []  # the episodes alerted, as the alerter keys them
    history: list[tuple[int, float]] = []  # newest first
    for run_id, short in enumerate(shorts, start=1):
        history.insert(0, (run_id, SHORT if short else NORMAL))
        recent = RecentRuns(successes=tuple(history[:SUCCESSES_READ]))  # what health_reads reads
        for signal in judge(STATED, recent, NOW):
            assert signal.kind == "too_short" and signal.run_id == run_id
            if signal.continues:  # a streak reaching back past the runs read: the one already told, if any
                if not told:
                    told.append("after-0")
            elif signal.episode not in told:
                told.append(signal.episode)
    assert len(told) == streaks(shorts)


HOUR_S = 3600


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3 * HOUR_S), max_size=25), st.integers(0, 3 * HOUR_S), st.integers(0, HOUR_S),
       st.integers(1, 6))
def test_a_burst_cleared_exactly_when_the_trailing_hour_was_within_the_limit(
        seconds: list[int], start: int, span: int, allowed: int) -> None:
    times = sorted(NOW + timedelta(seconds=s) for s in seconds)
    begin, end = NOW + timedelta(seconds=start), NOW + timedelta(seconds=start + span)

    def in_hour_before(moment: datetime) -> int:
        return bisect.bisect_right(times, moment) - bisect.bisect_right(times, moment - timedelta(hours=1))
    # the times are whole seconds, so the count changes only on whole seconds: look at every one
    every_second = any(in_hour_before(begin + timedelta(seconds=s)) <= allowed for s in range(span + 1))
    assert _within_limit_since(times, begin, end, allowed) == every_second
