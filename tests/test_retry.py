"""Retry backoff: the pure ``backoff`` schedule (randomness passed in), and retries through a real
worker on both databases (attempts, events, re-queue delay)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from lexyjobs import runs, store
from lexyjobs.db import utcnow
from lexyjobs.models import Run
from lexyjobs.backoff import RetryPolicy, backoff, retry_after_seconds, retry_delay

TERMINAL = ("succeeded", "failed", "canceled")


class FixedRng(random.Random):
    """A random source whose ``random()`` always returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def finished(db: Any, run_id: int, timeout: float = 10.0) -> Run:
    """Wait until the run reaches a terminal status and return it."""
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


# ---------------------------------------------------------------- backoff(), pure


def test_the_first_failed_attempt_waits_the_base_delay():
    assert backoff(1, RetryPolicy(base=7.0, factor=3.0, cap=3600.0, jitter=0.0), FixedRng(0.5)) == 7.0


def test_the_delay_grows_by_the_factor_for_each_further_attempt():
    policy = RetryPolicy(base=10.0, factor=2.0, cap=10_000.0, jitter=0.0)
    assert [backoff(n, policy, FixedRng(0.5)) for n in range(1, 6)] == [10.0, 20.0, 40.0, 80.0, 160.0]
    tripled = RetryPolicy(base=1.5, factor=3.0, cap=10_000.0, jitter=0.0)
    assert [backoff(n, tripled, FixedRng(0.5)) for n in range(1, 5)] == [1.5, 4.5, 13.5, 40.5]


def test_the_delay_never_exceeds_the_cap():
    policy = RetryPolicy(base=10.0, factor=2.0, cap=60.0, jitter=0.0)
    assert [backoff(n, policy, FixedRng(0.5)) for n in range(1, 7)] == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert backoff(500, policy, FixedRng(0.5)) == 60.0  # huge attempt numbers do not overflow past the cap


def test_jitter_only_takes_off_up_to_its_fraction():
    policy = RetryPolicy(base=100.0, factor=2.0, cap=3600.0, jitter=0.25)
    assert backoff(1, policy, FixedRng(0.0)) == 100.0
    assert backoff(1, policy, FixedRng(0.5)) == pytest.approx(87.5)
    assert backoff(1, policy, FixedRng(0.999999)) == pytest.approx(75.0, abs=1e-3)
    assert backoff(3, policy, FixedRng(0.5)) == pytest.approx(350.0)  # jitter applies after growth


def test_jitter_with_a_seeded_rng_stays_within_the_band_and_spreads_out():
    policy = RetryPolicy(base=40.0, factor=2.0, cap=3600.0, jitter=0.2)
    rng = random.Random(1234)
    delays = [backoff(2, policy, rng) for _ in range(500)]
    assert all(64.0 <= d <= 80.0 for d in delays)
    assert min(delays) < 65.0 and max(delays) > 79.0  # the whole band is used, not one value
    again = random.Random(1234)
    assert [backoff(2, policy, again) for _ in range(500)] == delays  # same seed, same schedule


def test_jitter_never_pushes_a_capped_delay_above_the_cap():
    policy = RetryPolicy(base=10.0, factor=10.0, cap=30.0, jitter=0.5)
    rng = random.Random(99)
    assert all(15.0 <= backoff(n, policy, rng) <= 30.0 for n in range(2, 50))


# ---------------------------------------------------------------- retry_delay() and Retry-After, pure


def test_a_retry_after_longer_than_the_backoff_sets_the_delay():
    policy = RetryPolicy(base=10.0, factor=2.0, cap=3600.0, jitter=0.0)
    assert retry_delay(1, policy, FixedRng(0.5), 45.0) == 45.0
    assert retry_delay(1, policy, FixedRng(0.5), 3.0) == 10.0  # shorter: the backoff stands
    assert retry_delay(1, policy, FixedRng(0.5), None) == retry_delay(1, policy, FixedRng(0.5)) == 10.0
    assert retry_delay(1, policy, FixedRng(0.5), 0.0) == 10.0


def test_a_retry_after_is_never_cut_by_jitter_but_is_capped_by_backoff_max():
    jittery = RetryPolicy(base=1.0, factor=2.0, cap=3600.0, jitter=0.5)
    assert retry_delay(1, jittery, FixedRng(0.999), 30.0) == 30.0
    capped = RetryPolicy(base=1.0, factor=2.0, cap=120.0, jitter=0.0)
    assert retry_delay(1, capped, FixedRng(0.5), 86_400.0) == 120.0


