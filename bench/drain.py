"""Queue drain benchmark: how fast do workers empty a queue of no-op runs?

    python -m bench.drain --db sqlite|postgres [--runs 3000] [--threads 4] [--processes 1]
                          [--repeat 3] [--pg-url URL] [--json FILE]

Each repetition uses a fresh database (a temp SQLite file, or a fresh schema in the Postgres
database of ``--pg-url`` / ``LEXYJOBS_TEST_POSTGRES_URL``, dropped afterwards), creates a no-op
python job with ``max_concurrency = 0`` and enqueues ``--runs`` runs: the first SINGLE (at most a
third) with one ``runs.enqueue`` call each, the rest with ``runs.enqueue_many`` in batches (both
timed: enqueue runs/s, single and batched). Then it starts the workers and times until every run
has succeeded (processing runs/s). One process means an in-process ``Worker`` with ``--threads``
threads; more means that many ``python -m lexyjobs worker --threads N`` children, whose start-up
is inside the wall time, so the span from the first run's start to the last run's end (read from
the database) is printed too. The median of the repetitions is printed last; ``--json FILE``
writes the median, min and max of each figure."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from bench.cpu import Usage

ROOT = Path(__file__).resolve().parent.parent
JOB = "bench-noop"
BATCH = 500
SINGLE = 500  # runs enqueued one call each (at most a third of --runs)
RATES = ("enqueue_single", "enqueue_batch", "processing", "start_to_finish")  # runs/s figures


def noop(ctx: Any) -> None:
    """The benchmarked job: does nothing, so the figures measure lexyjobs itself."""
    return None


class _Counter(logging.Handler):
    """Counts lexyjobs warnings of the in-process worker instead of printing each one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class Figures:
    enqueue_per_s: float           # enqueue_many in batches of BATCH
    wall_s: float
    span_s: float
    warnings: int = 0
    enqueue_single_per_s: float = 0.0  # one runs.enqueue call per run (the first SINGLE runs)
    # from the first run done to the last (bench.cpu; None off Linux): the machine's busy share
    # and the CPU milliseconds per run of the workers and of the Postgres server processes
    cpu_busy_pct: float | None = None
    worker_cpu_ms: float | None = None
    postgres_cpu_ms: float | None = None

    def drain_per_s(self, runs: int) -> float:
        return runs / self.wall_s


@contextmanager
def fresh_database(kind: str, pg_url: str | None, *, keep: bool = False) -> Iterator[str]:
    """Yield the URL of a new, empty database (a temp SQLite file, or a fresh schema in the
    Postgres database of ``pg_url``); remove it afterwards, unless ``keep``."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="lexyjobs-bench-")
        try:
            yield f"sqlite:///{folder}/jobs.db"
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    if not pg_url:
        raise SystemExit("--db postgres needs --pg-url or LEXYJOBS_TEST_POSTGRES_URL")
    base = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def one_round(url: str, *, runs_count: int, threads: int, processes: int) -> Figures:
    """Enqueue ``runs_count`` no-op runs, drain them, and return the timings."""
    with _counted_warnings() as counter:
        return _round(url, counter, runs_count=runs_count, threads=threads, processes=processes)


@contextmanager
def _counted_warnings() -> Iterator[_Counter]:
    """lexyjobs' log records are counted, not printed, meanwhile; the logger is put back after."""
    logger, counter = logging.getLogger("lexyjobs"), _Counter()
    propagate = logger.propagate
    logger.addHandler(counter)
    logger.propagate = False
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.propagate = propagate


