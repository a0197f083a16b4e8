"""The dashboard page, its throughput charts and the polling fast path, on SQLite and Postgres."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Callable

from conftest import drive_run
from lexyjobs import queries, runs
from lexyjobs.db import Database, utcnow
from lexyjobs.finished_hours import FinishedHours
from lexyjobs.panel.charts import HEIGHT, bucket_keys, throughput_chart
from lexyjobs.states import RunStatus
from test_panel_jobs import HX, Panel, login, text  # noqa: F401  (the login fixture)

MakeJob = Callable[..., str]


def test_the_dashboard_shows_counts_health_failures_and_upcoming_fires(login: Callable[[str], Panel],
                                                                       make_job: MakeJob, db: Database) -> None:
    make_job("nightly", title="Nightly export", schedule="0 2 * * *")
    make_job("flaky", title="Flaky import")
    make_job("paused", title="Paused report", schedule="@hourly", enabled=False)
    drive_run(db, runs.enqueue(db, "nightly"), RunStatus.SUCCEEDED)
    drive_run(db, runs.enqueue(db, "flaky"), RunStatus.FAILED, error="upstream said 503")
    runs.enqueue(db, "flaky")
    page = text(login("viewer").get("/"))
    cards = dict(re.findall(r'<span class="badge (\w+)">\w+</span><strong>(\d+)</strong>', page))
    assert cards == {"queued": "1", "running": "0", "succeeded": "1", "failed": "1", "canceled": "0"}
    assert re.search(r"<span>total</span><strong>3</strong>", page)
    health = dict(re.findall(r'<span class="health (\w+)"[^>]*>[^<]+</span><strong>(\d+)</strong>', page))
    assert health == {"ok": "1", "warning": "0", "error": "1", "unknown": "1"}
    assert "upstream said 503" in page
    upcoming = page[page.index("Upcoming fires"):]
    assert "Nightly export" in upcoming and "Paused report" not in upcoming.split("<h2>Jobs")[0]
    assert "failure rate (24 h)" in page and "50.0%" in page


def test_the_status_cards_add_up_to_the_total_canceled_and_blocked_included(
        login: Callable[[str], Panel], make_job: MakeJob, db: Database) -> None:
    make_job("first")
    make_job("second", depends_on=["first"])
    drive_run(db, runs.enqueue(db, "first"), RunStatus.SUCCEEDED)
    runs.cancel(db, runs.enqueue(db, "first"))
    drive_run(db, runs.enqueue(db, "first"), RunStatus.FAILED, error="boom")
    page = text(login("viewer").get("/"))
    cards = {status: int(n) for status, n in re.findall(r'<span class="badge (\w+)">\w+</span><strong>(\d+)</strong>', page)}
    total = re.search(r"<span>total</span><strong>(\d+)</strong>", page)
    assert total and cards["canceled"] >= 1 and cards.get("blocked", 0) >= 1
    assert sum(cards.values()) == int(total.group(1))


def test_an_empty_dashboard_tells_what_to_do(login: Callable[[str], Panel]) -> None:
    page = text(login("viewer").get("/"))
    assert "No failures." in page and "Nothing scheduled." in page and "No jobs yet" in page


def test_the_dashboard_poll_is_a_204_until_something_changes(login: Callable[[str], Panel], make_job: MakeJob,
                                                             db: Database) -> None:
    make_job("poller")
    panel = login("viewer")
    fragment = text(panel.get("/", headers=HX))
    assert "<html" not in fragment and 'id="dashboard-live"' in fragment
    poll = re.search(r'hx-get="([^"]+)"', fragment).group(1)  # type: ignore[union-attr]
    assert panel.get(poll, headers=HX).status_code == 204
    run_id = runs.enqueue(db, "poller")
    changed = panel.get(poll, headers=HX)
    assert changed.status_code == 200
    poll = re.search(r'hx-get="([^"]+)"', text(changed)).group(1)  # type: ignore[union-attr]
    drive_run(db, run_id, RunStatus.SUCCEEDED)
    assert panel.get(poll, headers=HX).status_code == 200
    assert panel.get(poll).status_code == 200  # a plain GET (no htmx) always gets the page


def test_the_activity_stamp_moves_with_progress_and_cancel_requests(make_job: MakeJob, db: Database) -> None:
    from lexyjobs import claiming, store
    make_job("stamped")
    run_id = runs.enqueue(db, "stamped")

    def stamp() -> str:
        with db.read() as session:
            return queries.activity_stamp(session)
    with db.write() as session:
        [claim] = claiming.claim_runs(session, 1, worker="t", now=utcnow(), postgres=db.is_postgres)
    seen = {stamp()}
    with db.write() as session:
        store.save_progress(session, store.Lease(claim.id, claim.lease), 40.0, "halfway")
    seen.add(stamp())
    runs.cancel(db, run_id)
    seen.add(stamp())
    assert len(seen) == 3 and stamp() in seen  # every change moved it; no change keeps it


def test_throughput_counts_finished_runs_per_hour_and_day(make_job: MakeJob, db: Database) -> None:
    make_job("counted", max_concurrency=0)
    for status in (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED):
        drive_run(db, runs.enqueue(db, "counted"), status, queued_for=0, ran_for=0)
    with db.read() as session:
        run = queries.search_runs(session, queries.RunFilter(), limit=1)[0]
        assert run.finished_at is not None
        since, now = run.finished_at - timedelta(hours=1), datetime.now(timezone.utc)
        hourly, daily = (queries.throughput(session, since=since, hourly=hourly, postgres=db.is_postgres,
                                            hours=FinishedHours(), now=now) for hourly in (True, False))
    hour = run.finished_at.strftime("%Y-%m-%dT%H")
    assert sum(hourly.get(hour, {}).values()) >= 1 and sum(sum(b.values()) for b in hourly.values()) == 3
    assert sum(sum(b.values()) for b in daily.values()) == 3
    assert {k for b in hourly.values() for k in b} == {"succeeded", "failed"}


def test_both_charts_come_from_one_read_of_the_weeks_hours(make_job: MakeJob, db: Database) -> None:
    from lexyjobs.panel.dashboard import _charts
    make_job("charted", max_concurrency=0)
    for status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        drive_run(db, runs.enqueue(db, "charted"), status, queued_for=0, ran_for=0)
    now = datetime.now(timezone.utc)
    with db.read() as session:
        today = _charts(session, now, postgres=db.is_postgres, hours=FinishedHours())
        in_three_days = _charts(session, now + timedelta(days=3), postgres=db.is_postgres, hours=FinishedHours())
    assert (today["24 hours"].total, today["24 hours"].failed, today["7 days"].total) == (2, 1, 2)
    assert (in_three_days["24 hours"].total, in_three_days["7 days"].total, in_three_days["7 days"].failed) == (0, 2, 1)


def test_the_chart_lays_out_one_bar_per_bucket_scaled_to_the_busiest() -> None:
    now = datetime(2025, 3, 30, 14, 20, tzinfo=timezone.utc)
    keys = bucket_keys(now, hourly=True)
    assert len(keys) == 24 and keys[0] == ("2025-03-29T15", "15:00") and keys[-1] == ("2025-03-30T14", "14:00")
    chart = throughput_chart({"2025-03-30T14": {"succeeded": 6, "failed": 2}, "2025-03-30T13": {"succeeded": 4},
                              "2025-03-29T10": {"failed": 9}}, keys)  # the last one is outside the window
    last, before = chart.bars[-1], chart.bars[-2]
    assert chart.peak == 8 and chart.total == 12 and chart.failed == 2
    assert (last.ok_height, last.failed_height) == (HEIGHT * 6 / 8, HEIGHT * 2 / 8)
    assert last.failed_y + last.failed_height == last.ok_y  # failed stacked on succeeded
    assert before.failed_height == 0 and before.ok_height == HEIGHT / 2
    assert chart.failure_rate == 2 / 12 and len(chart.failure_line.split()) == 2
    assert all(b.x < c.x for b, c in zip(chart.bars, chart.bars[1:]))
    week = bucket_keys(now, hourly=False)
    assert [k for k, _ in week][0] == "2025-03-24" and week[-1] == ("2025-03-30", "Sun 30")


def test_an_empty_chart_has_no_bars_and_no_rate() -> None:
    chart = throughput_chart({}, bucket_keys(datetime(2025, 1, 1, tzinfo=timezone.utc), hourly=False))
    assert chart.total == 0 and chart.failure_rate is None and chart.failure_line == ""
    assert all(b.ok_height == 0 and b.failed_height == 0 for b in chart.bars)
