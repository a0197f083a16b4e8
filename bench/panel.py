"""Panel render-cost benchmark: server time of the panel's pages over a large run history.

    python -m bench.panel --db sqlite|postgres [--jobs 100] [--runs 1000000] [--requests 20]
                          [--pg-url URL] [--json FILE] [--queries] [--keep | --reuse URL]

Fills a fresh database (a temp SQLite file, or a fresh schema in the Postgres database of
``--pg-url`` / ``LEXYJOBS_TEST_POSTGRES_URL``, dropped afterwards) migrated by
``lexyjobs.schema.upgrade``: ``--jobs`` jobs in a few categories (most scheduled, every tenth one
starting a three-step ``depends_on`` chain) and ``--runs`` runs spread over the last 30 days, ids in
creation order — mostly succeeded, some failed (with errors and tracebacks, some retried),
canceled, skipped and blocked (behind a failed pipeline step), the newest handful queued or
running — with params, results, one or two run events each and a few logs. Rows go in with the
raw DBAPI connection (SQLite ``executemany``, Postgres ``COPY``) in batches; Postgres is then
``VACUUM ANALYZE``d, as autovacuum would have done by the time someone looks at a month of runs.

Then it logs in through the real app (``create_app`` and Flask's test client, an admin made with
``accounts.add_user``) and requests each page ``--requests`` times after one warm-up request,
printing the median, p90 and min of the time each request takes (test client included, no
network): the dashboard, jobs, runs (first page; filtered by status=failed; filtered by job; sorted
by duration, by queue time and by status), a
job's page, a run's page, the pipelines page, the queues page, the timeline (24 h, 1 h and 7 d)
and the dashboard's htmx poll when nothing changed (the 204 path). ``--queries`` adds, per page, the SQL statements of one request ordered by the
time they took. ``--keep`` leaves the filled database in place and prints its URL; ``--reuse URL``
measures such a database again without filling it (the schema is upgraded first)."""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bench.drain import fresh_database

DAYS = 30
BATCH = 20_000
PASSWORD = "bench-panel-password"
SECRET_KEY = "bench-panel-secret-key-0123456789abcdef"
CATEGORIES = ("Data Collection", "Metrics", "Reports", "Billing", "Maintenance", "AI Corpus")
# (schedule, relative share of the runs); None = run by hand or through the API only
SCHEDULES: tuple[tuple[str | None, int], ...] = (
    ("every 5m", 12), ("every 15m", 6), ("0 * * * *", 3), ("0 */6 * * *", 1), ("@daily", 1),
    ("30 6 * * 1-5", 1), (None, 1))
RUN_COLUMNS = ("id", "job_name", "status", "priority", "params", "trigger", "created_by", "created_at",
               "scheduled_for", "started_at", "finished_at", "attempt", "max_attempts", "lease", "progress",
               "progress_message", "result", "error", "traceback", "details", "worker", "heartbeat_at",
               "cancel_requested", "pipeline_id", "parent_run_id", "retry_of", "fire_key")
EVENT_COLUMNS = ("id", "run_id", "at", "from_status", "to_status", "attempt", "note")
LOG_COLUMNS = ("run_id", "content", "size")
ERRORS = ("ValueError: row {n} has no date", "TimeoutError: upstream API did not answer within 30s",
          "KeyError: 'customer_id'", "ConnectionError: connection refused by db-{n}.internal:5432")
NOT_RUN_ERRORS = {"blocked": "upstream failed", "canceled": "canceled",
                  "skipped": "missed while the scheduler was down"}
LIMITS = (100, 1000, 5000)
EXIT_0 = '{"exit_code": 0}'
TRACEBACK = ('Traceback (most recent call last):\n  File "jobs/etl.py", line {n}, in run\n    load(batch)\n'
             '  File "jobs/etl.py", line 88, in load\n    raise {error}\n{error}\n')


def noop(ctx: Any) -> None:
    """The jobs' function (never executed: the benchmark starts no worker)."""
    return None


# ---------------------------------------------------------------- the data