def _round(url: str, counter: _Counter, *, runs_count: int, threads: int, processes: int) -> Figures:
    from lexyjobs import registry, runs
    from lexyjobs.config import load_settings
    from lexyjobs.models import Run
    from lexyjobs.registry import JobCatalog
    from lexyjobs.runtime import Runtime
    from lexyjobs.worker import Worker

    settings = load_settings({"database_url": url, "jobs_file": None, "workers": threads, "poll_interval": 0.05})
    lj = Runtime(settings)
    lj.prepare()
    registry.create_job(lj.db, JOB, {"kind": "python", "func": "bench.drain:noop", "max_concurrency": 0})

    single = min(SINGLE, runs_count // 3)
    started = time.perf_counter()
    for _ in range(single):
        runs.enqueue(lj.db, JOB)
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    for first in range(single, runs_count, BATCH):
        runs.enqueue_many(lj.db, [runs.RunRequest(JOB) for _ in range(first, min(first + BATCH, runs_count))])
    enqueue_s = time.perf_counter() - started

    def succeeded() -> int:
        with lj.db.read() as session:
            return session.scalar(select(func.count()).select_from(Run).where(Run.status == "succeeded")) or 0

    worker: Worker | None = None
    children: list[subprocess.Popen[bytes]] = []
    empty_jobs = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    empty_jobs.close()
    try:
        started = time.perf_counter()
        if processes == 1:
            worker = Worker(lj.db, settings, JobCatalog(lj.db), name="bench")
            worker.start()
        else:
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
            env.update(LEXYJOBS_DATABASE_URL=url, LEXYJOBS_JOBS_FILE=empty_jobs.name, LEXYJOBS_POLL_INTERVAL="0.05",
                       PYTHONPATH=str(ROOT))
            children = [subprocess.Popen([sys.executable, "-m", "lexyjobs", "worker", "--threads", str(threads)],
                                         cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL) for _ in range(processes)]
        deadline, usage, done = started + 600, None, 0
        while (done := succeeded()) < runs_count:
            if time.perf_counter() > deadline:
                raise SystemExit("the queue did not drain within 10 minutes")
            if any(child.poll() is not None for child in children):
                raise SystemExit("a worker process exited early")
            if usage is None and done:  # the workers are up: their start-up is not counted
                usage, counted_from = Usage([os.getpid()] if worker else [c.pid for c in children]).start(), done
            time.sleep(0.05)  # coarse: polling competes with the workers for the CPU and the database
        wall_s = time.perf_counter() - started
        if usage is not None:
            usage.stop()
    finally:
        if worker is not None:
            worker.stop(grace=0)
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        os.unlink(empty_jobs.name)
    with lj.db.read() as session:
        first_start, last_end = session.execute(select(func.min(Run.started_at), func.max(Run.finished_at))).one()
    assert first_start is not None and last_end is not None
    lj.db.dispose()
    figures = Figures((runs_count - single) / enqueue_s, wall_s, (last_end - first_start).total_seconds(),
                      counter.count, single / single_s if single else 0.0)
    if usage is not None and usage.busy_pct is not None and runs_count > counted_from:
        per_run = 1000 / (runs_count - counted_from)
        figures.cpu_busy_pct, figures.worker_cpu_ms = usage.busy_pct, (usage.seconds or 0.0) * per_run
        figures.postgres_cpu_ms = (usage.postgres_seconds or 0.0) * per_run if "postgresql" in url else None
    return figures


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of the repetitions (what docs/benchmarks.md shows)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(db: str, *, runs_count: int, threads: int, processes: int, repeat: int, pg_url: str | None,
            out: Callable[[str], None] = print) -> dict[str, Any]:
    """``repeat`` rounds, each on a fresh database; the figures as ``{name: spread}`` in runs/s."""
    out(f"drain: {runs_count} no-op runs on {db}, {processes} process(es) x {threads} threads")
    results: list[Figures] = []
    for round_no in range(1, repeat + 1):
        with fresh_database(db, pg_url) as url:
            figures = one_round(url, runs_count=runs_count, threads=threads, processes=processes)
        results.append(figures)
        out(f"  round {round_no}: enqueue {figures.enqueue_single_per_s:6.0f} runs/s single, "
            f"{figures.enqueue_per_s:6.0f} batched | drain {figures.wall_s:6.2f} s wall "
            f"= {figures.drain_per_s(runs_count):6.0f} runs/s | first start to last finish {figures.span_s:6.2f} s "
            f"= {runs_count / figures.span_s:6.0f} runs/s"
            + (f" | {figures.warnings} worker warnings" if figures.warnings else "")
            + (f" | CPU {figures.cpu_busy_pct:.0f} % busy, workers {figures.worker_cpu_ms:.2f} ms per run"
               if figures.cpu_busy_pct is not None and figures.worker_cpu_ms is not None else "")
            + (f", Postgres {figures.postgres_cpu_ms:.2f} ms" if figures.postgres_cpu_ms is not None else ""))
    summary = {"enqueue_single": spread([f.enqueue_single_per_s for f in results]),
               "enqueue_batch": spread([f.enqueue_per_s for f in results]),
               "processing": spread([f.drain_per_s(runs_count) for f in results]),
               "start_to_finish": spread([runs_count / f.span_s for f in results])}
    for name in ("cpu_busy_pct", "worker_cpu_ms", "postgres_cpu_ms"):
        values = [v for f in results if (v := getattr(f, name)) is not None]
        if values:
            summary[name] = spread(values)
    out("median: " + ", ".join(f"{name} {figures['median']:.0f} runs/s" for name, figures in summary.items()
                               if name in RATES))
    if "cpu_busy_pct" in summary:
        out(f"CPU while draining: {summary['cpu_busy_pct']['median']:.0f} % of the machine busy, workers "
            f"{summary['worker_cpu_ms']['median']:.2f} ms per run"
            + (f", Postgres {summary['postgres_cpu_ms']['median']:.2f} ms" if "postgres_cpu_ms" in summary else ""))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4, help="worker threads per process")
    parser.add_argument("--processes", type=int, default=1, help="1 = in-process Worker; more = child processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 3 or args.threads < 1 or args.processes < 1 or args.repeat < 1:
        parser.error("--runs must be at least 3; --threads, --processes and --repeat at least 1")
    summary = measure(args.db, runs_count=args.runs, threads=args.threads, processes=args.processes,
                      repeat=args.repeat, pg_url=args.pg_url, out=lambda line: print(line, flush=True))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
