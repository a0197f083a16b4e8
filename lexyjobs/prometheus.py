"""Prometheus ``GET /metrics``, computed from the database at scrape time.

Several processes share one database, so counters kept in one process's memory would each see
only part of the work: every value here is read from the database when Prometheus scrapes, by
``DatabaseCollector`` (a prometheus_client custom collector), with index-friendly queries that
stay cheap at a million runs (see ``read_snapshot``). Any process with the web server answers
with the same numbers.

Windows: ``lexyjobs_finished_runs`` and the histograms ``lexyjobs_run_duration_seconds`` and
``lexyjobs_queue_wait_seconds`` describe the runs that finished in the last hour (``WINDOW``),
recomputed on each scrape. The histograms are gauge histograms (OpenMetrics
``gaugehistogram``; ``_bucket``, ``_gcount``, ``_gsum`` in the text format): use
``histogram_quantile`` on the buckets directly, without ``rate()``. Cumulative counters could
not be derived from the table, since retention deletes old runs.

Imported by the ``/metrics`` view (``lexyjobs.metrics``) on the first scrape, not at start-up:
prometheus_client is not needed by a process nobody scrapes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import (CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
                                   InfoMetricFamily, Metric)
from prometheus_client.exposition import choose_encoder
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from lexyjobs import workers
from lexyjobs.config import Settings
from lexyjobs.db import Database, utcnow
from lexyjobs.llm import usage_reads
from lexyjobs.models import Job, Run
from lexyjobs.states import RunStatus


WINDOW = timedelta(hours=1)  # lexyjobs_finished_runs and the histograms: the runs finished this recently
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RARER = tuple(status.value for status in RunStatus if status != RunStatus.SUCCEEDED)
TERMINAL = tuple(status.value for status in RunStatus if status not in (RunStatus.QUEUED, RunStatus.RUNNING))


# ---------------------------------------------------------------- reading the database


@dataclass(frozen=True)
class Finished:
    """The runs of one job that ended in one status within the window; ``started`` of them had
    started (blocked and skipped runs never do), and only those have a duration and a wait."""

    job: str
    status: str
    count: int
    started: int
    duration_sum: float
    duration_le: tuple[int, ...]  # runs with duration <= each DURATION_BUCKETS bound (cumulative)
    wait_sum: float
    wait_le: tuple[int, ...]      # runs with queue wait <= each WAIT_BUCKETS bound


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports, read in one transaction (on Postgres each statement sees
    the latest commits: the parts may differ by the runs that moved meanwhile)."""

    runs: list[tuple[str, str, int]]         # (job, status, count) over every run kept
    queued: int                              # queued runs, due or not
    due: int                                 # queued runs whose time has come
    oldest_due: datetime | None              # scheduled_for of the longest-waiting due run
    running: int
    last_success: dict[str, datetime]        # job -> finished_at of its latest succeeded run
    finished: list[Finished]
    fires: dict[str, tuple[datetime, datetime]]  # job -> (its latest fire time, when the run was created)
    workers: list[workers.WorkerInfo]
    llm: list[usage_reads.Total]             # what openai jobs used, every day together


def read_snapshot(session: Session, *, now: datetime, postgres: bool, stale_after: float) -> Snapshot:
    """Read a scrape's numbers (a million runs of 100 jobs: ~45 ms on SQLite, ~80 ms on Postgres,
    most of it ``_runs_by_job``). The queue numbers are ranges of the status-led indexes; last
    success and latest fire are one index seek per job; the window's runs are read through
    ``ix_runs_status_finished_times``; the workers are a few rows."""
    queue = session.execute(select(
        _count(Run.status == RunStatus.QUEUED.value),
        _count((Run.status == RunStatus.QUEUED.value) & (Run.scheduled_for <= now)),
        select(func.min(Run.scheduled_for)).where(Run.status == RunStatus.QUEUED.value, Run.scheduled_for <= now)
        .scalar_subquery(),
        _count(Run.status == RunStatus.RUNNING.value))).one()
    return Snapshot(
        runs=_runs_by_job(session), queued=queue[0], due=queue[1], oldest_due=queue[2], running=queue[3],
        last_success=_last_successes(session), finished=_finished(session, now - WINDOW, postgres),
        fires=_latest_fires(session),
        workers=workers.live_workers(session, now=now, stale_after=stale_after),
        llm=usage_reads.totals(session))


