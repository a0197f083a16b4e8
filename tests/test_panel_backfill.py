"""Backfill in the panel (lexyjobs.panel.backfills), on SQLite and Postgres: the form with its
preview, the group's page with its progress and Cancel, the job page's list; bad input is a form
message with 422, a viewer is refused. (The Chromium walk-through: test_browser_backfill.py.)"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Callable

import pytest
from conftest import drive_run

from lexyjobs import audit, queries, runs
from lexyjobs.db import Database, utcnow
from lexyjobs.queries import RunFilter
from lexyjobs.scheduler import fire_key
from lexyjobs.states import RunStatus

DAILY = {"func": "jobfuncs:noop", "schedule": "0 2 * * *", "max_concurrency": 0}


def week() -> tuple[datetime, datetime]:
    """The seven whole UTC days before today."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=7), today - timedelta(minutes=1)


def local(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M")


def form(start: datetime, end: datetime, **extra: str) -> dict[str, str]:
    return {"start": local(start), "end": local(end), "per": "fire", "concurrency": "1", **extra}


def run_count(db: Database, job: str) -> int:
    with db.read() as session:
        return queries.count_runs(session, RunFilter(job=job))


def succeeded_fire(db: Database, job: str, at: datetime) -> int:
    run_id = runs.enqueue_many(db, [runs.RunRequest(job, trigger="schedule", fire_key=fire_key(job, at))])[0]
    drive_run(db, run_id, RunStatus.SUCCEEDED, queued_for=0, ran_for=1)
    return run_id


def test_the_form_previews_then_starts_a_group_shown_with_its_progress(
        db: Database, make_job: Callable[..., str], panel_as: Callable[[str], Any]) -> None:
    make_job("keyword-metrics", title="Keyword metrics", **DAILY)
    start, end = week()
    worked = start.replace(hour=2) + timedelta(days=2)
    succeeded_fire(db, "keyword-metrics", worked)
    operator = panel_as("operator")

    job_page = operator.get("/jobs/keyword-metrics").get_data(as_text=True)
    assert 'href="/jobs/keyword-metrics/backfill"' in job_page and "Backfill…" in job_page
    page = operator.get("/jobs/keyword-metrics/backfill").get_data(as_text=True)
    assert 'name="per" value="fire" checked' in page  # a scheduled job: per fire time by default
    assert f'value="{local(start)}"' in page            # the last seven days

    preview = operator.post("/jobs/keyword-metrics/backfill", data=form(start, end, action="preview"))
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "<strong>6 runs</strong> of 7 fire times in the range; 1 already succeeded and is skipped." in text
    assert (start + timedelta(days=1)).strftime("%Y-%m-%d 02:00 UTC") in text
    assert run_count(db, "keyword-metrics") == 1  # a preview enqueues nothing

    started = operator.post("/jobs/keyword-metrics/backfill", data=form(start, end, action="start"))
    assert started.status_code == 303
    location = started.headers["Location"]
    backfill_id = int(re.fullmatch(r"/backfills/(\d+)", location).group(1))  # type: ignore[union-attr]
    group = operator.get(location).get_data(as_text=True)
    assert f"Backfill #{backfill_id} queued 6 runs; skipped 1 that already succeeded." in group
    assert "0 of 6 fire times done" in group and "Cancel backfill" in group
    fires = re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d) <span class=\"sub\">UTC", group)
    assert len(fires) == 6 and fires == sorted(fires) and worked.strftime("%Y-%m-%d %H:%M") not in fires
    assert f'href="/backfills/{backfill_id}"' in operator.get("/jobs/keyword-metrics").get_data(as_text=True)
    [entry] = audit.search(db, action="backfill.start").entries
    assert entry.actor == "panel-operator" and entry.details["runs"] == 6

    canceled = operator.post(f"/backfills/{backfill_id}/cancel")
    assert canceled.status_code == 303 and canceled.headers["Location"] == location
    after = operator.get(location).get_data(as_text=True)
    assert f"Canceled 6 queued runs of backfill #{backfill_id}." in after
    assert "0 of 6 fire times done, canceled" in after and "Cancel backfill" not in after


