"""Health signals: what a job's runs say beyond "did the last one succeed?" — a pure function of
the job's definition, a summary of its recent runs (``RecentRuns``, read by
``lexyjobs.health_reads``) and ``now``.

* ``too_long``: a run is still running after the longest it should take: the job's
  ``expected_duration`` upper end, else ``max(median × LONG_FACTOR, median + LONG_MADS × MAD,
  LONG_FLOOR)`` of its last ``SAMPLES`` successful runs (judged once it has ``MIN_SAMPLES``).
* ``too_short``: its latest success took less than the ``expected_duration`` lower end, else less
  than both ``median / SHORT_DIVISOR`` and ``median − SHORT_MADS × MAD`` of the ``SAMPLES``
  successes before it, when that median is at least ``SHORT_MIN_TYPICAL`` (a 2-second job's
  0.3-second run is noise, not a problem).
* ``too_often``: more runs (any trigger, skipped fires included) were created in the last hour
  than ``max_runs_per_hour``, else than ``OFTEN_FACTOR`` × the runs an hour its schedule implies
  (3600 s / its typical period, rounded up) + ``OFTEN_SLACK``. A manual job without
  ``max_runs_per_hour`` is not judged.
* ``late_start``: its latest scheduled run that started, or that has waited past the threshold,
  waited in the queue (from its creation by the scheduler to its first start) longer than
  ``late_after``, else ``LATE_FRACTION`` of its schedule's typical period clamped to
  ``[LATE_MIN, LATE_MAX]``; the signal says why a run that still waits is waiting.

Durations are ``finished_at − started_at`` of a run's last attempt; MAD is the median absolute
deviation from the median (unscaled). Every signal names its *episode* (the run it is about, or the
first run of a streak of short successes or late starts), which the alerter uses to alert once per
episode; ``continues`` says the streak reaches back past the runs read."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from lexyjobs.cron import parse_timezone, typical_period_seconds
from lexyjobs.definitions import JobDefinition
from lexyjobs.durations import format_duration

SAMPLES = 20            # successes a typical duration is learned from
MIN_SAMPLES = 5         # fewer successes than this: durations are not judged (unless expected_duration)
LONG_FACTOR = 3.0
LONG_MADS = 6.0
LONG_FLOOR = 60.0       # never too long before a minute
SHORT_DIVISOR = 4.0
SHORT_MADS = 6.0
SHORT_MIN_TYPICAL = 10.0
OFTEN_FACTOR = 2
OFTEN_SLACK = 5
LATE_FRACTION = 0.1
LATE_MIN = 300.0
LATE_MAX = 3600.0
SCHEDULED_READ = 5      # latest scheduled runs read per job (a longer streak of late starts "continues")
SUCCESSES_READ = SAMPLES + 5  # a streak of short successes longer than 5 "continues"

SIGNAL_KINDS = ("too_long", "too_short", "too_often", "late_start")


@dataclass(frozen=True)
class Signal:
    """One finding: its kind (also its alert event), a short human message, the run it is about
    (None for ``too_often``), the episode it belongs to and facts for the webhook's details."""

    kind: str
    message: str
    run_id: int | None = None
    episode: str = ""
    continues: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduledRun:
    """One run the scheduler created: when it was queued, its first start (None: not started) and,
    for one still waiting, why (``lexyjobs.flow.waiting``; None when not looked up)."""

    id: int
    queued_at: datetime
    started_at: datetime | None = None
    waiting: str | None = None


@dataclass(frozen=True)
class RecentRuns:
    """What the signals need of a job's runs (``lexyjobs.health_reads.recent_runs`` reads it)."""

    successes: tuple[tuple[int, float], ...] = ()       # (run id, seconds) of the latest successes, newest first
    running: tuple[tuple[int, datetime], ...] = ()      # (run id, started_at) of its running runs, oldest first
    runs_last_hour: int = 0                             # runs created in the hour before now
    scheduled: tuple[ScheduledRun, ...] = ()            # its latest scheduled runs, newest first


@dataclass(frozen=True)
class Typical:
    """The duration a job's successes take: learned (median and MAD of ``samples``) or stated."""

    shortest: float | None   # shorter than this is too short (None: not judged)
    longest: float | None    # longer than this is too long
    words: str               # "typical 20m (×3 = 1h)" / "expected 10m..40m"


def judge(definition: JobDefinition, recent: RecentRuns, now: datetime) -> tuple[Signal, ...]:
    """Every signal that holds at ``now``, in the order of ``SIGNAL_KINDS``."""
    found = [_too_long(definition, recent, now), _too_short(definition, recent),
             _too_often(definition, recent, now), _late_start(definition, recent, now)]
    return tuple(s for s in found if s is not None)


