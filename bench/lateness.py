"""Fire lateness benchmark: how late does a scheduled fire become a run?

    python -m bench.lateness --db sqlite|postgres [--fires 120] [--pg-url URL] [--json FILE]

Uses a fresh database (a temp SQLite file, or a fresh schema in the Postgres database of
``--pg-url`` / ``LEXYJOBS_TEST_POSTGRES_URL``, dropped afterwards), creates a no-op python job
``schedule = "every 1s"`` and starts the runtime in this process as ``serve`` does (worker pool
+ scheduler). Once ``--fires`` fires have been recorded it stops and prints, over those fires,
the lateness = the run's ``created_at`` − its scheduled fire time (read from the run's fire key):
p50, p99 and max in ms. It also checks that consecutive fires are exactly 1 s apart (no gap, no
repeat) and that every run succeeded."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.drain import fresh_database

JOB = "bench-tick"


def noop(ctx: Any) -> None:
    """The scheduled job: does nothing."""
    return None


def measure(url: str, fires: int) -> tuple[list[float], int, dict[str, int]]:
    """Run the every-second job for ``fires`` fires; return (lateness ms per fire, gaps, statuses)."""
    from lexyjobs import registry, store
    from lexyjobs.config import load_settings
    from lexyjobs.runtime import Runtime

    lj = Runtime(load_settings({"database_url": url, "jobs_file": None, "workers": 2, "poll_interval": 0.05}))
    lj.prepare()
    registry.create_job(lj.db, JOB, {"kind": "python", "func": "bench.lateness:noop", "schedule": "every 1s",
                                     "max_concurrency": 0})

    def recorded() -> list[Any]:
        with lj.db.read() as session:
            return [r for r in store.list_runs(session, job=JOB, limit=fires + 50) if r.fire_key]

    lj.start()
    try:
        deadline = time.monotonic() + fires + 60
        while len(recorded()) < fires:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(recorded())} fires within {fires + 60} s")
            time.sleep(0.5)
        time.sleep(1.0)  # let the worker finish the last runs
    finally:
        lj.stop(grace=5)
    rows = sorted(recorded(), key=lambda r: r.fire_key)[:fires]
    fired = [datetime.fromisoformat(r.fire_key.split("@", 1)[1]) for r in rows]
    lateness = [(r.created_at - at).total_seconds() * 1000 for r, at in zip(rows, fired)]
    gaps = sum(1 for a, b in zip(fired, fired[1:]) if (b - a).total_seconds() != 1.0)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return lateness, gaps, statuses


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.lateness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--fires", type=int, default=120)
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.fires < 2:
        parser.error("--fires must be at least 2")
    print(f"lateness: an every-1s job on {args.db}, {args.fires} fires (about {args.fires} s)", flush=True)
    with fresh_database(args.db, args.pg_url) as url:
        lateness, gaps, statuses = measure(url, args.fires)
    summary = {"fires": len(lateness), "p50_ms": statistics.median(lateness),
               "p99_ms": statistics.quantiles(lateness, n=100, method="inclusive")[98], "max_ms": max(lateness),
               "min_ms": min(lateness), "gaps": gaps, "statuses": statuses}
    print(f"created_at - fire time over {summary['fires']} fires: p50 {summary['p50_ms']:.1f} ms, "
          f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms, min {summary['min_ms']:.1f} ms")
    print(f"gaps or repeats between consecutive fires: {gaps}; run statuses: {statuses}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
