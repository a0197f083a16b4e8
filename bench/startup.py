"""Start-up benchmark: how soon does ``python app.py`` answer /healthz, and what does it hold idle?

    python -m bench.startup [--db sqlite|postgres] [--repeat 3] [--idle 5] [--pg-url URL] [--json FILE]

Each repetition uses a fresh database (a temp SQLite file in a temp data dir, or a fresh schema
in the Postgres database of ``--pg-url`` / ``LEXYJOBS_TEST_POSTGRES_URL``, dropped afterwards; see
``bench.drain``) and starts the real server of the README's quickstart twice: ``python app.py``
(waitress, scheduler, 4 worker threads; every other setting at its default, ``LEXYJOBS_*``
variables of the caller ignored) on a free loopback port (``LEXYJOBS_PORT``), with
``LEXYJOBS_ADMIN_PASSWORD`` set and an empty jobs file.

* first start: on the empty database (migrations run, user admin and the secret key are created);
* restart: the same database and data dir again (what a deploy or a crash costs).

Per start: the time from spawning the process to its first ``200`` on ``/healthz`` (polled every
10 ms); then it idles ``--idle`` seconds and we read its resident memory, children included
(psutil when installed, else VmRSS in /proc), and the CPU it used while idle; then SIGTERM, after
which it must exit with code 0 (within 20 s; the time it took is reported). Prints the median and
min–max over the repetitions; ``--json`` writes ``{"db", "repeat", "idle_s", "rss_source",
"first_start": {figure: {"median", "min", "max"}}, "restart": {...}}`` with the figures
``healthz_ms``, ``rss_mb``, ``idle_cpu_pct`` and ``stop_ms``. ``main`` returns the same dict.

Then the one-shot command line (issue 18), on one more fresh database holding one shell job
(created with ``lexyjobs db upgrade`` and ``lexyjobs jobs add``), ``--enqueues`` times each:

* ``cli_enqueue_ms``: the wall time of the ``lexyjobs run NAME`` console script (a new process
  that enqueues one run and exits 0);
* ``import_ms``: ``import lexyjobs`` in a fresh interpreter (perf_counter around the import);
* ``import_cli_ms``: ``import lexyjobs.cli``, the console script's entry point, likewise.

Those processes run with Python's bytecode cache on (after one run not counted that writes it),
as an installed package has it, whatever ``PYTHONDONTWRITEBYTECODE`` says. The JSON gets
``"cli": {figure: {"median", "min", "max"}}``."""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drain import ROOT, fresh_database

ADMIN_PASSWORD = "bench-startup-password"
POLL_S = 0.01
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
STARTS = ("first_start", "restart")
FIGURES = {"healthz_ms": "spawn to first 200 on /healthz, ms", "rss_mb": "idle RSS, MB",
           "idle_cpu_pct": "CPU while idle, % of one core", "stop_ms": "SIGTERM to exit, ms"}
CLI_FIGURES = {"cli_enqueue_ms": "`lexyjobs run NAME`, wall ms", "import_ms": "import lexyjobs, ms",
               "import_cli_ms": "import lexyjobs.cli, ms"}
CLI_JOB = '[jobs.hello]\nkind = "shell"\nargv = ["echo", "hello"]\n'
TIME_IMPORT = "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"

try:
    import psutil
except ImportError:  # not a dependency: /proc is read instead
    psutil = None  # type: ignore[assignment]


@dataclass
class Start:
    healthz_ms: float
    rss_mb: float
    idle_cpu_pct: float
    stop_ms: float


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthz_status(port: int) -> int | None:
    """The status of GET /healthz, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    pids, found = [pid], [pid]
    while found:
        children = []
        for parent in found:
            for task in Path(f"/proc/{parent}/task").glob("*"):
                try:
                    children += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    pass
        pids += children
        found = children
    return pids


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children."""
    if psutil is not None:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    total = 0
    for member in _tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid`` and its children (from /proc)."""
    ticks = 0
    for member in _tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def one_start(url: str, folder: Path, idle: float) -> Start:
    """Start ``python app.py`` on ``url`` with its data in ``folder``, measure it, stop it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_")}
    env.update(LEXYJOBS_DATABASE_URL=url, LEXYJOBS_DATA_DIR=str(folder), LEXYJOBS_HOST="127.0.0.1",
               LEXYJOBS_PORT=str(port), LEXYJOBS_ADMIN_PASSWORD=ADMIN_PASSWORD,
               LEXYJOBS_JOBS_FILE=str(folder / "jobs.toml"), PYTHONUNBUFFERED="1")
    output = folder / "server.log"
    with output.open("ab") as sink:
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                  stdout=sink, stderr=subprocess.STDOUT)
    try:
        while healthz_status(port) != 200:
            if server.poll() is not None or time.perf_counter() - started > START_TIMEOUT_S:
                raise SystemExit(f"the server did not answer 200 on /healthz:\n{output.read_text()[-3000:]}")
            time.sleep(POLL_S)
        healthz_ms = (time.perf_counter() - started) * 1000
        cpu_before = cpu_seconds(server.pid)
        time.sleep(idle)
        idle_cpu_pct = (cpu_seconds(server.pid) - cpu_before) / idle * 100
        rss_mb = rss_bytes(server.pid) / 2**20
        stopping = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=STOP_TIMEOUT_S)
        stop_ms = (time.perf_counter() - stopping) * 1000
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if code != 0:
        raise SystemExit(f"the server exited with {code} after SIGTERM:\n{output.read_text()[-3000:]}")
    return Start(healthz_ms, rss_mb, idle_cpu_pct, stop_ms)