def next_signal_at(definition: JobDefinition, recent: RecentRuns, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which the passing of time alone starts a signal: a
    running run crossing its too-long bound, a waiting scheduled run crossing the late threshold
    (the panel refreshes then; no write tells it). None when no such moment is coming."""
    coming = []
    bounds = typical(definition, [s for _, s in recent.successes]) if recent.running else None
    if bounds is not None and bounds.longest is not None:
        coming.append(recent.running[0][1] + timedelta(seconds=bounds.longest))
    waiting = [run for run in recent.scheduled if run.started_at is None]
    if waiting:
        limit = timedelta(seconds=late_threshold(definition, now))
        coming.extend(run.queued_at + limit for run in waiting)
    return min((at for at in coming if at > now), default=None)


def typical(definition: JobDefinition, seconds: Sequence[float]) -> Typical | None:
    """The bounds a run is judged by: ``expected_duration`` when set, else learned from
    ``seconds`` (the successes, newest first; the first ``SAMPLES``); None below ``MIN_SAMPLES``."""
    if definition.expected_duration is not None:
        low, high = definition.expected_duration
        words = f"expected {format_duration(low) if low is not None else ''}..{format_duration(high) if high else ''}"
        return Typical(low, high, words)
    samples = list(seconds[:SAMPLES])
    if len(samples) < MIN_SAMPLES:
        return None
    median = statistics.median(samples)
    mad = statistics.median(abs(s - median) for s in samples)
    longest = max(median * LONG_FACTOR, median + LONG_MADS * mad, LONG_FLOOR)
    shortest = min(median / SHORT_DIVISOR, median - SHORT_MADS * mad) if median >= SHORT_MIN_TYPICAL else None
    return Typical(shortest if shortest is None or shortest > 0 else None, longest,
                   f"typical {format_duration(median)}")


def late_threshold(definition: JobDefinition, now: datetime) -> float:
    """Seconds a scheduled run may wait in the queue before it is a late start."""
    if definition.late_after is not None:
        return definition.late_after
    if definition.schedule is None:
        return LATE_MIN
    period = typical_period_seconds(definition.schedule, parse_timezone(definition.timezone), now)
    return min(max(LATE_FRACTION * period, LATE_MIN), LATE_MAX)


def runs_allowed_per_hour(definition: JobDefinition, now: datetime) -> int | None:
    """Runs an hour above which the job runs too often (None: not judged)."""
    if definition.max_runs_per_hour is not None:
        return definition.max_runs_per_hour
    if definition.schedule is None:
        return None
    period = typical_period_seconds(definition.schedule, parse_timezone(definition.timezone), now)
    return OFTEN_FACTOR * math.ceil(3600.0 / max(period, 1.0)) + OFTEN_SLACK


# ---------------------------------------------------------------- the four signals


def _too_long(definition: JobDefinition, recent: RecentRuns, now: datetime) -> Signal | None:
    if not recent.running:
        return None
    bounds = typical(definition, [s for _, s in recent.successes])
    if bounds is None or bounds.longest is None:
        return None
    run_id, started = recent.running[0]
    elapsed = (now - started).total_seconds()
    if elapsed <= bounds.longest:
        return None
    return Signal("too_long", f"too long: run {run_id} running {format_duration(elapsed)} ({bounds.words}; "
                  f"too long after {format_duration(bounds.longest)})", run_id, str(run_id),
                  details={"seconds": round(elapsed, 3), "longest": bounds.longest})


def _too_short(definition: JobDefinition, recent: RecentRuns) -> Signal | None:
    durations = [s for _, s in recent.successes]
    latest = typical(definition, durations[1:])
    if latest is None or latest.shortest is None or not durations or durations[0] >= latest.shortest:
        return None
    streak = 1  # each earlier success judged against the ones before it
    while streak < len(durations):
        bounds = typical(definition, durations[streak + 1:])
        if bounds is None or bounds.shortest is None or durations[streak] >= bounds.shortest:
            break
        streak += 1
    run_id, took = recent.successes[0]
    times = f", {streak} successes in a row" if streak > 1 else ""
    return Signal("too_short", f"too short: run {run_id} succeeded in {format_duration(took)}{times} "
                  f"({latest.words}; too short under {format_duration(latest.shortest)})", run_id,
                  str(recent.successes[streak - 1][0]), continues=streak == len(durations) >= SUCCESSES_READ,
                  details={"seconds": round(took, 3), "shortest": latest.shortest, "streak": streak})


def _too_often(definition: JobDefinition, recent: RecentRuns, now: datetime) -> Signal | None:
    allowed = runs_allowed_per_hour(definition, now)
    if allowed is None or recent.runs_last_hour <= allowed:
        return None
    why = ("max_runs_per_hour" if definition.max_runs_per_hour is not None
           else f"{OFTEN_FACTOR} × its schedule + {OFTEN_SLACK}")
    return Signal("too_often", f"too often: {recent.runs_last_hour} runs in the last hour (at most {allowed}: {why})",
                  details={"runs_last_hour": recent.runs_last_hour, "allowed": allowed})


def _late_start(definition: JobDefinition, recent: RecentRuns, now: datetime) -> Signal | None:
    limit = late_threshold(definition, now)
    late: list[tuple[ScheduledRun, float]] = []
    ended = False  # a run started on time (or one still in time) ends the streak
    for run in recent.scheduled:
        waited = ((run.started_at or now) - run.queued_at).total_seconds()
        if waited > limit:
            late.append((run, waited))
        elif run.started_at is not None or late:
            ended = True
            break
        # else: the newest run still waits within its time: it neither is late nor ends a streak
    if not late:
        return None
    run, waited = late[0]
    if run.started_at is None:
        message = f"late start: run {run.id} has waited {format_duration(waited)} in the queue (late after {format_duration(limit)})"
        message += f": {run.waiting}" if run.waiting else ""
    else:
        message = (f"late start: run {run.id} started {format_duration(waited)} after it was queued "
                   f"(late after {format_duration(limit)})")
    continues = not ended and len(recent.scheduled) >= SCHEDULED_READ
    return Signal("late_start", message, run.id, str(late[-1][0].id), continues=continues,
                  details={"waited_seconds": round(waited, 3), "late_after": limit, "started": run.started_at is not None,
                           "waiting_for": run.waiting})
