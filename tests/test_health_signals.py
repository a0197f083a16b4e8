"""Health signals (lexyjobs.health_signals): too_long, too_short, too_often and late_start, judged
on fixed clocks from summaries passed in, then from real runs on both databases (time passed in,
no sleeps), with each signal's alert sent once per episode to a real local webhook."""
from __future__ import annotations

import html
import re
import urllib.parse
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import drive_run
from sqlalchemy import update
from test_alerts import Hooks, alerter, hooks  # noqa: F401  (fixtures)

from lexyjobs import runs
from lexyjobs.alerts.alerter import Alerter
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition, parse_definition
from lexyjobs.durations import parse_duration_range
from lexyjobs.errors import InvalidDefinition
from lexyjobs.health import LastRuns, job_health, jobs_overview
from lexyjobs.health_signals import (LATE_MAX, LATE_MIN, RecentRuns, ScheduledRun, Signal, judge, late_threshold,
                                     next_signal_at, runs_allowed_per_hour, typical)
from lexyjobs.states import RUNS, RunStatus, transition

UTC = timezone.utc
NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
MINUTE, HOUR = 60.0, 3600.0
MakeJob = Callable[..., str]


def job(**fields: Any) -> JobDefinition:
    return parse_definition("metrics", {"kind": "shell", "argv": ["true"], **fields})


def successes(*seconds: float) -> tuple[tuple[int, float], ...]:
    """(run id, seconds), newest first: run 100 is the newest."""
    return tuple((100 - i, s) for i, s in enumerate(seconds))


def only(signals: tuple[Signal, ...], kind: str) -> Signal:
    [found] = [s for s in signals if s.kind == kind]
    return found


# ---------------------------------------------------------------- learned and stated durations


def test_the_typical_duration_is_learned_from_the_latest_successes() -> None:
    learned = typical(job(), [1200, 1180, 1250, 1210, 1190])
    assert learned is not None and learned.words == "typical 20m"
    assert learned.longest == 3 * 1200          # three times the median (the spread is small)
    assert learned.shortest == 1200 / 4
    assert typical(job(), [1200, 1180, 1250, 1210]) is None  # four successes teach nothing yet
    # only the latest 20 count: 20 runs of 20 minutes, then (older) 10 of 10 seconds
    assert typical(job(), [1200] * 20 + [10] * 10).words == "typical 20m"  # type: ignore[union-attr]
    # a wide spread widens the bounds: the median plus six median absolute deviations
    spread = typical(job(), [600, 1200, 1800, 600, 1800])
    assert spread is not None and spread.longest == 1200 + 6 * 600
    assert spread.shortest is None  # 1200 - 6 × 600 < 0: nothing is too short


def test_expected_duration_overrides_learning() -> None:
    stated = typical(job(expected_duration="10m..40m"), [])
    assert stated is not None and (stated.shortest, stated.longest) == (600, 2400)
    assert stated.words == "expected 10m..40m"
    assert typical(job(expected_duration="..40m"), [1] * 10).shortest is None  # type: ignore[union-attr]
    assert parse_duration_range("10m..") == (600, None)


@pytest.mark.parametrize("value, words", [
    ("40m", "must be a range"), ("..", "needs at least one end"), ("40m..10m", "ends before it starts"),
    ("..0s", "longer than 0s"), ("1x..2m", "1x"), (40, "must be a range")])
def test_a_bad_expected_duration_is_refused_in_words(value: Any, words: str) -> None:
    with pytest.raises(InvalidDefinition, match="expected_duration") as refused:
        job(expected_duration=value)
    assert words in str(refused.value)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", 1_000_001])
def test_max_runs_per_hour_is_a_whole_number(value: Any) -> None:
    with pytest.raises(InvalidDefinition, match="max_runs_per_hour"):
        job(max_runs_per_hour=value)


# ---------------------------------------------------------------- too_long and too_short


