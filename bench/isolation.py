"""What ``isolation = "process"`` costs a python run: a no-op function run in the worker's thread
vs in a child process (lexyjobs.kinds.python_process).

    python -m bench.isolation [--repeat 20] [--json FILE]

Each repetition calls the python kind's ``run`` as the worker does, with a fresh RunContext, and
times it until the result is back: ``thread`` (the default mode), ``process`` (a child that
imports only this small module: the interpreter's start plus lexyjobs' context) and
``process_job_module`` (a child whose job module declares its jobs with ``@job``: ``from lexyjobs
import job``, which imports ``lexyjobs.code_jobs``, not the registry and SQLAlchemy). No database: the figures are the mode's own cost.
Prints the median and min–max in ms; ``--json`` writes ``{"repeat", "thread": {"median", "min",
"max"}, "process": {...}, "process_job_module": {...}}``. ``main`` returns the same dict."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

MODES = {"thread": ("bench.isolation:noop", "thread"), "process": ("bench.isolation:noop", "process"),
         "process_job_module": ("bench.isolation:noop_with_job_decorator", "process")}


def noop() -> None:
    """The job: nothing (this module imports nothing heavy at its top, so the child does not either)."""


def noop_with_job_decorator() -> None:
    """The job of a module that declares its jobs with ``@job``."""
    from lexyjobs import job  # noqa: F401


def time_mode(func: str, isolation: str, repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` runs of ``func`` (after one warm-up run)."""
    from lexyjobs.context import RunContext
    from lexyjobs.kinds import python

    config = {"func": func, **({"isolation": "process", "env_passthrough": []} if isolation == "process" else {})}
    took = []
    for index in range(repeat + 1):
        ctx = RunContext(run_id=index, job_name="bench", params={}, attempt=1, max_attempts=1)
        started = time.perf_counter()
        python.run(ctx, config)
        if index:  # the first one warms the OS's file cache and python's own caches
            took.append((time.perf_counter() - started) * 1000)
    return took


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"repeat": args.repeat}
    for mode, (func, isolation) in MODES.items():
        took = time_mode(func, isolation, args.repeat)
        report[mode] = {"median": statistics.median(took), "min": min(took), "max": max(took)}
        print(f"{mode:>16}: {report[mode]['median']:8.1f} ms per run "
              f"({report[mode]['min']:.1f}–{report[mode]['max']:.1f}, {args.repeat} runs)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
