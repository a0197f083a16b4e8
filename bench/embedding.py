"""Embedding benchmark (issue 15): what ``import lexyjobs`` and one ``lexyjobs.enqueue()`` cost a host app.

    python -m bench.embedding [--repeat 20] [--calls 500] [--db sqlite,postgres] [--pg-url URL] [--json FILE]

* import: ``--repeat`` fresh interpreters each time ``import lexyjobs`` (perf_counter around the
  statement, interpreter start-up excluded) and report the median and min–max in ms, the threads
  alive afterwards (1: it started none) and which heavy packages it pulled in (none expected:
  SQLAlchemy, Flask, APScheduler and psycopg come with the first real call).
* enqueue: per database (a fresh temp SQLite file, or a fresh schema in the Postgres database of
  ``--pg-url`` / ``LEXYJOBS_TEST_POSTGRES_URL``; Postgres is skipped, and says so, without one),
  a Runtime with default settings (caller's ``LEXYJOBS_*`` ignored; no worker running, so the
  queue only grows), one no-op python job, 20 warm-up calls, then ``--calls`` timed calls of
  ``lexyjobs.enqueue("bench-noop")`` — each its own committed transaction with its audit entry —
  and as many of ``enqueue(..., session=host_session)`` followed by the host's ``commit()``
  (timed together: that is what the host pays). p50, p99 and mean in ms.

``--json`` writes ``{"import": {...}, "enqueue": {db: {...}}}``; ``main`` returns the same dict."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.drain import ROOT, fresh_database

JOB = "bench-noop"
WARMUP = 20
HEAVY = ("sqlalchemy", "flask", "apscheduler", "psycopg", "werkzeug", "requests")
PROBE = ("import time, threading, sys\n"
         "t = time.perf_counter()\n"
         "import lexyjobs\n"
         "took = time.perf_counter() - t\n"
         f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
         "print(took * 1000, threading.active_count(), ','.join(heavy))\n")


def import_time(repeat: int) -> dict[str, Any]:
    """``import lexyjobs`` in ``repeat`` fresh interpreters (ms), threads after it, heavy modules."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
    env["PYTHONPATH"] = str(ROOT)
    times: list[float] = []
    threads: set[int] = set()
    heavy: set[str] = set()
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=True)
        took, alive, modules = (done.stdout.strip().split(" ") + [""])[:3]
        times.append(float(took))
        threads.add(int(alive))
        heavy.update(m for m in modules.split(",") if m)
    return {"repeat": repeat, "median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "threads": sorted(threads), "heavy_modules": sorted(heavy)}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"calls": len(ordered), "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "mean_ms": statistics.fmean(ordered) * 1000}


def enqueue_time(url: str, calls: int) -> dict[str, Any]:
    """Timed ``lexyjobs.enqueue`` calls on ``url``: on its own, and inside a host transaction."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import lexyjobs
    from lexyjobs import registry
    from lexyjobs.config import load_settings
    from lexyjobs.runtime import Runtime

    runtime = Runtime(load_settings({"database_url": url, "jobs_file": None}, environ={}))
    runtime.prepare()
    registry.create_job(runtime.db, JOB, {"kind": "python", "func": "bench.embedding:noop"})
    host = create_engine(url)
    try:
        for _ in range(WARMUP):
            lexyjobs.enqueue(JOB, runtime=runtime)
        alone = []
        for _ in range(calls):
            started = time.perf_counter()
            lexyjobs.enqueue(JOB, runtime=runtime)
            alone.append(time.perf_counter() - started)
        in_session = []
        with Session(host) as session:
            for _ in range(WARMUP):
                lexyjobs.enqueue(JOB, session=session, runtime=runtime)
                session.commit()
            for _ in range(calls):
                started = time.perf_counter()
                lexyjobs.enqueue(JOB, session=session, runtime=runtime)
                session.commit()
                in_session.append(time.perf_counter() - started)
        return {"alone": percentiles(alone), "in_session": percentiles(in_session)}
    finally:
        host.dispose()
        runtime.db.dispose()


def noop(ctx: Any) -> None:
    """The benchmark's job (never run here: no worker is started)."""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.embedding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    found: dict[str, Any] = {"import": import_time(args.repeat), "enqueue": {}}
    imported = found["import"]
    print(f"import lexyjobs: {imported['median_ms']:.1f} ms median ({imported['min_ms']:.1f}–{imported['max_ms']:.1f}), "
          f"threads after: {imported['threads']}, heavy modules: {imported['heavy_modules'] or 'none'}")
    for db in args.db.split(","):
        if db == "postgres" and not args.pg_url:
            found["enqueue"][db] = {"skipped": "no --pg-url or LEXYJOBS_TEST_POSTGRES_URL"}
            print("enqueue postgres: skipped (no --pg-url or LEXYJOBS_TEST_POSTGRES_URL)")
            continue
        with fresh_database(db, args.pg_url) as url:
            figures = found["enqueue"][db] = enqueue_time(url, args.calls)
        for mode, f in figures.items():
            print(f"enqueue {db} {mode}: p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, "
                  f"mean {f['mean_ms']:.2f} ms over {f['calls']} calls")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return found


if __name__ == "__main__":
    main()
