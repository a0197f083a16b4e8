"""Pickup latency benchmark: how soon does an idle worker start a run once it is enqueued?

    python -m bench.latency --db sqlite|postgres [--samples 200] [--mode inprocess|crossprocess|both]
                            [--pg-url URL] [--json FILE]

Each mode uses a fresh database (a temp SQLite file, or a fresh schema in the Postgres database
of ``--pg-url`` / ``LEXYJOBS_TEST_POSTGRES_URL``, dropped afterwards; see ``bench.drain``) and a
python job with the defaults of a job (``max_concurrency`` 1 included) whose body, as its first
act, records when it started. The worker keeps lexyjobs' default settings (4 threads,
``LEXYJOBS_POLL_INTERVAL`` 0.5 s; ``LEXYJOBS_*`` variables of the caller are ignored), so a short
latency has to come from a wake-up, not from fast polling.
One warm-up run (not counted: it waits for the worker to start and imports the job's module),
then ``--samples`` runs, enqueued one at a time with ``runs.enqueue``, each after a random gap of
20–80 ms once the previous run's body has started; the worker is idle in between.

* in-process: a ``Worker`` in this process; the body puts ``time.perf_counter()`` on a queue of
  this module. Latency = body start − the moment just before the ``enqueue`` call.
* cross-process: the worker is a ``python -m lexyjobs worker`` child process; this process only
  enqueues. The body appends ``<run id> <time.time()>`` to a file the harness watches (every
  1 ms; that delay is outside the figure), and latency is taken on the wall clock of the same
  machine. The wake-up is the enqueue's NOTIFY on Postgres, the worker's watch of SQLite's
  ``PRAGMA data_version`` on SQLite.

Prints p50, p90, p99 and max (ms) per mode; ``--json`` writes ``{"db", "samples", "gap_ms",
"poll_interval_s", "inprocess": {...}, "crossprocess": {...}}`` with ``samples``, ``p50_ms``,
``p90_ms``, ``p99_ms``, ``max_ms`` and ``min_ms`` per mode. ``main`` returns the same dict."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.drain import ROOT, fresh_database

JOB = "bench-stamp"
STAMPS_ENV = "BENCH_LATENCY_STAMPS"  # set in the worker process: the file its stamp bodies append to
GAP_S = (0.02, 0.08)
SAMPLE_TIMEOUT_S = 10.0
WARMUP_TIMEOUT_S = 60.0  # the first run also waits for a worker process to start
MODES = ("inprocess", "crossprocess")
LABELS = {"inprocess": "in-process", "crossprocess": "cross-process"}

_started: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()


def _stamp_queue() -> queue.SimpleQueue[tuple[int, float]]:
    """The queue of ``bench.latency``, where the worker finds ``stamp``: under ``python -m
    bench.latency`` this module is ``__main__``, a second copy with a queue of its own."""
    started: queue.SimpleQueue[tuple[int, float]] = importlib.import_module("bench.latency")._started
    return started


def stamp(ctx: Any) -> None:
    """The measured job: its first act records when its body started."""
    wall, mono = time.time(), time.perf_counter()
    path = os.environ.get(STAMPS_ENV)
    if path:
        with open(path, "a") as out:
            out.write(f"{ctx.run_id} {wall!r}\n")
    else:
        _started.put((ctx.run_id, mono))


def _prepared(url: str) -> Any:
    """A Runtime on ``url`` with default settings, its schema up to date and the stamp job created."""
    from lexyjobs import registry
    from lexyjobs.config import load_settings
    from lexyjobs.runtime import Runtime

    lj = Runtime(load_settings({"database_url": url, "jobs_file": None}, environ={}))
    lj.prepare()
    registry.create_job(lj.db, JOB, {"kind": "python", "func": "bench.latency:stamp"})  # job defaults too
    return lj


def pickup_latencies(enqueue: Callable[[], int], started_at: Callable[[int, float], float],
                     clock: Callable[[], float], samples: int, rng: random.Random) -> list[float]:
    """Latencies (ms) of ``samples`` runs enqueued one at a time to an idle worker, after a
    warm-up run. ``started_at(run_id, timeout)`` returns when that run's body started, on ``clock``."""
    latencies = []
    for i in range(-1, samples):
        time.sleep(rng.uniform(*GAP_S))
        before = clock()
        run_id = enqueue()  # the body may start before this returns: the wake-up fires on commit
        began = started_at(run_id, WARMUP_TIMEOUT_S if i < 0 else SAMPLE_TIMEOUT_S)
        if i >= 0:
            latencies.append((began - before) * 1000)
    return latencies


