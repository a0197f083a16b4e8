"""The run detail page (``/runs/<id>``): its facts per run state, buttons per role, the live block
(htmx partial, 204 when unchanged, no polling once finished), the log tail, Cancel / Retry through
the panel, CSRF and role refusals, escaping, and a real worker's run cancelled from the page."""
from __future__ import annotations

import html
import re
from typing import Any, Callable

import pytest
from conftest import drive_run, wait_for
from flask import Flask

from lexyjobs import audit, queries, runs, store
from lexyjobs.db import Database
from lexyjobs.models import Run
from lexyjobs.runtime import Runtime
from lexyjobs.states import RunStatus, transition

XSS = "<script>alert(1)</script>"
POLL = re.compile(r'id="run-live"[^>]*hx-get="/runs/(\d+)\?stamp=([0-9a-f]+)"')
LOG_POLL = re.compile(r'id="log-poll" hx-get="/runs/(\d+)/log\?after=(\d+)"')


@pytest.fixture
def job(make_job: Callable[..., str]) -> str:
    return make_job("report", max_concurrency=0, params={"day": "", "count": 0, "note": "", "api_key": ""})


def enqueue(db: Database, job: str, params: dict[str, Any] | None = None, **options: Any) -> int:
    return runs.enqueue(db, job, params or {}, created_by="user:alice", **options)


def finish(db: Database, run_id: int, status: RunStatus, **values: Any) -> None:
    """A queued run through ``running`` to ``status``, setting ``values`` (traceback, details…)."""
    drive_run(db, run_id, RunStatus.RUNNING)
    run = runs.get_run(db, run_id)
    with db.write() as session:
        transition(session, run_id, status, expected=RunStatus.RUNNING, lease=run.lease,
                   at=run.started_at, finished_at=run.started_at, **values)


def append_log(db: Database, run_id: int, text: str, *, max_chars: int = 100_000) -> None:
    with db.write() as session:
        store.append_log(session, run_id, text, max_chars=max_chars)


def set_progress(db: Database, run_id: int, progress: float, message: str) -> None:
    run = runs.get_run(db, run_id)
    with db.write() as session:
        assert store.save_progress(session, store.Lease(run_id, run.lease), progress, message)


def text_of(response: Any) -> str:
    return str(response.get_data(as_text=True))


def forms(page: str) -> set[str]:
    """The actions of the page's POST forms (but the log-out form)."""
    return set(re.findall(r'<form method="post" action="([^"]+)"', page)) - {"/logout"}


def stamp_of(page: str) -> str:
    found = POLL.search(page)
    assert found, "the live block does not poll"
    return found.group(2)


# ------------------------------------------------------------------ what the page shows

def test_a_queued_run_shows_where_it_came_from_and_operators_can_cancel_it(db, job, panel_as):
    run_id = enqueue(db, job, {"day": "2024-05-01", "count": 3}, priority=2)
    page = text_of(response := panel_as("operator").get(f"/runs/{run_id}"))
    assert response.status_code == 200
    assert f"Run #{run_id} of" in page and "report" in page
    assert '<span class="badge queued">queued</span>' in page
    assert "manual by user:alice" in page and "<dd>2</dd>" in page  # trigger, creator, priority
    assert "attempt 0 of 3" in page
    assert "&#34;day&#34;: &#34;2024-05-01&#34;" in page or '"day": "2024-05-01"' in html.unescape(page)
    assert forms(page) == {f"/runs/{run_id}/cancel"}
    assert 'name="csrf_token"' in page and f'hx-post="/runs/{run_id}/cancel"' in page
    assert f"/jobs/report/run?from_run={run_id}" in page  # re-run with changes
    assert POLL.search(page) and LOG_POLL.search(page)  # both live while it is not finished
    # why it waits, truthfully: no worker process runs in this test (the old page said it "waits in
    # the queue until a worker picks it up" whatever held it back)
    assert "Waiting for:" in page and "No worker process is running" in page
    assert "waits in the queue until a worker" not in page


def test_viewers_see_the_run_but_no_buttons(db, job, panel_as):
    queued, failed = enqueue(db, job), enqueue(db, job)
    finish(db, failed, RunStatus.FAILED, error="it broke")
    viewer = panel_as("viewer")
    for run_id in (queued, failed):
        page = text_of(response := viewer.get(f"/runs/{run_id}"))
        assert response.status_code == 200
        assert forms(page) == set() and "Re-run with changes" not in page
    assert "it broke" in text_of(viewer.get(f"/runs/{failed}"))