def test_a_run_is_too_long_while_it_is_still_running() -> None:
    learned = RecentRuns(successes=successes(*[1200] * 5))
    in_time = RecentRuns(successes=learned.successes, running=((7, NOW - timedelta(minutes=59)),))
    assert judge(job(), in_time, NOW) == ()
    late = RecentRuns(successes=learned.successes, running=((7, NOW - timedelta(minutes=61)),))
    signal = only(judge(job(), late, NOW), "too_long")
    assert signal.message == "too long: run 7 running 1h1m (typical 20m; too long after 1h)"
    assert (signal.run_id, signal.episode, signal.details) == (7, "7", {"seconds": 3660.0, "longest": 3600.0})


def test_too_long_needs_learned_runs_or_a_stated_bound_and_never_fires_before_a_minute() -> None:
    running = ((7, NOW - timedelta(hours=5)),)
    assert judge(job(), RecentRuns(successes=successes(1200, 1200), running=running), NOW) == ()
    stated = judge(job(expected_duration="..40m"), RecentRuns(running=((7, NOW - timedelta(minutes=41)),)), NOW)
    assert only(stated, "too_long").message.endswith("(expected ..40m; too long after 40m)")
    quick = RecentRuns(successes=successes(*[2] * 5), running=((8, NOW - timedelta(seconds=50)),))
    assert judge(job(), quick, NOW) == ()  # a 2-second job at 50 s: under the one-minute floor
    quick = RecentRuns(successes=quick.successes, running=((8, NOW - timedelta(seconds=70)),))
    assert only(judge(job(), quick, NOW), "too_long").run_id == 8


def test_a_success_far_below_typical_is_too_short_and_a_streak_is_one_episode() -> None:
    signal = only(judge(job(), RecentRuns(successes=successes(3, *[1200] * 8)), NOW), "too_short")
    assert signal.message == "too short: run 100 succeeded in 3s (typical 20m; too short under 5m)"
    assert (signal.run_id, signal.episode) == (100, "100")
    streak = only(judge(job(), RecentRuns(successes=successes(4, 3, *[1200] * 8)), NOW), "too_short")
    assert streak.message.startswith("too short: run 100 succeeded in 4s, 2 successes in a row")
    assert (streak.run_id, streak.episode, streak.details["streak"]) == (100, "99", 2)  # the first short one
    assert judge(job(), RecentRuns(successes=successes(1100, 3, *[1200] * 8)), NOW) == ()  # a normal run ended it


def test_a_short_job_is_not_judged_short_on_noise() -> None:
    assert judge(job(), RecentRuns(successes=successes(0.3, *[2] * 8)), NOW) == ()  # typical 2 s
    stated = judge(job(expected_duration="10m..40m"), RecentRuns(successes=successes(30)), NOW)
    assert only(stated, "too_short").message.endswith("(expected 10m..40m; too short under 10m)")


# ---------------------------------------------------------------- too_often and late_start


def test_too_often_is_judged_from_the_schedule_or_max_runs_per_hour() -> None:
    daily = job(schedule="0 2 * * *")
    assert runs_allowed_per_hour(daily, NOW) == 2 * 1 + 5
    assert judge(daily, RecentRuns(runs_last_hour=7), NOW) == ()
    signal = only(judge(daily, RecentRuns(runs_last_hour=8), NOW), "too_often")
    assert signal.message == "too often: 8 runs in the last hour (at most 7: 2 × its schedule + 5)"
    assert signal.run_id is None and signal.details == {"runs_last_hour": 8, "allowed": 7}
    # "* 2 * * *" (every minute from 02:00, a typo for "0 2 * * *") implies 60 an hour: a limit says what is meant
    typo = job(schedule="* 2 * * *", max_runs_per_hour=2)
    assert only(judge(typo, RecentRuns(runs_last_hour=40), NOW), "too_often").message == (
        "too often: 40 runs in the last hour (at most 2: max_runs_per_hour)")
    assert judge(job(), RecentRuns(runs_last_hour=500), NOW) == ()  # a manual job without a limit


