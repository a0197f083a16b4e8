"""Why a queued run waits: ``waiting_for(session, runs, now=…, stale_after=…)`` gives each queued
run of a page a ``WaitingFor`` (a reason, the time it ends when known, one human sentence and
the facts behind it), so the panel, the API and the CLI say the same true thing.

The reasons, in the order they are checked (the first that holds is the one given):

``due``           scheduled later: ``run_at`` / a delay, or the backoff before a retry attempt;
``queue_paused``  its queue is paused;
``no_worker``     no live worker process serves its queue (or none runs at all);
``shutting_down`` the live workers serving its queue are all shutting down (they claim no more);
``budget``        an ``openai`` run found a daily budget spent and is held until the next UTC day;
``rate_limit``    a claim found it over a rate limit and holds it until its next slot;
``job_limit``     its job's ``max_concurrency`` runs are running (named);
``key_limit``     its concurrency key's ``concurrency_limit`` runs are running (named);
``worker``        nothing holds it back: a worker picks it up (said whether threads are idle).

Not reasons: a paused *job* (pausing stops its schedule only; its queued runs still run) and
upstream pipeline steps (a downstream run is created only once its upstreams succeeded, so a
queued run never waits for one). A worker shutting down marks its registry row
(``workers.stopping_at``) while its runs finish; once the row goes it counts as no worker.

Cost: four small queries whatever the number of runs (paused queues, live workers, the jobs'
limits, the running runs), none per run; the running runs are few (at most the workers' threads
plus what they claimed ahead), read through ``ix_runs_status_id``."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from lexyjobs.models import QueueState
from lexyjobs.states import RUNS, RunStatus
from lexyjobs.store import JOBS, status_is
from lexyjobs.workers import WORKERS

REASONS = ("due", "queue_paused", "no_worker", "shutting_down", "budget", "rate_limit", "job_limit", "key_limit",
           "worker")
BUDGET_HOLD = "budget:"  # held_by of a run held for a spent daily budget (lexyjobs.llm.spend), then its scope
HOLDERS_NAMED = 5  # running runs named in a message (the details list them all, up to HOLDERS_LISTED)
HOLDERS_LISTED = 50


@dataclass(frozen=True)
class WaitingFor:
    """Why one queued run has not started, and until when (``until``: None when unknown)."""

    reason: str
    message: str
    short: str  # a few words for a table cell: "due 14:05", "retry at 14:05", "job limit"
    until: datetime | None = None
    queue: str = "default"
    holders: tuple[int, ...] = ()  # running runs holding the job limit or the key
    key: str | None = None
    bucket: str | None = None
    limit: int | None = None
    idle_threads: int | None = None  # reason worker: idle threads serving its queue

    @property
    def stamp(self) -> str:
        """Changes when what a page shows of it changes (for polls that answer 204 otherwise)."""
        return hashlib.blake2b(repr((self.message, self.until)).encode(), digest_size=6).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        """JSON for the API and the CLI (``until`` in ISO 8601)."""
        return {"reason": self.reason, "until": self.until.isoformat() if self.until else None,
                "message": self.message, "queue": self.queue, "holders": list(self.holders), "key": self.key,
                "bucket": self.bucket, "limit": self.limit, "idle_threads": self.idle_threads}


@dataclass(frozen=True)
class LiveWorker:
    """A live worker process as far as waiting goes: the queues it serves (None: all) with caps."""

    name: str
    threads: int
    queues: Mapping[str, int | None] | None
    stopping: bool = False  # shutting down: it claims no more

    def serves(self, queue: str) -> bool:
        return self.queues is None or self.queues.get(queue, 0) != 0

    def room(self, queue: str, running: Mapping[str, int]) -> int:
        """Idle threads it could give a run of ``queue`` (``running``: its runs by queue)."""
        if self.stopping or not self.serves(queue):
            return 0
        free = self.threads - sum(running.values())
        cap = None if self.queues is None else self.queues.get(queue)
        if cap is not None:
            free = min(free, cap - running.get(queue, 0))
        return max(free, 0)


def parse_served(entries: Sequence[str] | None) -> dict[str, int | None] | None:
    """``["default", "ai:2"]`` -> ``{"default": None, "ai": 2}`` (None in: every queue)."""
    if entries is None:
        return None
    served: dict[str, int | None] = {}
    for entry in entries:
        name, _, cap = str(entry).partition(":")
        served[name] = int(cap) if cap.isdigit() else None
    return served


@dataclass
class Snapshot:
    """What the reasons are read from, loaded once for a whole page of runs."""

    now: datetime
    paused: set[str]
    workers: list[LiveWorker]
    job_caps: dict[str, int]
    by_job: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_key: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_worker: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    @classmethod
    def load(cls, session: Session, jobs: Iterable[str], *, now: datetime, stale_after: float) -> Snapshot:
        """Four queries: paused queues, live workers, the jobs' ``max_concurrency``, running runs."""
        paused = set(session.scalars(select(QueueState.name).where(QueueState.paused.is_(True))))
        workers = [LiveWorker(row.name, row.threads, parse_served(row.queues), row.stopping_at is not None)
                   for row in session.execute(select(WORKERS.c.name, WORKERS.c.threads, WORKERS.c.queues,
                                                     WORKERS.c.stopping_at)
            .where(WORKERS.c.heartbeat_at >= now - timedelta(seconds=stale_after)))]
        names = sorted(set(jobs))
        caps = {name: cap for name, cap in session.execute(
            select(JOBS.c.name, JOBS.c.max_concurrency).where(JOBS.c.name.in_(names)))} if names else {}
        snapshot = cls(now, paused, workers, caps)
        for run in session.execute(select(RUNS.c.id, RUNS.c.job_name, RUNS.c.concurrency_key, RUNS.c.worker,
                                          RUNS.c.queue).where(status_is(RunStatus.RUNNING)).order_by(RUNS.c.id)):
            snapshot.by_job[run.job_name].append(run.id)
            if run.concurrency_key is not None:
                snapshot.by_key[run.concurrency_key].append(run.id)
            if run.worker is not None:
                snapshot.by_worker[run.worker][run.queue] += 1
        return snapshot

    def idle_threads(self, queue: str) -> int:
        return sum(w.room(queue, self.by_worker.get(w.name, {})) for w in self.workers)