def test_a_job_without_schedule_is_backfilled_per_day(db: Database, make_job: Callable[..., str],
                                                      panel_as: Callable[[str], Any]) -> None:
    make_job("by-hand", max_concurrency=0)
    operator = panel_as("operator")
    page = operator.get("/jobs/by-hand/backfill").get_data(as_text=True)
    assert 'name="per" value="fire" disabled' in page.replace(" checked", "") and 'value="day" checked' in page
    start, end = week()
    preview = operator.post("/jobs/by-hand/backfill", data={**form(start, end), "per": "day", "action": "preview"})
    assert "<strong>7 runs</strong> of 7 days in the range." in preview.get_data(as_text=True)


@pytest.mark.parametrize("change, field, words", [
    ({"end": "2999-01-01T00:00"}, "end", "end is in the future"),
    ({"start": ""}, "start", "is required"),
    ({"start": "yesterday"}, "start", "is not an ISO 8601 datetime"),
    ({"concurrency": "0"}, "concurrency", "from 1 to 50"),
    ({"per": "hour"}, "per", "per must be fire or day"),
    ({"start": "2020-01-01T00:00", "end": "2024-01-01T00:00"}, "end", "more than 1000 fire times"),
])
def test_bad_input_is_a_message_on_the_form(db: Database, make_job: Callable[..., str],
                                            panel_as: Callable[[str], Any], change: dict[str, str], field: str,
                                            words: str) -> None:
    make_job("keyword-metrics", **DAILY)
    answer = panel_as("operator").post("/jobs/keyword-metrics/backfill", data={**form(*week()), **change})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 422, text
    assert re.search(rf'class="field[^"]*invalid[^"]*">\s*(<legend>|<label for="b-{field}")', text) or field == "per"
    assert words in text
    assert run_count(db, "keyword-metrics") == 0


def test_everything_succeeded_already_says_how_to_run_it_again(db: Database, make_job: Callable[..., str],
                                                               panel_as: Callable[[str], Any]) -> None:
    make_job("keyword-metrics", **DAILY)
    start, end = week()
    for day in range(7):
        succeeded_fire(db, "keyword-metrics", start.replace(hour=2) + timedelta(days=day))
    operator = panel_as("operator")
    refused = operator.post("/jobs/keyword-metrics/backfill", data=form(start, end))
    assert refused.status_code == 422 and "already has a succeeded run" in refused.get_data(as_text=True)
    again = operator.post("/jobs/keyword-metrics/backfill", data=form(start, end, include_succeeded="yes"))
    assert again.status_code == 303


def test_a_viewer_sees_a_group_but_cannot_start_or_cancel_one(db: Database, make_job: Callable[..., str],
                                                              panel_as: Callable[[str], Any]) -> None:
    make_job("keyword-metrics", **DAILY)
    started = panel_as("operator").post("/jobs/keyword-metrics/backfill", data=form(*week()))
    location = started.headers["Location"]
    viewer = panel_as("viewer")
    assert "Backfill…" not in viewer.get("/jobs/keyword-metrics").get_data(as_text=True)
    assert viewer.post("/jobs/keyword-metrics/backfill", data=form(*week())).status_code == 403
    page = viewer.get(location)
    assert page.status_code == 200 and "Cancel backfill" not in page.get_data(as_text=True)
    assert viewer.post(location + "/cancel").status_code == 403
    assert viewer.get("/backfills/999999").status_code == 404
    assert viewer.get("/jobs/nope/backfill").status_code == 404


def test_the_group_page_polls_and_answers_204_while_nothing_changed(
        db: Database, make_job: Callable[..., str], panel_as: Callable[[str], Any]) -> None:
    make_job("keyword-metrics", **DAILY)
    operator = panel_as("operator")
    location = operator.post("/jobs/keyword-metrics/backfill", data=form(*week())).headers["Location"]
    page = operator.get(location).get_data(as_text=True)
    poll = re.search(r'id="backfill-live" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert operator.get(poll, hx=True).status_code == 204
    first = int(re.findall(r'href="/runs/(\d+)"', page)[0])
    drive_run(db, first, RunStatus.SUCCEEDED, queued_for=0, ran_for=1)
    live = operator.get(poll, hx=True)
    assert live.status_code == 200 and "1 of 7 fire times done" in live.get_data(as_text=True)
