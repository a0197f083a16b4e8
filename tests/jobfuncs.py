"""Job functions used by the tests (importable by in-process and child-process workers)."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from sqlalchemy import create_engine, text

from lexyjobs import JobFailed, RunContext


def noop(ctx: RunContext) -> None:
    return None


def echo_params(ctx: RunContext) -> dict[str, Any]:
    return dict(ctx.params)


def add(ctx: RunContext) -> int:
    return ctx.params["a"] + ctx.params["b"]


def boom(ctx: RunContext) -> None:
    raise ValueError("boom: something broke")


def fail_cleanly(ctx: RunContext) -> None:
    raise JobFailed("expected failure")


def sleepy(ctx: RunContext) -> str:
    """Sleep ``seconds`` (default 5) cooperatively, so cancel and shutdown stop it."""
    ctx.sleep(float(ctx.params.get("seconds", 5)))
    return "slept"


def stubborn(ctx: RunContext) -> str:
    """Sleep without checking for cancellation (a badly behaved job)."""
    time.sleep(float(ctx.params.get("seconds", 2)))
    return "done"


def with_progress(ctx: RunContext) -> str:
    for step in range(1, 5):
        ctx.progress(step * 25, f"step {step}")
        ctx.log.info("step %d", step)
        ctx.sleep(float(ctx.params.get("pause", 0.05)))
    return "ok"


def record(ctx: RunContext) -> None:
    """Insert one row per execution into the side-effect table ``executions`` (test helper)."""
    url = os.environ["LEXYJOBS_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = _engines.get(url) or _engines.setdefault(url, create_engine(url))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO executions (run_id, attempt, pid) VALUES (:r, :a, :p)"),
                     {"r": ctx.run_id, "a": ctx.attempt, "p": os.getpid()})
    seconds = float(ctx.params.get("seconds", 0)) if ctx.params else 0
    if seconds:
        time.sleep(seconds)


_engines: dict[str, Any] = {}


def not_json(ctx: RunContext) -> object:
    return object()


def progress_until_gate(ctx: RunContext) -> str:
    """Report progress 40 and log a line, then wait (cooperatively, at most 10 s) until the file
    ``params["gate"]`` exists — lets a test look at a run while it is still running."""
    ctx.progress(40, "loading")
    ctx.log.info("loaded the first half")
    deadline = time.monotonic() + 10
    while not os.path.exists(ctx.params["gate"]) and time.monotonic() < deadline:
        ctx.sleep(0.02)
    return "released"


def fail_once_then_succeed(ctx: RunContext) -> dict[str, int]:
    """Fail the first time (creating the file ``params["marker"]``), succeed once it exists."""
    marker = ctx.params["marker"]
    if not os.path.exists(marker):
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(str(ctx.attempt))
        raise ValueError("first attempt fails on purpose")
    return {"attempt": ctx.attempt}


def code_job_target(ctx: RunContext) -> str:
    """Target of a ``@job`` declared in tests (registered under a unique name by the test)."""
    return f"code job ran with {dict(ctx.params)}"


def first_attempt_stalls(ctx: RunContext) -> dict[str, Any]:
    """Attempt 1 sleeps ``seconds`` (default 3) without checking for cancellation, like a stuck
    or paused worker; later attempts finish at once. Progress, log and result say which attempt
    and process ran, so a late write from an old attempt is visible. With ``done_file``, attempt 1
    creates that file when its sleep is over (just before it returns)."""
    pid = os.getpid()
    ctx.progress(10, f"attempt {ctx.attempt} in pid {pid} started")
    ctx.log.info("attempt %d in pid %d started", ctx.attempt, pid)
    if ctx.attempt == 1:
        time.sleep(float(ctx.params.get("seconds", 3)))
    ctx.progress(100, f"attempt {ctx.attempt} in pid {pid} finished")
    ctx.log.info("attempt %d in pid %d finished", ctx.attempt, pid)
    if ctx.attempt == 1 and ctx.params.get("done_file"):
        with open(ctx.params["done_file"], "w", encoding="utf-8") as marker:
            marker.write(str(pid))
    return {"attempt": ctx.attempt, "pid": pid}


def returns_nan(ctx: RunContext) -> dict[str, float]:
    """A result Postgres cannot store as JSON."""
    return {"ratio": float("nan")}


def nul_everywhere(ctx: RunContext) -> str:
    """NUL characters in the log, progress message and error (Postgres text refuses NUL)."""
    ctx.log.info("before\x00after")
    ctx.progress(50, "half\x00way")
    raise ValueError("bad\x00byte")


def bad_details(ctx: RunContext) -> str:
    """Kind details that are not JSON data."""
    import datetime
    ctx.details["when"] = datetime.datetime(2026, 1, 1)
    return "ok"


def exits(ctx: RunContext) -> None:
    """A reused script calling sys.exit()."""
    import sys
    sys.exit(3)


def odd_progress(ctx: RunContext) -> str:
    ctx.progress(50, 123)  # type: ignore[arg-type]
    ctx.sleep(0.3)
    return "ok"


def fail_after(ctx: RunContext) -> None:
    """Fail after ``seconds`` (default 0.5), ignoring cancellation while it waits."""
    time.sleep(float(ctx.params.get("seconds", 0.5)))
    raise RuntimeError("failed after a while")


def rate_limited(ctx: RunContext) -> None:
    """Fail asking the next attempt to wait at least ``retry_after`` seconds (like a 429)."""
    raise JobFailed("slow down", retry_after=float(ctx.params["retry_after"]))


def mark_then_sleep(ctx: RunContext) -> str:
    """Write this process's pid to ``params["pid_file"]``, then sleep ``seconds`` (default 20)
    without ever checking for cancellation; with ``ignore_sigterm`` SIGTERM is ignored too."""
    import signal
    if ctx.params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(ctx.params["pid_file"], "w", encoding="utf-8") as out:
        out.write(str(os.getpid()))
    time.sleep(float(ctx.params.get("seconds", 20)))
    return "woke up"


def talks_every_way(ctx: RunContext) -> dict[str, Any]:
    """Output through every channel a python job has: progress, ctx.log, ctx.write, print, the
    root logger and stderr; returns its pid and params (a child's pid is not the server's)."""
    import logging
    import sys
    ctx.progress(60, "most of it")
    ctx.log.info("through ctx.log")
    ctx.write("through ctx.write\n")
    print("through print")
    logging.getLogger("some.library").warning("through logging")
    print("through stderr", file=sys.stderr)
    ctx.details["rows"] = 3
    return {"pid": os.getpid(), "params": dict(ctx.params)}


def environment_names(ctx: RunContext) -> list[str]:
    """The names of this process's environment variables, sorted."""
    return sorted(os.environ)


