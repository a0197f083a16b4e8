"""A Postgres outage does not flood the process log (lexyjobs.failures): a real server process on a
real Postgres reached through a loopback TCP proxy (tests/tcpproxy.py); the proxy is cut for ~10 s
(every connection closed, new ones refused), then started again. The loops log each error once,
at most one traceback per distinct error, one "database reachable again" line, and the server runs
jobs again afterwards."""
from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import wait_for
from liveserver import E2E_TOKEN, running_server
from tcpproxy import TcpProxy

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 10.0
JOBS = '[jobs.hello]\nkind = "shell"\nargv = ["echo", "hello"]\nmax_attempts = 1\n'


def _via(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{proxy.port}" if auth else f"127.0.0.1:{proxy.port}"))


def _run_hello(srv) -> str:  # type: ignore[no-untyped-def]
    status, accepted = srv.call("POST", "/api/jobs/hello/run", E2E_TOKEN, {})
    assert status == 202, accepted
    return wait_for(lambda: (s := srv.call("GET", f"/api/runs/{accepted['run_id']}", E2E_TOKEN)[1]["status"])
                    in ("succeeded", "failed") and s, timeout=60)


def _records(lines: list[str]) -> list[dict]:  # type: ignore[type-arg]
    found = []
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            found.append({"message": line.rstrip("\n"), "level": "RAW"})
    return found


def test_a_postgres_outage_logs_each_error_once_and_its_end_once(pg_schema_url: str, tmp_path: Path) -> None:
    parts = urlsplit(pg_schema_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS)
    try:
        with running_server(_via(proxy, pg_schema_url), jobs_file, LEXYJOBS_LOG_FORMAT="json") as srv:
            assert _run_hello(srv) == "succeeded"
            before = len(srv.stderr)
            proxy.cut()
            time.sleep(OUTAGE_SECONDS)
            during = _records(srv.stderr[before:])
            proxy.start()
            wait_for(lambda: any("database reachable again" in r.get("message", "")
                                 for r in _records(srv.stderr[before:])), timeout=60)
            assert _run_hello(srv) == "succeeded"  # the server recovered: it claims and runs again
            time.sleep(2)  # anything the loops still had to say about the outage
            outage = _records(srv.stderr[before:])
    finally:
        proxy.close()
    errors = [r for r in outage if r.get("level") in ("ERROR", "CRITICAL", "RAW")]
    tracebacks = [r for r in outage if r.get("exception") or "Traceback" in r.get("message", "")]
    again = [r for r in outage if "database reachable again" in r.get("message", "")]
    summary = f"{len(outage)} lines, {len(tracebacks)} tracebacks during the outage:\n" + "\n".join(r.get("message", "")[:200] for r in outage)
    print(summary)
    assert len(again) == 1, summary
    took = again[0]["outage_seconds"]
    assert OUTAGE_SECONDS * 0.8 <= took <= OUTAGE_SECONDS + 60 and again[0]["failures"] >= 1, again
    assert len(during) >= 1  # the outage was seen and logged
    distinct = {r.get("message", "").split(" (the same error again")[0].split(": ", 1)[-1] for r in errors}
    assert len(tracebacks) <= len(distinct) <= 12, summary  # one traceback per kind of error, at most
    assert len(outage) <= 40, summary  # bounded: not one line per attempt (the loops retry every 0.05-2 s)


# ---------------------------------------------------------------- FailureLog alone, with a fixed clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refused() -> Exception:
    from sqlalchemy import exc

    import psycopg
    return exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection failed: Connection refused"))


def test_identical_failures_are_logged_once_then_counted_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from lexyjobs.failures import FailureLog

    clock, logger = Clock(), logging.getLogger("lexyjobs.test_failures")
    failures = FailureLog(interval=60.0, clock=clock)
    with caplog.at_level(logging.INFO):
        for second in range(150):  # one attempt a second for 150 s, from two loops
            clock.now = 1000.0 + second
            failures.failed(logger, "worker w: could not write a batch", _refused())
            failures.failed(logger, "scheduler: cannot read jobs", _refused())
        clock.now = 1150.0
        failures.succeeded()
        failures.succeeded()  # the outage ends once
        failures.failed(logger, "worker w: could not write a batch", _refused())  # the next outage
    messages = [r.getMessage() for r in caplog.records]
    # each loop's first failure; one traceback (the same error); each loop's count once a minute
    assert [bool(r.exc_info) for r in caplog.records] == [True, False, False, False, False, False, False, False]
    assert messages[0].startswith("worker w: could not write a batch: OperationalError: (psycopg.OperationalError) "
                                  "connection failed: Connection refused")
    assert messages[1].startswith("scheduler: cannot read jobs: OperationalError")
    assert all(m.endswith(": Connection refused (60 times in the last 1m)") for m in messages[2:6])
    assert messages[6] == "database reachable again after 2m30s (300 failed attempts meanwhile)"
    assert messages[7].startswith("worker w: could not write a batch: OperationalError")


def test_a_refused_statement_is_throttled_but_opens_no_outage(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from sqlalchemy import exc

    from lexyjobs.failures import FailureLog, is_unreachable

    clock, logger = Clock(), logging.getLogger("lexyjobs.test_failures")
    failures = FailureLog(interval=60.0, clock=clock)
    missing = exc.ProgrammingError("SELECT 1", {}, Exception("relation runs does not exist"))
    assert not is_unreachable(missing) and is_unreachable(_refused())
    with caplog.at_level(logging.INFO):
        for second in range(30):
            clock.now = 1000.0 + second
            failures.failed(logger, "worker w: could not write a batch", missing)
            failures.succeeded()  # other loops keep working: no "reachable again" line
    assert len(caplog.records) == 1 and caplog.records[0].exc_info
