"""Settings from LEXYJOBS_* environment variables and overrides (lexyjobs.config)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lexyjobs.config import ENV_VARS, Settings, load_settings, normalize_database_url


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in an empty directory, so a ./jobs.toml is there only when a test puts it there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_setting_has_one_lexyjobs_variable() -> None:
    names = [env for env, _ in ENV_VARS.values()]
    assert set(ENV_VARS) == {f.name for f in dataclasses.fields(Settings)}
    assert all(n.startswith("LEXYJOBS_") for n in names) and len(set(names)) == len(names)
    assert all(help_text for _, help_text in ENV_VARS.values())


def test_without_variables_the_defaults_apply() -> None:
    assert load_settings(environ={}) == Settings()
    settings = load_settings(environ={})
    assert (settings.database_url, settings.host, settings.port, settings.workers) == ("sqlite:///jobs.db",
                                                                                       "127.0.0.1", 8080, 4)
    assert (settings.jobs_file, settings.imports, settings.secret_key) == (None, (), None)


def test_variables_are_read_and_converted() -> None:
    settings = load_settings(environ={
        "LEXYJOBS_DATABASE_URL": "sqlite:////data/lexy.db", "LEXYJOBS_HOST": "0.0.0.0", "LEXYJOBS_PORT": "9090",
        "LEXYJOBS_WORKERS": "8", "LEXYJOBS_JOBS_FILE": "/etc/lexy/jobs.toml", "LEXYJOBS_IMPORTS": "app.jobs, app.more ,,",
        "LEXYJOBS_POLL_INTERVAL": "250ms", "LEXYJOBS_HEARTBEAT_INTERVAL": "2", "LEXYJOBS_STALE_AFTER": "1m",
        "LEXYJOBS_SHUTDOWN_GRACE": "1m30s", "LEXYJOBS_KILL_GRACE": "3s", "LEXYJOBS_LOG_MAX_BYTES": "1000",
        "LEXYJOBS_SQLITE_SYNCHRONOUS": "FULL", "LEXYJOBS_HTTP_THREADS": "4", "LEXYJOBS_SECRET_KEY": "s3cret-s3cret-s3cret-s3cret-s3cret",
    })
    assert settings == Settings(
        database_url="sqlite:////data/lexy.db", host="0.0.0.0", port=9090, workers=8, jobs_file="/etc/lexy/jobs.toml",
        imports=("app.jobs", "app.more"), poll_interval=0.25, heartbeat_interval=2.0, stale_after=60.0,
        shutdown_grace=90.0, kill_grace=3.0, log_max_bytes=1000, sqlite_synchronous="FULL", http_threads=4,
        secret_key="s3cret-s3cret-s3cret-s3cret-s3cret")


def test_other_variables_are_ignored() -> None:
    assert load_settings(environ={"PORT": "1", "LEXYJOBS_PROT": "2", "DATABASE_URL": "postgres://x/y"}) == Settings()


def test_an_empty_variable_counts_as_unset() -> None:
    assert load_settings(environ={"LEXYJOBS_PORT": "", "LEXYJOBS_WORKERS": "", "LEXYJOBS_DATABASE_URL": ""}) == Settings()


def test_overrides_win_over_the_environment() -> None:
    settings = load_settings({"workers": 2, "poll_interval": "2s", "port": "81", "imports": ["a", " b "]},
                             environ={"LEXYJOBS_WORKERS": "8", "LEXYJOBS_POLL_INTERVAL": "5", "LEXYJOBS_HOST": "::1"})
    assert (settings.workers, settings.poll_interval, settings.port, settings.imports) == (2, 2.0, 81, ("a", "b"))
    assert settings.host == "::1"  # not overridden: the environment still counts


def test_an_unknown_override_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown setting 'wokers'"):
        load_settings({"wokers": 2}, environ={})


def test_the_process_environment_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXYJOBS_WORKERS", "7")
    monkeypatch.setenv("LEXYJOBS_PORT", "7070")
    settings = load_settings()
    assert (settings.workers, settings.port) == (7, 7070)


@pytest.mark.parametrize(("name", "value"), [
    ("LEXYJOBS_PORT", "eighty"), ("LEXYJOBS_WORKERS", "4.5"), ("LEXYJOBS_HTTP_THREADS", "many"),
    ("LEXYJOBS_LOG_MAX_BYTES", "1MB"), ("LEXYJOBS_POLL_INTERVAL", "soon"), ("LEXYJOBS_STALE_AFTER", "-5"),
    ("LEXYJOBS_SHUTDOWN_GRACE", "30 parsecs"), ("LEXYJOBS_KILL_GRACE", "5x"), ("LEXYJOBS_HEARTBEAT_INTERVAL", "often"),
])
def test_a_bad_value_stops_with_the_variable_name(name: str, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(environ={name: value})
    message = str(info.value.code)
    assert message.startswith(f"lexyjobs: {name}={value!r} is invalid")


def test_an_unknown_sqlite_synchronous_mode_stops_with_the_variable_name() -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(environ={"LEXYJOBS_SQLITE_SYNCHRONOUS": "sometimes"})
    assert "LEXYJOBS_SQLITE_SYNCHRONOUS" in str(info.value.code)
    assert load_settings(environ={"LEXYJOBS_SQLITE_SYNCHRONOUS": "full"}).sqlite_synchronous == "FULL"


# ---------------------------------------------------------------- database URL


@pytest.mark.parametrize(("url", "normalized"), [
    ("postgresql://lexy:pw@db.internal:5432/jobs", "postgresql+psycopg://lexy:pw@db.internal:5432/jobs"),
    ("postgres://lexy@127.0.0.1/jobs?sslmode=disable", "postgresql+psycopg://lexy@127.0.0.1/jobs?sslmode=disable"),
    ("postgresql+psycopg://lexy@127.0.0.1/jobs", "postgresql+psycopg://lexy@127.0.0.1/jobs"),
    ("sqlite:///jobs.db", "sqlite:///jobs.db"),
    ("sqlite:////data/jobs.db", "sqlite:////data/jobs.db"),
])
def test_a_postgres_url_is_normalized_to_psycopg_3(url: str, normalized: str) -> None:
    assert normalize_database_url(url) == normalized
    assert load_settings(environ={"LEXYJOBS_DATABASE_URL": url}).database_url == normalized
    assert load_settings({"database_url": url}, environ={}).database_url == normalized


# ---------------------------------------------------------------- jobs file default


def test_there_is_no_jobs_file_when_none_is_in_the_working_directory() -> None:
    assert load_settings(environ={}).jobs_file is None


def test_a_jobs_toml_in_the_working_directory_is_the_default(empty_cwd: Path) -> None:
    (empty_cwd / "jobs.toml").write_text("")
    assert load_settings(environ={}).jobs_file == "jobs.toml"


def test_a_directory_named_jobs_toml_is_not_a_jobs_file(empty_cwd: Path) -> None:
    (empty_cwd / "jobs.toml").mkdir()
    assert load_settings(environ={}).jobs_file is None


def test_an_explicit_jobs_file_wins_over_the_default(empty_cwd: Path) -> None:
    (empty_cwd / "jobs.toml").write_text("")
    assert load_settings(environ={"LEXYJOBS_JOBS_FILE": "/srv/other.toml"}).jobs_file == "/srv/other.toml"
    assert load_settings({"jobs_file": "mine.toml"}, environ={}).jobs_file == "mine.toml"


def test_the_default_jobs_file_can_be_turned_off(empty_cwd: Path) -> None:
    (empty_cwd / "jobs.toml").write_text("")
    assert load_settings({"jobs_file": None}, environ={}).jobs_file is None
    assert load_settings(environ={"LEXYJOBS_JOBS_FILE": ""}).jobs_file is None


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LEXYJOBS_WORKERS", "-1", "0 or more"),
    ("LEXYJOBS_PORT", "70000", "port number"),
    ("LEXYJOBS_POLL_INTERVAL", "0", "more than 0"),
    ("LEXYJOBS_STALE_AFTER", "5s", "twice LEXYJOBS_HEARTBEAT_INTERVAL"),
    ("LEXYJOBS_LOG_MAX_BYTES", "10", "at least 256"),
])
def test_settings_that_would_break_the_worker_are_refused_by_name(variable: str, value: str, message: str) -> None:
    with pytest.raises(SystemExit) as error:
        load_settings(environ={variable: value})
    assert variable in str(error.value) and message in str(error.value)


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [env for env, _ in ENV_VARS.values() if f"`{env}`" not in readme]
    assert missing == []