def test_the_late_threshold_follows_the_schedule_within_bounds() -> None:
    assert late_threshold(job(schedule="0 2 * * *"), NOW) == LATE_MAX           # 10 % of a day, at most 1 h
    assert late_threshold(job(schedule="0 * * * *"), NOW) == 360               # 10 % of an hour
    assert late_threshold(job(schedule="*/5 * * * *"), NOW) == LATE_MIN         # at least 5 minutes
    assert late_threshold(job(schedule="0 2 * * *", late_after="15m"), NOW) == 900


def test_a_scheduled_run_waiting_too_long_is_a_late_start_with_why_it_waits() -> None:
    daily = job(schedule="0 2 * * *")
    waiting = ScheduledRun(12, NOW - timedelta(minutes=90), waiting="waits for a free worker thread")
    signal = only(judge(daily, RecentRuns(scheduled=(waiting,)), NOW), "late_start")
    assert signal.message == ("late start: run 12 has waited 1h30m in the queue (late after 1h): "
                              "waits for a free worker thread")
    assert signal.details["waiting_for"] == "waits for a free worker thread" and not signal.details["started"]
    started = ScheduledRun(12, NOW - timedelta(hours=3), started_at=NOW - timedelta(hours=1, minutes=30))
    assert only(judge(daily, RecentRuns(scheduled=(started,)), NOW), "late_start").message == (
        "late start: run 12 started 1h30m after it was queued (late after 1h)")
    on_time = ScheduledRun(12, NOW - timedelta(hours=3), started_at=NOW - timedelta(hours=2, minutes=58))
    assert judge(daily, RecentRuns(scheduled=(on_time,)), NOW) == ()


def test_late_starts_in_a_row_are_one_episode_and_an_on_time_start_ends_it() -> None:
    daily = job(schedule="0 2 * * *")

    def run(run_id: int, days_ago: int, waited_minutes: float | None) -> ScheduledRun:
        queued = NOW - timedelta(days=days_ago)
        return ScheduledRun(run_id, queued, None if waited_minutes is None else queued + timedelta(minutes=waited_minutes))
    streak = (run(13, 0, None), run(12, 1, 90), run(11, 2, 80), run(10, 3, 1))
    # today's run has waited 0 s: not late yet, and it does not end the streak behind it
    signal = only(judge(daily, RecentRuns(scheduled=streak), NOW), "late_start")
    assert (signal.run_id, signal.episode, signal.continues) == (12, "11", False)
    assert judge(daily, RecentRuns(scheduled=(run(12, 1, 5), run(11, 2, 80))), NOW) == ()


def test_the_next_moment_time_alone_starts_a_signal() -> None:
    """What a live page waits for with nothing written: a running run crossing its bound, a waiting
    scheduled run crossing the late threshold; a bound already crossed is not coming."""
    daily, learned = job(schedule="0 2 * * *"), successes(*[1200] * 5)  # too long after 1h, late after 1h
    running = RecentRuns(successes=learned, running=((7, NOW - timedelta(minutes=59)),))
    assert next_signal_at(daily, running, NOW) == NOW + timedelta(minutes=1)
    waiting = ScheduledRun(12, NOW - timedelta(minutes=30))
    both = RecentRuns(successes=learned, running=((7, NOW - timedelta(minutes=61)),), scheduled=(waiting,))
    assert next_signal_at(daily, both, NOW) == NOW + timedelta(minutes=30)  # run 7 is too long already
    started = ScheduledRun(12, NOW - timedelta(minutes=30), started_at=NOW - timedelta(minutes=29))
    assert next_signal_at(daily, RecentRuns(successes=learned, scheduled=(started,)), NOW) is None
    assert next_signal_at(job(), RecentRuns(running=((7, NOW),)), NOW) is None  # nothing learned: never too long


def test_a_jobs_health_says_when_time_alone_changes_it() -> None:
    daily = job(schedule="0 2 * * *")
    ok = job_health(daily, LastRuns(last_status=RunStatus.SUCCEEDED, last_success_at=NOW - timedelta(hours=5)), NOW,
                    RecentRuns())
    assert ok.state == "ok" and ok.changes_at == NOW - timedelta(hours=5) + timedelta(seconds=ok.window_seconds)
    stale = job_health(daily, LastRuns(last_status=RunStatus.SUCCEEDED, last_success_at=NOW - timedelta(days=3)), NOW,
                       RecentRuns())
    assert stale.stale and stale.changes_at is None
    waiting = RecentRuns(scheduled=(ScheduledRun(12, NOW - timedelta(minutes=30)),))
    assert job_health(daily, LastRuns(last_status=RunStatus.QUEUED), NOW, waiting).changes_at == NOW + timedelta(minutes=30)