def _count(condition: Any) -> Any:
    return select(func.count()).select_from(Run).where(condition).scalar_subquery()


def _runs_by_job(session: Session) -> list[tuple[str, str, int]]:
    """(job, status, count) for every job and status, zeros included. Per job, one statement
    counts its runs (a range of ``ix_runs_job_id``) and those of every status but ``succeeded``
    (ranges of ``ix_runs_job_outcome``); ``succeeded``, the bulk of a history, is the difference,
    as in ``queries.status_counts``. A GROUP BY job, status would read every index entry
    and compare its keys: about twice the time."""
    def count(*conditions: Any) -> Any:
        return select(func.count()).select_from(Run).where(Run.job_name == Job.name, *conditions).scalar_subquery()

    found = []
    for name, total, *rarer in session.execute(select(Job.name, count(), *(count(Run.status == s) for s in RARER))
                                               .order_by(Job.name)):
        found.append((name, RunStatus.SUCCEEDED.value, total - sum(rarer)))
        found.extend((name, status, n) for status, n in zip(RARER, rarer))
    return found


def _last_successes(session: Session) -> dict[str, datetime]:
    """Per job, a seek on ix_runs_job_outcome (job_name, status, finished_at, id)."""
    last = (select(func.max(Run.finished_at)).where(Run.job_name == Job.name, Run.status == RunStatus.SUCCEEDED.value)
            .scalar_subquery())
    return {name: at for name, at in session.execute(select(Job.name, last)) if at is not None}


def _seconds(start: Any, end: Any, postgres: bool) -> Any:
    if postgres:
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _finished(session: Session, since: datetime, postgres: bool) -> list[Finished]:
    """Counts, bucket counts and sums per (job, status) of the runs finished since ``since``,
    computed by the database: one row per group whatever the number of runs. A run that never
    started has no duration: NULL, which no bucket and no sum counts."""
    took, waited = _seconds(Run.started_at, Run.finished_at, postgres), _seconds(Run.scheduled_for, Run.started_at,
                                                                                 postgres)
    columns = [func.count(), func.count(Run.started_at), func.sum(took), func.sum(waited),
               *(func.sum(case((took <= bound, 1), else_=0)) for bound in DURATION_BUCKETS),
               *(func.sum(case((waited <= bound, 1), else_=0)) for bound in WAIT_BUCKETS)]
    rows = session.execute(select(Run.job_name, Run.status, *columns)
                           .where(Run.status.in_(TERMINAL), Run.finished_at >= since)
                           .group_by(Run.job_name, Run.status)).all()
    split = 6 + len(DURATION_BUCKETS)
    return [Finished(row[0], row[1], row[2], row[3], float(row[4] or 0), tuple(int(n) for n in row[6:split]),
                     float(row[5] or 0), tuple(int(n) for n in row[split:])) for row in rows]


def _latest_fires(session: Session) -> dict[str, tuple[datetime, datetime]]:
    """Per scheduled job, its latest fire (the run the scheduler created last, queued or
    skipped): a backward walk of ix_runs_job_id (job_name, id) that stops at the first
    scheduled run. The fire time is in the run's fire_key (``job@<ISO time>``)."""
    latest = (select(Run.id).where(Run.job_name == Job.name, Run.trigger == "schedule")
              .order_by(Run.id.desc()).limit(1).scalar_subquery())
    ids = [i for i in session.scalars(select(latest).where(Job.schedule.is_not(None), Job.archived.is_(False)))
           if i is not None]
    fires = {}
    for job, key, created in session.execute(select(Run.job_name, Run.fire_key, Run.created_at).where(Run.id.in_(ids))):
        try:
            fires[job] = (datetime.fromisoformat((key or "").rpartition("@")[2]), created)
        except ValueError:
            continue  # no fire key (a scheduled run recorded otherwise): no lag to tell
    return fires