def measure_inprocess(url: str, samples: int, rng: random.Random) -> list[float]:
    """Pickup latencies with a ``Worker`` in this process."""
    from lexyjobs import runs
    from lexyjobs.registry import JobCatalog
    from lexyjobs.worker import Worker

    lj = _prepared(url)
    worker = Worker(lj.db, lj.settings, JobCatalog(lj.db), name="bench-latency")
    worker.start()
    started = _stamp_queue()

    def started_at(run_id: int, timeout: float) -> float:
        try:
            got, at = started.get(timeout=timeout)
        except queue.Empty:
            raise SystemExit(f"run {run_id} did not start within {timeout} s") from None
        if got != run_id:
            raise SystemExit(f"expected run {run_id} to start, got run {got}")
        return at

    try:
        return pickup_latencies(lambda: runs.enqueue(lj.db, JOB), started_at, time.perf_counter, samples, rng)
    finally:
        worker.stop(grace=5)
        lj.db.dispose()


@contextmanager
def worker_process(url: str, stamps: Path) -> Iterator[Callable[[], str]]:
    """A ``python -m lexyjobs worker`` child on ``url`` with default settings, its stamp bodies
    appending to ``stamps``; yields a function returning the tail of its output. SIGTERM after."""
    with tempfile.TemporaryDirectory(prefix="lexyjobs-latency-") as folder:
        jobs_file, output = Path(folder) / "jobs.toml", Path(folder) / "worker.log"
        jobs_file.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
        env.update(LEXYJOBS_DATABASE_URL=url, LEXYJOBS_JOBS_FILE=str(jobs_file), PYTHONPATH=str(ROOT),
                   **{STAMPS_ENV: str(stamps)})
        with output.open("wb") as sink:
            child = subprocess.Popen([sys.executable, "-m", "lexyjobs", "worker"], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield lambda: output.read_text(errors="replace")[-3000:]
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


class StampFile:
    """Reads the ``<run id> <time>`` lines the worker process appends to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()
        self._offset = 0
        self._seen: dict[int, float] = {}

    def started_at(self, run_id: int, timeout: float, problem: Callable[[], str]) -> float:
        deadline = time.monotonic() + timeout
        while run_id not in self._seen:
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run_id} did not start within {timeout} s; worker output:\n{problem()}")
            time.sleep(0.001)
            self._read()
        return self._seen.pop(run_id)

    def _read(self) -> None:
        with self.path.open("rb") as source:
            source.seek(self._offset)
            chunk = source.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            run_id, at = line.split()
            self._seen[int(run_id)] = float(at)


def measure_crossprocess(url: str, samples: int, rng: random.Random) -> list[float]:
    """Pickup latencies with the worker in a child process; this process enqueues."""
    from lexyjobs import runs

    lj = _prepared(url)
    with tempfile.TemporaryDirectory(prefix="lexyjobs-stamps-") as folder:
        stamps = StampFile(Path(folder) / "stamps.txt")
        try:
            with worker_process(url, stamps.path) as output:
                return pickup_latencies(lambda: runs.enqueue(lj.db, JOB),
                                        lambda run_id, timeout: stamps.started_at(run_id, timeout, output),
                                        time.time, samples, rng)
        finally:
            lj.db.dispose()


def summary(latencies: list[float]) -> dict[str, float | int]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"samples": len(latencies), "p50_ms": statistics.median(latencies), "p90_ms": cuts[89],
            "p99_ms": cuts[98], "max_ms": max(latencies), "min_ms": min(latencies)}


def render(report: dict[str, Any]) -> str:
    lines = [f"{'mode':<14} {'samples':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for mode in MODES:
        if mode in report:
            f = report[mode]
            lines.append(f"{LABELS[mode]:<14} {f['samples']:>7} {f['p50_ms']:>8.1f} {f['p90_ms']:>8.1f} "
                         f"{f['p99_ms']:>8.1f} {f['max_ms']:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2")

    from lexyjobs.config import Settings

    report: dict[str, Any] = {"db": args.db, "samples": args.samples, "gap_ms": [g * 1000 for g in GAP_S],
                              "poll_interval_s": Settings.poll_interval}
    print(f"pickup latency on {args.db}: {args.samples} runs per mode, each {GAP_S[0] * 1000:.0f}–"
          f"{GAP_S[1] * 1000:.0f} ms after the previous one started; poll interval {Settings.poll_interval} s",
          flush=True)
    rng = random.Random(6)
    measures = {"inprocess": measure_inprocess, "crossprocess": measure_crossprocess}
    for mode in MODES if args.mode == "both" else (args.mode,):
        with fresh_database(args.db, args.pg_url) as url:
            report[mode] = summary(measures[mode](url, args.samples, rng))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
