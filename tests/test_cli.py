"""The ``lexyjobs`` command line (lexyjobs.cli), driven through click's CliRunner on both
databases; the CLI builds its own app from LEXYJOBS_* variables, like a real invocation."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result
from conftest import wait_for

from sqlalchemy import update

from lexyjobs import claiming, registry, runs, store, workers
from lexyjobs.cli import main
from lexyjobs.db import utcnow
from lexyjobs.models import Run
from lexyjobs.states import RunStatus, transition

Invoke = Callable[..., Result]


@pytest.fixture
def cli(db_url: str, db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """``cli("jobs", "list")`` runs the real CLI against the test database (no jobs file).
    The database exists (``db``), as the server creates it: the CLI never does (test_cli_database)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False,
                             env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""})
    return invoke


def jobs_in(db) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    with db.read() as session:
        return {j.name: {"source": j.source, "enabled": j.enabled, **j.spec} for j in store.list_jobs(session)}


def run_id_from(result: Result) -> int:
    """The id in the ``run N queued (job)`` line."""
    line = next(line for line in result.stdout.splitlines() if line.startswith("run ") and " queued" in line)
    return int(line.split()[1])


TWO_JOBS = """
[jobs.collect]
title = "Collect"
category = "Data Collection"
kind = "python"
func = "jobfuncs:noop"
schedule = "@daily"

[jobs.report]
kind = "shell"
argv = ["echo", "report"]
depends_on = ["collect"]
"""


# ---------------------------------------------------------------- jobs add / list / pause / remove


