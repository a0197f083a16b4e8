"""The process log (lexyjobs/logs.py): JSON lines carrying a real run's transitions as fields, the
human format, auto detection of a terminal, bad settings, one handler however often it is
configured, pytest's caplog unharmed, and real ``serve`` / ``worker`` processes in JSON mode."""
from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import PYTHON, ROOT, subprocess_env, wait_for

from lexyjobs import runs, store
from lexyjobs.config import Settings, load_settings
from lexyjobs.db import Database
from lexyjobs.logs import HumanFormatter, JsonFormatter, configure_logging
from lexyjobs.runtime import Runtime

HUMAN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")
ANSI = "\033["


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put the root handlers and levels back."""
    root, own = logging.getLogger(), logging.getLogger("lexyjobs")
    handlers, root_level, own_level = list(root.handlers), root.level, own.level
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    own.setLevel(own_level)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def configured(log_format: str, stream: io.StringIO | None = None, **env: str) -> io.StringIO:
    stream = io.StringIO() if stream is None else stream
    configure_logging(load_settings(environ={"LEXYJOBS_LOG_FORMAT": log_format, **env}), stream=stream)
    return stream


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def run_events(lines: list[dict[str, Any]], run_id: int) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("run_id") == run_id and line["logger"] == "lexyjobs.worker"]


def wait_status(db: Database, run_id: int, status: str) -> None:
    def reached() -> bool:
        with db.read() as session:
            run = store.get_run(session, run_id)
            return run is not None and run.status == status
    wait_for(reached, timeout=15)


# ---------------------------------------------------------------- JSON lines of real runs


def test_json_lines_carry_the_transitions_of_a_real_run(lj: Runtime, make_job: Callable[..., str],
                                                        start_worker: Callable[..., Any]) -> None:
    stream = configured("json")
    make_job("logged-noop", func="jobfuncs:noop")
    run_id = runs.enqueue(lj.db, "logged-noop")
    start_worker()
    wait_status(lj.db, run_id, "succeeded")
    started, finished = wait_for(lambda: (e := run_events(json_lines(stream.getvalue()), run_id)) and len(e) == 2 and e)

    assert started["message"] == f"run {run_id} (logged-noop) started, attempt 1/3"
    assert (started["job"], started["attempt"], started["from_status"], started["status"]) == (
        "logged-noop", 1, "queued", "running")
    assert finished["message"].startswith(f"run {run_id} (logged-noop) attempt 1 -> succeeded in ")
    assert (finished["job"], finished["attempt"], finished["from_status"], finished["status"]) == (
        "logged-noop", 1, "running", "succeeded")
    assert isinstance(finished["duration_ms"], (int, float)) and 0 <= finished["duration_ms"] < 15_000
    for line in (started, finished):
        assert line["level"] == "INFO"
        ts = datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
        assert ts.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - ts) < timedelta(minutes=1)


def test_a_retried_run_logs_each_attempt_with_its_number_and_status(lj: Runtime, make_job: Callable[..., str],
                                                                     start_worker: Callable[..., Any],
                                                                     tmp_path: Path) -> None:
    stream = configured("json")
    make_job("flaky", func="jobfuncs:fail_once_then_succeed", backoff="0s", backoff_jitter=0,
             params={"marker": {"type": "string", "required": True}})
    run_id = runs.enqueue(lj.db, "flaky", {"marker": str(tmp_path / "marker")})
    start_worker()
    wait_status(lj.db, run_id, "succeeded")
    events = wait_for(lambda: (e := run_events(json_lines(stream.getvalue()), run_id)) and len(e) == 4 and e)

    assert [(e["attempt"], e["from_status"], e["status"]) for e in events] == [
        (1, "queued", "running"), (1, "running", "queued"), (2, "queued", "running"), (2, "running", "succeeded")]
    assert all(e["job"] == "flaky" for e in events)


def test_an_exception_is_one_string_field_of_one_line() -> None:
    stream = configured("json")
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        logging.getLogger("lexyjobs.test").exception("it failed", extra={"run_id": 7})
    [line] = json_lines(stream.getvalue())
    assert (line["message"], line["run_id"], line["level"], line["logger"]) == ("it failed", 7, "ERROR", "lexyjobs.test")
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: broken\nacross lines")


def test_extra_values_json_cannot_hold_are_written_as_text_and_reserved_names_stay_intact() -> None:
    record = logging.LogRecord("lexyjobs.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.__dict__.update(when=datetime(2025, 3, 1, 9, 30), path=Path("/data"), level="not this", ts="nor this")
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you" and line["level"] == "WARNING" and line["ts"].endswith("Z")
    assert (line["when"], line["path"]) == ("2025-03-01 09:30:00", "/data")


# ---------------------------------------------------------------- human format and auto


def test_the_human_format_keeps_the_message_on_one_plain_line() -> None:
    stream = configured("human", Terminal())  # `human` never colours, even on a terminal
    logging.getLogger("lexyjobs.worker").info("run %s (%s) started, attempt %d/%d", 3, "nightly", 1, 3,
                                              extra={"run_id": 3})
    [line] = stream.getvalue().splitlines()
    assert HUMAN_LINE.match(line) and line.endswith(" INFO    lexyjobs.worker: run 3 (nightly) started, attempt 1/3")
    assert ANSI not in line


def test_auto_colours_the_level_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = configured("auto", Terminal())
    logging.getLogger("lexyjobs.x").warning("on a terminal")
    assert f"{ANSI}33mWARNING{ANSI}0m lexyjobs.x: on a terminal" in terminal.getvalue()

    piped = configured("auto")  # not a terminal: plain human text, never JSON unless asked
    logging.getLogger("lexyjobs.x").warning("piped")
    [line] = piped.getvalue().splitlines()
    assert HUMAN_LINE.match(line) and ANSI not in line and not line.startswith("{")

    monkeypatch.setenv("NO_COLOR", "1")
    no_colour = configured("auto", Terminal())
    logging.getLogger("lexyjobs.x").warning("NO_COLOR set")
    assert ANSI not in no_colour.getvalue() and "WARNING lexyjobs.x: NO_COLOR set" in no_colour.getvalue()


def test_auto_is_the_default_and_values_are_case_insensitive() -> None:
    assert (Settings().log_format, Settings().log_level) == ("auto", "INFO")
    settings = load_settings(environ={"LEXYJOBS_LOG_FORMAT": " JSON ", "LEXYJOBS_LOG_LEVEL": "debug"})
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("LEXYJOBS_LOG_FORMAT", "xml", "LEXYJOBS_LOG_FORMAT must be auto, human or json"),
    ("LEXYJOBS_LOG_FORMAT", "pretty", "LEXYJOBS_LOG_FORMAT must be auto, human or json"),
    ("LEXYJOBS_LOG_LEVEL", "loud", "LEXYJOBS_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
])
def test_an_invalid_value_stops_with_a_message_naming_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_settings(environ={variable: value})
    assert str(stopped.value.code) == f"lexyjobs: {expected}"


def test_the_level_applies_to_lexyjobs_loggers_and_others_keep_warning() -> None:
    stream = configured("json", LEXYJOBS_LOG_LEVEL="WARNING")
    logging.getLogger("lexyjobs.worker").info("dropped: below WARNING")
    logging.getLogger("lexyjobs.worker").warning("kept")
    logging.getLogger("apscheduler.scheduler").info("third-party info: dropped")
    logging.getLogger("apscheduler.scheduler").error("third-party error: kept")
    assert [(line["logger"], line["message"]) for line in json_lines(stream.getvalue())] == [
        ("lexyjobs.worker", "kept"), ("apscheduler.scheduler", "third-party error: kept")]


# ---------------------------------------------------------------- handler hygiene


def test_configuring_twice_leaves_one_handler_writing_each_line_once() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = configured("human")
    second = configured("json")
    assert len(root.handlers) == before + 1
    assert sum(1 for h in root.handlers if isinstance(h.formatter, (JsonFormatter, HumanFormatter))) == 1
    logging.getLogger("lexyjobs.x").info("once")
    assert first.getvalue() == ""
    assert [line["message"] for line in json_lines(second.getvalue())] == ["once"]


def test_the_default_stream_is_stderr_as_it_is_when_a_line_is_written(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(environ={"LEXYJOBS_LOG_FORMAT": "json"}))
    logging.getLogger("lexyjobs.x").info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == "" and json.loads(captured.err)["message"] == "to stderr"


def test_caplog_still_sees_records_after_configure(caplog: pytest.LogCaptureFixture) -> None:
    stream = configured("json")
    with caplog.at_level(logging.INFO, logger="lexyjobs"):
        logging.getLogger("lexyjobs.worker").info("seen by both", extra={"run_id": 1})
    assert [r.getMessage() for r in caplog.records] == ["seen by both"]
    assert caplog.records[0].run_id == 1  # type: ignore[attr-defined]
    assert json_lines(stream.getvalue())[0]["message"] == "seen by both"


# ---------------------------------------------------------------- real processes


class Child:
    """A lexyjobs process whose stdout and stderr go to files in tmp_path."""

    def __init__(self, argv: list[str], db_url: str, tmp_path: Path, **env: str) -> None:
        jobs_file = tmp_path / "jobs.toml"
        jobs_file.write_text('[jobs.hello]\nkind = "python"\nfunc = "jobfuncs:noop"\n', encoding="utf-8")
        environment = subprocess_env(db_url, LEXYJOBS_JOBS_FILE=str(jobs_file), LEXYJOBS_LOG_FORMAT="json",
                                     LEXYJOBS_POLL_INTERVAL="0.05", LEXYJOBS_SHUTDOWN_GRACE="2", **env)
        self.out_path, self.err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err)

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def wait_line(self, fragment: str) -> str:
        """The first stderr line containing ``fragment``, waiting for it while the process lives."""
        def found() -> str | None:
            assert self.proc.poll() is None, f"exited early with {self.proc.returncode}:\n{self.stderr()}"
            return next((line for line in self.stderr().splitlines() if fragment in line), None)
        return str(wait_for(found, timeout=30))

    def stop(self) -> tuple[str, str]:
        """SIGTERM, which must end it with exit code 0; returns (stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.returncode == 0, self.stderr()
        return self.out_path.read_text(encoding="utf-8"), self.stderr()


def _parsed(stderr: str, allowed_plain: re.Pattern[str] | None = None) -> list[dict[str, Any]]:
    """Every stderr line as JSON; lines matching ``allowed_plain`` are skipped."""
    lines = []
    for line in stderr.splitlines():
        if allowed_plain is not None and allowed_plain.fullmatch(line):
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\nstderr:\n{stderr}")
    return lines


@pytest.mark.slow
def test_a_worker_process_writes_only_json_lines(db_url: str, db: Database, tmp_path: Path) -> None:
    child = Child([PYTHON, "-m", "lexyjobs", "worker", "--threads", "2"], db_url, tmp_path)
    try:
        child.wait_line("running 2 threads")
        run_id = runs.enqueue(db, "hello")
        wait_status(db, run_id, "succeeded")
        wait_for(lambda: any(line.get("run_id") == run_id and line.get("status") == "succeeded"
                             for line in _parsed(child.stderr().rpartition("\n")[0])))  # whole lines only
    finally:
        out, err = child.stop()
    lines = _parsed(err)
    assert out == ""
    assert any(line["message"].startswith("lexyjobs worker ") and line.get("threads") == 2 for line in lines)
    assert [(e["status"], e["attempt"]) for e in lines if e.get("run_id") == run_id] == [
        ("running", 1), ("succeeded", 1)]
    assert {line["level"] for line in lines} <= {"INFO", "WARNING"}


# runtime.py prints this one line itself (not through logging), so it stays plain text.
SCHEDULER_STARTED = re.compile(r"lexyjobs: scheduler started in pid \d+")


@pytest.mark.slow
def test_serve_writes_json_lines_for_its_start_runs_and_stop(tmp_path: Path) -> None:
    import urllib.request

    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    child = Child([PYTHON, "-m", "lexyjobs", "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "1"],
                  db_url, tmp_path, LEXYJOBS_ADMIN_PASSWORD="a-long-password")
    try:
        announced = json.loads(child.wait_line("serving on"))  # the address is a field of its own
        assert announced["logger"] == "lexyjobs.cli" and announced["workers"] == 1
        with urllib.request.urlopen(announced["url"] + "/healthz", timeout=10) as response:
            assert response.status == 200
        enqueued = subprocess.run([PYTHON, "-m", "lexyjobs", "run", "hello", "--wait", "--timeout", "20s"], cwd=ROOT,
                                  env=subprocess_env(db_url, LEXYJOBS_JOBS_FILE=""), capture_output=True, text=True,
                                  timeout=60)
        assert enqueued.returncode == 0, enqueued.stderr
        child.wait_line("-> succeeded in")
    finally:
        out, err = child.stop()
    lines = _parsed(err, allowed_plain=SCHEDULER_STARTED)
    messages = [line["message"] for line in lines]
    assert "lexyjobs: 1 jobs loaded from code and file" in messages
    assert "lexyjobs stopping: waiting for running runs…" in messages
    transitions = [(e["job"], e["status"]) for e in lines if e.get("logger") == "lexyjobs.worker" and "run_id" in e]
    assert transitions == [("hello", "running"), ("hello", "succeeded")]
    assert out == ""
