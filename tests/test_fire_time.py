"""The schedule time a run is for, as the job sees it (issue 21's backfill builds on it): a
scheduled run knows its fire's time even when it starts late (``ctx.fire_time``; shell jobs get
``LEXYJOBS_FIRE_TIME``; openai templates ``{{ fire_time }}``), a manual retry of it is for the same
fire, and a run no schedule made is for none. SQLite and Postgres."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import wait_for
from test_kind_http import http_server  # noqa: F401  (fixture)

from lexyjobs import runs, store
from lexyjobs.errors import InvalidDefinition
from lexyjobs.fire_times import fire_time_of
from lexyjobs.scheduler import Scheduler, fire_key

FIRE = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # seed 000's keyword metrics: 02:00


def done(db, run_id):  # type: ignore[no-untyped-def]
    return wait_for(lambda: (run := runs.get_run(db, run_id)).status in ("succeeded", "failed") and run, timeout=20)


def fired(db, name: str, at: datetime) -> int:  # type: ignore[no-untyped-def]
    """Record the fire of ``name`` at ``at`` as the scheduler does, a little later than ``at``."""
    [run_id] = Scheduler(db).fire(name, [at], now=at + timedelta(seconds=30)).queued
    return run_id


def test_fire_keys_are_read_back_and_anything_else_is_no_fire_time():
    assert fire_time_of(fire_key("keyword-metrics", FIRE)) == FIRE
    assert fire_time_of(fire_key("a@b", FIRE)) == FIRE
    assert [fire_time_of(key) for key in (None, "", "job", "job@yesterday")] == [None] * 4


def test_a_scheduled_run_knows_its_fire_time_and_a_manual_retry_keeps_it(db, make_job, start_worker):
    make_job("keyword-metrics", func="jobfuncs:fire_time", schedule="0 2 * * *", misfire_grace="3650d")
    scheduled = fired(db, "keyword-metrics", FIRE)
    manual = runs.enqueue(db, "keyword-metrics")
    start_worker()
    assert done(db, scheduled).result == "2026-12-01T02:00:00+00:00"  # it ran days later: still that fire
    assert done(db, manual).result is None
    again = runs.retry(db, scheduled, by="alice")
    assert done(db, again).result == "2026-12-01T02:00:00+00:00"


def test_shell_jobs_get_it_as_lexyjobs_fire_time(db, make_job, start_worker):
    make_job("ingest-corpus", kind="shell", argv=["sh", "-c", 'echo "for $LEXYJOBS_FIRE_TIME"'], schedule="30 5 * * *",
             misfire_grace="3650d")
    make_job("by-hand", kind="shell", argv=["sh", "-c", 'echo "set: ${LEXYJOBS_FIRE_TIME-no}"'])
    at = FIRE.replace(hour=5, minute=30)
    scheduled, manual = fired(db, "ingest-corpus", at), runs.enqueue(db, "by-hand")
    start_worker()
    assert done(db, scheduled).status == done(db, manual).status == "succeeded"
    with db.read() as session:
        assert store.read_log(session, scheduled)[0] == "for 2026-12-01T05:30:00+00:00\n"
        assert store.read_log(session, manual)[0] == "set: no\n"


def test_openai_templates_see_it_as_fire_time(db, make_job, start_worker, llm):
    make_job("daily-digest", kind="openai", model="test-model", stream=False, schedule="0 2 * * *",
             misfire_grace="3650d", prompt="Summarise the support inbox of {{ fire_time[:10] }}.")
    run_id = fired(db, "daily-digest", FIRE)
    start_worker()
    assert done(db, run_id).status == "succeeded", runs.get_run(db, run_id).error
    [request] = llm.received
    assert "Summarise the support inbox of 2026-12-01." in request.body["messages"][-1]["content"]


def test_a_python_job_in_its_own_process_gets_it_too(db, make_job, start_worker):
    make_job("isolated", func="jobfuncs:fire_time", isolation="process", schedule="0 2 * * *", misfire_grace="3650d")
    run_id = fired(db, "isolated", FIRE)
    start_worker()
    assert done(db, run_id).result == "2026-12-01T02:00:00+00:00"


def test_http_urls_see_it_and_the_params_percent_encoded(db, make_job, start_worker, http_server):
    make_job("metrics-export", kind="http", schedule="0 2 * * *", misfire_grace="3650d",
             url=http_server.url("/export/{{ brand }}/{{ fire_time[:10] }}?at={{ fire_time }}"),
             params={"brand": {"type": "string", "default": "a&b/../c"}})
    make_job("by-hand", kind="http", url=http_server.url("/by-hand?at={{ fire_time }}"))
    scheduled, manual = fired(db, "metrics-export", FIRE), runs.enqueue(db, "by-hand")
    start_worker()
    assert done(db, scheduled).status == done(db, manual).status == "succeeded"
    [export] = [r for r in http_server.received if r.path.startswith("/export/")]
    assert export.path == "/export/a%26b%2F..%2Fc/2026-12-01"  # one path segment, whatever the param holds
    assert export.query["at"] == ["2026-12-01T02:00:00+00:00"]   # "+" kept, not read as a space
    [by_hand] = http_server.hits("/by-hand")
    assert by_hand.query == {}  # no fire: empty


def test_a_url_template_that_does_not_parse_is_refused_when_saved(db, make_job):
    with pytest.raises(InvalidDefinition, match="url.*template syntax error"):
        make_job("broken", kind="http", url="https://example.com/{{ fire_time")