def sees_itself_begun(ctx: RunContext) -> bool:
    """Whether the run's ``begun_at`` is already committed when its body starts (read through a
    connection of its own to ``params["db_url"]``); then waits for the file ``params["gate"]``."""
    url = ctx.params["db_url"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = _engines.get(url) or _engines.setdefault(url, create_engine(url))
    with engine.connect() as conn:
        begun = conn.execute(text("SELECT begun_at FROM runs WHERE id = :r"), {"r": ctx.run_id}).scalar()
    deadline = time.monotonic() + 10
    while not os.path.exists(ctx.params["gate"]) and time.monotonic() < deadline:
        ctx.sleep(0.02)
    return begun is not None


LOG_ORDER_TAKEN = threading.Event()  # set by tests/test_log_order.py when the monitor took "first"


def writes_around_a_flush(ctx: RunContext) -> None:
    """Write "first", wait until the worker's monitor took it for its flush, write "second"."""
    ctx.write("first\n")
    LOG_ORDER_TAKEN.wait(10)
    ctx.write("second\n")


def timed(ctx: RunContext) -> dict[str, Any]:
    """Sleep ``seconds`` (default 0.2) and return when it began and ended (wall clock) and where."""
    began = time.time()
    time.sleep(float(ctx.params.get("seconds", 0.2)))
    return {"began": began, "ended": time.time(), "pid": os.getpid()}


def fire_time(ctx: RunContext) -> str | None:
    """The schedule time the run is for (``ctx.fire_time``), as ISO 8601 text."""
    return ctx.fire_time.isoformat() if ctx.fire_time else None