# ---------------------------------------------------------------- metric families


def families(snap: Snapshot, now: datetime) -> Iterator[Metric]:
    """The Prometheus metric families of a snapshot (pure)."""
    runs = GaugeMetricFamily("lexyjobs_runs", "Runs kept in the database, by job and status", labels=["job", "status"])
    for job, status, count in snap.runs:
        runs.add_metric([job, status], count)
    yield runs
    yield GaugeMetricFamily("lexyjobs_queue_depth", "Queued runs whose time has come (waiting for a worker)",
                            value=snap.due)
    yield GaugeMetricFamily("lexyjobs_queued_runs", "Queued runs, including those scheduled for later (retries, run_at)",
                            value=snap.queued)
    yield GaugeMetricFamily("lexyjobs_running_runs", "Runs running now (claimed by a worker)", value=snap.running)
    oldest = max(0.0, (now - snap.oldest_due).total_seconds()) if snap.oldest_due else 0.0
    yield GaugeMetricFamily("lexyjobs_oldest_queued_age_seconds",
                            "How long the longest-waiting due run has waited since it became due (0: none waits)",
                            value=oldest)
    yield _per_job("lexyjobs_last_success_timestamp_seconds", "When the job's latest successful run finished",
                   {job: at.timestamp() for job, at in snap.last_success.items()})
    yield from _histograms(snap.finished)
    yield _per_job("lexyjobs_scheduler_lag_seconds", "How late the scheduler recorded the job's latest fire",
                   {job: max(0.0, (created - fired).total_seconds()) for job, (fired, created) in snap.fires.items()})
    yield _per_job("lexyjobs_scheduler_last_fire_timestamp_seconds", "The time of the job's latest fire",
                   {job: fired.timestamp() for job, (fired, _) in snap.fires.items()})
    yield from _worker_families(snap.workers)
    yield from _llm_families(snap.llm)


def _per_job(name: str, documentation: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["job"])
    for job in sorted(values):
        family.add_metric([job], values[job])
    return family


def _buckets(bounds: Sequence[float], counts: Sequence[int], total: int) -> list[tuple[str, float]]:
    return [*((f"{bound:g}", float(n)) for bound, n in zip(bounds, counts)), ("+Inf", float(total))]


def _histograms(finished: list[Finished]) -> Iterator[Metric]:
    """``lexyjobs_finished_runs{job, status}``, then per job the two histograms (the runs of
    every status that had started, summed)."""
    counts = GaugeMetricFamily("lexyjobs_finished_runs", "Runs that finished in the last hour, by job and status",
                               labels=["job", "status"])
    by_job: dict[str, list[Finished]] = {}
    for group in sorted(finished, key=lambda f: (f.job, f.status)):
        counts.add_metric([group.job, group.status], group.count)
        if group.started:
            by_job.setdefault(group.job, []).append(group)
    yield counts
    durations = GaugeHistogramMetricFamily(
        "lexyjobs_run_duration_seconds", "Processing time (latest attempt) of the runs that finished in the last hour",
        labels=["job"])
    waits = GaugeHistogramMetricFamily(
        "lexyjobs_queue_wait_seconds", "Queue wait (from due to started, latest attempt) of the runs that finished in "
        "the last hour", labels=["job"])
    for job, groups in by_job.items():
        started = sum(g.started for g in groups)
        durations.add_metric([job], _buckets(DURATION_BUCKETS, _summed(groups, "duration_le"), started),
                             sum(g.duration_sum for g in groups))
        waits.add_metric([job], _buckets(WAIT_BUCKETS, _summed(groups, "wait_le"), started),
                         sum(g.wait_sum for g in groups))
    yield durations
    yield waits


def _summed(groups: list[Finished], field: str) -> list[int]:
    return [sum(values) for values in zip(*(getattr(g, field) for g in groups))]


