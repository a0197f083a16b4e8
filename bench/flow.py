"""Flow-control benchmark: how fast do workers drain a queue under concurrency keys and a shared
rate limit, and do the limits hold?

    python -m bench.flow --db sqlite|postgres [--runs 3000] [--keys 100] [--key-limit 2]
                         [--rate 500/s] [--threads 4] [--repeat 3] [--pg-url URL] [--json FILE]

Each repetition uses a fresh database (see bench.drain), loads a jobs file with one shared named
limit (``[limits.shared] rate = --rate``) and a no-op job whose runs spread over ``--keys``
concurrency keys (``concurrency_key = "key:{k}"``, ``concurrency_limit = --key-limit``) and take a
slot of the shared limit; enqueues ``--runs`` runs in batches and times an in-process worker of
``--threads`` threads until every run has succeeded. It reports the runs/s, the least time the
rate allows (the first ``rate`` runs may start at once, then ``rate`` per period), and the limit
checks read back from the runs: the most runs of one key running at once (claim to finish, by
the recorded times) and the most starts in any window of the rate's period — each must stay
within its limit. The median of the repetitions is printed last."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select

from bench.drain import BATCH, _counted_warnings, fresh_database, spread

JOB = "bench-flow"


@dataclass
class Figures:
    wall_s: float
    most_per_key: int     # runs of one key running at once, at most
    most_in_window: int   # starts in one window of the rate's period, at most
    least_s: float        # the least wall time the rate allows
    warnings: int = 0


def jobs_toml(keys: int, key_limit: int, rate: str) -> str:
    return (f'[limits.shared]\nrate = "{rate}"\n\n[jobs.{JOB}]\nkind = "python"\nfunc = "bench.drain:noop"\n'
            f'max_concurrency = 0\nconcurrency_key = "key:{{k}}"\nconcurrency_limit = {key_limit}\n'
            f'limits = ["shared"]\nparams = {{ k = {{ type = "integer", min = 0, max = {keys - 1} }} }}\n')


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one moment (an end at the same instant as a start comes first)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def most_in_window(starts: list[datetime], per: float) -> int:
    """The most starts in any half-open window ``[t, t + per)``."""
    starts, most, first = sorted(starts), 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= timedelta(seconds=per):
            first += 1
        most = max(most, last - first + 1)
    return most


def one_round(url: str, *, runs_count: int, keys: int, key_limit: int, rate: str, threads: int) -> Figures:
    from lexyjobs import registry, runs
    from lexyjobs.config import load_settings
    from lexyjobs.flow.spec import parse_rate
    from lexyjobs.models import Run
    from lexyjobs.registry import JobCatalog
    from lexyjobs.runtime import Runtime
    from lexyjobs.worker import Worker

    limit = parse_rate(rate)
    with _counted_warnings() as counter, tempfile.TemporaryDirectory(prefix="lexyjobs-bench-flow-") as folder:
        jobs_file = Path(folder) / "jobs.toml"
        jobs_file.write_text(jobs_toml(keys, key_limit, rate))
        settings = load_settings({"database_url": url, "jobs_file": None, "workers": threads, "poll_interval": 0.05})
        lj = Runtime(settings)
        lj.prepare()
        report = registry.sync_jobs(lj.db, jobs_file=str(jobs_file), archive_missing=True)
        if report.errors:
            raise SystemExit(f"bench jobs file rejected: {report.errors[0].message}")
        for first in range(0, runs_count, BATCH):
            runs.enqueue_many(lj.db, [runs.RunRequest(JOB, {"k": i % keys})
                                      for i in range(first, min(first + BATCH, runs_count))])

        def succeeded() -> int:
            with lj.db.read() as session:
                return session.scalar(select(func.count()).select_from(Run).where(Run.status == "succeeded")) or 0

        worker = Worker(lj.db, settings, JobCatalog(lj.db), name="bench")
        started = time.perf_counter()
        worker.start()
        try:
            while succeeded() < runs_count:
                if time.perf_counter() - started > 600:
                    raise SystemExit("the queue did not drain within 10 minutes")
                time.sleep(0.05)
            wall_s = time.perf_counter() - started
        finally:
            worker.stop(grace=0)
        with lj.db.read() as session:
            rows = session.execute(select(Run.concurrency_key, Run.started_at, Run.finished_at)).all()
        lj.db.dispose()
    by_key: dict[str | None, list[tuple[datetime, datetime]]] = defaultdict(list)
    for key, began, ended in rows:
        assert began is not None and ended is not None
        by_key[key].append((began, ended))
    least = max(0.0, (runs_count - limit.rate) / limit.rate * limit.per)  # a burst of `rate`, then `rate` per `per`
    return Figures(wall_s, max(most_at_once(spans) for spans in by_key.values()),
                   most_in_window([began for _, began, _ in rows if began], limit.per), least, counter.count)


def measure(db: str, *, runs_count: int, keys: int, key_limit: int, rate: str, threads: int, repeat: int,
            pg_url: str | None, out: Callable[[str], None] = print) -> dict[str, Any]:
    """``repeat`` rounds, each on a fresh database: runs/s as a spread, and the limit checks."""
    out(f"flow: {runs_count} no-op runs on {db} over {keys} keys ({key_limit} at a time each) and a shared "
        f"rate limit of {rate}, 1 process x {threads} threads")
    results: list[Figures] = []
    for round_no in range(1, repeat + 1):
        with fresh_database(db, pg_url) as url:
            figures = one_round(url, runs_count=runs_count, keys=keys, key_limit=key_limit, rate=rate,
                                threads=threads)
        results.append(figures)
        out(f"  round {round_no}: drain {figures.wall_s:6.2f} s = {runs_count / figures.wall_s:6.0f} runs/s "
            f"(the rate allows at least {figures.least_s:.2f} s) | most of one key at once {figures.most_per_key} "
            f"(limit {key_limit}) | most starts in one period {figures.most_in_window} (limit {rate})"
            + (f" | {figures.warnings} worker warnings" if figures.warnings else ""))
    from lexyjobs.flow.spec import parse_rate
    rate_count = parse_rate(rate).rate
    summary: dict[str, Any] = {"processing": spread([runs_count / f.wall_s for f in results]),
               "most_per_key": max(f.most_per_key for f in results), "key_limit": key_limit,
               "most_in_window": max(f.most_in_window for f in results), "rate": rate,
               "limits_held": all(f.most_per_key <= key_limit and f.most_in_window <= rate_count for f in results)}
    out(f"median: processing {summary['processing']['median']:.0f} runs/s; limits held: {summary['limits_held']}")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--keys", type=int, default=100, help="concurrency keys the runs spread over")
    parser.add_argument("--key-limit", type=int, default=2, help="runs of one key at once")
    parser.add_argument("--rate", default="500/s", help="the shared rate limit, e.g. 500/s")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.keys < 1 or args.key_limit < 1 or args.threads < 1 or args.repeat < 1:
        parser.error("--runs, --keys, --key-limit, --threads and --repeat must be at least 1")
    try:
        from lexyjobs.flow.spec import parse_rate
        if parse_rate(args.rate).key is not None:
            raise ValueError("a shared limit here has no 'per {param}'")
    except ValueError as exc:
        parser.error(f"--rate {exc}")
    summary = measure(args.db, runs_count=args.runs, keys=args.keys, key_limit=args.key_limit, rate=args.rate,
                      threads=args.threads, repeat=args.repeat, pg_url=args.pg_url,
                      out=lambda line: print(line, flush=True))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
