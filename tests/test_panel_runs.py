"""The runs list (``/runs``): filters, pages, the polled table (204 when unchanged), bulk cancel /
retry of selected runs and of everything matching a filter (after a confirmation stating the
count), roles, CSRF, the CSV export and bad query arguments — on SQLite and Postgres."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import PanelSession, drive_run
from sqlalchemy import func, select, update

from lexyjobs import actions, audit, runs
from lexyjobs.accounts import Identity
from lexyjobs.db import Database
from lexyjobs.models import Job, Run
from lexyjobs.panel import runs as panel_runs
from lexyjobs.states import RunStatus

Login = Callable[[str], PanelSession]
ROW = re.compile(r'<tr id="run-(\d+)">')
POLL = re.compile(r'id="runs-table" hx-get="([^"]*stamp=([0-9a-f]+)[^"]*)"')


@pytest.fixture
def jobs(make_job: Callable[..., str]) -> tuple[str, str]:
    make_job("alpha", category="etl", max_concurrency=0, params={"note": ""})
    make_job("beta", category="reports", max_concurrency=0, params={"note": ""})
    return "alpha", "beta"


def enqueue(db: Database, job: str, n: int = 1, *, now: datetime | None = None, **options: Any) -> list[int]:
    options.setdefault("created_by", "user:alice")
    return runs.enqueue_many(db, [runs.RunRequest(job, **options) for _ in range(n)], now=now)


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def shown(response: Any) -> set[int]:
    """Ids of the runs listed in a page or partial."""
    assert response.status_code == 200, text(response)
    return {int(i) for i in ROW.findall(text(response))}


def run_of(db: Database, run_id: int) -> Run:
    return runs.get_run(db, run_id)


def count_runs(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Run)) or 0


def bulk_entries(db: Database) -> list[Any]:
    return [e for e in audit.search(db, limit=100).entries if e.action.startswith("run.bulk")]


# ---------------------------------------------------------------- the list

def test_it_lists_runs_with_each_filter_applied(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    day = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)
    [queued] = enqueue(db, "alpha", now=day)
    [failed] = enqueue(db, "alpha", now=day + timedelta(hours=1), trigger="api")
    drive_run(db, failed, RunStatus.FAILED, error="disk full on /var")
    [succeeded] = enqueue(db, "beta", now=day + timedelta(hours=2), params={"note": "needle-in-params"})
    drive_run(db, succeeded, RunStatus.SUCCEEDED)
    viewer = panel_as("viewer")
    assert shown(viewer.get("/runs")) == {queued, failed, succeeded}
    assert shown(viewer.get("/runs?status=failed")) == {failed}
    assert shown(viewer.get("/runs?status=failed&status=queued")) == {failed, queued}  # checkboxes
    assert shown(viewer.get("/runs?status=failed,succeeded")) == {failed, succeeded}  # the API's form
    assert shown(viewer.get("/runs?job=beta")) == {succeeded}
    assert shown(viewer.get("/runs?category=etl")) == {queued, failed}
    assert shown(viewer.get("/runs?trigger=api")) == {failed}
    assert shown(viewer.get("/runs?q=needle")) == {succeeded}
    assert shown(viewer.get("/runs?q=DISK+FULL")) == {failed}
    # datetime-local values (no offset) are UTC
    assert shown(viewer.get("/runs?since=2025-03-01T10:30&until=2025-03-01T11:30")) == {failed}  # until: before
    assert shown(viewer.get("/runs?since=2025-03-01T10:30:00")) == {failed, succeeded}
    assert shown(viewer.get("/runs?since=&until=2025-03-01T10:31&job=&q=")) == {queued, failed}


def test_the_page_shows_each_runs_facts_and_keeps_the_filter_in_its_form(panel_as: Login, db: Database,
                                                                        jobs: tuple[str, str]) -> None:
    [running, done] = enqueue(db, "alpha", 2, trigger="manual")
    drive_run(db, running, RunStatus.RUNNING)
    drive_run(db, done, RunStatus.FAILED, queued_for=5, ran_for=2.5, error="x" * 300)
    with db.write() as session:
        session.execute(update(Run).where(Run.id == running).values(progress=40.0, cancel_requested=True))
    page = text(panel_as("viewer").get("/runs?status=running,failed&job=alpha&since=2025-01-02T03:04"))
    row = page[page.index(f'<tr id="run-{running}">'):]
    row = row[:row.index("</tr>")]
    assert 'class="badge running"' in row and 'aria-valuenow="40"' in row and "cancel requested" in row
    assert "user:alice" in row and "manual" in row and "1/" in row
    failed_row = page[page.index(f'<tr id="run-{done}">'):]
    failed_row = failed_row[:failed_row.index("</tr>")]
    assert "5.0 s" in failed_row and "2.5 s" in failed_row and "x" * 79 + "…" in failed_row
    assert 'name="status" value="running" checked' in page and 'name="status" value="queued">' in page
    assert 'value="alpha"' in page and 'value="2025-01-02T03:04"' in page
    assert 'href="/runs.csv?status=running,failed&amp;job=alpha&amp;since=2025-01-02T03:04"' in page


def test_stat_cards_count_the_filtered_runs_by_status_and_link_to_status_filters(
        panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    ids = enqueue(db, "alpha", 3) + enqueue(db, "beta", 2)
    drive_run(db, ids[0], RunStatus.FAILED)
    page = text(panel_as("viewer").get("/runs?job=alpha&status=queued"))
    cards = dict(re.findall(r'<span class="badge (\w+)">\w+</span><strong>([\d,]+)</strong>', page))
    assert cards == {"queued": "2", "running": "0", "succeeded": "0", "failed": "1"}
    assert re.search(r'<span>total</span><strong>3</strong>', page)
    assert 'href="/runs?job=alpha&amp;status=failed"' in page
    assert 'href="/runs?job=alpha&amp;status=queued" aria-current="true"' in page


def test_it_pages_fifty_runs_at_a_time(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    ids = enqueue(db, "alpha", 120)
    viewer = panel_as("viewer")
    first = viewer.get("/runs")
    assert shown(first) == set(ids[-50:])  # newest first
    assert "Page 1 of 3 · 120 runs" in text(first)
    assert 'rel="next"' in text(first) and 'rel="prev"' not in text(first)
    last = viewer.get("/runs?page=3")
    assert shown(last) == set(ids[:20])
    assert "Page 3 of 3" in text(last) and 'rel="next"' not in text(last)
    assert 'href="/runs?page=1" rel="first"' in text(last) and 'href="/runs?page=2" rel="prev"' in text(last)
    assert len(shown(viewer.get("/runs?page=2&limit=100"))) == 20
    past = viewer.get("/runs?page=9")
    assert shown(past) == set() and "Page 9 is past the end" in text(past)


def test_empty_lists_say_what_to_do_next(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    viewer = panel_as("viewer")
    assert "No runs yet." in text(viewer.get("/runs"))
    enqueue(db, "alpha")
    page = text(viewer.get("/runs?status=failed"))
    assert "No runs match this filter." in page and "No runs yet." not in page


def test_an_htmx_request_gets_only_the_table(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    [run_id] = enqueue(db, "alpha")
    viewer = panel_as("viewer")
    full = text(viewer.get("/runs"))
    assert full.startswith("<!doctype html>") and 'class="filters runs-filters"' in full
    partial = viewer.get("/runs?job=alpha", hx=True)
    assert shown(partial) == {run_id}
    assert "<html" not in text(partial) and "runs-filters" not in text(partial)
    assert text(partial).lstrip().startswith('<div id="runs-table"')
    boosted = viewer.get("/runs", hx=True, headers={"HX-Boosted": "true"})
    assert "<html" in text(boosted)


def test_a_poll_answers_204_until_something_changes(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    [first] = enqueue(db, "alpha")
    viewer = panel_as("viewer")
    poll_url, stamp = POLL.search(text(viewer.get("/runs?job=alpha&page=1"))).groups()  # type: ignore[union-attr]
    poll_url = poll_url.replace("&amp;", "&")
    assert "job=alpha" in poll_url
    assert viewer.get(poll_url, hx=True).status_code == 204
    assert viewer.get(f"/runs?job=beta&page=1&stamp={stamp}", hx=True).status_code == 200  # another filter
    [second] = enqueue(db, "alpha")
    changed = viewer.get(poll_url, hx=True)
    assert shown(changed) == {first, second}
    new_stamp = POLL.search(text(changed)).group(2)  # type: ignore[union-attr]
    assert new_stamp != stamp
    drive_run(db, first, RunStatus.RUNNING)
    assert viewer.get(poll_url.replace(stamp, new_stamp), hx=True).status_code == 200


def test_a_poll_keeps_the_ticked_boxes_ticked(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    ids = enqueue(db, "alpha", 3)
    page = text(panel_as("operator").get(f"/runs?run_id={ids[1]}", hx=True))
    assert f'value="{ids[1]}" aria-label="Select run {ids[1]}" checked' in page
    assert f'value="{ids[0]}" aria-label="Select run {ids[0]}">' in page
    assert 'hx-include="#runs-table table.runs tbody"' in page  # htmx sends only the ticked boxes


# ---------------------------------------------------------------- bulk actions on selected runs

def test_an_operator_cancels_the_selected_runs(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    queued, spare, running, finished = enqueue(db, "alpha", 4)
    drive_run(db, running, RunStatus.RUNNING)
    drive_run(db, finished, RunStatus.SUCCEEDED)
    operator = panel_as("operator")
    response = operator.post("/runs/bulk?job=alpha&page=1", data={"action": "cancel",
                                                                  "run_id": [queued, running, finished]})
    assert response.status_code == 302 and response.headers["Location"] == "/runs?job=alpha"
    assert run_of(db, queued).status == RunStatus.CANCELED and run_of(db, queued).error == "canceled by panel-operator"
    assert run_of(db, running).status == RunStatus.RUNNING and run_of(db, running).cancel_requested
    assert run_of(db, finished).status == RunStatus.SUCCEEDED and run_of(db, spare).status == RunStatus.QUEUED
    page = text(operator.get(response.headers["Location"]))
    assert ("Canceled 2 runs (1 running: their workers were asked to stop them; one that finishes first keeps its"
            " outcome, noted on the run); skipped 1 (already finished).") in page
    [entry] = bulk_entries(db)
    assert (entry.actor, entry.action, entry.target) == ("panel-operator", "run.bulk_cancel", "3 runs")
    assert entry.details == {"run_ids": [queued, running, finished], "count": 3, "done": 2, "skipped": 1}
    assert text(operator.get("/runs")).count("Canceled 2 runs") == 0  # the message shows once


def test_an_operator_retries_the_selected_runs_through_htmx(panel_as: Login, db: Database,
                                                           jobs: tuple[str, str]) -> None:
    failed, canceled, queued = enqueue(db, "alpha", 3, params={"note": "again"}, priority=7)
    drive_run(db, failed, RunStatus.FAILED, error="boom")
    drive_run(db, canceled, RunStatus.CANCELED)
    response = panel_as("admin").post("/runs/bulk", hx=True, data={"action": "retry",
                                                                   "run_id": [failed, canceled, queued]})
    assert response.status_code == 200 and "<html" not in text(response)
    assert "Retried 2 runs as new queued runs; skipped 1 (not finished" in text(response)
    with db.read() as session:
        retried = list(session.scalars(select(Run).where(Run.retry_of.is_not(None)).order_by(Run.id)))
    assert [(r.retry_of, r.status, r.trigger, r.params, r.priority, r.created_by) for r in retried] == [
        (failed, "queued", "retry", {"note": "again"}, 7, "panel-admin"),
        (canceled, "queued", "retry", {"note": "again"}, 7, "panel-admin")]
    assert shown(response) >= {r.id for r in retried}
    [entry] = bulk_entries(db)
    assert entry.action == "run.bulk_retry" and entry.details["count"] == 3 and entry.details["done"] == 2


def test_submitting_without_a_selection_only_says_so(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    [run_id] = enqueue(db, "alpha")
    response = panel_as("operator").post("/runs/bulk", hx=True, data={"action": "cancel"})
    assert "Select the runs to cancel first" in text(response)
    assert run_of(db, run_id).status == RunStatus.QUEUED and bulk_entries(db) == []


def test_bulk_cancel_blocks_the_pipeline_steps_after_a_canceled_run(db: Database,
                                                                  make_job: Callable[..., str]) -> None:
    make_job("extract")
    make_job("load", depends_on=["extract"])
    [run_id] = enqueue(db, "extract")
    operator = actions.Actor(Identity("ops", "operator", "user"))
    outcome = actions.bulk_cancel(db, operator, [run_id, run_id, 999_999])
    assert outcome == actions.BulkOutcome(done=1, skipped=1, requested=0)  # duplicates count once
    with db.read() as session:
        blocked = session.execute(select(Run.job_name, Run.status).where(Run.parent_run_id == run_id)).all()
    assert [tuple(row) for row in blocked] == [("load", "blocked")]


def test_bulk_retry_skips_a_run_whose_job_is_gone_and_retries_the_others(db: Database, jobs: tuple[str, str]) -> None:
    [a] = enqueue(db, "alpha")
    [b] = enqueue(db, "beta")
    drive_run(db, a, RunStatus.FAILED)
    drive_run(db, b, RunStatus.FAILED)
    with db.write() as session:
        session.execute(update(Job).where(Job.name == "beta").values(archived=True))
    outcome = actions.bulk_retry(db, actions.Actor(Identity("ops", "operator", "user")), [a, b])
    assert outcome == actions.BulkOutcome(done=1, skipped=1)
    with db.read() as session:
        assert list(session.scalars(select(Run.retry_of).where(Run.retry_of.is_not(None)))) == [a]


def test_a_bulk_action_refuses_more_runs_than_its_limit(db: Database, jobs: tuple[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = enqueue(db, "alpha", 3)
    monkeypatch.setattr(actions, "BULK_LIMIT", 2)
    with pytest.raises(actions.TooManyRuns):
        actions.bulk_cancel(db, actions.Actor(Identity("ops", "operator", "user")), ids)
    assert {run_of(db, i).status for i in ids} == {RunStatus.QUEUED}


# ---------------------------------------------------------------- everything matching the filter

def test_everything_matching_asks_first_stating_the_count_then_acts(panel_as: Login, db: Database,
                                                                    jobs: tuple[str, str]) -> None:
    failed = enqueue(db, "alpha", 7)
    succeeded = enqueue(db, "alpha", 3)
    queued = enqueue(db, "alpha", 2)
    other = enqueue(db, "beta", 2)
    for run_id in failed + other:
        drive_run(db, run_id, RunStatus.FAILED)
    for run_id in succeeded:
        drive_run(db, run_id, RunStatus.SUCCEEDED)
    operator = panel_as("operator")
    before = count_runs(db)
    ask = operator.post("/runs/bulk?job=alpha", data={"action": "retry", "scope": "matching"})
    page = text(ask)
    assert ask.status_code == 200 and "<html" in page
    assert "Retry 10 runs matching this filter?" in page and "2 more match but are not finished" in page
    assert '<span class="chip">job: alpha</span>' in page
    assert 'name="confirm" value="yes"' in page and 'action="/runs/bulk?job=alpha&amp;page=1"' in page
    assert count_runs(db) == before and bulk_entries(db) == []
    done = operator.post("/runs/bulk?job=alpha&page=1", data={"action": "retry", "scope": "matching", "confirm": "yes"})
    assert done.status_code == 302
    with db.read() as session:
        retried = set(session.scalars(select(Run.retry_of).where(Run.retry_of.is_not(None))))
    assert retried == set(failed + succeeded)
    [entry] = bulk_entries(db)
    assert entry.target == "10 runs" and entry.details["count"] == 10 and entry.details["filter"] == {"job": "alpha"}
    assert sorted(entry.details["run_ids"]) == sorted(failed + succeeded)
    assert run_of(db, queued[0]).status == RunStatus.QUEUED


def test_the_confirmation_comes_as_a_partial_for_htmx_and_cancel_keeps_to_the_filter(
        panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    alpha = enqueue(db, "alpha", 4)
    beta = enqueue(db, "beta", 1)
    operator = panel_as("operator")
    ask = operator.post("/runs/bulk?status=queued&category=etl", hx=True, data={"action": "cancel", "scope": "matching"})
    assert "<html" not in text(ask) and "Cancel 4 runs matching this filter?" in text(ask)
    assert '<span class="chip">category: etl</span>' in text(ask)
    done = operator.post("/runs/bulk?status=queued&category=etl", hx=True,
                         data={"action": "cancel", "scope": "matching", "confirm": "yes"})
    assert done.status_code == 200 and "Canceled 4 runs." in text(done)
    assert {run_of(db, i).status for i in alpha} == {RunStatus.CANCELED}
    assert run_of(db, beta[0]).status == RunStatus.QUEUED
    [entry] = bulk_entries(db)
    assert entry.details["filter"] == {"status": "queued", "category": "etl"}


def test_nothing_to_act_on_says_why_without_a_confirm_button(panel_as: Login, db: Database,
                                                             jobs: tuple[str, str]) -> None:
    enqueue(db, "alpha", 2)
    page = text(panel_as("operator").post("/runs/bulk?status=queued", data={"action": "retry", "scope": "matching"}))
    assert "None of the 2 runs matching this filter can be retried" in page and 'name="confirm"' not in page


def test_more_matching_runs_than_the_limit_are_refused(panel_as: Login, db: Database, jobs: tuple[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ids = enqueue(db, "alpha", 4)
    monkeypatch.setattr(panel_runs, "BULK_LIMIT", 3)
    operator = panel_as("operator")
    ask = operator.post("/runs/bulk", data={"action": "cancel", "scope": "matching"})
    assert "4 runs matching this filter can be canceled — more than the 3 one bulk action may touch" in text(ask)
    assert 'name="confirm"' not in text(ask)
    forced = operator.post("/runs/bulk", data={"action": "cancel", "scope": "matching", "confirm": "yes"})
    assert forced.status_code == 422
    assert {run_of(db, i).status for i in ids} == {RunStatus.QUEUED} and bulk_entries(db) == []


# ---------------------------------------------------------------- roles and CSRF

def test_a_viewer_sees_no_bulk_controls_and_cannot_post_them(panel_as: Login, db: Database,
                                                            jobs: tuple[str, str]) -> None:
    [run_id] = enqueue(db, "alpha")
    viewer = panel_as("viewer")
    page = text(viewer.get("/runs"))
    assert run_id in shown(viewer.get("/runs"))
    assert 'name="run_id"' not in page and "Cancel selected" not in page and "all matching" not in page
    for data in ({"action": "cancel", "run_id": run_id}, {"action": "cancel", "scope": "matching", "confirm": "yes"}):
        refused = viewer.post("/runs/bulk", data=data)
        assert refused.status_code == 403 and "operator role" in text(refused)
    assert run_of(db, run_id).status == RunStatus.QUEUED and bulk_entries(db) == []
    assert 'name="run_id"' in text(panel_as("operator").get("/runs"))


def test_a_bulk_post_without_the_csrf_token_is_refused(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    [run_id] = enqueue(db, "alpha")
    operator = panel_as("operator")
    for data in ({"action": "cancel", "run_id": run_id}, {"action": "cancel", "scope": "matching", "confirm": "yes"}):
        assert operator.post("/runs/bulk", csrf=False, data=data).status_code == 403
    assert run_of(db, run_id).status == RunStatus.QUEUED and bulk_entries(db) == []


def test_logged_out_visitors_are_sent_to_the_login(app: Any, lj: Any) -> None:
    client = app.test_client()
    assert client.get("/runs").status_code == 302
    assert client.get("/runs.csv").status_code == 302


# ---------------------------------------------------------------- CSV export

def test_the_csv_export_holds_every_matching_run_with_formulas_defused(
        panel_as: Login, db: Database, jobs: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panel_runs, "CSV_CHUNK", 7)  # several chunks
    many = enqueue(db, "alpha", 20)
    [evil] = enqueue(db, "alpha", created_by="@SUM(1+1)")
    drive_run(db, evil, RunStatus.FAILED, queued_for=5, ran_for=2.5, error='=HYPERLINK("http://x","y")')
    [plus] = enqueue(db, "alpha", created_by="+1")
    drive_run(db, plus, RunStatus.FAILED, error="-2, \"quoted\"\nnext line")
    enqueue(db, "beta", 3)
    response = panel_as("viewer").get("/runs.csv?job=alpha")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="runs-\d{8}-\d{6}\.csv"', response.headers["Content-Disposition"])
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert list(rows[0]) == list(panel_runs.CSV_COLUMNS)
    assert [int(r["id"]) for r in rows] == sorted(many + [evil, plus], reverse=True)
    by_id = {int(r["id"]): r for r in rows}
    assert by_id[evil]["error"] == "'=HYPERLINK(\"http://x\",\"y\")" and by_id[evil]["created_by"] == "'@SUM(1+1)"
    assert by_id[plus]["error"] == "'-2, \"quoted\"\nnext line" and by_id[plus]["created_by"] == "'+1"
    assert (by_id[evil]["status"], by_id[evil]["queue_seconds"], by_id[evil]["processing_seconds"]) == ("failed", "5.0", "2.5")
    assert (by_id[evil]["attempt"], by_id[evil]["job"], by_id[evil]["trigger"]) == ("1", "alpha", "manual")
    assert by_id[many[0]]["started_at"] == "" and by_id[many[0]]["created_by"] == "user:alice"
    failed = list(csv.DictReader(io.StringIO(text(panel_as("viewer").get("/runs.csv?status=failed")))))
    assert {int(r["id"]) for r in failed} == {evil, plus}


def test_an_empty_export_still_has_its_header(panel_as: Login, jobs: tuple[str, str]) -> None:
    body = text(panel_as("viewer").get("/runs.csv"))
    assert body.strip() == ",".join(panel_runs.CSV_COLUMNS)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("query, arg", [("status=bogus", "status"), ("status=queued&status=nope", "status"),
                                        ("trigger=cron", "trigger"), ("since=yesterday", "since"),
                                        ("until=2025-13-01T00:00", "until"), ("page=0", "page"),
                                        ("page=abc", "page"), ("limit=5000", "limit"), ("run_id=x", "run_id"),
                                        ("q=" + "a" * 201, "q")])
def test_bad_query_arguments_answer_400_naming_the_argument(panel_as: Login, jobs: tuple[str, str],
                                                            query: str, arg: str) -> None:
    viewer = panel_as("viewer")
    for path in ("/runs", "/runs.csv"):
        if arg in ("run_id", "page", "limit") and path == "/runs.csv":
            continue  # the export ignores them: it holds every page
        response = viewer.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert f"{arg}:" in text(response) and "<html" in text(response)


def test_a_bad_bulk_action_answers_400(panel_as: Login, db: Database, jobs: tuple[str, str]) -> None:
    [run_id] = enqueue(db, "alpha")
    operator = panel_as("operator")
    assert "action:" in text(operator.post("/runs/bulk", data={"action": "delete", "run_id": run_id}))
    assert operator.post("/runs/bulk", data={"action": "cancel", "run_id": "1;2"}).status_code == 400
    assert run_of(db, run_id).status == RunStatus.QUEUED
