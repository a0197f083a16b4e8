"""The provider window's rule (``lexyjobs.llm.spend._wait``) as a hypothesis state machine: requests
of random sizes arrive at random moments and are admitted when the rule says so; in every window
of WINDOW seconds there are never more than ``requests_per_minute`` requests nor more than
``tokens_per_minute`` tokens (but for a request larger than the whole budget, which goes alone),
and the wait it names is exactly enough: admitted then, and not a microsecond before."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lexyjobs.llm import spend
from lexyjobs.llm.providers import Provider

WINDOW = timedelta(seconds=spend.WINDOW)
START = datetime(2026, 12, 6, tzinfo=timezone.utc)


class Row(NamedTuple):
    at: datetime
    tokens: int


class ProviderWindow(RuleBasedStateMachine):
    @initialize(rpm=st.one_of(st.none(), st.integers(1, 5)), tpm=st.one_of(st.none(), st.integers(10, 100)))
    def limits(self, rpm: int | None, tpm: int | None) -> None:
        self.provider = Provider("p", requests_per_minute=rpm, tokens_per_minute=tpm or (None if rpm else 50))
        self.now = START
        self.admitted: list[Row] = []

    def window(self, at: datetime) -> list[Row]:
        """What take_slot sees at ``at``: the rows younger than WINDOW, oldest first."""
        return [row for row in self.admitted if row.at > at - WINDOW]

    @rule(seconds=st.one_of(st.floats(0, 5, allow_nan=False), st.floats(0, 90, allow_nan=False)))
    def time_passes(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(tokens=st.one_of(st.integers(0, 40), st.integers(0, 150)))
    def request(self, tokens: int) -> None:
        wait = spend._wait(self.provider, self.window(self.now), tokens, self.now)
        if wait > 0:
            just_before = self.now + timedelta(seconds=wait) - timedelta(microseconds=1)
            assert spend._wait(self.provider, self.window(just_before), tokens, just_before) > 0
            self.now += timedelta(seconds=wait)
            assert spend._wait(self.provider, self.window(self.now), tokens, self.now) == 0
        self.admitted.append(Row(self.now, tokens))

    @invariant()
    def never_over_the_limits(self) -> None:
        if not hasattr(self, "admitted"):
            return
        for row in self.admitted:  # every window ending at an admission
            inside = [r for r in self.admitted if row.at - WINDOW < r.at <= row.at]
            if self.provider.requests_per_minute is not None:
                assert len(inside) <= self.provider.requests_per_minute
            tpm = self.provider.tokens_per_minute
            if tpm is not None and len(inside) > 1:  # one request alone may be larger than the budget
                assert sum(r.tokens for r in inside) <= tpm


TestProviderWindow = ProviderWindow.TestCase
TestProviderWindow.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_a_request_waits_until_enough_of_the_oldest_requests_have_left_the_window() -> None:
    tokens = Provider("p", tokens_per_minute=50)
    rows = [Row(START, 10), Row(START + timedelta(seconds=1), 10)]
    now = START + timedelta(seconds=2)
    assert spend._wait(tokens, rows, 30, now) == 0                   # 20 + 30 fits
    assert spend._wait(tokens, rows, 35, now) == spend.WINDOW - 2    # the first must leave
    assert spend._wait(tokens, rows, 45, now) == spend.WINDOW - 1    # both must leave
    assert spend._wait(tokens, [], 80, now) == 0                     # alone, larger than the budget
    assert spend._wait(tokens, rows[:1], 80, now) == spend.WINDOW - 2
    requests = Provider("p", requests_per_minute=2)
    assert spend._wait(requests, rows, 0, now) == spend.WINDOW - 2
    assert spend._wait(requests, rows[1:], 0, now) == 0
