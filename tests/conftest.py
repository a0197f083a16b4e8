"""Shared fixtures. Every storage test runs twice: on a temp SQLite file and on Postgres
(``LEXYJOBS_TEST_POSTGRES_URL``, one fresh schema per test); without that variable the Postgres
variants skip with the reason. In CI (``CI=true``) a missing Postgres fails instead."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from lexyjobs import create_app, registry
from lexyjobs.registry import JobCatalog
from lexyjobs.runtime import Lexyjobs
from lexyjobs.worker import Worker

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PG_ENV = "LEXYJOBS_TEST_POSTGRES_URL"
TEST_SECRET_KEY = "test-only-secret-key-0123456789abcdef"
FAST = {"poll_interval": 0.05, "heartbeat_interval": 0.2, "stale_after": 2.0, "shutdown_grace": 2.0,
        "kill_grace": 1.0}


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _pg_or_skip() -> str:
    url = postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI")
        pytest.skip(f"Postgres tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh, empty schema (dropped afterwards)."""
    base = _pg_or_skip().replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a temp SQLite file, then a fresh Postgres schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def app_config(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return {"database_url": db_url, "jobs_file": None, "workers": 4, "data_dir": str(tmp_path), **FAST}


@pytest.fixture
def app(app_config: dict[str, Any]):  # type: ignore[no-untyped-def]
    application = create_app(app_config)
    yield application
    application.extensions["lexyjobs"].db.dispose()


@pytest.fixture
def lj(app) -> Lexyjobs:  # type: ignore[no-untyped-def]
    """The app's Lexyjobs with the schema migrated (no threads started)."""
    lexy: Lexyjobs = app.extensions["lexyjobs"]
    lexy.prepare()
    return lexy


@pytest.fixture
def db(lj: Lexyjobs):  # type: ignore[no-untyped-def]
    return lj.db


@pytest.fixture
def make_job(lj: Lexyjobs) -> Callable[..., str]:
    """Create a database job: ``make_job("name", kind="python", func="jobfuncs:noop", ...)``."""
    def make(name: str, **fields: Any) -> str:
        fields.setdefault("kind", "python")
        if fields["kind"] == "python":
            fields.setdefault("func", "jobfuncs:noop")
        registry.create_job(lj.db, name, fields)
        return name
    return make


@pytest.fixture
def start_worker(lj: Lexyjobs) -> Iterator[Callable[..., Worker]]:
    """Start in-process workers (fast intervals); they are stopped after the test."""
    started: list[Worker] = []

    def start(name: str | None = None, **overrides: Any) -> Worker:
        settings = dataclasses.replace(lj.settings, **overrides)
        worker = Worker(lj.db, settings, JobCatalog(lj.db), name=name or f"test:{len(started)}")
        worker.start()
        started.append(worker)
        return worker
    yield start
    for worker in started:
        if not worker._closed.is_set():
            worker.stop(grace=0)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def subprocess_env(db_url: str, **extra: str) -> dict[str, str]:
    """Environment for a child lexyjobs process on ``db_url`` that can import tests/jobfuncs.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
    env.update({"LEXYJOBS_DATABASE_URL": db_url, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
                "PYTHONUNBUFFERED": "1", "LEXYJOBS_SECRET_KEY": TEST_SECRET_KEY, **extra})
    return env


PYTHON = sys.executable