def test_jobs_add_creates_jobs_from_a_toml_file(cli: Invoke, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "new.toml").write_text(TWO_JOBS)
    result = cli("jobs", "add", str(tmp_path / "new.toml"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["created job collect", "created job report"]
    jobs = jobs_in(db)
    assert set(jobs) == {"collect", "report"}
    assert jobs["collect"]["source"] == "db" and jobs["collect"]["schedule"] == "@daily"
    assert jobs["report"]["argv"] == ["echo", "report"] and jobs["report"]["depends_on"] == ["collect"]


def test_jobs_add_reads_one_json_job_from_stdin(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "from-json", "kind": "shell", "argv": ["echo", "hi"], "priority": 3}
    result = cli("jobs", "add", "-", input=json.dumps(body))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "created job from-json"
    assert jobs_in(db) == {"from-json": {"source": "db", "enabled": True, "kind": "shell", "argv": ["echo", "hi"],
                                         "priority": 3}}


def test_jobs_add_reads_a_json_list_from_stdin(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    body = [{"name": "one", "kind": "python", "func": "jobfuncs:noop"}, {"name": "two", "kind": "shell", "argv": ["true"]}]
    assert cli("jobs", "add", "-", input=json.dumps(body)).exit_code == 0
    assert set(jobs_in(db)) == {"one", "two"}


def test_jobs_add_with_one_bad_job_writes_nothing(cli: Invoke, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mixed.toml").write_text(TWO_JOBS + '\n[jobs.broken]\nkind = "shell"\nargv = ["true"]\n'
                                                    'schedule = "0 0 * * * *"\n\n[jobs.last]\nkind = "shell"\nargv = ["true"]\n')
    result = cli("jobs", "add", str(tmp_path / "mixed.toml"))
    assert result.exit_code == 2
    assert "error: job 'broken', field 'schedule': '0 0 * * * *' has 6 fields" in result.stderr
    assert "created" not in result.stdout
    assert jobs_in(db) == {}


def test_jobs_add_with_a_taken_name_writes_nothing(cli: Invoke, db, make_job, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_job("report", kind="shell", argv=["echo", "old"])
    (tmp_path / "new.toml").write_text(TWO_JOBS)
    result = cli("jobs", "add", str(tmp_path / "new.toml"))
    assert result.exit_code == 2
    assert "a job named 'report' already exists" in result.stderr
    assert set(jobs_in(db)) == {"report"}
    assert jobs_in(db)["report"]["argv"] == ["echo", "old"]


def test_jobs_add_replace_updates_a_database_job(cli: Invoke, db, make_job, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_job("report", kind="shell", argv=["echo", "old"])
    (tmp_path / "new.toml").write_text(TWO_JOBS)
    result = cli("jobs", "add", "--replace", str(tmp_path / "new.toml"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["created job collect", "updated job report"]
    assert jobs_in(db)["report"]["argv"] == ["echo", "report"]


def test_jobs_add_replace_cannot_touch_a_file_job_and_writes_nothing(cli: Invoke, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "file.toml").write_text('[jobs.report]\nkind = "shell"\nargv = ["echo", "from file"]\n')
    registry.sync_jobs(db, jobs_file=str(tmp_path / "file.toml"))
    (tmp_path / "new.toml").write_text(TWO_JOBS)
    result = cli("jobs", "add", "--replace", str(tmp_path / "new.toml"))
    assert result.exit_code == 2
    assert "job 'report' is defined in the jobs file" in result.stderr
    assert set(jobs_in(db)) == {"report"} and jobs_in(db)["report"]["argv"] == ["echo", "from file"]


@pytest.mark.parametrize(("text", "message"), [
    ('[jobs.x]\nkind = "shell"\nargv = ["true"\n', "error: invalid TOML"),
    ('{"name": "x", "kind": ', "error: invalid JSON"),
    ('{"kind": "shell", "argv": ["true"]}', "each JSON job needs a \"name\""),
    ('[other]\nx = 1\n', "must hold [jobs.<name>] tables"),
    ('{"name": "Bad Name", "kind": "shell", "argv": ["true"]}', "job 'Bad Name', field 'name'"),
])
def test_jobs_add_rejects_a_malformed_snippet(cli: Invoke, db, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("jobs", "add", "-", input=text)
    assert result.exit_code == 2
    assert message in result.stderr
    assert jobs_in(db) == {}


HEADER = ["NAME", "KIND", "CATEGORY", "SCHEDULE", "NEXT", "SOURCE", "STATE", "HEALTH"]


def table(result: Result) -> list[list[str]]:
    """The cells of a printed table (columns are separated by at least two spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in result.stdout.splitlines()]


def next_midnights() -> set[str]:
    """The next 00:00 UTC as ``jobs list`` prints it, for a clock read just before or just after."""
    tomorrow = datetime.now(timezone.utc).date() + timedelta(days=1)
    return {f"{day:%Y-%m-%d} 00:00 UTC" for day in (tomorrow, tomorrow + timedelta(days=1))}


def test_jobs_list_shows_every_job_with_schedule_in_words_next_fire_and_health(cli: Invoke, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("collect", category="Data Collection", schedule="@daily")
    make_job("nightly", kind="shell", argv=["true"], schedule="30 2 * * *", timezone="Europe/Berlin", enabled=False)
    make_job("report", kind="shell", argv=["true"])
    result = cli("jobs", "list")
    assert result.exit_code == 0, result.output
    rows = table(result)
    assert rows[0] == HEADER
    assert rows[1][:4] == ["collect", "python", "Data Collection", "At 00:00 every day (UTC)"]
    assert rows[1][4] in next_midnights()
    assert rows[1][5:] == ["db", "active", "unknown: never ran"]
    assert rows[2] == ["nightly", "shell", "General", "At 02:30 every day (Europe/Berlin)", "-", "db", "paused",
                       "unknown: never ran"]
    assert rows[3] == ["report", "shell", "General", "manual", "-", "db", "active", "unknown: never ran"]


def test_jobs_list_shows_the_health_of_each_job(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("good", max_concurrency=0)
    make_job("bad", kind="shell", argv=["false"])
    finish(db, "good", RunStatus.SUCCEEDED)
    finish(db, "bad", RunStatus.FAILED, "exit status 1")
    finish(db, "bad", RunStatus.FAILED, "exit status 2 " + "x" * 100)
    rows = {row[0]: row for row in table(cli("jobs", "list"))[1:]}
    assert re.fullmatch(r"ok: last success (\d+s ago|just now)", rows["good"][-1])
    assert rows["bad"][-1] == ("error: failed 2 times in a row: exit status 2 " + "x" * 100)[:69] + "…"


def test_jobs_list_json_is_machine_readable(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("collect", category="Data Collection", schedule="@daily", params={"since": "yesterday"})
    make_job("broken", kind="shell", argv=["false"])
    finish(db, "broken", RunStatus.FAILED, "exit status 1")
    result = cli("jobs", "list", "--json")
    assert result.exit_code == 0, result.output
    collect, broken = json.loads(result.stdout)  # by category, then name
    assert {k: collect[k] for k in ("name", "kind", "category", "source", "schedule", "enabled", "func", "params",
                                    "schedule_description", "health")} == {
        "name": "collect", "kind": "python", "category": "Data Collection", "source": "db", "schedule": "@daily",
        "enabled": True, "func": "jobfuncs:noop", "params": {"since": "yesterday"},
        "schedule_description": "At 00:00 every day (UTC)",
        "health": {"state": "unknown", "reason": "never ran", "window_seconds": 2 * 86400 + 8640.0, "stale": False,
                   "signals": []}}
    assert datetime.fromisoformat(collect["next_fire"]).strftime("%Y-%m-%d %H:%M UTC") in next_midnights()
    assert (broken["name"], broken["schedule_description"], broken["next_fire"]) == ("broken", "manual", None)
    assert broken["health"] == {"state": "error", "reason": "failed: exit status 1", "window_seconds": 48 * 3600.0,
                                "stale": False, "signals": []}


def test_jobs_list_on_an_empty_database_prints_only_the_header(cli: Invoke) -> None:
    result = cli("jobs", "list")
    assert result.exit_code == 0 and table(result) == [HEADER]
    assert json.loads(cli("jobs", "list", "--json").stdout) == []


def finish(db, name: str, status: RunStatus, error: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """A run of ``name`` that went queued -> running -> ``status`` just now."""
    run_id = runs.enqueue(db, name)
    with db.write() as session:
        [claimed] = claiming.claim_runs(session, 1, worker="test:cli", now=utcnow(), postgres=db.is_postgres)
        assert claimed.id == run_id
        transition(session, run_id, status, expected=RunStatus.RUNNING, at=utcnow(), finished_at=utcnow(), error=error)


def test_jobs_pause_and_resume_flip_the_job(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("collect", schedule="@daily")
    result = cli("jobs", "pause", "collect")
    assert (result.exit_code, result.stdout.strip()) == (0, "paused job collect")
    assert jobs_in(db)["collect"]["enabled"] is False
    result = cli("jobs", "resume", "collect")
    assert (result.exit_code, result.stdout.strip()) == (0, "resumed job collect")
    assert jobs_in(db)["collect"]["enabled"] is True


def test_a_paused_job_can_still_be_run_by_hand(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("collect", schedule="@daily")
    cli("jobs", "pause", "collect")
    result = cli("run", "collect")
    assert result.exit_code == 0, result.output
    assert runs.get_run(db, run_id_from(result)).status == "queued"


def test_pausing_an_unknown_job_fails(cli: Invoke) -> None:
    result = cli("jobs", "pause", "ghost")
    assert result.exit_code == 2 and "error: no job named 'ghost'" in result.stderr


def test_jobs_remove_deletes_a_database_job(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("doomed")
    result = cli("jobs", "remove", "doomed", "--yes")
    assert (result.exit_code, result.stdout.strip()) == (0, "deleted job doomed")
    assert jobs_in(db) == {}


def test_jobs_remove_asks_first(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("kept")
    result = cli("jobs", "remove", "kept", input="n\n")
    assert result.exit_code == 1 and "Delete job kept and all its runs?" in result.output
    assert set(jobs_in(db)) == {"kept"}


# ---------------------------------------------------------------- run


def test_run_enqueues_with_params_and_prints_the_run_id(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("adder", func="jobfuncs:add", params={"a": {"type": "integer"}, "b": {"type": "integer", "default": 2},
                                                   "loud": {"type": "boolean", "default": False}})
    result = cli("run", "adder", "--param", "a=40", "-p", "loud=yes", "--priority", "7")
    assert result.exit_code == 0, result.output
    run_id = run_id_from(result)
    assert result.stdout.strip() == f"run {run_id} queued (adder)"
    run = runs.get_run(db, run_id)
    assert (run.status, run.params, run.priority, run.trigger, run.created_by) == (
        "queued", {"a": 40, "b": 2, "loud": True}, 7, "manual", "cli")


def test_run_with_delay_schedules_the_run_later(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("later")
    run = runs.get_run(db, run_id_from(cli("run", "later", "--delay", "10m")))
    assert 590 <= (run.scheduled_for - run.created_at).total_seconds() <= 610


@pytest.mark.parametrize(("args", "message"), [
    (["--param", "a=forty"], "error: param 'a': must be a whole number"),
    (["--param", "a=1", "--param", "c=3"], "error: param 'c': unknown parameter (this job takes: a, b)"),
    ([], "error: param 'a': is required"),
    (["--param", "a"], "error: --param 'a' must look like KEY=VALUE"),
    (["--param", "=3"], "error: --param '=3' must look like KEY=VALUE"),
    (["--param", "a=1", "--param", "b=nan"], "error: param 'b': must be a number"),
    (["--param", "a=1", "--delay", "soonish"], "error: 'soonish' is not a duration"),
])
def test_run_with_bad_params_fails_naming_the_param(cli: Invoke, db, make_job, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    make_job("adder", func="jobfuncs:add", params={"a": {"type": "integer", "required": True}, "b": {"type": "number"}})
    result = cli("run", "adder", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    with db.read() as session:
        assert store.list_runs(session) == []


def test_run_of_an_unknown_job_fails(cli: Invoke) -> None:
    result = cli("run", "ghost")
    assert result.exit_code == 2 and "error: no job named 'ghost'" in result.stderr


def test_run_wait_exits_0_with_the_result_when_the_run_succeeds(cli: Invoke, make_job, start_worker) -> None:  # type: ignore[no-untyped-def]
    make_job("adder", func="jobfuncs:add", params={"a": {"type": "integer"}, "b": {"type": "integer"}})
    start_worker()
    result = cli("run", "adder", "-p", "a=40", "-p", "b=2", "--wait", "--timeout", "20s")
    assert result.exit_code == 0, result.output
    run_id = run_id_from(result)
    lines = result.stdout.splitlines()
    assert lines[1].startswith(f"run {run_id} succeeded after 1 attempt(s) in ")
    assert lines[2] == "42"


def test_run_wait_exits_1_with_the_error_when_the_run_fails(cli: Invoke, make_job, start_worker) -> None:  # type: ignore[no-untyped-def]
    make_job("fails", func="jobfuncs:fail_cleanly", max_attempts=1)
    start_worker()
    result = cli("run", "fails", "--wait", "--timeout", "20s")
    assert result.exit_code == 1, result.output
    assert f"run {run_id_from(result)} failed after 1 attempt(s)" in result.stdout
    assert "error: expected failure" in result.stderr


def test_run_wait_gives_up_after_the_timeout(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("nobody-runs-this")
    result = cli("run", "nobody-runs-this", "--wait", "--timeout", "300ms")
    assert result.exit_code == 124
    assert "still queued after 300ms" in result.stderr
    assert runs.get_run(db, run_id_from(result)).status == "queued"


# ---------------------------------------------------------------- runs / show


def test_runs_lists_newest_first_and_filters_by_status_and_job(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("alpha")
    make_job("beta")
    first, second, third = (runs.enqueue(db, name) for name in ("alpha", "beta", "alpha"))
    runs.cancel(db, second)
    result = cli("runs")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0][:6] == ["ID", "JOB", "STATUS", "TRIGGER", "ATTEMPT", "CREATED"]
    assert [(int(r[0]), r[1], r[2]) for r in rows[1:]] == [(third, "alpha", "queued"), (second, "beta", "canceled"),
                                                           (first, "alpha", "queued")]
    by_status = cli("runs", "--status", "canceled", "--json")
    assert [(r["id"], r["status"]) for r in json.loads(by_status.stdout)] == [(second, "canceled")]
    by_job = cli("runs", "--job", "alpha", "--json")
    assert [r["id"] for r in json.loads(by_job.stdout)] == [third, first]
    both = cli("runs", "--job", "alpha", "--status", "canceled", "--json")
    assert json.loads(both.stdout) == []
    assert [r["id"] for r in json.loads(cli("runs", "--limit", "1", "--json").stdout)] == [third]


def test_runs_rejects_an_unknown_status(cli: Invoke) -> None:
    result = cli("runs", "--status", "exploded")
    assert result.exit_code == 2 and "'exploded' is not one of" in result.output


def test_show_prints_the_run_with_its_events_and_log(cli: Invoke, db, make_job, start_worker) -> None:  # type: ignore[no-untyped-def]
    make_job("progressing", func="jobfuncs:with_progress", params={"pause": 0.01})
    start_worker()
    run_id = runs.enqueue(db, "progressing")
    wait_for(lambda: runs.get_run(db, run_id).status == "succeeded")
    result = cli("show", str(run_id))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"id: {run_id}" in out and "job: progressing" in out and "status: succeeded" in out
    assert 'result: "ok"' in out and 'params: {"pause": 0.01}' in out
    events = out.split("\nevents:\n")[1].split("\nlog:")[0].splitlines()
    assert [e.split()[1:4] for e in events] == [["queued", "->", "running"], ["running", "->", "succeeded"]]
    assert "step 4" in out.split("\nlog:")[1]


def test_show_json_has_events_and_log(cli: Invoke, db, make_job, start_worker) -> None:  # type: ignore[no-untyped-def]
    make_job("progressing", func="jobfuncs:with_progress", params={"pause": 0.01})
    start_worker()
    run_id = runs.enqueue(db, "progressing")
    wait_for(lambda: runs.get_run(db, run_id).status == "succeeded")
    data = json.loads(cli("show", str(run_id), "--json").stdout)
    assert (data["id"], data["job"], data["status"], data["result"], data["attempt"]) == (run_id, "progressing",
                                                                                         "succeeded", "ok", "1/3")
    assert [(e["from"], e["to"], e["attempt"]) for e in data["events"]] == [("queued", "running", 1),
                                                                            ("running", "succeeded", 1)]
    assert all(f"step {n}" in data["log"] for n in range(1, 5))
    assert data["processing_seconds"] >= 0 and data["queue_seconds"] >= 0


def test_show_of_a_missing_run_fails(cli: Invoke) -> None:
    result = cli("show", "999999")
    assert result.exit_code == 2
    assert "error: no run with id 999999" in result.stderr


# ---------------------------------------------------------------- cancel / retry


def test_cancel_of_a_queued_run_cancels_it(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("waiting")
    run_id = runs.enqueue(db, "waiting")
    result = cli("cancel", str(run_id))
    assert (result.exit_code, result.stdout.strip()) == (0, f"run {run_id}: canceled: it had not started")
    run = runs.get_run(db, run_id)
    assert (run.status, run.error) == ("canceled", "canceled by cli")


def test_cancel_of_a_finished_run_is_refused(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("waiting")
    run_id = runs.enqueue(db, "waiting")
    runs.cancel(db, run_id)
    result = cli("cancel", str(run_id))
    assert result.exit_code == 2 and f"run {run_id} is canceled; only queued or running runs" in result.stderr


def test_cancel_of_a_missing_run_fails(cli: Invoke) -> None:
    result = cli("cancel", "999999")
    assert result.exit_code == 2 and "no run with id 999999" in result.stderr


def test_retry_of_a_failed_run_enqueues_a_new_run(cli: Invoke, db, make_job, start_worker) -> None:  # type: ignore[no-untyped-def]
    make_job("fails", func="jobfuncs:fail_cleanly", max_attempts=1, params={"n": {"type": "integer", "default": 1}})
    worker = start_worker()
    failed = runs.enqueue(db, "fails", {"n": 5})
    wait_for(lambda: runs.get_run(db, failed).status == "failed")
    worker.stop(grace=0)
    result = cli("retry", str(failed))
    assert result.exit_code == 0, result.output
    new_id = int(result.stdout.split()[1])
    assert result.stdout.strip() == f"run {new_id} queued (retry of {failed})"
    new = runs.get_run(db, new_id)
    assert new_id != failed
    assert (new.status, new.job_name, new.params, new.trigger, new.retry_of, new.created_by) == (
        "queued", "fails", {"n": 5}, "retry", failed, "cli")
    assert runs.get_run(db, failed).status == "failed"


def test_retry_of_a_queued_run_is_refused(cli: Invoke, db, make_job) -> None:  # type: ignore[no-untyped-def]
    make_job("waiting")
    run_id = runs.enqueue(db, "waiting")
    result = cli("retry", str(run_id))
    assert result.exit_code == 2 and "only finished runs can be retried" in result.stderr


def test_db_upgrade_creates_the_schema(cli: Invoke) -> None:
    result = cli("db", "upgrade")
    assert (result.exit_code, result.stdout.strip()) == (0, "database schema is up to date")
    assert cli("runs", "--json").stdout.strip() == "[]"


def test_jobs_list_shows_a_one_off_job_with_its_time(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    snippet = tmp_path / "once.toml"
    snippet.write_text('[jobs.once]\nkind = "shell"\nargv = ["true"]\nrun_at = "2099-01-02T03:04:00"\ntimezone = "UTC"\n')
    assert cli("jobs", "add", str(snippet)).exit_code == 0
    out = cli("jobs", "list").output
    assert "Once at 2099-01-02 03:04 (UTC)" in out and "2099-01-02 03:04" in out


def test_jobs_list_judges_why_a_late_run_waits_by_the_servers_heartbeat_limit(  # type: ignore[no-untyped-def]
        cli: Invoke, db, make_job, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker heard from 60 s ago is alive under LEXYJOBS_STALE_AFTER=300, so a late run waits for
    nothing but its turn, as the panel and the API say; it used to be judged by the default 30 s."""
    make_job("report", schedule="0 2 * * *")
    waiting = runs.enqueue_many(db, [runs.RunRequest("report", trigger="schedule")])[0]
    two_hours_ago = utcnow() - timedelta(hours=2)
    with db.write() as session:
        session.execute(update(Run).where(Run.id == waiting).values(created_at=two_hours_ago,
                                                                     scheduled_for=two_hours_ago))
        me = workers.Registration("w:1", "host", 1, "test", 4, utcnow() - timedelta(seconds=60))
        workers.register(session, me, now=utcnow() - timedelta(seconds=60))
    monkeypatch.setenv("LEXYJOBS_STALE_AFTER", "300")
    [report] = json.loads(cli("jobs", "list", "--json").stdout)
    [late] = report["health"]["signals"]
    assert (late["kind"], late["run_id"]) == ("late_start", waiting)
    assert late["details"]["waiting_for"].startswith("Ready: a worker picks it up now"), late