def waiting_for(session: Session, runs: Sequence[Any], *, now: datetime, stale_after: float) -> dict[int, WaitingFor]:
    """Run id -> why it waits, for the queued ones of ``runs`` (Run rows or anything with their
    columns); other runs are left out. A constant number of queries (see the module)."""
    queued = [run for run in runs if run.status == RunStatus.QUEUED.value]
    if not queued:
        return {}
    snapshot = Snapshot.load(session, (run.job_name for run in queued), now=now, stale_after=stale_after)
    return {run.id: explain(run, snapshot) for run in queued}


def explain(run: Any, s: Snapshot) -> WaitingFor:
    """The first reason that holds for ``run`` in ``s`` (the order of the module's docstring)."""
    queue = run.queue or "default"
    if run.scheduled_for > s.now:
        return _due(run, queue)
    if queue in s.paused:
        return WaitingFor("queue_paused", f"Queue '{queue}' is paused: its runs wait until the queue is resumed.",
                          f"queue {queue} paused", queue=queue)
    serving = [w for w in s.workers if w.serves(queue)]
    if not serving:
        return _no_worker(queue, bool(s.workers))
    if all(w.stopping for w in serving):
        names = ", ".join(w.name for w in serving[:HOLDERS_NAMED])
        return WaitingFor("shutting_down", f"Every worker serving queue '{queue}' is shutting down ({names}): it "
                          "starts on the next worker that serves the queue.", "workers stopping", queue=queue)
    if run.held_until is not None and run.held_until > s.now and (run.held_by or "").startswith(BUDGET_HOLD):
        scope, until = run.held_by[len(BUDGET_HOLD):], run.held_until
        return WaitingFor("budget", f"The daily budget of {scope} is spent: it waits until {_clock(until)}, when a "
                          "new day's budget begins.", f"budget until {_hhmm(until)}", until=until, queue=queue)
    if run.held_until is not None and run.held_until > s.now:
        return WaitingFor("rate_limit", f"Over the rate limit {_bucket_words(run.held_by)}: its next slot is at "
                          f"{_clock(run.held_until)}.", f"rate limit until {_hhmm(run.held_until)}",
                          until=run.held_until, queue=queue, bucket=run.held_by)
    cap = s.job_caps.get(run.job_name, 0)
    if cap > 0 and len(s.by_job.get(run.job_name, ())) >= cap:
        holders = s.by_job[run.job_name]
        return WaitingFor("job_limit", f"Its job '{run.job_name}' runs at most {cap} at a time "
                          f"(max_concurrency): {_runs_words(holders)} {'is' if len(holders) == 1 else 'are'} running.", "job limit", queue=queue,
                          holders=tuple(holders[:HOLDERS_LISTED]), limit=cap)
    key, key_limit = run.concurrency_key, run.concurrency_limit or 1
    if key is not None and len(s.by_key.get(key, ())) >= key_limit:
        holders = s.by_key[key]
        return WaitingFor("key_limit", f"Concurrency key '{key}' allows {key_limit} run{_s(key_limit)} at a time: "
                          f"{_runs_words(holders)} {'holds' if len(holders) == 1 else 'hold'} it.",
                          f"key {key}", queue=queue, holders=tuple(holders[:HOLDERS_LISTED]), key=key,
                          limit=key_limit)
    return _ready(queue, s.idle_threads(queue))