def one_repetition(db: str, pg_url: str | None, idle: float) -> dict[str, Start]:
    """A first start on a fresh database, then a restart on it."""
    with fresh_database(db, pg_url) as url, tempfile.TemporaryDirectory(prefix="lexyjobs-startup-") as name:
        folder = Path(name)
        (folder / "jobs.toml").write_text("")
        return {kind: one_start(url, folder, idle) for kind in STARTS}


def cli_environ(url: str, folder: Path) -> dict[str, str]:
    """The environment of a ``lexyjobs`` command: this checkout's code, its database, bytecode cached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEXYJOBS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(LEXYJOBS_DATABASE_URL=url, LEXYJOBS_DATA_DIR=str(folder), LEXYJOBS_JOBS_FILE="", PYTHONPATH=str(ROOT))
    return env


def lexyjobs_script() -> list[str]:
    """The ``lexyjobs`` console script installed beside this Python (else ``python -m lexyjobs``)."""
    script = Path(sys.executable).parent / "lexyjobs"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lexyjobs"]


def _timed(command: list[str], folder: Path, env: dict[str, str], stdin: str | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, input=stdin, capture_output=True, text=True, timeout=120)
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return took, done.stdout


def cli_figures(db: str, pg_url: str | None, enqueues: int) -> dict[str, list[float]]:
    """``enqueues`` timings of ``lexyjobs run hello`` and of the two imports (see the module doc)."""
    found: dict[str, list[float]] = {figure: [] for figure in CLI_FIGURES}
    with fresh_database(db, pg_url) as url, tempfile.TemporaryDirectory(prefix="lexyjobs-cli-") as name:
        folder = Path(name)
        env = cli_environ(url, folder)
        script = lexyjobs_script()
        _timed([*script, "db", "upgrade"], folder, env)
        _timed([*script, "jobs", "add", "-"], folder, env, stdin=CLI_JOB)
        _timed([*script, "run", "hello"], folder, env)  # not counted: writes the bytecode cache
        for _ in range(enqueues):
            took, out = _timed([*script, "run", "hello"], folder, env)
            if "queued (hello)" not in out:
                raise SystemExit(f"lexyjobs run hello answered {out!r}")
            found["cli_enqueue_ms"].append(took)
            for figure, module in (("import_ms", "lexyjobs"), ("import_cli_ms", "lexyjobs.cli")):
                _, out = _timed([sys.executable, "-c", TIME_IMPORT.format(module=module)], folder, env)
                found[figure].append(float(out))
    return found


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def render(report: dict[str, Any]) -> str:
    lines = [f"{'start':<12} {'figure':<36} {'median':>8} {'min–max':>17}"]
    for kind in STARTS:
        for figure, label in FIGURES.items():
            f = report[kind][figure]
            span = f"{f['min']:.1f}–{f['max']:.1f}"
            lines.append(f"{kind.replace('_', ' '):<12} {label:<36} {f['median']:>8.1f} {span:>17}")
    for figure, label in CLI_FIGURES.items():
        f = report.get("cli", {}).get(figure)
        if f:
            span = f"{f['min']:.1f}–{f['max']:.1f}"
            lines.append(f"{'cli':<12} {label:<36} {f['median']:>8.1f} {span:>17}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading RSS")
    parser.add_argument("--enqueues", type=int, default=10, help="timed `lexyjobs run` commands (0: none)")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.idle <= 0 or args.enqueues < 0:
        parser.error("--repeat must be at least 1, --idle positive and --enqueues 0 or more")

    print(f"startup: python app.py on {args.db}, {args.repeat} repetition(s) of a first start and a restart, "
          f"{args.idle:g} s idle each", flush=True)
    reps = [one_repetition(args.db, args.pg_url, args.idle) for _ in range(args.repeat)]
    report: dict[str, Any] = {"db": args.db, "repeat": args.repeat, "idle_s": args.idle,
                              "rss_source": "psutil" if psutil is not None else "/proc VmRSS"}
    for kind in STARTS:
        report[kind] = {figure: spread([getattr(rep[kind], figure) for rep in reps]) for figure in FIGURES}
    if args.enqueues:
        report["cli"] = {figure: spread(values) for figure, values in
                         cli_figures(args.db, args.pg_url, args.enqueues).items()}
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
