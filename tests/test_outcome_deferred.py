"""``change_of`` for a run that deferred itself (``RunDeferred``: a spent daily budget): back to
the queue held until the next day, its attempt given back — unless a cancel was asked for while it
ran, when it ends canceled instead of waiting (a unit test: the race is too narrow to stage)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from lexyjobs.claiming import ClaimedRun
from lexyjobs.context import RunContext
from lexyjobs.outcomes import Active, Outcome, change_of
from lexyjobs.states import RunStatus

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=timezone.utc)
MIDNIGHT = datetime(2026, 12, 7, tzinfo=timezone.utc)


def deferred(attempt: int) -> Outcome:
    claim = ClaimedRun(id=7, job_name="summarise", job_version=1, lease=3, attempt=attempt, max_attempts=3,
                       params={}, trigger="api")
    ctx = RunContext(run_id=7, job_name="summarise", params={}, attempt=attempt, max_attempts=3)
    return Outcome(Active(claim, ctx, None), RunStatus.QUEUED, error="the daily budget of job summarise is spent",
                   deferred=(MIDNIGHT, "budget:job summarise"))


def test_a_deferred_run_is_held_until_then_and_its_attempt_given_back() -> None:
    change = change_of(deferred(attempt=2), NOW, {}, random.Random(1))
    assert change is not None
    assert (change.to, change.lease) == (RunStatus.QUEUED, 3)
    assert change.values["held_until"] == MIDNIGHT and change.values["held_by"] == "budget:job summarise"
    assert change.values["attempt"] == 1
    assert "scheduled_for" not in change.values  # it keeps its place in the queue
    assert change.note == "attempt 2 deferred, not counted: the daily budget of job summarise is spent"


def test_a_deferred_run_asked_to_cancel_ends_canceled_instead_of_waiting() -> None:
    asked = NOW - timedelta(seconds=5)
    change = change_of(deferred(attempt=1), NOW, {7: asked}, random.Random(1))
    assert change is not None
    assert change.to == RunStatus.CANCELED
    assert (change.values["finished_at"], change.values["error"]) == (NOW, "canceled")
    assert "held_until" not in change.values
    assert change.note is not None and change.note.startswith(
        "the daily budget of job summarise is spent; not re-queued: cancel requested at")