def _worker_families(live: list[workers.WorkerInfo]) -> Iterator[Metric]:
    yield GaugeMetricFamily("lexyjobs_workers", "Live worker processes (heartbeat within LEXYJOBS_STALE_AFTER)",
                            value=len(live))
    info = InfoMetricFamily("lexyjobs_worker", "A live worker process", labels=["worker", "host", "pid", "version"])
    gauges = {name: GaugeMetricFamily(f"lexyjobs_worker_{name}", text, labels=["worker"]) for name, text in (
        ("heartbeat_timestamp_seconds", "The worker's latest heartbeat"),
        ("started_timestamp_seconds", "When the worker started"),
        ("threads", "The worker's run threads"),
        ("running_runs", "Runs the worker is running now (claimed-ahead ones included)"))}
    for w in live:
        info.add_metric([w.name, w.host, str(w.pid), w.version], {})
        for name, value in (("heartbeat_timestamp_seconds", w.heartbeat_at.timestamp()),
                            ("started_timestamp_seconds", w.started_at.timestamp()),
                            ("threads", w.threads), ("running_runs", len(w.runs))):
            gauges[name].add_metric([w.name], value)
    yield info
    yield from gauges.values()


def _llm_families(totals: list[usage_reads.Total]) -> Iterator[Metric]:
    """Counters of ``llm_usage_days`` (rows are never deleted: they only grow). A counter family
    is named without ``_total``: the exposition adds it to the sample. Requests and tokens of a
    (job, provider, model) whose rows have several currencies are summed into one series."""
    labels = ["job", "provider", "model"]
    requests = CounterMetricFamily("lexyjobs_llm_requests", "Requests of openai jobs, answers from the cache "
                                   "included", labels=labels)
    cached = CounterMetricFamily("lexyjobs_llm_cached_requests", "Requests of openai jobs answered from the cache "
                                 "(no tokens, no cost)", labels=labels)
    tokens = CounterMetricFamily("lexyjobs_llm_tokens", "Tokens used by openai jobs, by type (prompt or completion)",
                                 labels=[*labels, "type"])
    cost = CounterMetricFamily("lexyjobs_llm_cost", "Cost of openai jobs' requests from the price tables, in the "
                               "currency of the label (never converted)", labels=[*labels, "currency"])
    summed: dict[tuple[str, str, str], list[int]] = {}
    for row in totals:
        counts = summed.setdefault((row.job, row.provider, row.model), [0, 0, 0, 0])
        for index, n in enumerate((row.requests, row.cached, row.prompt_tokens, row.completion_tokens)):
            counts[index] += n
        if row.currency or row.cost:  # no price known: no cost to report
            cost.add_metric([row.job, row.provider, row.model, row.currency], row.cost)
    for key, (n_requests, n_cached, prompt, completion) in summed.items():
        requests.add_metric(list(key), n_requests)
        cached.add_metric(list(key), n_cached)
        tokens.add_metric([*key, "prompt"], prompt)
        tokens.add_metric([*key, "completion"], completion)
    yield from (requests, cached, tokens, cost)


class DatabaseCollector:
    """A prometheus_client collector that reads a ``Snapshot`` on every collect (each scrape)."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.settings, self.clock = db, settings, clock

    def collect(self) -> Iterator[Metric]:
        started, now = time.perf_counter(), self.clock()
        with self.db.read() as session:
            snap = read_snapshot(session, now=now, postgres=self.db.is_postgres, stale_after=self.settings.stale_after)
        took = time.perf_counter() - started
        yield from families(snap, now)
        yield GaugeMetricFamily("lexyjobs_metrics_query_seconds", "Time this scrape spent reading the database",
                                value=took)


def _registry(db: Database, settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry()  # per scrape: nothing process-global, no default process metrics
    registry.register(DatabaseCollector(db, settings))
    return registry


def exposition(db: Database, settings: Settings, accept: str) -> tuple[bytes, str]:
    """The metrics read now, encoded for a scraper that sent ``Accept: accept`` (the text
    format, or OpenMetrics when asked): (body, content type)."""
    encode, content_type = choose_encoder(accept)
    return encode(_registry(db, settings)), content_type
