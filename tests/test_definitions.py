"""Job definitions (lexyjobs.definitions) and the registry that loads them from code, jobs.toml
and the database (lexyjobs.registry). Every rejection names the job and the field."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import conftest
import jobfuncs
import pytest
from conftest import wait_for

from lexyjobs import code_jobs as declared
from lexyjobs import registry, runs, store
from lexyjobs.definitions import definition_from_job, parse_definition
from lexyjobs.errors import Conflict, InvalidDefinition, JobNotFound, ReadOnlyJob, RunNotFound

SHELL = {"kind": "shell", "argv": ["echo", "hi"]}
HTTP = {"kind": "http", "url": "http://127.0.0.1:9/hook"}
PYTHON = {"kind": "python", "func": "jobfuncs:noop"}


def rejected(raw: Any, field: str | None, *, name: str = "bad-job") -> InvalidDefinition:
    """Parse ``raw`` expecting InvalidDefinition for ``name``/``field``; return the error."""
    with pytest.raises(InvalidDefinition) as info:
        parse_definition(name, raw)
    error = info.value
    assert (error.job, error.field) == (name, field), error.message
    assert f"job '{name}'" in error.message
    if field is not None:
        assert f"field '{field}'" in error.message
    return error


# ---------------------------------------------------------------- invalid definitions


@pytest.mark.parametrize(("raw", "field", "says"), [
    pytest.param({"kind": "ftp"}, "kind", "'ftp' is not a job kind", id="unknown-kind"),
    pytest.param({"func": "jobfuncs:noop"}, "kind", "is required", id="missing-kind"),
    pytest.param({**SHELL, "schedule": "0 0 * * * *"}, "schedule", "has 6 fields", id="cron-6-fields"),
    pytest.param({**SHELL, "schedule": "0 0 * *"}, "schedule", "has 4 fields", id="cron-4-fields"),
    pytest.param({**SHELL, "schedule": "61 * * * *"}, "schedule", "minute 61 is out of range 0–59", id="cron-minute-61"),
    pytest.param({**SHELL, "schedule": "0 25 * * *"}, "schedule", "hour 25 is out of range 0–23", id="cron-hour-25"),
    pytest.param({**SHELL, "schedule": "a b c d e"}, "schedule", "is not a schedule lexyjobs reads; use every 15m", id="cron-nonsense"),
    pytest.param({**SHELL, "schedule": "whenever you like"}, "schedule", "fields", id="schedule-prose"),
    pytest.param({**SHELL, "schedule": "every fortnight"}, "schedule", "is not a schedule lexyjobs reads", id="interval-nonsense"),
    pytest.param({**SHELL, "schedule": ""}, "schedule", "cron expression", id="schedule-empty"),
    pytest.param({**SHELL, "schedule": 5}, "schedule", "cron expression", id="schedule-not-text"),
    pytest.param({**SHELL, "schedule": "@fortnightly"}, "schedule", "unknown alias '@fortnightly'", id="unknown-alias"),
    pytest.param({**SHELL, "timezone": "Mars/Olympus_Mons"}, "timezone", "not an IANA timezone", id="bad-timezone"),
    pytest.param({"kind": "http"}, "url", "is required", id="http-without-url"),
    pytest.param({"kind": "http", "url": "ftp://example.org/x"}, "url", "http:// or https://", id="http-ftp-url"),
    pytest.param({"kind": "http", "url": "127.0.0.1/hook"}, "url", "http:// or https://", id="http-no-scheme"),
    pytest.param({**HTTP, "method": "FETCH"}, "method", "'FETCH' is not one of", id="bad-method"),
    pytest.param({**HTTP, "headers": {"X-Count": 3}}, "headers", "text values", id="header-not-text"),
    pytest.param({"kind": "shell", "argv": "echo hi"}, "argv", "list of strings", id="argv-string"),
    pytest.param({"kind": "shell", "argv": []}, "argv", "non-empty", id="argv-empty"),
    pytest.param({"kind": "shell", "argv": ["sleep", 5]}, "argv", "list of strings", id="argv-non-string"),
    pytest.param({"kind": "shell"}, "argv", "non-empty", id="argv-missing"),
    pytest.param({"kind": "python", "func": "jobfuncs.noop"}, "func", "module:function", id="func-without-colon"),
    pytest.param({"kind": "python", "func": "jobfuncs:"}, "func", "module:function", id="func-without-name"),
    pytest.param({"kind": "python", "func": "rm -rf /:x"}, "func", "module:function", id="func-garbage"),
    pytest.param({"kind": "python", "func": 42}, "func", "module:function", id="func-not-text"),
    pytest.param({"kind": "python"}, "func", "module:function", id="func-missing"),
    pytest.param({**SHELL, "shedule": "@daily"}, "shedule", "unknown field for a shell job", id="typo-shedule"),
    pytest.param({**SHELL, "url": "http://127.0.0.1/"}, "url", "unknown field for a shell job", id="field-of-other-kind"),
    pytest.param({**SHELL, "priority": 11}, "priority", "from 0 to 10", id="priority-11"),
    pytest.param({**SHELL, "priority": -1}, "priority", "from 0 to 10", id="priority-negative"),
    pytest.param({**SHELL, "priority": "5"}, "priority", "whole number", id="priority-text"),
    pytest.param({**SHELL, "priority": True}, "priority", "whole number", id="priority-bool"),
    pytest.param({**SHELL, "max_attempts": 0}, "max_attempts", "from 1 to 100", id="max-attempts-0"),
    pytest.param({**SHELL, "timeout": "5 parsecs"}, "timeout", "'5 parsecs' is not a duration", id="timeout-parsecs"),
    pytest.param({**SHELL, "timeout": "0s"}, "timeout", "longer than 0s", id="timeout-zero"),
    pytest.param({**SHELL, "backoff": "-5s"}, "backoff", "not a duration", id="backoff-negative"),
    pytest.param({**SHELL, "backoff_jitter": 1.5}, "backoff_jitter", "from 0 to 1", id="jitter-over-1"),
    pytest.param({**SHELL, "enabled": "no"}, "enabled", "true or false", id="enabled-text"),
    pytest.param({**SHELL, "title": 7}, "title", "must be text", id="title-number"),
    pytest.param({**SHELL, "overlap": "parallel"}, "overlap", "queue, skip, replace", id="bad-overlap"),
    pytest.param({**SHELL, "depends_on": ["bad-job"]}, "depends_on", "cannot depend on itself", id="depends-on-self"),
    pytest.param({**SHELL, "depends_on": "upstream"}, "depends_on", "list of job names", id="depends-on-text"),
    pytest.param({**SHELL, "depends_on": ["Not A Name"]}, "depends_on", "list of job names", id="depends-on-bad-name"),
    pytest.param({**SHELL, "params": ["a", "b"]}, "params", "table of parameter", id="params-list"),
    pytest.param({**SHELL, "params": {"n": {"type": "float"}}}, "params.n", "type 'float' is not one of",
                 id="param-unknown-type"),
    pytest.param({**SHELL, "params": {"mode": {"type": "choice"}}}, "params.mode", "non-empty 'choices'",
                 id="param-choice-without-choices"),
    pytest.param({**SHELL, "params": {"n": {"type": "integer", "min": 1, "default": 0}}}, "params.n.default",
                 "at least 1", id="param-default-below-min"),
    pytest.param({**SHELL, "params": {"n": {"type": "integer", "defualt": 1}}}, "params.n", "unknown key(s) defualt",
                 id="param-typo-key"),
    pytest.param({**SHELL, "params": {"n": {"type": "integer", "max": "ten"}}}, "params.n.max", "must be a number",
                 id="param-max-text"),
])
def test_an_invalid_definition_is_rejected_naming_the_job_and_the_field(raw: dict[str, Any], field: str,
                                                                         says: str) -> None:
    error = rejected(raw, field)
    assert says in error.message
    assert error.status_code == 422 and error.to_dict()["error"]["details"]["field"] == field


def test_an_unknown_field_lists_the_allowed_ones() -> None:
    error = rejected({**SHELL, "shedule": "@daily"}, "shedule")
    assert "schedule" in error.problem and "argv" in error.problem and "url" not in error.problem


def test_an_unknown_kind_lists_the_kinds() -> None:
    assert "python, http, shell" in rejected({"kind": "ftp"}, "kind").problem


@pytest.mark.parametrize("name", ["Bad Name", "-leading-dash", "", "x" * 101, "ümlaut", 42])
def test_a_bad_job_name_is_rejected(name: Any) -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse_definition(name, SHELL)
    assert (info.value.job, info.value.field) == (str(name), "name")
    assert "a-z, 0-9" in info.value.message


def test_a_definition_that_is_not_a_table_is_rejected() -> None:
    rejected(["kind", "shell"], None)


# ---------------------------------------------------------------- valid definitions


FULL_HTTP = {
    "title": "Trend Aggregation", "description": "aggregates trends", "category": "Analytics", "kind": "http",
    "method": "post", "url": "${APP_BASE_URL}/api/jobs/trend-aggregation",
    "headers": {"Authorization": "Bearer ${SERVICE_TOKEN}"}, "schedule": "0 */6 * * *", "timezone": "Europe/Berlin",
    "enabled": False, "priority": 7, "max_attempts": 5, "backoff": "30s", "backoff_factor": 3, "backoff_max": "2h",
    "backoff_jitter": 0, "timeout": "5m", "max_concurrency": 2, "idempotent": False, "depends_on": ["collect"],
    "params": {"since": {"type": "string", "default": "yesterday", "help": "first day"}, "retries": 3},
    "stale_after": "2d", "misfire_grace": "10m", "overlap": "skip",
}


def test_a_valid_definition_is_parsed_with_every_field() -> None:
    d = parse_definition("trend-aggregation", FULL_HTTP, source="file")
    assert (d.name, d.kind, d.source, d.title, d.category) == ("trend-aggregation", "http", "file",
                                                               "Trend Aggregation", "Analytics")
    assert d.config == {"method": "POST", "url": FULL_HTTP["url"], "headers": FULL_HTTP["headers"], "verify_tls": True}
    assert d.schedule is not None and d.schedule.cron == "0 */6 * * *" and d.timezone == "Europe/Berlin"
    assert (d.enabled, d.priority, d.max_attempts, d.max_concurrency, d.idempotent) == (False, 7, 5, 2, False)
    assert (d.retry.base, d.retry.factor, d.retry.cap, d.retry.jitter) == (30.0, 3.0, 7200.0, 0.0)
    assert (d.timeout, d.stale_after, d.misfire_grace, d.overlap) == (300.0, 172800.0, 600.0, "skip")
    assert d.depends_on == ("collect",)
    assert d.params["since"].default == "yesterday" and d.params["retries"].type == "integer"


def test_a_minimal_definition_gets_the_documented_defaults() -> None:
    d = parse_definition("tiny", SHELL)
    assert (d.title, d.category, d.schedule, d.timezone, d.enabled, d.priority) == ("tiny", "General", None, "UTC",
                                                                                    True, 0)
    assert (d.max_attempts, d.timeout, d.max_concurrency, d.idempotent, d.overlap) == (3, None, 1, True, "queue")
    assert (d.retry.base, d.retry.factor, d.retry.cap, d.retry.jitter) == (10.0, 2.0, 3600.0, 0.2)
    assert d.config == {"argv": ["echo", "hi"], "cwd": None, "env": {}}


@pytest.mark.parametrize("raw", [FULL_HTTP, SHELL, PYTHON, {**SHELL, "schedule": "every 15m", "cwd": "/tmp",
                                                           "env": {"A": "1", "B": 2}},
                                 {**PYTHON, "schedule": "@daily", "params": {"n": {"type": "integer", "min": 1}}}],
                         ids=["http-full", "shell", "python", "shell-interval", "python-daily"])
def test_the_spec_keeps_the_fields_as_written(raw: dict[str, Any]) -> None:
    d = parse_definition("job-x", raw)
    assert d.spec == raw
    assert d.spec is not raw  # a copy: later edits to the input do not leak in
    assert parse_definition("job-x", d.spec) == d


def test_a_definition_round_trips_through_the_database(db) -> None:  # type: ignore[no-untyped-def]
    registry.create_job(db, "collect", SHELL)  # its upstream must exist
    created = registry.create_job(db, "trend-aggregation", FULL_HTTP)
    with db.read() as session:
        row = store.get_job(session, "trend-aggregation")
        assert row is not None
        assert row.spec == FULL_HTTP
        assert (row.source, row.kind, row.title, row.schedule, row.enabled) == ("db", "http", "Trend Aggregation",
                                                                               "0 */6 * * *", False)
        assert definition_from_job(row) == created


def test_the_same_job_reads_the_same_from_toml_and_json(tmp_path: Path) -> None:
    toml_text = """
