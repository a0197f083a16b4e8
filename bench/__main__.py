"""Every benchmark back to back, lexyjobs and its peers, written up in docs/benchmarks.md.

    python -m bench all [--quick] [--out docs/benchmarks.md] [--raw docs/benchmarks-raw.txt] [--pg-url URL]

Each benchmark runs in its own interpreter (``python -m bench.<name> ... --json FILE``), one
after the other on this machine, the same database server and disk: lexyjobs' queue (drain:
enqueue and processing, at 4 threads and 1, on SQLite, SQLite with ``synchronous=FULL`` and
Postgres; then 1, 2 and 4 worker processes on Postgres; flow control: 100 concurrency keys and
a shared rate limit, on SQLite and Postgres), the peers (huey, pgqueuer,
procrastinate), pickup latency, cron lateness, the panel at 1,000,000 runs, start-up and what a
python job's ``isolation = "process"`` costs. Their output goes to the raw file; the figures to
the report, with ratios to the peers and the targets of issue 18. ``--quick`` uses tiny numbers
(a smoke run: the report says so)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("SQLAlchemy", "psycopg", "Flask", "waitress", "APScheduler", "huey", "pgqueuer", "procrastinate", "asyncpg")


@dataclass
class Step:
    """One benchmark run: ``python -m bench.<module> <args> --json FILE``."""

    key: str
    module: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


def steps(quick: bool) -> list[Step]:
    runs, repeat = ("60", "1") if quick else ("3000", "3")
    drains = [Step(f"drain {db} {threads}t", "drain", ["--db", db.split()[0], "--runs", runs, "--repeat", repeat,
                                                     "--threads", threads],
                   {"LEXYJOBS_SQLITE_SYNCHRONOUS": "FULL"} if db == "sqlite FULL" else {})
              for db in ("sqlite", "sqlite FULL", "postgres") for threads in ("4", "1")]
    scaling = [Step(f"scaling {n}p", "drain", ["--db", "postgres", "--runs", "40" if quick else "6000",
                                               "--repeat", repeat, "--processes", n]) for n in ("1", "2", "4")]
    flows = [Step(f"flow {db}", "flow", ["--db", db, "--runs", runs, "--repeat", repeat]) for db in ("sqlite", "postgres")]
    return [
        *drains, *scaling, *flows,
        Step("peers", "peers", ["--peer", "all", "--repeat", repeat, "--runs", "40" if quick else "3000",
                                "--samples", "5" if quick else "100"]),
        *(Step(f"latency {db}", "latency", ["--db", db, "--samples", "5" if quick else "200"])
          for db in ("sqlite", "postgres")),
        *(Step(f"lateness {db}", "lateness", ["--db", db, "--fires", "3" if quick else "120"])
          for db in ("sqlite", "postgres")),
        *(Step(f"panel {db}", "panel", ["--db", db, "--runs", "2000" if quick else "1000000",
                                        "--jobs", "10" if quick else "100", "--requests", "3" if quick else "20"])
          for db in ("sqlite", "postgres")),
        Step("startup", "startup", ["--db", "sqlite", "--repeat", repeat, "--idle", "1" if quick else "5",
                                    "--enqueues", "3" if quick else "20"]),
        Step("isolation", "isolation", ["--repeat", "3" if quick else "20"]),
        Step("embedding", "embedding", ["--repeat", "3" if quick else "20", "--calls", "20" if quick else "500"]),
    ]


def run_steps(todo: list[Step], pg_url: str, raw: Callable[[str], None]) -> dict[str, Any]:
    """Run each step, its output into ``raw``; its JSON figures by key (a failed step: its error)."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lexyjobs-bench-all-") as folder:
        for step in todo:
            out = Path(folder) / f"{len(found)}.json"
            command = [sys.executable, "-m", f"bench.{step.module}", *step.args, "--json", str(out)]
            env = {**os.environ, "LEXYJOBS_TEST_POSTGRES_URL": pg_url, "PYTHONPATH": str(ROOT), **step.env}
            raw(f"\n=== {step.key}: {' '.join(command[1:-2])}"
                + "".join(f" ({name}={value})" for name, value in step.env.items()))
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            raw(done.stdout.rstrip() + ("\n" + done.stderr.rstrip() if done.returncode else ""))
            raw(f"--- {time.perf_counter() - started:.0f} s, exit {done.returncode}")
            found[step.key] = json.loads(out.read_text()) if done.returncode == 0 and out.exists() \
                else {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return found


# ---------------------------------------------------------------- the report


def machine(pg_url: str) -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0") if Path("/proc/meminfo").exists() else "0"
    return {"cpu": f"{os.cpu_count()} × {cpu}", "memory": f"{int(memory) / 1024 / 1024:.0f} GiB",
            "os": platform.platform(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "postgres": _postgres_version(pg_url)}


def _postgres_version(pg_url: str) -> str:
    try:
        import psycopg
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except Exception as exc:  # the report says so instead of failing
        return f"unreachable ({type(exc).__name__})"


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def spread(figures: dict[str, Any] | None, unit: str = "") -> str:
    """``median (min–max)`` of a ``{"median", "min", "max"}`` figure."""
    if not figures or "median" not in figures:
        return "–"
    return f"{_fmt(figures['median'], unit)} ({_fmt(figures['min'])}–{_fmt(figures['max'])})"


def median(figures: dict[str, Any] | None) -> float | None:
    return figures.get("median") if isinstance(figures, dict) else None


def ratio(ours: float | None, theirs: float | None) -> str:
    return "–" if not ours or not theirs else f"{ours / theirs:.2f}×"


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, ratio or figure, met) for every target of issue 18 (which raised issue
    6's), and the earlier ones it keeps."""
    def drain(key: str, figure: str = "processing") -> float | None:
        return median(r.get(key, {}).get(figure))

    def peer(name: str, figure: str) -> float | None:
        return median(r.get("peers", {}).get(name, {}).get(figure))

    def lat(db: str, mode: str, figure: str) -> float | None:
        return r.get(f"latency {db}", {}).get(mode, {}).get(figure)

    def check(value: float | None, good: Callable[[float], bool]) -> bool | None:
        return None if value is None else good(value)

    huey, pgq, proc = peer("huey", "processing"), peer("pgqueuer", "processing"), peer("procrastinate", "processing")
    sqlite, pg = drain("drain sqlite 4t"), drain("drain postgres 4t")
    sqlite_enqueue, huey_enqueue = drain("drain sqlite 4t", "enqueue_single"), peer("huey", "enqueue_single")
    one, four = (median(r.get(f"scaling {n}p", {}).get("start_to_finish")) for n in (1, 4))
    panel_worst = {db: max((p.get("median_ms", 0) for name, p in r.get(f"panel {db}", {}).get("pages", {}).items()
                            if "poll" not in name), default=None) for db in ("sqlite", "postgres")}
    lateness = {db: r.get(f"lateness {db}", {}).get("p99_ms") for db in ("sqlite", "postgres")}
    rss = median(r.get("startup", {}).get("first_start", {}).get("rss_mb"))
    cli = r.get("startup", {}).get("cli", {})
    enqueue, imported = median(cli.get("cli_enqueue_ms")), median(cli.get("import_ms"))
    rows = [
        ("SQLite processing ≥ 3× huey", f"{_fmt(sqlite)} vs {_fmt(huey)} runs/s", ratio(sqlite, huey),
         check(sqlite and huey and sqlite / huey, lambda x: x >= 3)),
        ("SQLite enqueue, one call per run ≥ 1× huey", f"{_fmt(sqlite_enqueue)} vs {_fmt(huey_enqueue)} /s",
         ratio(sqlite_enqueue, huey_enqueue), check(sqlite_enqueue and huey_enqueue and sqlite_enqueue / huey_enqueue,
                                                    lambda x: x >= 1)),
        ("Postgres processing ≥ 1.5× pgqueuer", f"{_fmt(pg)} vs {_fmt(pgq)} runs/s", ratio(pg, pgq),
         check(pg and pgq and pg / pgq, lambda x: x >= 1.5)),
        ("Postgres: 4 worker processes faster than 1", f"{_fmt(four)} vs {_fmt(one)} runs/s", ratio(four, one),
         check(four and one and four / one, lambda x: x > 1)),
        ("Postgres processing ≥ 10× procrastinate", f"{_fmt(pg)} vs {_fmt(proc)} runs/s", ratio(pg, proc),
         check(pg and proc and pg / proc, lambda x: x >= 10)),
        ("in-process pickup p50 ≤ 2 ms (SQLite / Postgres)",
         f"{_fmt(lat('sqlite', 'inprocess', 'p50_ms'))} / {_fmt(lat('postgres', 'inprocess', 'p50_ms'))} ms", "",
         check(max(lat('sqlite', 'inprocess', 'p50_ms') or 1e9, lat('postgres', 'inprocess', 'p50_ms') or 1e9),
               lambda x: x <= 2)),
        ("Postgres cross-process pickup p50 ≤ 5 ms, p99 ≤ 15 ms",
         f"{_fmt(lat('postgres', 'crossprocess', 'p50_ms'))} / {_fmt(lat('postgres', 'crossprocess', 'p99_ms'))} ms",
         "", check(lat('postgres', 'crossprocess', 'p99_ms'),
                   lambda x: x <= 15 and (lat('postgres', 'crossprocess', 'p50_ms') or 1e9) <= 5)),
        ("SQLite cross-process pickup p99 ≤ 120 ms, max < 1 s",
         f"{_fmt(lat('sqlite', 'crossprocess', 'p99_ms'))} / {_fmt(lat('sqlite', 'crossprocess', 'max_ms'))} ms", "",
         check(lat('sqlite', 'crossprocess', 'p99_ms'),
               lambda x: x <= 120 and (lat('sqlite', 'crossprocess', 'max_ms') or 1e9) < 1000)),
        ("cron lateness p99 ≤ 50 ms (SQLite / Postgres)",
         f"{_fmt(lateness['sqlite'])} / {_fmt(lateness['postgres'])} ms", "",
         check(max(lateness['sqlite'] or 1e9, lateness['postgres'] or 1e9), lambda x: x <= 50)),
        ("every panel page ≤ 50 ms at 1M runs, the timeline included (slowest page, SQLite / Postgres)",
         f"{_fmt(panel_worst['sqlite'])} / {_fmt(panel_worst['postgres'])} ms", "",
         check(max(panel_worst['sqlite'] or 1e9, panel_worst['postgres'] or 1e9), lambda x: x <= 50)),
        ("idle RSS ≤ 80 MB", f"{_fmt(rss)} MB", "", check(rss, lambda x: x <= 80)),
        ("CLI enqueue ≤ 250 ms (`lexyjobs run NAME`, SQLite)", f"{_fmt(enqueue)} ms", "",
         check(enqueue, lambda x: x <= 250)),
        ("import lexyjobs ≤ 150 ms", f"{_fmt(imported)} ms", "", check(imported, lambda x: x <= 150)),
    ]
    return rows


def report(r: dict[str, Any], *, quick: bool, took: float, pg_url: str, raw_name: str) -> str:
    lines = ["# Benchmarks", "",
             f"Written by `python -m bench all{' --quick' if quick else ''}` on "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {took / 60:.0f} min; raw output in "
             f"[{raw_name}]({raw_name})." + (" **Quick run: tiny numbers, not figures to quote.**" if quick else ""),
             "Every figure is the median of the repetitions with min–max in brackets, unless it says p50/p99. "
             "The machine ran nothing else of ours meanwhile; expect ±30 % between runs.", "",
             "## Machine and versions", ""]
    lines += [f"- {name}: {value}" for name, value in machine(pg_url).items()]
    lines += ["- packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]
    lines += ["## Targets (issue 18)", "", "| target | measured | ratio | met |", "|---|---|---|---|"]
    lines += [f"| {t} | {m} | {q} | {'yes' if ok else 'no' if ok is False else '–'} |" for t, m, q, ok in targets(r)]
    lines += ["", "## Queue: enqueue and processing (no-op jobs, one process)", "",
              "| system | store | threads | enqueue single | enqueue batch | processing |", "|---|---|---|---|---|---|"]
    for key, figures in r.items():
        if key.startswith("drain ") and "error" not in figures:
            _, db, *rest = key.split(" ")
            store = {"sqlite": "SQLite (WAL, synchronous=NORMAL)", "postgres": "Postgres"}[db] \
                if rest[0] != "FULL" else "SQLite (WAL, synchronous=FULL)"
            lines.append(f"| lexyjobs | {store} | {rest[-1].rstrip('t')} | {spread(figures['enqueue_single'], '/s')} | "
                         f"{spread(figures['enqueue_batch'], '/s')} | {spread(figures['processing'], '/s')} |")
    for name, figures in r.get("peers", {}).items():
        if name != "versions" and isinstance(figures, dict) and "error" not in figures:
            store = "SQLite (WAL, synchronous=FULL)" if name == "huey" else "Postgres"
            lines.append(f"| {name} | {store} | 1 | {spread(figures.get('enqueue_single'), '/s')} | "
                         f"{spread(figures.get('enqueue_batch'), '/s')} | {spread(figures.get('processing'), '/s')} |")
    lines += ["", "## Scaling: worker processes on Postgres (4 threads each)", "",
              "Runs/s from the first run's start to the last run's end (the children's start-up excluded); "
              "from the first run done to the last, the machine's busy share (all cores) and the CPU time per run "
              "of the worker processes and of Postgres (`bench.cpu`).", "",
              "| processes | processing | machine busy | workers' CPU per run | Postgres' CPU per run |",
              "|---|---|---|---|---|"]
    lines += [f"| {key.split()[1].rstrip('p')} | {spread(r[key].get('start_to_finish'), '/s')} | "
              f"{spread(r[key].get('cpu_busy_pct'), '%')} | {spread(r[key].get('worker_cpu_ms'), 'ms')} | "
              f"{spread(r[key].get('postgres_cpu_ms'), 'ms')} |"
              for key in r if key.startswith("scaling ") and "error" not in r[key]]
    lines += flow_section(r)
    lines += ["", "## Idle pickup latency (enqueue → job body starts)", "",
              "| system | store | where the worker runs | p50 | p99 | max |", "|---|---|---|---|---|---|"]
    for db in ("sqlite", "postgres"):
        for mode, words in (("inprocess", "same process"), ("crossprocess", "other process")):
            f = r.get(f"latency {db}", {}).get(mode)
            if f:
                lines.append(f"| lexyjobs | {db} | {words} | {_fmt(f['p50_ms'], 'ms')} | {_fmt(f['p99_ms'], 'ms')} | "
                             f"{_fmt(f['max_ms'], 'ms')} |")
    for name, figures in r.get("peers", {}).items():
        if name != "versions" and isinstance(figures, dict) and "pickup_p50" in figures:
            for suffix, words in (("", "other process"), ("_same_process", "same process")):
                lines.append(f"| {name} | {'sqlite' if name == 'huey' else 'postgres'} | {words} | "
                             f"{spread(figures.get('pickup_p50' + suffix), 'ms')} | "
                             f"{spread(figures.get('pickup_p99' + suffix), 'ms')} | |")
    lines += ["", "## Cron fire lateness (an every-1s job; run created − fire time)", "",
              "| store | fires | p50 | p99 | max |", "|---|---|---|---|---|"]
    for db in ("sqlite", "postgres"):
        f = r.get(f"lateness {db}", {})
        if "p50_ms" in f:
            lines.append(f"| {db} | {f['fires']} | {_fmt(f['p50_ms'], 'ms')} | {_fmt(f['p99_ms'], 'ms')} | "
                         f"{_fmt(f['max_ms'], 'ms')} |")
    lines += ["", "## Panel server time at 1,000,000 runs (median of 20 requests)", "",
              "| page | SQLite | Postgres |", "|---|---|---|"]
    pages = r.get("panel sqlite", {}).get("pages", {})
    for page in pages:
        cells = [_fmt(r.get(f"panel {db}", {}).get("pages", {}).get(page, {}).get("median_ms"), "ms")
                 for db in ("sqlite", "postgres")]
        lines.append(f"| {page} | {cells[0]} | {cells[1]} |")
    startup = r.get("startup", {})
    lines += ["", "## Start-up and idle memory (`python app.py`, SQLite)", "",
              "| start | to a 200 on /healthz | idle RSS | idle CPU | SIGTERM to exit |", "|---|---|---|---|---|"]
    for name in ("first_start", "restart"):
        f = startup.get(name)
        if f:
            lines.append(f"| {name.replace('_', ' ')} | {spread(f.get('healthz_ms'), 'ms')} | "
                         f"{spread(f.get('rss_mb'), 'MB')} | {spread(f.get('idle_cpu_pct'), '%')} | "
                         f"{spread(f.get('stop_ms'), 'ms')} |")
    cli = startup.get("cli")
    if cli:
        lines += ["", "| one-shot command line (SQLite) | median (min–max) |", "|---|---|"]
        lines += [f"| {words} | {spread(cli.get(figure), 'ms')} |" for figure, words in (
            ("cli_enqueue_ms", "`lexyjobs run NAME`, wall time of the process"),
            ("import_ms", "`import lexyjobs`"), ("import_cli_ms", "`import lexyjobs.cli` (the console script's entry)"))]
    isolation = r.get("isolation", {})
    if "process" in isolation:
        lines += ["", "## python jobs: `isolation = \"process\"` start-up (a no-op function, until its result is back)",
                  "", "| mode | per run |", "|---|---|"]
        lines += [f"| {words} | {spread(isolation.get(mode), 'ms')} |" for mode, words in (
            ("thread", "thread (default)"), ("process", "process: a module importing nothing heavy"),
            ("process_job_module", "process: a module using `@job` (`from lexyjobs import job`)"))]
    lines += embedding_section(r.get("embedding", {}))
    failed = {key: figures["error"] for key, figures in r.items() if isinstance(figures, dict) and "error" in figures}
    if failed:
        lines += ["", "## Steps that failed", ""] + [f"- {key}: {error}" for key, error in failed.items()]
    analysis = Path(__file__).with_name("analysis.md")  # hand-written: what the profiles showed
    return "\n".join(lines) + "\n" + ("\n" + analysis.read_text() if analysis.exists() else "")


def flow_section(r: dict[str, Any]) -> list[str]:
    """bench.flow: no-op runs over 100 concurrency keys (2 at a time each) and a shared rate limit."""
    found = {db: r[f"flow {db}"] for db in ("sqlite", "postgres") if "processing" in r.get(f"flow {db}", {})}
    if not found:
        return []
    lines = ["", "## Flow control: 100 concurrency keys and a shared rate limit (no-op runs, one process, 4 threads)",
             "", "| store | processing | most of one key at once | most starts in one period | limits held |",
             "|---|---|---|---|---|"]
    return lines + [f"| {db} | {spread(f['processing'], '/s')} | {f['most_per_key']} (limit {f['key_limit']}) | "
                    f"{f['most_in_window']} (limit {f['rate']}) | {'yes' if f['limits_held'] else '**no**'} |"
                    for db, f in found.items()]


def embedding_section(figures: dict[str, Any]) -> list[str]:
    """``import lexyjobs`` and one ``lexyjobs.enqueue()`` (bench.embedding)."""
    imported = figures.get("import")
    if not imported:
        return []
    lines = ["", "## Inside a host app: `import lexyjobs` and one `lexyjobs.enqueue()`", "",
             f"`import lexyjobs` in a fresh interpreter: {_fmt(imported['median_ms'], 'ms')} "
             f"({_fmt(imported['min_ms'])}–{_fmt(imported['max_ms'])}, {imported['repeat']} runs); threads alive "
             f"after it: {', '.join(map(str, imported['threads']))}; heavy packages imported: "
             f"{', '.join(imported['heavy_modules']) or 'none'}.", "",
             "| store | call | p50 | p99 | mean |", "|---|---|---|---|---|"]
    for db, found in figures.get("enqueue", {}).items():
        if "skipped" in found:
            lines.append(f"| {db} | skipped: {found['skipped']} | | | |")
            continue
        for mode, words in (("alone", "`enqueue(job)` (own transaction)"),
                            ("in_session", "`enqueue(job, session=s)` + `s.commit()`")):
            f = found[mode]
            lines.append(f"| {db} | {words} | {_fmt(f['p50_ms'], 'ms')} | {_fmt(f['p99_ms'], 'ms')} | "
                         f"{_fmt(f['mean_ms'], 'ms')} |")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("all",))
    parser.add_argument("--quick", action="store_true", help="tiny numbers: checks the harness, not the speed")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--raw", type=Path, default=ROOT / "docs" / "benchmarks-raw.txt")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with args.raw.open("w") as raw_file:
        def raw(text: str) -> None:
            print(text, flush=True)
            raw_file.write(text + "\n")
            raw_file.flush()
        results = run_steps(steps(args.quick), args.pg_url, raw)
    args.out.write_text(report(results, quick=args.quick, took=time.perf_counter() - started, pg_url=args.pg_url,
                               raw_name=os.path.relpath(args.raw, args.out.parent)))
    print(f"wrote {args.out} and {args.raw}")
    return results


if __name__ == "__main__":
    main()