def test_a_running_run_shows_progress_processing_so_far_and_its_worker(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING, queued_for=5.0)
    set_progress(db, run_id, 40, "loading rows")
    page = text_of(panel_as("operator").get(f"/runs/{run_id}"))
    assert '<span class="badge running">running</span>' in page
    assert 'aria-valuenow="40"' in page and "loading rows" in page
    assert "5.0 s" in page  # queue time: due → started
    assert " so far" in page and "test:api" in page
    assert forms(page) == {f"/runs/{run_id}/cancel"}
    assert re.search(r"badge queued\">queued</span> → <span class=\"badge running\"", page)  # the timeline


def test_a_succeeded_run_shows_its_result_and_times_and_stops_polling(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.SUCCEEDED, queued_for=5.0, ran_for=2.5, result={"rows": 42, "files": ["a.csv"]})
    page = text_of(panel_as("operator").get(f"/runs/{run_id}"))
    assert '<span class="badge succeeded">succeeded</span>' in page
    assert '&#34;rows&#34;: 42' in page or '"rows": 42' in html.unescape(page)
    assert "5.0 s" in page and "2.5 s" in page
    assert "so far" not in page
    assert forms(page) == {f"/runs/{run_id}/retry", f"/jobs/{job}/run-now"}  # Retry, Run again
    assert not POLL.search(page) and 'id="run-live"' in page
    assert not LOG_POLL.search(page) and "wrote nothing to its log" in page


def test_a_failed_run_shows_its_error_traceback_and_details(db, job, panel_as):
    run_id = enqueue(db, job)
    finish(db, run_id, RunStatus.FAILED, error="ValueError: bad day", traceback="Traceback (most recent call last):\n  x",
           details={"exit_code": 3, "model": "gpt-4o-mini", "tokens_in": 120, "tokens_out": 30, "ms": 840,
                    "usage": {"total": 150}})
    page = text_of(panel_as("operator").get(f"/runs/{run_id}"))
    assert '<span class="badge failed">failed</span>' in page
    assert '<pre class="error-text">ValueError: bad day</pre>' in page
    assert '<pre class="traceback">Traceback (most recent call last):\n  x</pre>' in page
    for key, value in (("exit_code", "3"), ("model", "gpt-4o-mini"), ("tokens_in", "120"), ("ms", "840")):
        assert f'<th scope="row">{key}</th><td>{value}</td>' in page
    assert '<th scope="row">usage</th><td><pre class="json">' in page  # nested values as JSON
    assert forms(page) == {f"/runs/{run_id}/retry", f"/jobs/{job}/run-now"}  # Retry, Run again


def test_the_page_links_the_upstream_run_and_every_retry_of_the_chain(db, job, panel_as):
    first = enqueue(db, job)
    finish(db, first, RunStatus.FAILED, error="first")
    second = runs.retry(db, first, by="user:bob")
    finish(db, second, RunStatus.FAILED, error="second")
    third = runs.retry(db, second, by="user:bob")
    downstream = enqueue(db, job, trigger="dependency", parent_run_id=third)
    client = panel_as("viewer")
    page = text_of(client.get(f"/runs/{second}"))
    assert f'<dt>Retry of</dt><dd><a href="/runs/{first}">#{first}</a>' in page
    assert "retry by user:bob" in page
    for other in (first, third):
        assert f'<a href="/runs/{other}">#{other} <span class="badge' in page
    assert f'<strong aria-current="page">#{second}' in page
    page = text_of(client.get(f"/runs/{downstream}"))
    assert f'<dt>Started after</dt><dd><a href="/runs/{third}">#{third}</a>' in page and "dependency" in page


def test_secret_looking_params_are_masked(db, job, panel_as):
    run_id = enqueue(db, job, {"api_key": "sk-live-123456", "day": "monday"})
    page = text_of(panel_as("viewer").get(f"/runs/{run_id}"))
    assert "sk-live-123456" not in page and "****" in page and "monday" in page


def test_the_job_links_to_its_page_once_that_page_exists(app: Flask, db, job, panel_as):
    if "lexyjobs.panel.job_detail" not in app.view_functions:  # another page module adds it; stand in for it
        app.add_url_rule("/jobs/<job_name:name>", "lexyjobs.panel.job_detail", lambda name: name)
    run_id = enqueue(db, job)
    assert '<a href="/jobs/report">report</a>' in text_of(panel_as("viewer").get(f"/runs/{run_id}"))