# ---------------------------------------------------------------- from real runs, and their alerts


def succeed(db: Database, name: str, seconds: float) -> int:
    """A run that took ``seconds`` and finished as it was created (so the finishes keep their order)."""
    run_id = runs.enqueue_many(db, [runs.RunRequest(name, trigger="api")])[0]
    drive_run(db, run_id, RunStatus.SUCCEEDED, queued_for=-seconds, ran_for=seconds)
    return run_id


def start(db: Database, name: str) -> int:
    run_id = runs.enqueue_many(db, [runs.RunRequest(name, trigger="api")])[0]
    drive_run(db, run_id, RunStatus.RUNNING, queued_for=0.0)
    return run_id


def end(db: Database, run_id: int, at: datetime) -> None:
    run = runs.get_run(db, run_id)
    with db.write() as session:
        transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=run.lease, at=at,
                   finished_at=at)


def signals_at(db: Database, name: str, now: datetime) -> dict[str, Signal]:
    [overview] = jobs_overview(db, now, [name])
    return {s.kind: s for s in overview.health.signals}


def events(hooks: Hooks) -> list[tuple[str, Any]]:
    return [(b["event"], b["run_id"]) for b in hooks.bodies("/hook")]


def test_durations_are_learned_from_real_runs_and_a_run_alerts_too_long_once(
        db: Database, make_job: MakeJob, alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("etl", title="Nightly ETL")
    for _ in range(5):
        succeed(db, "etl", 20 * MINUTE)
    check = alerter().check
    first = start(db, "etl")
    began = runs.get_run(db, first).started_at
    assert signals_at(db, "etl", began + timedelta(minutes=59)) == {} and check(began + timedelta(minutes=59)) == []
    signal = signals_at(db, "etl", began + timedelta(minutes=61))["too_long"]
    assert signal.message == f"too long: run {first} running 1h1m (typical 20m; too long after 1h)"
    [overview] = jobs_overview(db, began + timedelta(minutes=61), ["etl"])
    assert overview.health.state == "warning" and overview.health.reason.endswith("; " + signal.message)
    assert overview.health.outcome_reason.startswith("running now")
    assert len(check(began + timedelta(minutes=61))) == 1
    assert check(began + timedelta(minutes=90)) == []  # the same run: the same episode
    end(db, first, began + timedelta(minutes=95))
    second = start(db, "etl")
    later = runs.get_run(db, second).started_at + timedelta(hours=2)
    assert len(check(later)) == 1 and check(later + timedelta(minutes=1)) == []
    assert events(hooks) == [("too_long", first), ("too_long", second)]
    body = hooks.bodies("/hook")[0]
    assert body["message"] == f"Nightly ETL too long: run {first} running 1h1m (typical 20m; too long after 1h)."
    assert body["details"] == {"seconds": 3660.0, "longest": 3600.0}


def test_short_successes_alert_once_per_streak(db: Database, make_job: MakeJob, alerter: Callable[..., Alerter],
                                               hooks: Hooks) -> None:
    make_job("ingest", expected_duration="10m..40m")
    check = alerter().check
    succeed(db, "ingest", 20 * MINUTE)
    assert check(utcnow() + timedelta(hours=1)) == []
    short = succeed(db, "ingest", 3)
    assert signals_at(db, "ingest", utcnow() + timedelta(hours=1))["too_short"].run_id == short
    assert len(check(utcnow() + timedelta(hours=1))) == 1
    succeed(db, "ingest", 4)  # the streak goes on: no second alert
    assert check(utcnow() + timedelta(hours=1)) == []
    succeed(db, "ingest", 25 * MINUTE)  # a normal run ends it
    assert check(utcnow() + timedelta(hours=2)) == []
    again = succeed(db, "ingest", 5)
    assert len(check(utcnow() + timedelta(hours=3))) == 1
    assert events(hooks) == [("too_short", short), ("too_short", again)]


def test_a_burst_of_runs_alerts_too_often_once_until_the_hour_is_back_within_the_limit(
        db: Database, make_job: MakeJob, alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("sync", max_runs_per_hour=3, max_concurrency=0)
    check = alerter().check
    first_burst = runs.enqueue_many(db, [runs.RunRequest("sync") for _ in range(5)])
    then = utcnow() - timedelta(hours=3)
    with db.write() as session:  # the first burst was three hours ago
        session.execute(update(RUNS).where(RUNS.c.id.in_(first_burst)).values(created_at=then))
    assert signals_at(db, "sync", then + timedelta(minutes=1))["too_often"].details == {"runs_last_hour": 5,
                                                                                         "allowed": 3}
    assert len(check(then + timedelta(minutes=1))) == 1
    assert check(then + timedelta(minutes=2)) == []
    runs.enqueue_many(db, [runs.RunRequest("sync") for _ in range(2)])
    assert signals_at(db, "sync", utcnow()) == {}  # two in the last hour: within the limit
    runs.enqueue_many(db, [runs.RunRequest("sync") for _ in range(2)])
    now = utcnow() + timedelta(seconds=1)
    assert len(check(now)) == 1 and check(now + timedelta(seconds=1)) == []  # the hour was back within it between
    assert [event for event, _ in events(hooks)] == ["too_often", "too_often"]
    assert hooks.bodies("/hook")[1]["message"] == "sync too often: 4 runs in the last hour (at most 3: max_runs_per_hour)."


def test_a_burst_that_never_clears_alerts_once(db: Database, make_job: MakeJob, alerter: Callable[..., Alerter],
                                               hooks: Hooks) -> None:
    make_job("sync", max_runs_per_hour=3, max_concurrency=0)
    check = alerter().check
    runs.enqueue_many(db, [runs.RunRequest("sync") for _ in range(5)])
    assert len(check(utcnow() + timedelta(seconds=1))) == 1
    runs.enqueue_many(db, [runs.RunRequest("sync") for _ in range(5)])
    assert check(utcnow() + timedelta(seconds=2)) == []
    assert len(hooks.bodies("/hook")) == 1


def test_a_late_scheduled_run_alerts_once_naming_why_it_waits(
        db: Database, make_job: MakeJob, alerter: Callable[..., Alerter], hooks: Hooks) -> None:
    make_job("report", schedule="0 2 * * *")
    check = alerter().check
    waiting = runs.enqueue_many(db, [runs.RunRequest("report", trigger="schedule")])[0]
    queued_at = runs.get_run(db, waiting).created_at
    assert signals_at(db, "report", queued_at + timedelta(minutes=59)) == {}
    late = signals_at(db, "report", queued_at + timedelta(minutes=90))["late_start"]
    assert late.run_id == waiting and late.details["waiting_for"]  # the flow-control reason, in words
    assert late.message.startswith(f"late start: run {waiting} has waited 1h30m in the queue (late after 1h): ")
    assert late.message.endswith(late.details["waiting_for"])
    assert len(check(queued_at + timedelta(minutes=90))) == 1
    assert check(queued_at + timedelta(minutes=120)) == []
    on_time = runs.enqueue_many(db, [runs.RunRequest("report", trigger="schedule")])[0]
    assert runs.get_run(db, on_time).status == RunStatus.QUEUED
    manual = succeed(db, "report", 1)  # not scheduled: neither late nor on time
    assert manual
    # the waiting run starts 2 h late, the next one on time, then a third waits: a new episode
    drive_run(db, waiting, RunStatus.SUCCEEDED, queued_for=2 * HOUR, ran_for=1)
    drive_run(db, on_time, RunStatus.SUCCEEDED, queued_for=0, ran_for=1)
    third = runs.enqueue_many(db, [runs.RunRequest("report", trigger="schedule")])[0]
    at = runs.get_run(db, third).created_at + timedelta(hours=3)
    assert signals_at(db, "report", at)["late_start"].run_id == third
    assert len(check(at)) == 1
    assert events(hooks) == [("late_start", waiting), ("late_start", third)]
    assert hooks.bodies("/hook")[0]["details"]["waiting_for"] == late.details["waiting_for"]


def test_the_api_and_the_panel_show_the_signals_with_their_reasons(
        db: Database, make_job: MakeJob, api_client: Any, panel_as: Callable[[str], Any]) -> None:
    make_job("sync", title="Sync", max_runs_per_hour=2, max_concurrency=0)
    make_job("quiet")
    runs.enqueue_many(db, [runs.RunRequest("sync") for _ in range(3)])
    expected = {"kind": "too_often", "message": "too often: 3 runs in the last hour (at most 2: max_runs_per_hour)",
                "run_id": None, "details": {"runs_last_hour": 3, "allowed": 2}}
    health = api_client.ok(api_client.get("/api/health", role="viewer"))
    by_name = {j["name"]: j for j in health["jobs"]}
    assert by_name["sync"]["signals"] == [expected] and by_name["sync"]["state"] == "warning"
    assert by_name["quiet"]["signals"] == []
    detail = api_client.ok(api_client.get("/api/jobs/sync", role="viewer"))
    assert detail["health"]["signals"] == [expected] and detail["health"]["stale"] is False
    viewer = panel_as("viewer")
    for path in ("/jobs/sync", "/jobs", "/"):
        html = viewer.get(path).get_data(as_text=True)
        assert '<span class="signal too_often">too often</span> 3 runs in the last hour' in html, path
    assert "Health signals" in viewer.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/jobs", "/jobs/ingest", "/pipelines"])
def test_a_live_page_refreshes_when_a_running_run_turns_too_long(
        path: str, db: Database, make_job: MakeJob, panel_as: Callable[[str], Any]) -> None:
    """Nothing is written when a run crosses its bound, so the page's poll names that moment (due=),
    and a poll once it has come is answered in full though the stamp did not move."""
    make_job("ingest", expected_duration="..1h")
    running = start(db, "ingest")
    started = runs.get_run(db, running).started_at
    assert started is not None
    viewer = panel_as("viewer")
    poll = re.search(r'hx-get="([^"]+)" hx-trigger="every 2s, lexyjobs:poll" hx-swap="outerHTML" data-poll',
                     viewer.get(path).get_data(as_text=True))
    assert poll, path
    url = html.unescape(poll.group(1))
    due = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["due"]
    crossing = started + timedelta(hours=1)  # to the millisecond, rounded up: never before the crossing
    assert [datetime.fromisoformat(d) for d in due] == [crossing + timedelta(microseconds=-crossing.microsecond % 1000)]
    assert viewer.get(url, hx=True).status_code == 204  # nothing changed, and the moment is ahead
    passed = re.sub(r"due=[^&]+", "due=2000-01-01T00%3A00%3A00.000%2B00%3A00", url)
    assert viewer.get(passed, hx=True).status_code == 200
    assert viewer.get(re.sub(r"due=[^&]+", "due=soon", url), hx=True).status_code == 400


def test_the_new_fields_are_checked_by_the_api(make_job: MakeJob, api_client: Any) -> None:
    base = {"name": "x", "kind": "shell", "argv": ["true"]}
    for field, value in (("expected_duration", "40m..10m"), ("max_runs_per_hour", 0), ("late_after", "soon")):
        bad = api_client.post("/api/jobs", json={**base, field: value})
        assert bad.status_code == 422 and bad.json["error"]["details"]["field"] == field, bad.get_data(as_text=True)
    good = api_client.post("/api/jobs", json={**base, "expected_duration": "10m..40m", "max_runs_per_hour": 4,
                                              "late_after": "15m"})
    assert good.status_code == 201, good.get_data(as_text=True)
    assert {k: good.json["definition"][k] for k in ("expected_duration", "max_runs_per_hour", "late_after")} == {
        "expected_duration": "10m..40m", "max_runs_per_hour": 4, "late_after": "15m"}
