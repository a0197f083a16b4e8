"""The runs list as a work surface: sorted by created, duration, queue time or status either way
(``?sort=duration&dir=desc``; ties by id, the same way; runs without the value last), headers as
links with ``aria-sort``, the job's title with its name as a hint, params and result/error
summaries (escaped, cut, the whole value in a title) and the remembered density — on SQLite and
Postgres."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import PanelSession, drive_run

from lexyjobs import runs
from lexyjobs.db import Database
from lexyjobs.states import RunStatus

Login = Callable[[str], PanelSession]
ROW = re.compile(r'<tr id="run-(\d+)">')
DAY = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def text(response: Any) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_data(as_text=True))


def order(response: Any) -> list[int]:
    return [int(i) for i in ROW.findall(text(response))]


def enqueue(db: Database, job: str, minute: int, **options: Any) -> int:
    [run_id] = runs.enqueue_many(db, [runs.RunRequest(job, **options)], now=DAY + timedelta(minutes=minute))
    return run_id


@pytest.fixture
def world(make_job: Callable[..., str], db: Database) -> dict[str, int]:
    """Runs with (queue seconds, duration seconds): a (5, 30), b (1, 2), c (9, 30: ties a), d (1, 7,
    failed: ties b's queue time), e queued (neither), f running (a queue time, no duration)."""
    make_job("etl", title="Nightly ETL", category="data", max_concurrency=0, params={"note": ""})
    found = {}
    for minute, (name, queued, ran, status) in enumerate([("a", 5, 30, RunStatus.SUCCEEDED), ("b", 1, 2, RunStatus.SUCCEEDED),
                                                         ("c", 9, 30, RunStatus.SUCCEEDED), ("d", 1, 7, RunStatus.FAILED),
                                                         ("e", 0, 0, RunStatus.QUEUED), ("f", 3, 0, RunStatus.RUNNING)]):
        found[name] = enqueue(db, "etl", minute)
        drive_run(db, found[name], status, queued_for=queued, ran_for=ran, error="boom" if status == RunStatus.FAILED else None)
    return found


EXPECTED = {  # (sort, dir): the order of the runs, by name
    ("created", "desc"): "fedcba", ("created", "asc"): "abcdef",
    ("duration", "desc"): "cadb" + "fe", ("duration", "asc"): "bdac" + "fe",  # no duration: newest first, last
    ("queue", "desc"): "cafdb" + "e", ("queue", "asc"): "bdfac" + "e",
    ("status", "asc"): "d" + "e" + "f" + "abc", ("status", "desc"): "cba" + "f" + "e" + "d",
}


@pytest.mark.parametrize("sort, direction", sorted(EXPECTED))
def test_each_sort_key_orders_the_runs_either_way_with_stable_ties(panel_as: Login, world: dict[str, int],
                                                                  sort: str, direction: str) -> None:
    expected = [world[name] for name in EXPECTED[(sort, direction)]]
    viewer = panel_as("viewer")
    assert order(viewer.get(f"/runs?sort={sort}&dir={direction}")) == expected
    assert order(viewer.get(f"/runs?sort={sort}&dir={direction}", hx=True)) == expected  # the polled partial
    # page by page, the same order (limit 4: the second page crosses into the runs without a value)
    paged = order(viewer.get(f"/runs?sort={sort}&dir={direction}&limit=4")) + \
        order(viewer.get(f"/runs?sort={sort}&dir={direction}&limit=4&page=2"))
    assert paged == expected
    assert order(viewer.get(f"/runs?sort={sort}&dir={direction}&limit=2&page=3")) == expected[4:6]


def test_the_default_order_is_newest_first_and_a_filter_keeps_the_sort(panel_as: Login, world: dict[str, int]) -> None:
    viewer = panel_as("viewer")
    assert order(viewer.get("/runs")) == order(viewer.get("/runs?sort=created&dir=desc"))
    assert order(viewer.get("/runs?sort=duration")) == [world[n] for n in "cadbfe"]  # first click: longest first
    assert order(viewer.get("/runs?sort=status")) == [world[n] for n in "defabc"]    # status: a to z
    assert order(viewer.get("/runs?sort=duration&dir=asc&status=succeeded")) == [world[n] for n in "bac"]
    page = text(viewer.get("/runs?sort=duration&dir=asc&status=succeeded"))
    assert '<input type="hidden" name="sort" value="duration">' in page and '<input type="hidden" name="dir" value="asc">' in page
    assert "sort=duration" in re.search(r'id="runs-table"[^>]*hx-get="([^"]*)"', page).group(1)  # the poll keeps it


def test_headers_link_to_their_sort_and_say_which_is_current(panel_as: Login, world: dict[str, int]) -> None:
    page = html.unescape(text(panel_as("viewer").get("/runs?sort=duration&dir=desc&status=succeeded")))
    headers = dict(re.findall(r'<th(?: aria-sort="\w+")? class="sortable"><a href="([^"]+)">(\w+)', page)[i][::-1]
                   for i in range(4))
    assert headers == {"Status": "/runs?status=succeeded&sort=status&dir=asc",
                       "Created": "/runs?status=succeeded",  # the default order: no arguments
                       "Queue": "/runs?status=succeeded&sort=queue&dir=desc",
                       "Duration": "/runs?status=succeeded&sort=duration&dir=asc"}  # the current one: the other way
    assert re.findall(r'<th aria-sort="(\w+)" class="sortable"><a[^>]*>(\w+)', page) == [("descending", "Duration")]
    default = text(panel_as("viewer").get("/runs"))
    assert re.findall(r'<th aria-sort="(\w+)" class="sortable"><a[^>]*>(\w+)', default) == [("descending", "Created")]
    scheduled = text(panel_as("viewer").get("/runs?view=scheduled"))
    assert 'class="sortable"' not in scheduled and "aria-sort" not in scheduled


@pytest.mark.parametrize("query, message", [("sort=name", "must be one of created, duration, queue, status"),
                                            ("sort=duration&dir=up", "must be asc or desc")])
def test_a_bad_sort_is_a_clear_400(panel_as: Login, world: dict[str, int], query: str, message: str) -> None:
    response = panel_as("viewer").get(f"/runs?{query}")
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_rows_show_the_job_title_with_its_name_as_a_hint(panel_as: Login, make_job: Callable[..., str],
                                                         db: Database) -> None:
    make_job("hostile", title="<script>alert(1)</script> report", category="x")
    run_id = enqueue(db, "hostile", 0)
    page = text(panel_as("viewer").get("/runs"))
    row = page[page.index(f'<tr id="run-{run_id}">'):]
    row = row[:row.index("</tr>")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; report" in row and "<script>alert" not in row
    assert '<div class="muted" title="job name"><code>hostile</code></div>' in row


def test_params_and_result_summaries_are_escaped_cut_and_whole_in_the_title(panel_as: Login, db: Database,
                                                                            make_job: Callable[..., str]) -> None:
    make_job("etl", title="ETL", category="x", params={"note": "", "password": ""})
    long_note = "<img src=x onerror=alert(1)>" + "n" * 200
    hostile = enqueue(db, "etl", 0, params={"note": long_note, "password": "hunter2"})
    drive_run(db, hostile, RunStatus.SUCCEEDED, result={"html": "<b>bold</b>", "rows": 3})
    failed = enqueue(db, "etl", 1, params={"note": "short"})
    drive_run(db, failed, RunStatus.FAILED, error="<svg onload=x> " + "e" * 300)
    page = text(panel_as("viewer").get("/runs"))

    def cells(run_id: int) -> tuple[str, str]:
        row = page[page.index(f'<tr id="run-{run_id}">'):]
        row = row[:row.index("</tr>")]
        params = re.search(r'<td class="params-summary"([^>]*)>(.*?)</td>', row, re.S)
        outcome = re.search(r'<td class="outcome-summary[^"]*"([^>]*)>(.*?)</td>', row, re.S)
        assert params and outcome
        return params.group(1) + params.group(2), outcome.group(1) + outcome.group(2)

    params, outcome = cells(hostile)
    assert "<img" not in params and "&lt;img src=x onerror=alert(1)&gt;" in params
    assert "hunter2" not in page and "password=&#34;****&#34;" in params  # masked as on the run's page
    shown = re.search(r"<code>(.*?)</code>", params).group(1)
    assert len(html.unescape(shown)) == 80 and html.unescape(shown).endswith("…")
    assert 'title="note=&#34;&lt;img' in params and "n" * 200 in params  # the whole value in the title
    assert html.unescape(outcome) == '{"html": "<b>bold</b>", "rows": 3}' and "<b>" not in outcome
    params, outcome = cells(failed)
    assert params == '<code>note=&#34;short&#34;, password=&#34;****&#34;</code>'  # short: no title; masked
    assert "&lt;svg onload=x&gt;" in outcome and "<svg" not in outcome and 'title="&lt;svg onload=x&gt; ' + "e" * 300 in outcome


def test_the_density_cookie_renders_the_list_compact(panel_as: Login, world: dict[str, int]) -> None:
    viewer = panel_as("viewer")
    assert "data-density" not in text(viewer.get("/runs")).split('id="runs-table"')[1].split(">")[0]
    viewer.client.set_cookie("lexyjobs_density", "compact")
    page = text(viewer.get("/runs"))
    assert '<div id="runs-table" data-density="compact"' in page and 'aria-pressed="true"' in page
    assert '<div id="runs-table" data-density="compact"' in text(viewer.get("/runs", hx=True))
    viewer.client.set_cookie("lexyjobs_density", "<b>")
    assert "data-density" not in text(viewer.get("/runs")).split('id="runs-table"')[1].split(">")[0]