NOW = datetime(2025, 3, 1, 9, 30, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("header, seconds", [
    ("1", 1.0), (" 120 ", 120.0), ("0", 0.0), ("1.5", 1.5),
    ("Sat, 01 Mar 2025 09:30:07 GMT", 7.0),           # an HTTP date
    ("Saturday, 01-Mar-25 09:31:00 GMT", 60.0),       # the obsolete RFC 850 form
    ("Sat, 01 Mar 2025 09:29:00 GMT", 0.0),           # already past: no wait
    ("Sat, 01 Mar 2025 10:30:00 +0100", 0.0),         # an offset counts
    ("", None), (None, None), ("soon", None), ("-5", None), ("nan", None), ("1e3", None),
])
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after_seconds(header, NOW) == seconds


# ---------------------------------------------------------------- through a worker


def test_a_job_that_always_fails_ends_failed_after_exactly_max_attempts(db, make_job, start_worker):
    make_job("flaky", func="jobfuncs:boom", max_attempts=3, backoff="0s")
    start_worker()
    run_id = runs.enqueue(db, "flaky")
    run = finished(db, run_id)
    assert run.status == "failed"
    assert run.attempt == 3
    assert run.error == "ValueError: boom: something broke"
    with db.read() as session:
        events = store.run_events(session, run_id)
    assert [(e.from_status, e.to_status, e.attempt) for e in events] == [
        ("queued", "running", 1), ("running", "queued", 1),
        ("queued", "running", 2), ("running", "queued", 2),
        ("queued", "running", 3), ("running", "failed", 3)]
    retry_notes = [e.note or "" for e in events if (e.from_status, e.to_status) == ("running", "queued")]
    assert all("retrying" in note for note in retry_notes)
    assert retry_notes[0].startswith("attempt 1 of 3 failed: ValueError: boom")
    assert events[-1].note == "attempt 3 of 3 failed: ValueError: boom: something broke"
    assert "retrying" not in events[-1].note


def test_a_job_that_fails_once_then_succeeds_ends_succeeded_on_attempt_two(db, make_job, start_worker,
                                                                         tmp_path: Path):
    marker = tmp_path / "failed-once"
    make_job("second-time", func="jobfuncs:fail_once_then_succeed", max_attempts=3, backoff="0s",
             params={"marker": {"type": "string"}})
    start_worker()
    run = finished(db, runs.enqueue(db, "second-time", {"marker": str(marker)}))
    assert run.status == "succeeded"
    assert run.attempt == 2
    assert run.result == {"attempt": 2}
    assert run.error is None and run.traceback is None  # the first attempt's error is cleared
    assert marker.read_text() == "1"


def test_a_failed_attempt_is_requeued_for_now_plus_the_backoff(db, make_job, start_worker):
    make_job("later", func="jobfuncs:boom", max_attempts=3, backoff="30s", backoff_jitter=0)
    make_job("probe")
    start_worker()
    before = utcnow()
    run_id = runs.enqueue(db, "later")
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "queued" and r.attempt == 1 and r)
    after = utcnow()
    with db.read() as session:
        requeued = store.run_events(session, run_id)[-1]
    assert (requeued.from_status, requeued.to_status) == ("running", "queued")
    assert requeued.note is not None and requeued.note.endswith("retrying in 30s")
    assert run.scheduled_for - requeued.at == timedelta(seconds=30)
    assert before + timedelta(seconds=30) <= run.scheduled_for <= after + timedelta(seconds=30)
    assert run.worker is None and run.error == "ValueError: boom: something broke"
    # the worker keeps polling but leaves the retry alone until it is due
    assert finished(db, runs.enqueue(db, "probe")).status == "succeeded"
    still = runs.get_run(db, run_id)
    assert (still.status, still.attempt) == ("queued", 1)


def test_a_failure_with_retry_after_requeues_for_at_least_that_long(db, make_job, start_worker):
    make_job("limited", func="jobfuncs:rate_limited", max_attempts=2, backoff="0s", backoff_jitter=0,
             params={"retry_after": {"type": "number"}})
    start_worker()
    run_id = runs.enqueue(db, "limited", {"retry_after": 30})
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "queued" and r.attempt == 1 and r)
    with db.read() as session:
        requeued = store.run_events(session, run_id)[-1]
    assert requeued.note == "attempt 1 of 2 failed: slow down; retrying in 30s"
    assert run.scheduled_for - requeued.at == timedelta(seconds=30)
    assert run.error == "slow down"


def test_a_retry_after_on_the_last_attempt_does_not_keep_the_run_alive(db, make_job, start_worker):
    make_job("limited", func="jobfuncs:rate_limited", max_attempts=1, params={"retry_after": {"type": "number"}})
    start_worker()
    run = finished(db, runs.enqueue(db, "limited", {"retry_after": 30}))
    assert (run.status, run.attempt, run.error) == ("failed", 1, "slow down")
