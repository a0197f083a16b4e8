"""Peer benchmark: huey, pgqueuer and procrastinate measured the way issue 6 measures lexyjobs.

    python -m bench.peers [--peer huey|pgqueuer|procrastinate|all] [--runs 3000] [--repeat 3]
                          [--samples 100] [--gap 0.02-0.08] [--batch 500] [--pg-url URL] [--json FILE]

Needs the peers (``pip install -r bench/requirements.txt``). huey runs on a temp SQLite file;
pgqueuer and procrastinate on Postgres (``--pg-url``, else ``LEXYJOBS_TEST_POSTGRES_URL``), each
repetition in a fresh schema that is dropped afterwards. Every peer keeps its defaults (the
modules in ``bench/peer_jobs/`` say which ones matter) and commits durably; a worker process
does what the peer's worker command does, INFO logging included (to a temp file). Each repetition:

* enqueue, one call per job: ``--runs`` no-op jobs enqueued one call each, no worker running;
* enqueue, batch: the same through the peer's batch API in calls of ``--batch`` jobs (huey has none);
* processing: with those ``--runs`` jobs queued, ONE worker process starts (the peer's normal
  deployment); timed from its ready report (imports done, connected, just before its worker
  loop) until the peer's store has no job left to do, polled every 5 ms;
* idle pickup: a running, idle worker; ``--samples`` jobs enqueued one at a time, each after a
  random gap drawn from ``--gap`` seconds (20–80 ms, as ``bench/latency.py`` waits for lexyjobs)
  once the previous one has started, after one uncounted warm-up job; latency = the job
  body's start − the moment before the enqueue call (``time.perf_counter``, one clock for all
  processes on Linux); p50 and p99. Measured with the worker in its own process (enqueue from
  this one) and with the worker inside this process (huey: its consumer's threads; the async
  peers: their worker in a thread's event loop).

Each figure is the median and min–max over the repetitions. ``--json`` writes
``{peer: {figure: {"median", "min", "max", "unit"}}, "versions": {package: version}}``; a figure
a peer does not have (huey's batch enqueue) is left out. ``main`` returns the same dict."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bench.peer_jobs import REPORT_PORT_ENV, Peer

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("huey", "pgqueuer", "procrastinate")
PACKAGES = ("huey", "pgqueuer", "procrastinate", "asyncpg", "psycopg", "psycopg-pool")
FIGURES = {  # figure -> (label in the table, unit)
    "enqueue_single": ("enqueue, one call per job", "runs/s"),
    "enqueue_batch": ("enqueue, batch API", "runs/s"),
    "processing": ("processing, 1 worker process", "runs/s"),
    "pickup_p50": ("idle pickup p50, other process", "ms"),
    "pickup_p99": ("idle pickup p99, other process", "ms"),
    "pickup_p50_same_process": ("idle pickup p50, same process", "ms"),
    "pickup_p99_same_process": ("idle pickup p99, same process", "ms"),
}
POLL_S = 0.005
SAMPLE_TIMEOUT_S = 30.0  # huey's idle poll backs off to 10 s at most


def open_peer(name: str, pg_url: str | None) -> Peer:
    """The peer ``name`` on a fresh store of its own (``close`` it)."""
    module = importlib.import_module(f"bench.peer_jobs.{name}_jobs")
    peer: Peer = module.Peer(pg_url)
    return peer


@contextmanager
def opened(name: str, pg_url: str | None) -> Iterator[Peer]:
    peer = open_peer(name, pg_url)
    try:
        yield peer
    finally:
        peer.close()


@contextmanager
def worker_process(peer: Peer, listener: Listener) -> Iterator[float]:
    """Run ``python -m bench.peer_jobs`` for ``peer``; yield the perf_counter of its ready report."""
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen([sys.executable, "-m", "bench.peer_jobs", peer.name, peer.store],
                                cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield _ready_at(proc, listener, output)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # every peer's graceful stop
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _ready_at(proc: subprocess.Popen[bytes], listener: Listener, output: IO[bytes]) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return listener.reported(f"ready-{proc.pid}", 0.5)
        except TimeoutError:
            pass
    proc.kill()
    proc.wait()
    output.seek(0)
    raise RuntimeError(f"the worker did not start:\n{output.read().decode(errors='replace')[-3000:]}")


class Listener:
    """The UDP socket on 127.0.0.1 that workers and ``stamp`` job bodies report times to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        os.environ[REPORT_PORT_ENV] = str(self.sock.getsockname()[1])  # inherited by workers

    def reported(self, key: str, timeout: float) -> float:
        """The time reported for ``key`` (datagrams for other keys are dropped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got, at = self.sock.recv(256).decode().split()
            except TimeoutError:  # the socket timed out
                break
            if got == key:
                return float(at)
        raise TimeoutError(f"nothing reported for {key} within {timeout} s")

    def close(self) -> None:
        self.sock.close()
        os.environ.pop(REPORT_PORT_ENV, None)


def time_enqueue_single(peer: Peer, count: int) -> float:
    """Enqueue ``count`` no-op jobs, one call each; runs/s."""
    started = time.perf_counter()
    for _ in range(count):
        peer.enqueue_one()
    return count / (time.perf_counter() - started)


def time_enqueue_batch(peer: Peer, count: int, batch: int) -> float:
    """Enqueue ``count`` no-op jobs in calls of ``batch``; runs/s."""
    started = time.perf_counter()
    for first in range(0, count, batch):
        peer.enqueue_many(min(batch, count - first))
    return count / (time.perf_counter() - started)


def time_processing(peer: Peer, count: int, listener: Listener) -> float:
    """Start one worker process on the ``count`` queued jobs; runs/s until none is left to do."""
    if peer.pending() != count:
        raise RuntimeError(f"{peer.name}: {peer.pending()} jobs queued, expected {count}")
    with worker_process(peer, listener) as ready_at:
        deadline = time.monotonic() + max(120.0, count / 5)
        while peer.pending():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{peer.name}: {peer.pending()} of {count} jobs still pending")
            time.sleep(POLL_S)
        done_at = time.perf_counter()
    return count / (done_at - ready_at)


def pickup_latencies(peer: Peer, samples: int, gap: tuple[float, float], rng: random.Random,
                     listener: Listener, tag: str) -> list[float]:
    """Latencies (ms) of ``samples`` jobs enqueued one at a time to an idle, running worker."""
    latencies = []
    for i in range(-1, samples):  # -1: a warm-up job, not counted
        time.sleep(rng.uniform(*gap))
        key = f"{tag}-{i}"
        enqueued_at = time.perf_counter()
        peer.enqueue_stamp(key)
        started_at = listener.reported(key, SAMPLE_TIMEOUT_S)
        if i >= 0:
            latencies.append((started_at - enqueued_at) * 1000)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def one_repetition(name: str, args: argparse.Namespace, rep: int, rng: random.Random,
                   listener: Listener) -> dict[str, float]:
    """Every figure of peer ``name`` once, each on a fresh store."""
    figures: dict[str, float] = {}
    with opened(name, args.pg_url) as peer:
        figures["enqueue_single"] = time_enqueue_single(peer, args.runs)
        figures["processing"] = time_processing(peer, args.runs, listener)
    with opened(name, args.pg_url) as peer:
        if peer.has_batch:
            figures["enqueue_batch"] = time_enqueue_batch(peer, args.runs, args.batch)
    with opened(name, args.pg_url) as peer:
        with worker_process(peer, listener):
            other = pickup_latencies(peer, args.samples, args.gap, rng, listener, f"{rep}-other")
        stop = peer.start_worker_here()
        try:
            same = pickup_latencies(peer, args.samples, args.gap, rng, listener, f"{rep}-same")
        finally:
            stop()
    figures["pickup_p50"], figures["pickup_p99"] = statistics.median(other), p99(other)
    figures["pickup_p50_same_process"], figures["pickup_p99_same_process"] = statistics.median(same), p99(same)
    return figures


def summarize(values: list[float], unit: str) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "unit": unit}


def versions(pg_url: str | None) -> dict[str, str]:
    """Versions of the peers, their drivers, SQLite and (when reachable) the Postgres server."""
    found = {"sqlite": sqlite3.sqlite_version}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    if pg_url:
        import psycopg

        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            found["postgres"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    return found


def render(report: dict[str, Any], deployments: dict[str, str]) -> str:
    """The plain-text table of ``report``."""
    lines = [f"{'peer':<14} {'figure':<32} {'median':>9} {'min–max':>17}  unit"]
    for name, figures in report.items():
        if name == "versions":
            continue
        for figure, (label, unit) in FIGURES.items():
            if figure not in figures:
                lines.append(f"{name:<14} {label:<32} {'n/a':>9}")
                continue
            f = figures[figure]
            digits = 0 if unit == "runs/s" else 1
            span = f"{f['min']:,.{digits}f}–{f['max']:,.{digits}f}"
            lines.append(f"{name:<14} {label:<32} {f['median']:>9,.{digits}f} {span:>17}  {unit}")
    lines.append("")
    lines += [f"{name}: {text}" for name, text in deployments.items()]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    return "\n".join(lines)


def parse_gap(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=(*PEERS, "all"), default="all")
    parser.add_argument("--runs", type=int, default=3000, help="jobs per enqueue / processing figure")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100, help="pickup latency samples per repetition")
    parser.add_argument("--gap", type=parse_gap, default=(0.02, 0.08),
                        help="seconds between samples, LOW-HIGH (default: bench/latency.py's 20-80 ms)")
    parser.add_argument("--batch", type=int, default=500, help="jobs per batch enqueue call")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.samples < 2 or args.runs < 1 or args.repeat < 1:
        parser.error("--samples must be at least 2, --runs and --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = PEERS if args.peer == "all" else (args.peer,)
    if not args.pg_url and set(names) - {"huey"}:
        raise SystemExit("pgqueuer and procrastinate need --pg-url or LEXYJOBS_TEST_POSTGRES_URL")
    rng = random.Random(6)
    listener = Listener()
    report: dict[str, Any] = {}
    deployments: dict[str, str] = {}
    try:
        for name in names:
            started = time.monotonic()
            reps = [one_repetition(name, args, rep, rng, listener) for rep in range(args.repeat)]
            report[name] = {figure: summarize([rep[figure] for rep in reps], unit)
                            for figure, (_, unit) in FIGURES.items() if figure in reps[0]}
            deployments[name] = importlib.import_module(f"bench.peer_jobs.{name}_jobs").Peer.deployment
            print(f"{name}: {args.repeat} repetitions in {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        listener.close()
    report["versions"] = versions(args.pg_url if set(names) - {"huey"} else None)
    print(render(report, deployments))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