def _due(run: Any, queue: str) -> WaitingFor:
    at = run.scheduled_for
    if run.attempt > 0 or run.trigger == "retry":
        after = f" after attempt {run.attempt} of {run.max_attempts} failed" if run.attempt > 0 else ""
        return WaitingFor("due", f"Retry backoff{after}: due again at {_clock(at)}.", f"retry at {_hhmm(at)}",
                          until=at, queue=queue)
    return WaitingFor("due", f"Delayed: due at {_clock(at)}.", f"due {_hhmm(at)}", until=at, queue=queue)


def _no_worker(queue: str, any_worker: bool) -> WaitingFor:
    if not any_worker:
        return WaitingFor("no_worker", "No worker process is running: start one with `lexyjobs worker` (a server "
                          "with LEXYJOBS_WORKERS=0 runs no jobs itself).", "no worker", queue=queue)
    return WaitingFor("no_worker", f"No live worker serves queue '{queue}': start one with "
                      f"`lexyjobs worker --queues {queue}` or add it to LEXYJOBS_QUEUES.",
                      f"no worker for {queue}", queue=queue)


def _ready(queue: str, idle: int) -> WaitingFor:
    if idle > 0:
        return WaitingFor("worker", f"Ready: a worker picks it up now ({idle} idle thread{_s(idle)} serve "
                          f"queue '{queue}').", "ready", queue=queue, idle_threads=idle)
    return WaitingFor("worker", f"Ready: every worker thread serving queue '{queue}' is busy; it starts when "
                      "one frees up (higher priority and older runs first).", "workers busy", queue=queue,
                      idle_threads=0)


def _bucket_words(bucket: str | None) -> str:
    """``job:crawl`` -> "of job crawl"; ``openai|acme`` -> "'openai' for acme"."""
    if not bucket:
        return "(bucket unknown)"
    name, _, value = bucket.partition("|")
    words = f"of job {name[4:]}" if name.startswith("job:") else f"'{name}'"
    return f"{words} for {value}" if value else words


def _runs_words(ids: Sequence[int]) -> str:
    """``run #12`` / ``runs #12, #13 and 4 more``."""
    named = ", ".join(f"#{i}" for i in ids[:HOLDERS_NAMED])
    more = f" and {len(ids) - HOLDERS_NAMED} more" if len(ids) > HOLDERS_NAMED else ""
    return f"run{_s(len(ids))} {named}{more}"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _hhmm(at: datetime) -> str:
    return at.strftime("%H:%M")


def waiting_dicts(session: Session, runs: Sequence[Any], *, now: datetime, stale_after: float) -> dict[int, dict[str, Any]]:
    """``waiting_for`` as JSON (``WaitingFor.as_dict``) by run id, for the API and the CLI."""
    return {run_id: why.as_dict() for run_id, why in waiting_for(session, runs, now=now, stale_after=stale_after).items()}


def flow_stamp(session: Session, *, now: datetime, stale_after: float) -> str:
    """Changes when a paused queue or the set of live workers (and what they serve) changes:
    what, besides the runs themselves, makes a polled list's reasons change. Two tiny reads."""
    paused = sorted(session.scalars(select(QueueState.name).where(QueueState.paused.is_(True))))
    live = sorted((row.name, repr(row.queues), row.stopping_at is None) for row in session.execute(
        select(WORKERS.c.name, WORKERS.c.queues, WORKERS.c.stopping_at).where(WORKERS.c.heartbeat_at >= now - timedelta(seconds=stale_after))))
    return hashlib.blake2b(repr((paused, live)).encode(), digest_size=6).hexdigest()


def runs_json(session: Session, runs: Sequence[Any], *, now: datetime, stale_after: float) -> list[dict[str, Any]]:
    """``serialize.run_dict`` of each run with its ``waiting_for`` (the Python API's handles)."""
    from lexyjobs.serialize import run_dict  # here: serialize is above this module in the layers

    waiting = waiting_dicts(session, runs, now=now, stale_after=stale_after)
    return [run_dict(run, waiting.get(run.id)) for run in runs]
