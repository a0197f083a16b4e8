"""Job processes do not inherit lexyjobs' own settings and secrets: a real shell job (and the
child of a python ``isolation = "process"`` job) prints its environment while the server's holds
LEXYJOBS_API_TOKEN, LEXYJOBS_ADMIN_PASSWORD, LEXYJOBS_SMTP_PASSWORD and LEXYJOBS_DATABASE_URL;
``env_passthrough`` lets named ones through. SQLite only: storage does not matter here."""
from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_for

from lexyjobs import runs, store
from lexyjobs.kinds import job_environ
from lexyjobs.models import Run

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

SERVER_SECRETS = {"LEXYJOBS_API_TOKEN": "api-token-0123456789abcdef", "LEXYJOBS_ADMIN_PASSWORD": "admin-pass-42",
                  "LEXYJOBS_SMTP_PASSWORD": "smtp-pass-42", "LEXYJOBS_DATABASE_URL": "postgresql://u:dbpass@h/db",
                  "LEXYJOBS_DATA_DIR": "/srv/lexyjobs-data"}


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SERVER_SECRETS, "H3_PLAIN_SETTING": "plain-value"}.items():
        monkeypatch.setenv(name, value)


def finished(db: Any, run_id: int) -> Run:
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in ("succeeded", "failed", "canceled") and r, 30)


def printed_environment(db: Any, run_id: int) -> dict[str, str]:
    with db.read() as session:
        text = store.read_log(session, run_id)[0]
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@SQLITE
def test_a_shell_job_does_not_get_lexyjobs_settings_and_secrets(db, make_job, start_worker, server_env):
    make_job("print-env", kind="shell", argv=["sh", "-c", "env"], params={"city": {"type": "string"}})
    start_worker()
    run = finished(db, runs.enqueue(db, "print-env", {"city": "Lyon"}))
    assert run.status == "succeeded", run.error
    env = printed_environment(db, run.id)
    assert not set(SERVER_SECRETS) & set(env)
    assert [name for name in env if name.startswith("LEXYJOBS_")] == sorted(
        ["LEXYJOBS_PARAM_CITY", "LEXYJOBS_RUN_ID"], key=list(env).index)
    assert env["LEXYJOBS_PARAM_CITY"] == "Lyon" and env["LEXYJOBS_RUN_ID"] == str(run.id)
    assert env["H3_PLAIN_SETTING"] == "plain-value" and "PATH" in env  # the rest of the environment stays


@SQLITE
def test_env_passthrough_lets_named_and_matching_variables_through(db, make_job, start_worker, server_env):
    make_job("print-env-some", kind="shell", argv=["sh", "-c", "env"],
             env_passthrough=["LEXYJOBS_DATABASE_URL", "LEXYJOBS_DATA_*"])
    start_worker()
    run = finished(db, runs.enqueue(db, "print-env-some"))
    env = printed_environment(db, run.id)
    assert {"LEXYJOBS_DATABASE_URL", "LEXYJOBS_DATA_DIR"} <= set(env)
    assert env["LEXYJOBS_DATA_DIR"] == "/srv/lexyjobs-data"
    assert not {"LEXYJOBS_API_TOKEN", "LEXYJOBS_ADMIN_PASSWORD", "LEXYJOBS_SMTP_PASSWORD"} & set(env)


@SQLITE
def test_an_explicit_env_value_may_still_use_a_server_variable(db, make_job, start_worker, server_env):
    make_job("print-env-explicit", kind="shell", argv=["sh", "-c", "env; echo DATA_DIR_TAIL=${DATA_DIR#/srv/}"],
             env={"DATA_DIR": "${LEXYJOBS_DATA_DIR}"})
    start_worker()
    run = finished(db, runs.enqueue(db, "print-env-explicit"))
    env = printed_environment(db, run.id)  # the value itself is masked in the log, as a ${VAR} value
    assert env["DATA_DIR_TAIL"] == "lexyjobs-data" and "LEXYJOBS_DATA_DIR" not in env


@SQLITE
@pytest.mark.parametrize("passthrough, expected", [
    ([], {"LEXYJOBS_RUN_ID"}),
    (["LEXYJOBS_API_TOKEN"], {"LEXYJOBS_RUN_ID", "LEXYJOBS_API_TOKEN"}),
])
def test_the_child_of_a_process_isolated_python_job_does_not_get_them_either(db, make_job, start_worker,
                                                                             server_env, passthrough, expected):
    make_job("names", func="jobfuncs:environment_names", isolation="process", env_passthrough=passthrough)
    start_worker()
    run = finished(db, runs.enqueue(db, "names"))
    assert run.status == "succeeded", run.error
    assert {name for name in run.result if name.startswith("LEXYJOBS_")} == expected
    assert "H3_PLAIN_SETTING" in run.result


def test_job_environ_removes_every_lexyjobs_variable_but_the_passed_through():
    environ = {"LEXYJOBS_ANYTHING_NEW": "x", "LEXYJOBS_API_TOKEN": "t", "PATH": "/bin", "LEXYJOBSX": "y"}
    assert job_environ((), environ) == {"PATH": "/bin", "LEXYJOBSX": "y"}
    assert job_environ(["LEXYJOBS_A*"], environ) == {"LEXYJOBS_ANYTHING_NEW": "x", "LEXYJOBS_API_TOKEN": "t",
                                                      "PATH": "/bin", "LEXYJOBSX": "y"}