def job_definitions(count: int) -> list[tuple[str, dict[str, Any], int]]:
    """(name, definition, share of the runs) of ``count`` jobs. Every tenth job (job-000, job-010…)
    is scheduled and starts a chain: the next two jobs depend on it and on each other."""
    found = []
    for i in range(count):
        spec: dict[str, Any] = {"kind": "python", "func": "bench.panel:noop", "title": f"Bench job {i:03d}",
                                "category": CATEGORIES[(i // 10 + i) % len(CATEGORIES)], "max_concurrency": 0}
        if i % 10 in (1, 2):
            spec["depends_on"] = [f"job-{i - 1:03d}"]
            share = 0  # runs only inside its chain's pipelines
        else:
            schedule, share = SCHEDULES[i % len(SCHEDULES)]
            if i % 10 == 0:
                schedule, share = "0 * * * *", 3
            if schedule is not None:
                spec["schedule"] = schedule
                if i % 4 == 1:
                    spec["timezone"] = "Europe/Berlin"
        if i % 3 == 0:
            spec["params"] = {"day": {"type": "string", "default": "today", "help": "which day to process"},
                              "limit": {"type": "integer", "default": 1000, "min": 1, "max": 100000}}
        found.append((f"job-{i:03d}", spec, share))
    return found


@dataclass
class Rows:
    """Generated rows (tuples in ``*_COLUMNS`` order, times as UTC text) and a few ids worth a look."""

    runs: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    detail_run: int = 0     # a recent failed run with a log (the run detail page)


class _Generator:
    """Builds the runs newest last; ``created_at`` strictly increases with the id."""

    def __init__(self, jobs: list[tuple[str, dict[str, Any], int]], count: int, now: datetime, seed: int,
                 utc_suffix: str) -> None:
        self.rng = random.Random(seed)
        self.count, self.suffix = count, utc_suffix
        self.start = (now - timedelta(days=DAYS)).astimezone(timezone.utc).replace(tzinfo=None)
        self.step = DAYS * 86400.0 / count
        self.chains = {name: [n for n, s, _ in jobs if s.get("depends_on") == [name]] for name, _, _ in jobs}
        self.picks = [(name, spec) for name, spec, share in jobs for _ in range(share)]
        self.rows = Rows()
        self.days: dict[str, str] = {}
        self.recent = max(0, count - min(12, count // 10))  # from this index on: queued or running

    def text(self, at: datetime) -> str:
        return at.isoformat(sep=" ", timespec="microseconds") + self.suffix

    def build(self) -> Rows:
        last_failed: tuple[int, str] | None = None
        while len(self.rows.runs) < self.count:
            name, picked = self.rng.choice(self.picks)
            spec: dict[str, Any] | None = picked  # None: a retry of the run that failed last
            failed_before, last_failed = last_failed, None
            if failed_before is not None and self.rng.random() < 0.3:
                name, spec = failed_before[1], None
            chain = [name] + self._downstream(name)
            pipeline = uuid.UUID(int=self.rng.getrandbits(128)).hex if len(chain) > 1 else None
            parent, upstream_ok = None, True
            for step, job in enumerate(chain[:self.count - len(self.rows.runs)]):
                trigger = ("dependency" if step else "retry" if spec is None
                           else "schedule" if spec.get("schedule") else self.rng.choice(("manual", "api")))
                retry_of = failed_before[0] if trigger == "retry" and failed_before is not None else None
                status = self._run(job, trigger, pipeline, parent, retry_of, upstream_ok)
                parent, upstream_ok = len(self.rows.runs), upstream_ok and status == "succeeded"
                if status == "failed" and pipeline is None:
                    last_failed = (parent, job)
                if status in ("queued", "running", "skipped"):
                    break  # the rest of the pipeline has not been reached (yet)
        return self.rows

    def _downstream(self, name: str) -> list[str]:
        found, todo = [], list(self.chains.get(name, ()))
        while todo:
            found.append(todo.pop(0))
            todo.extend(self.chains.get(found[-1], ()))
        return found

    def _status(self, index: int, upstream_ok: bool) -> str:
        if not upstream_ok:
            return "blocked"
        if index >= self.recent:
            return "running" if index % 3 == 0 else "queued"
        draw = self.rng.random()
        return ("succeeded" if draw < 0.9 else "failed" if draw < 0.96 else "canceled" if draw < 0.985
                else "skipped" if draw < 0.995 else "succeeded")

    def _run(self, job: str, trigger: str, pipeline: str | None, parent: int | None, retry_of: int | None,
             upstream_ok: bool) -> str:
        rng, index, when = self.rng, len(self.rows.runs), self.text
        run_id = index + 1
        status = self._status(index, upstream_ok)
        created = self.start + timedelta(seconds=(index + rng.random() * 0.9) * self.step)
        created_text = when(created)
        started = finished = None  # as text
        attempt, error, trace, result, progress, details, worker = 0, None, None, None, None, None, None
        if status in ("succeeded", "failed", "running") or (status == "canceled" and rng.random() < 0.5):
            attempt = 1 + int(rng.random() * 3) if status == "failed" else 1
            began = created + timedelta(seconds=rng.expovariate(1.25))
            started = when(began)
            worker = f"bench-host:{1000 + index % 7}:t{index % 4}"
            if status != "running":
                finished = when(began + timedelta(seconds=rng.lognormvariate(1.5, 1.0)))
            else:
                progress = float(int(rng.random() * 100))
        elif status != "queued":
            finished = created_text
        if status == "succeeded":
            result, progress, details = f'{{"rows": {int(rng.random() * 50_000)}, "ok": true}}', 100.0, EXIT_0
        elif status != "queued" and status != "running":
            error = NOT_RUN_ERRORS.get(status) or ERRORS[index % len(ERRORS)].format(n=run_id % 9973)
            if status == "failed":
                trace = TRACEBACK.format(n=10 + run_id % 390, error=error)
        params = f'{{"day": "{self._day_before(created_text)}", "limit": {LIMITS[index % 3]}}}'
        fire_key = f"{job}@{created.isoformat()}+00:00" if trigger == "schedule" else None  # created is unique
        self.rows.runs.append((
            run_id, job, status, 0, params, trigger, "bench" if trigger in ("manual", "api") else None, created_text,
            created_text, started, finished, attempt, 3, attempt, progress, None, result, error, trace, details,
            worker, finished or started, False, pipeline, parent, retry_of, fire_key))
        self._events(run_id, status, attempt, created_text, started, finished)
        if status == "running" or (index % 997 == 0 and started is not None) or status == "failed" and index % 50 == 0:
            content = "".join(f"{created:%H:%M:%S} step {n}: processed {n * 100} rows\n" for n in range(40))
            self.rows.logs.append((run_id, content, len(content)))
            if status == "failed":
                self.rows.detail_run = run_id
        return status

    def _day_before(self, created: str) -> str:
        """The day before ``created`` (text), as YYYY-MM-DD: the runs' ``day`` param."""
        day = self.days.get(created[:10])
        if day is None:
            day = self.days[created[:10]] = (datetime.fromisoformat(created[:10]) - timedelta(days=1)).strftime("%Y-%m-%d")
        return day

    def _events(self, run_id: int, status: str, attempt: int, created: str, started: str | None,
                finished: str | None) -> None:
        events = self.rows.events
        if status in ("blocked", "skipped"):
            events.append((len(events) + 1, run_id, created, None, status, 0, "not run"))
            return
        if started is not None:
            events.append((len(events) + 1, run_id, started, "queued", "running", attempt, None))
        if finished is not None:
            events.append((len(events) + 1, run_id, finished, "running" if started else "queued", status, attempt,
                           None))


def generate(jobs: list[tuple[str, dict[str, Any], int]], count: int, now: datetime, *, postgres: bool,
             seed: int = 7) -> Rows:
    """The runs, events and logs for ``jobs`` (deterministic for a given ``seed`` and ``now``)."""
    return _Generator(jobs, count, now, seed, "+00" if postgres else "").build()


def fill(url: str, jobs: int, runs: int) -> Rows:
    """Migrate the database at ``url`` and load the jobs and generated runs into it."""
    from lexyjobs import registry, run_counts, schema
    from lexyjobs.db import Database

    db = Database(url)
    try:
        schema.upgrade(db)
        definitions = job_definitions(jobs)
        for name, spec, _ in definitions:
            registry.create_job(db, name, spec)
        rows = generate(definitions, runs, datetime.now(timezone.utc), postgres=db.is_postgres)
        raw = db.engine.raw_connection()
        try:
            (_copy_postgres if db.is_postgres else _insert_sqlite)(raw, rows)
        finally:
            raw.close()
        with db.write() as session:  # loaded beside lexyjobs' own writes: count them once, as a migration does
            run_counts.recount(session)
        if db.is_postgres:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in ("runs", "run_events"):
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                      f"(SELECT max(id) FROM {table}))"))
                conn.execute(text("VACUUM ANALYZE runs, run_events, run_logs, jobs"))
    finally:
        db.dispose()
    return rows


def _batches(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for first in range(0, len(rows), BATCH):
        yield rows[first:first + BATCH]


def _insert_sqlite(raw: Any, rows: Rows) -> None:
    cursor = raw.cursor()
    cursor.execute("PRAGMA cache_size = -262144")  # 256 MiB while loading: index pages stay in memory
    for table, columns, data in (("runs", RUN_COLUMNS, rows.runs), ("run_events", EVENT_COLUMNS, rows.events),
                                 ("run_logs", LOG_COLUMNS, rows.logs)):
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for batch in _batches(data):
            cursor.execute("BEGIN")
            cursor.executemany(statement, batch)
            cursor.execute("COMMIT")
    cursor.execute("PRAGMA cache_size = -2000")
    cursor.close()


def _copy_postgres(raw: Any, rows: Rows) -> None:
    connection = raw.driver_connection
    with connection.cursor() as cursor:
        for table, columns, data in (("runs", RUN_COLUMNS, rows.runs), ("run_events", EVENT_COLUMNS, rows.events),
                                     ("run_logs", LOG_COLUMNS, rows.logs)):
            for batch in _batches(data):
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                connection.commit()


# ---------------------------------------------------------------- the requests

@dataclass(frozen=True)
class Page:
    name: str
    path: str
    status: int = 200
    htmx: bool = False


def pages(db: Any, rows: Rows | None) -> list[Page]:
    """What is measured; the job and run pages show the busiest job and a recent failed run."""
    from lexyjobs import queries

    with db.read() as session:
        busiest = session.execute(text("SELECT job_name FROM runs WHERE id > (SELECT max(id) - 5000 FROM runs) "
                                       "GROUP BY job_name ORDER BY count(*) DESC, job_name LIMIT 1")).scalar()
        detail = rows.detail_run if rows is not None and rows.detail_run else session.execute(text(
            "SELECT max(l.run_id) FROM run_logs l JOIN runs r ON r.id = l.run_id WHERE r.status = 'failed'")).scalar()
        detail = detail or session.execute(text("SELECT max(id) FROM runs")).scalar()
        stamp = queries.activity_stamp(session)
    return [
        Page("dashboard", "/"),
        Page("jobs", "/jobs"),
        Page("runs", "/runs"),
        Page("runs status=failed", "/runs?status=failed"),
        Page("runs job=busiest", f"/runs?job={busiest}"),
        Page("runs sort=duration", "/runs?sort=duration&dir=desc"),
        Page("runs sort=queue asc", "/runs?sort=queue&dir=asc"),
        Page("runs sort=status", "/runs?sort=status"),
        Page("job detail", f"/jobs/{busiest}"),
        Page("run detail", f"/runs/{detail}"),
        Page("pipelines", "/pipelines"),
        Page("queues", "/queues"),
        Page("timeline", "/timeline"),
        Page("timeline window=1h", "/timeline?window=1h"),
        Page("timeline window=7d", "/timeline?window=7d"),
        Page("dashboard poll (unchanged)", f"/?stamp={stamp}", status=204, htmx=True),
    ]


@dataclass(frozen=True)
class Timing:
    page: Page
    ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.ms, n=10, method="inclusive")[8] if len(self.ms) > 1 else self.ms[0]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.page.path, "median_ms": round(self.median, 2), "p90_ms": round(self.p90, 2),
                "min_ms": round(min(self.ms), 2), "requests": len(self.ms)}


class _StatementLog:
    """Records the SELECTs run on an engine while ``recording`` (for ``--queries``); ``timed()``
    runs each again on a raw connection and fetches every row, so the time includes the fetch
    (SQLite computes most of a GROUP BY while the rows are fetched, not in ``execute``)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.recording = engine, False
        self.found: list[tuple[str, Any]] = []
        event.listen(engine, "after_cursor_execute", self._after)

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if self.recording and statement.lstrip().upper().startswith("SELECT"):
            self.found.append((statement, parameters))

    def timed(self) -> list[tuple[float, str]]:
        raw = self.engine.raw_connection()
        try:
            cursor, found = raw.cursor(), []
            for statement, parameters in self.found:
                started = time.perf_counter()
                cursor.execute(statement, parameters)
                cursor.fetchall()
                found.append(((time.perf_counter() - started) * 1000, statement))
            cursor.close()
            raw.rollback()
            return found
        finally:
            raw.close()


def log_in(app: Any, db: Any) -> Any:
    """A test client logged in as a fresh admin through the login form."""
    import re

    from lexyjobs import accounts

    username = f"bench-{uuid.uuid4().hex[:8]}"
    accounts.add_user(db, username, PASSWORD, "admin")
    client = app.test_client()
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True))
    if token is None:
        raise SystemExit("no CSRF token on the login page")
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)})
    if response.status_code not in (302, 303):
        raise SystemExit(f"login failed: {response.status_code}")
    return client


def measure(url: str, requests: int, rows: Rows | None, *, show_queries: bool = False) -> list[Timing]:
    """Time ``requests`` requests of every page (after one warm-up request each)."""
    from lexyjobs import create_app

    with tempfile.TemporaryDirectory(prefix="lexyjobs-bench-panel-") as folder:
        app = create_app({"database_url": url, "jobs_file": None, "data_dir": folder,
                          "secret_key": SECRET_KEY, "login_attempts_per_minute": 1000})
        lexy = app.extensions["lexyjobs"]
        try:
            lexy.prepare()
            client = log_in(app, lexy.db)
            clock = _StatementLog(lexy.db.engine) if show_queries else None
            return [_time_page(client, page, requests, clock) for page in pages(lexy.db, rows)]
        finally:
            lexy.db.dispose()


def _time_page(client: Any, page: Page, requests: int, clock: _StatementLog | None) -> Timing:
    headers = {"HX-Request": "true"} if page.htmx else {}

    def get() -> float:
        started = time.perf_counter()
        response = client.get(page.path, headers=headers)
        took = (time.perf_counter() - started) * 1000
        if response.status_code != page.status:
            raise SystemExit(f"{page.path} answered {response.status_code}, expected {page.status}")
        return took

    get()  # warm-up: templates compiled, database pages cached
    if clock is not None:
        clock.recording, clock.found = True, []
        get()
        clock.recording = False
        _print_statements(page, clock.timed())
    return Timing(page, [get() for _ in range(requests)])


def _print_statements(page: Page, found: list[tuple[float, str]]) -> None:
    print(f"-- {page.name} ({page.path}): {len(found)} SELECTs, {sum(ms for ms, _ in found):.1f} ms run again alone")
    for ms, statement in sorted(found, reverse=True)[:6]:
        print(f"   {ms:8.2f} ms  {' '.join(statement.split())[:150]}")


def print_table(timings: list[Timing]) -> None:
    width = max(len(t.page.name) for t in timings)
    print(f"{'page':<{width}}  {'median ms':>9}  {'p90 ms':>7}  {'min ms':>7}  path")
    for t in timings:
        print(f"{t.page.name:<{width}}  {t.median:9.1f}  {t.p90:7.1f}  {min(t.ms):7.1f}  {t.page.path}")


# ---------------------------------------------------------------- command line

def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Fill (unless ``--reuse``), measure, print; returns what ``--json`` writes."""
    report: dict[str, Any] = {"db": args.db, "jobs": args.jobs, "runs": args.runs, "requests": args.requests}
    if args.reuse:
        out(f"panel: measuring {args.reuse} ({args.requests} requests per page)")
        timings = measure(args.reuse, args.requests, None, show_queries=args.queries)
    else:
        with fresh_database(args.db, args.pg_url, keep=args.keep) as url:
            out(f"panel: {args.jobs} jobs, {args.runs:,} runs on {args.db}; filling…")
            started = time.perf_counter()
            rows = fill(url, args.jobs, args.runs)
            report["fill_seconds"] = round(time.perf_counter() - started, 1)
            report["events"], report["logs"] = len(rows.events), len(rows.logs)
            out(f"filled in {report['fill_seconds']} s ({len(rows.runs):,} runs, {len(rows.events):,} events, "
                f"{len(rows.logs):,} logs); {args.requests} requests per page")
            timings = measure(url, args.requests, rows, show_queries=args.queries)
            if args.keep:
                out(f"kept: --reuse '{url}'")
    print_table(timings)
    report["pages"] = {t.page.name: t.as_dict() for t in timings}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.panel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--queries", action="store_true", help="print the SQL of one request per page, slowest first")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--keep", action="store_true", help="leave the filled database in place and print its URL")
    group.add_argument("--reuse", metavar="URL", help="measure this already filled database (no fill)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.runs < 1 or args.requests < 1:
        parser.error("--jobs, --runs and --requests must be at least 1")
    return run(args)


if __name__ == "__main__":
    main()