[jobs.ingest]
kind = "shell"
argv = ["python", "scripts/ingest_corpus.py", "--source", "metrics"]
depends_on = ["keyword-metrics"]
enabled = false
timeout = "5m"
params = { since = { type = "string", default = "yesterday", help = "first day to ingest" } }
"""
    path = tmp_path / "jobs.toml"
    path.write_text(toml_text)
    from_file, errors = registry.load_jobs_file(path)
    assert errors == []
    body = json.dumps({"name": "ingest", **tomllib.loads(toml_text)["jobs"]["ingest"]})
    item = json.loads(body)
    from_api = parse_definition(item.pop("name"), item, source="file")
    assert from_file["ingest"] == from_api


# ---------------------------------------------------------------- jobs.toml


GOOD_AND_BAD = """
[jobs.good-python]
kind = "python"
func = "jobfuncs:noop"

[jobs.good-shell]
kind = "shell"
argv = ["echo", "hi"]
schedule = "@hourly"

[jobs.bad-cron]
kind = "shell"
argv = ["true"]
schedule = "0 0 * *"

[jobs.good-http]
kind = "http"
url = "http://127.0.0.1:9/hook"
schedule = "every 15m"

[jobs.bad-typo]
kind = "python"
func = "jobfuncs:noop"
shedule = "@daily"
"""


def write(tmp_path: Path, text: str, name: str = "jobs.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def job_rows(db) -> dict[str, tuple[str, bool]]:  # type: ignore[no-untyped-def]
    """name -> (source, archived) of every job row."""
    with db.read() as session:
        return {j.name: (j.source, j.archived) for j in store.list_jobs(session, include_archived=True)}


def test_a_jobs_file_loads_the_good_jobs_and_reports_the_bad_ones(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = registry.sync_jobs(db, jobs_file=write(tmp_path, GOOD_AND_BAD))
    assert sorted(report.loaded) == ["good-http", "good-python", "good-shell"]
    assert sorted((e.job, e.field) for e in report.errors) == [("bad-cron", "schedule"), ("bad-typo", "shedule")]
    assert job_rows(db) == {"good-http": ("file", False), "good-python": ("file", False),
                            "good-shell": ("file", False)}


def test_a_toml_syntax_error_is_reported_not_raised(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, '[jobs.broken]\nkind = "shell"\nargv = ["echo", "hi"\n')
    report = registry.sync_jobs(db, jobs_file=path)
    assert report.loaded == []
    assert [(e.job, e.field) for e in report.errors] == [(path, None)]
    assert "cannot read jobs file" in report.errors[0].message
    assert job_rows(db) == {}


def test_a_missing_jobs_file_is_reported(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = registry.sync_jobs(db, jobs_file=str(tmp_path / "nope.toml"))
    assert len(report.errors) == 1 and "cannot read jobs file" in report.errors[0].message


def test_a_jobs_file_with_tables_outside_jobs_is_reported(tmp_path: Path) -> None:
    definitions, errors = registry.load_jobs_file(write(tmp_path, '[job.typo]\nkind = "shell"\nargv = ["true"]\n'))
    assert definitions == {}
    assert [e.field for e in errors] == ["job"] and "[jobs.<name>]" in errors[0].message


@pytest.fixture
def code_jobs(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """A private registry of @job functions, so declarations do not leak into other tests."""
    fresh: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(declared, "_CODE_JOBS", fresh)
    return fresh


def test_the_job_decorator_registers_a_python_job(db, code_jobs, start_worker) -> None:  # type: ignore[no-untyped-def]
    decorated = declared.job("lexy-test-decorated", schedule="@daily", category="Code",
                             params={"who": {"type": "string", "default": "world"}})(jobfuncs.code_job_target)
    assert decorated is jobfuncs.code_job_target
    assert registry.code_jobs() == {"lexy-test-decorated": {
        "kind": "python", "func": "jobfuncs:code_job_target", "schedule": "@daily", "category": "Code",
        "params": {"who": {"type": "string", "default": "world"}}}}
    report = registry.sync_jobs(db, jobs_file=None)
    assert report.loaded == ["lexy-test-decorated"] and report.errors == []
    assert job_rows(db) == {"lexy-test-decorated": ("code", False)}
    start_worker()
    run_id = runs.enqueue(db, "lexy-test-decorated", {"who": "tests"})
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status in ("succeeded", "failed") and r)
    assert (run.status, run.result) == ("succeeded", "code job ran with {'who': 'tests'}")


def test_the_job_decorator_names_the_job_after_the_function(code_jobs) -> None:  # type: ignore[no-untyped-def]
    declared.job()(jobfuncs.code_job_target)
    assert list(registry.code_jobs()) == ["code-job-target"]


def test_two_functions_cannot_declare_the_same_job_name(code_jobs) -> None:  # type: ignore[no-untyped-def]
    declared.job("lexy-test-twice")(jobfuncs.code_job_target)
    declared.job("lexy-test-twice")(jobfuncs.code_job_target)  # re-import of the same function is fine
    with pytest.raises(InvalidDefinition) as info:
        declared.job("lexy-test-twice")(jobfuncs.noop)
    assert (info.value.job, info.value.field) == ("lexy-test-twice", "name")
    assert "jobfuncs:code_job_target" in info.value.message


def test_a_broken_code_job_is_reported(db, code_jobs) -> None:  # type: ignore[no-untyped-def]
    declared.job("lexy-test-broken", schedule="every now and then")(jobfuncs.code_job_target)
    report = registry.sync_jobs(db, jobs_file=None)
    assert [(e.job, e.field) for e in report.errors] == [("lexy-test-broken", "schedule")]
    assert job_rows(db) == {}


def test_a_module_that_cannot_be_imported_is_reported(db) -> None:  # type: ignore[no-untyped-def]
    report = registry.sync_jobs(db, jobs_file=None, imports=("lexy_no_such_module_xyz",))
    assert [e.job for e in report.errors] == ["lexy_no_such_module_xyz"]
    assert "cannot import module" in report.errors[0].message


def test_a_name_in_code_and_in_the_file_is_reported_and_code_wins(db, code_jobs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    declared.job("lexy-test-both")(jobfuncs.code_job_target)
    path = write(tmp_path, '[jobs.lexy-test-both]\nkind = "shell"\nargv = ["echo", "file"]\n\n'
                           '[jobs.only-in-file]\nkind = "shell"\nargv = ["true"]\n')
    report = registry.sync_jobs(db, jobs_file=path)
    assert sorted(report.loaded) == ["lexy-test-both", "only-in-file"]
    assert [(e.job, e.field) for e in report.errors] == [("lexy-test-both", "name")]
    assert "defined both in code and in" in report.errors[0].message
    with db.read() as session:
        row = store.get_job(session, "lexy-test-both")
        assert row is not None and (row.source, row.kind, row.spec["func"]) == ("code", "python",
                                                                                "jobfuncs:code_job_target")


def test_a_file_job_does_not_replace_a_database_job_of_the_same_name(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.create_job(db, "shared-name", PYTHON)
    report = registry.sync_jobs(db, jobs_file=write(tmp_path, '[jobs.shared-name]\nkind = "shell"\nargv = ["true"]\n'))
    assert [(e.job, e.field) for e in report.errors] == [("shared-name", "name")]
    assert job_rows(db) == {"shared-name": ("db", False)}


def test_archiving_removes_vanished_file_jobs_and_keeps_broken_ones_at_their_last_good_version(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, '[jobs.stays]\nkind = "shell"\nargv = ["echo", "v1"]\n\n'
                           '[jobs.breaks]\nkind = "shell"\nargv = ["echo", "good"]\n\n'
                           '[jobs.vanishes]\nkind = "shell"\nargv = ["true"]\n')
    registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    write(tmp_path, '[jobs.stays]\nkind = "shell"\nargv = ["echo", "v2"]\n\n'
                    '[jobs.breaks]\nkind = "shell"\nargv = "echo broken"\n')
    report = registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    assert report.archived == ["vanishes"]
    assert [(e.job, e.field) for e in report.errors] == [("breaks", "argv")]
    assert job_rows(db) == {"stays": ("file", False), "breaks": ("file", False), "vanishes": ("file", True)}
    with db.read() as session:
        assert store.get_job(session, "breaks").spec["argv"] == ["echo", "good"]  # type: ignore[union-attr]
        assert store.get_job(session, "stays").spec["argv"] == ["echo", "v2"]  # type: ignore[union-attr]
        assert [j.name for j in store.list_jobs(session)] == ["breaks", "stays"]
    with pytest.raises(JobNotFound):
        runs.enqueue(db, "vanishes")


def test_without_archiving_a_vanished_file_job_stays(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, '[jobs.a]\nkind = "shell"\nargv = ["true"]\n\n[jobs.b]\nkind = "shell"\nargv = ["true"]\n')
    registry.sync_jobs(db, jobs_file=path)
    write(tmp_path, '[jobs.a]\nkind = "shell"\nargv = ["true"]\n')
    assert registry.sync_jobs(db, jobs_file=path).archived == []
    assert job_rows(db) == {"a": ("file", False), "b": ("file", False)}


def test_a_jobs_file_with_a_syntax_error_archives_nothing(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, '[jobs.nightly]\nkind = "shell"\nargv = ["true"]\nschedule = "@daily"\n')
    registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    write(tmp_path, '[jobs.nightly]\nkind = "shell"\nargv = ["true"\nschedule = "@daily"\n')  # a typo on restart
    report = registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    assert report.archived == [] and len(report.errors) == 1
    assert job_rows(db) == {"nightly": ("file", False)}


def test_an_archived_file_job_comes_back_when_it_returns_to_the_file(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, '[jobs.a]\nkind = "shell"\nargv = ["true"]\n\n[jobs.b]\nkind = "shell"\nargv = ["true"]\n')
    registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    write(tmp_path, '[jobs.a]\nkind = "shell"\nargv = ["true"]\n')
    registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    write(tmp_path, '[jobs.a]\nkind = "shell"\nargv = ["true"]\n\n[jobs.b]\nkind = "shell"\nargv = ["true"]\n')
    registry.sync_jobs(db, jobs_file=path, archive_missing=True)
    assert job_rows(db) == {"a": ("file", False), "b": ("file", False)}


# ---------------------------------------------------------------- database jobs and read-only sources


def test_file_jobs_are_read_only(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.sync_jobs(db, jobs_file=write(tmp_path, '[jobs.from-file]\nkind = "shell"\nargv = ["true"]\n'))
    with pytest.raises(ReadOnlyJob, match="in the jobs file"):
        registry.update_job(db, "from-file", {"kind": "shell", "argv": ["false"]})
    with pytest.raises(ReadOnlyJob):
        registry.delete_job(db, "from-file")
    with db.read() as session:
        assert store.get_job(session, "from-file").spec["argv"] == ["true"]  # type: ignore[union-attr]


def test_code_jobs_are_read_only(db, code_jobs) -> None:  # type: ignore[no-untyped-def]
    declared.job("lexy-test-readonly")(jobfuncs.code_job_target)
    registry.sync_jobs(db, jobs_file=None)
    with pytest.raises(ReadOnlyJob, match=r"in code \(@job\)"):
        registry.update_job(db, "lexy-test-readonly", PYTHON)
    with pytest.raises(ReadOnlyJob):
        registry.delete_job(db, "lexy-test-readonly")
    assert job_rows(db) == {"lexy-test-readonly": ("code", False)}


def test_a_database_job_can_be_updated(db) -> None:  # type: ignore[no-untyped-def]
    registry.create_job(db, "editable", SHELL)
    with db.read() as session:
        before = store.get_job(session, "editable").version  # type: ignore[union-attr]
    updated = registry.update_job(db, "editable", {**SHELL, "argv": ["echo", "changed"], "priority": 4})
    assert updated.priority == 4
    with db.read() as session:
        row = store.get_job(session, "editable")
        assert row is not None and row.spec["argv"] == ["echo", "changed"] and row.version == before + 1


def test_an_invalid_update_leaves_the_job_unchanged(db) -> None:  # type: ignore[no-untyped-def]
    registry.create_job(db, "editable", SHELL)
    with pytest.raises(InvalidDefinition):
        registry.update_job(db, "editable", {**SHELL, "priority": 99})
    with db.read() as session:
        assert store.get_job(session, "editable").spec == SHELL  # type: ignore[union-attr]


def test_a_database_job_can_be_deleted_with_its_runs(db) -> None:  # type: ignore[no-untyped-def]
    registry.create_job(db, "doomed", PYTHON)
    run_id = runs.enqueue(db, "doomed")
    registry.delete_job(db, "doomed")
    assert job_rows(db) == {}
    with pytest.raises(RunNotFound):
        runs.get_run(db, run_id)


def test_updating_or_deleting_a_missing_job_is_not_found(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(JobNotFound):
        registry.update_job(db, "ghost", SHELL)
    with pytest.raises(JobNotFound):
        registry.delete_job(db, "ghost")


def test_creating_a_job_with_a_taken_name_is_a_conflict(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.create_job(db, "taken", SHELL)
    registry.sync_jobs(db, jobs_file=write(tmp_path, '[jobs.taken-by-file]\nkind = "shell"\nargv = ["true"]\n'))
    for name in ("taken", "taken-by-file"):
        with pytest.raises(Conflict) as info:
            registry.create_job(db, name, PYTHON)
        assert name in info.value.message and info.value.status_code == 409
    assert job_rows(db) == {"taken": ("db", False), "taken-by-file": ("file", False)}
    with db.read() as session:
        assert store.get_job(session, "taken").spec == SHELL  # type: ignore[union-attr]


def test_a_rejected_create_writes_nothing(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidDefinition):
        registry.create_job(db, "half", {**SHELL, "timeout": "5 parsecs"})
    assert job_rows(db) == {}
    with pytest.raises(JobNotFound):
        runs.enqueue(db, "half")


def test_a_module_declaring_jobs_with_the_decorator_imports_no_sqlalchemy() -> None:
    # the child of an isolation = "process" run imports the job's module for every run
    probe = "import sys; from lexyjobs import job; print(sorted(m for m in sys.modules if m.startswith('sqlalchemy'))[:1])"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=conftest.ROOT)
    assert found.stdout.strip() == "[]"