def test_an_unknown_run_is_a_404_page(lj, panel_as):
    client = panel_as("viewer")
    for path in ("/runs/999999", "/runs/999999/log", f"/runs/{2**63}"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
    assert "no run with id 999999" in text_of(client.get("/runs/999999"))
    assert client.post("/runs/999999/cancel").status_code == 403  # a viewer may not cancel anything
    assert panel_as("operator").post("/runs/999999/cancel").status_code == 404


# ------------------------------------------------------------------ live block

def test_htmx_gets_only_the_live_block_and_204_while_nothing_changes(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    client = panel_as("viewer")
    partial = text_of(response := client.get(f"/runs/{run_id}", hx=True))
    assert response.status_code == 200
    assert partial.lstrip().startswith('<section id="run-live"') and "<html" not in partial
    assert "Parameters" not in partial and 'id="log"' not in partial
    stamp = stamp_of(partial)
    assert stamp == stamp_of(text_of(client.get(f"/runs/{run_id}")))  # the page's block polls the same stamp
    unchanged = client.get(f"/runs/{run_id}?stamp={stamp}", hx=True)
    assert unchanged.status_code == 204 and unchanged.get_data() == b""

    set_progress(db, run_id, 75, "three quarters")
    changed = client.get(f"/runs/{run_id}?stamp={stamp}", hx=True)
    assert changed.status_code == 200 and "three quarters" in text_of(changed)
    assert stamp_of(text_of(changed)) != stamp
    assert client.get(f"/runs/{run_id}?stamp={stamp}").status_code == 200  # a plain GET always gets the page


def test_the_live_block_stops_polling_when_the_run_finishes(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    client = panel_as("viewer")
    stamp = stamp_of(text_of(client.get(f"/runs/{run_id}", hx=True)))
    run = runs.get_run(db, run_id)
    with db.write() as session:
        transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=run.lease,
                   at=run.started_at, finished_at=run.started_at, result="done")
    last = text_of(response := client.get(f"/runs/{run_id}?stamp={stamp}", hx=True))
    assert response.status_code == 200 and "badge succeeded" in last
    assert 'id="run-live"' in last and "hx-get" not in last.split(">", 1)[0]
    assert not POLL.search(last)


# ------------------------------------------------------------------ log tail

def test_the_log_tail_returns_only_new_text_and_204_when_there_is_none(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    append_log(db, run_id, "first line\n")
    client = panel_as("viewer")
    page = text_of(client.get(f"/runs/{run_id}"))
    assert '<pre id="log" class="log" tabindex="0" data-follow aria-label="Log">\nfirst line\n</pre>' in page
    offset = int(LOG_POLL.search(page).group(2))  # type: ignore[union-attr]
    assert offset == len("first line\n")

    assert client.get(f"/runs/{run_id}/log?after={offset}", hx=True).status_code == 204
    append_log(db, run_id, f"second {XSS}\n")
    chunk = text_of(response := client.get(f"/runs/{run_id}/log?after={offset}", hx=True))
    assert response.status_code == 200
    assert '<span hx-swap-oob="beforeend:#log">second &lt;script&gt;alert(1)&lt;/script&gt;\n</span>' in chunk
    assert "first line" not in chunk and XSS not in chunk
    poller = LOG_POLL.search(chunk)
    assert poller and int(poller.group(2)) == offset + len(f"second {XSS}\n")
    assert client.get(f"/runs/{run_id}/log?after={poller.group(2)}", hx=True).status_code == 204


def test_the_log_tail_says_how_much_was_trimmed(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    lines = "".join(f"line {n:04d}\n" for n in range(100))  # 10 characters a line
    append_log(db, run_id, lines, max_chars=300)  # keeps the last whole lines that fit: 0071…0099
    client = panel_as("viewer")
    page = text_of(client.get(f"/runs/{run_id}"))
    assert "[… 710 earlier characters trimmed …]" in page
    assert "line 0070" not in page and "line 0071\n" in page and "line 0099\n" in page
    chunk = text_of(client.get(f"/runs/{run_id}/log?after=100", hx=True))  # behind the trimmed part
    assert "[… 610 characters trimmed …]" in chunk and "line 0071" in chunk and "line 0070" not in chunk


def test_the_page_shows_only_the_last_64_kib_of_a_long_log(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    append_log(db, run_id, "A" * 30_000 + "B" * 70_000)
    page = text_of(panel_as("viewer").get(f"/runs/{run_id}"))
    assert f"[… {100_000 - 65_536} earlier characters trimmed …]" in page
    assert "A" * 100 not in page and "B" * 65_536 in page
    assert f"/runs/{run_id}/log?after=100000" in page


def test_the_log_tail_stops_once_the_run_has_finished(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    append_log(db, run_id, "working\n")
    client = panel_as("viewer")
    offset = len("working\n")
    append_log(db, run_id, "all done\n")
    finish_running(db, run_id)
    last = text_of(response := client.get(f"/runs/{run_id}/log?after={offset}", hx=True))
    assert response.status_code == 200 and "all done" in last and "working" not in last
    assert 'id="log-poll"' not in last  # no next poller: the tail ends
    end = client.get(f"/runs/{run_id}/log?after={offset + len('all done')+1}", hx=True)
    assert end.status_code == 200 and 'id="log-poll"' not in text_of(end) and "hx-swap-oob" not in text_of(end)
    assert not LOG_POLL.search(text_of(client.get(f"/runs/{run_id}")))


def finish_running(db: Database, run_id: int) -> None:
    run = runs.get_run(db, run_id)
    with db.write() as session:
        transition(session, run_id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=run.lease,
                   at=run.started_at, finished_at=run.started_at)


# ------------------------------------------------------------------ cancel and retry

def test_cancelling_a_queued_run_cancels_it_and_returns_to_the_page(db, job, panel_as):
    run_id = enqueue(db, job)
    operator = panel_as("operator")
    response = operator.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 303 and response.location.endswith(f"/runs/{run_id}")
    assert runs.get_run(db, run_id).status == RunStatus.CANCELED
    page = text_of(operator.get(f"/runs/{run_id}"))
    assert "badge canceled" in page and "canceled by panel-operator" in page
    assert forms(page) == {f"/runs/{run_id}/retry", f"/jobs/{job}/run-now"}  # Retry, Run again
    entries = audit.search(db, action="run.cancel").entries
    assert [(e.actor, e.target) for e in entries] == [("panel-operator", str(run_id))]


def test_cancelling_with_htmx_returns_the_updated_live_block(db, job, panel_as):
    run_id = enqueue(db, job)
    block = text_of(response := panel_as("operator").post(f"/runs/{run_id}/cancel", hx=True))
    assert response.status_code == 200
    assert block.lstrip().startswith('<section id="run-live"') and "badge canceled" in block
    assert not POLL.search(block)  # finished: it stops polling
    assert runs.get_run(db, run_id).status == RunStatus.CANCELED


def test_cancelling_a_running_run_asks_its_worker_to_stop(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.RUNNING)
    operator = panel_as("operator")
    block = text_of(operator.post(f"/runs/{run_id}/cancel", hx=True))
    run = runs.get_run(db, run_id)
    assert run.status == RunStatus.RUNNING and run.cancel_requested
    assert "cancel requested" in block and f"/runs/{run_id}/cancel" not in block
    assert POLL.search(block)  # still running: still polled


def test_cancelling_a_finished_run_is_a_409_message_not_a_500(db, job, panel_as):
    run_id = enqueue(db, job)
    drive_run(db, run_id, RunStatus.SUCCEEDED)
    operator = panel_as("operator")
    response = operator.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 409 and response.mimetype == "text/html"
    assert "only queued or running runs can be canceled" in text_of(response)
    block = text_of(response := operator.post(f"/runs/{run_id}/cancel", hx=True))
    assert response.status_code == 200  # htmx swaps 2xx only: the message goes into the block
    assert '<p class="notice" role="status">' in block and "only queued or running runs can be canceled" in block
    assert runs.get_run(db, run_id).status == RunStatus.SUCCEEDED
    assert audit.search(db, action="run.cancel").entries == []


def test_retrying_makes_a_new_run_and_goes_to_its_page(db, job, panel_as):
    run_id = enqueue(db, job, {"day": "monday"})
    finish(db, run_id, RunStatus.FAILED, error="boom")
    operator = panel_as("operator")
    response = operator.post(f"/runs/{run_id}/retry")
    assert response.status_code == 303
    new_id = int(response.location.rsplit("/", 1)[1])
    new = runs.get_run(db, new_id)
    assert new_id != run_id and new.retry_of == run_id and new.params == runs.get_run(db, run_id).params
    assert new.status == RunStatus.QUEUED and new.created_by == "panel-operator"
    page = text_of(operator.get(response.location))
    assert f'<dt>Retry of</dt><dd><a href="/runs/{run_id}">#{run_id}</a>' in page

    again = operator.post(f"/runs/{run_id}/retry", hx=True)
    assert again.status_code == 200 and again.headers["HX-Redirect"].startswith("/runs/")
    with db.read() as session:
        assert len(queries.retries_of(session, run_id)) == 2


def test_retrying_an_unfinished_run_is_refused_with_a_message(db, job, panel_as):
    run_id = enqueue(db, job)
    operator = panel_as("operator")
    assert operator.post(f"/runs/{run_id}/retry").status_code == 409
    block = text_of(operator.post(f"/runs/{run_id}/retry", hx=True))
    assert "only finished runs can be retried" in block
    with db.read() as session:
        assert queries.retries_of(session, run_id) == []


def test_viewers_cannot_cancel_or_retry(db, job, panel_as):
    queued, failed = enqueue(db, job), enqueue(db, job)
    finish(db, failed, RunStatus.FAILED, error="x")
    viewer = panel_as("viewer")
    for path in (f"/runs/{queued}/cancel", f"/runs/{failed}/retry"):
        for hx in (False, True):
            assert viewer.post(path, hx=hx).status_code == 403, (path, hx)
    assert "this needs the operator role" in text_of(viewer.post(f"/runs/{queued}/cancel"))
    assert runs.get_run(db, queued).status == RunStatus.QUEUED
    with db.read() as session:
        assert queries.retries_of(session, failed) == []
    assert audit.search(db, action="run.cancel").entries == [] and audit.search(db, action="run.retry").entries == []


def test_posts_without_the_csrf_token_are_refused(db, job, panel_as):
    queued, failed = enqueue(db, job), enqueue(db, job)
    finish(db, failed, RunStatus.FAILED, error="x")
    operator = panel_as("operator")
    assert operator.post(f"/runs/{queued}/cancel", csrf=False).status_code == 403
    assert operator.post(f"/runs/{failed}/retry", csrf=False, data={"csrf_token": "forged" * 8}).status_code == 403
    assert runs.get_run(db, queued).status == RunStatus.QUEUED
    with db.read() as session:
        assert queries.retries_of(session, failed) == []
    # the header htmx sends works as well as the form field
    response = operator.post(f"/runs/{queued}/cancel", hx=True, csrf=False, headers={"X-CSRF-Token": operator.csrf})
    assert response.status_code == 200 and runs.get_run(db, queued).status == RunStatus.CANCELED


# ------------------------------------------------------------------ escaping

def test_params_result_error_details_and_log_are_escaped(db, job, panel_as):
    run_id = enqueue(db, job, {"note": XSS})
    drive_run(db, run_id, RunStatus.RUNNING)
    set_progress(db, run_id, 10, XSS)
    append_log(db, run_id, f"log {XSS}\n")
    run = runs.get_run(db, run_id)
    with db.write() as session:
        transition(session, run_id, RunStatus.FAILED, expected=RunStatus.RUNNING, lease=run.lease, at=run.started_at,
                   finished_at=run.started_at, error=f"error {XSS}", traceback=f"tb {XSS}", result={"r": XSS},
                   details={XSS: XSS})
    client = panel_as("operator")
    for response in (client.get(f"/runs/{run_id}"), client.get(f"/runs/{run_id}", hx=True),
                     client.get(f"/runs/{run_id}/log?after=0", hx=True)):
        body = text_of(response)
        assert response.status_code == 200 and "<script>alert" not in body
    page = text_of(client.get(f"/runs/{run_id}"))
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 7  # params, progress, log, error, tb, result, details


# ------------------------------------------------------------------ with a real worker

def test_a_worker_run_streams_its_log_and_is_cancelled_from_the_page(lj: Runtime, db, make_job, start_worker,
                                                                    panel_as, tmp_path):
    make_job("gated", func="jobfuncs:progress_until_gate", params={"gate": ""})
    run_id = runs.enqueue(db, "gated", {"gate": str(tmp_path / "never")})
    start_worker()
    operator = panel_as("operator")

    def page_with_log() -> str | None:
        page = text_of(operator.get(f"/runs/{run_id}"))
        return page if "loaded the first half" in page else None
    page = wait_for(page_with_log)
    assert "badge running" in page and 'aria-valuenow="40"' in page and "loading" in page
    assert LOG_POLL.search(page)
    assert operator.post(f"/runs/{run_id}/cancel").status_code == 303
    wait_for(lambda: runs.get_run(db, run_id).status == RunStatus.CANCELED)
    page = text_of(operator.get(f"/runs/{run_id}"))
    assert "badge canceled" in page and not POLL.search(page) and not LOG_POLL.search(page)
    with db.read() as session:
        assert session.get(Run, run_id).finished_at is not None  # type: ignore[union-attr]
