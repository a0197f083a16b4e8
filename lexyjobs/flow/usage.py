"""A job's flow-control limits with their current use, for its page: ``max_concurrency`` (N
running of M), its concurrency key (template, limit, the busiest key values running now), its
rate limits (starts in the current window, the next free slot when full; for a limit per key
value, the busiest values) and its queue (paused? served by how many live workers?)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lexyjobs.definitions import JobDefinition
from lexyjobs.flow.limits import SLOTS
from lexyjobs.flow.spec import RateLimit
from lexyjobs.flow.waiting import LiveWorker, parse_served
from lexyjobs.models import QueueState
from lexyjobs.states import RUNS, RunStatus
from lexyjobs.store import named_limit_specs, named_limits, status_is
from lexyjobs.workers import WORKERS

BUSIEST = 5


@dataclass(frozen=True)
class KeyUse:
    """One concurrency key value (or rate bucket value) and how much of it is used now."""

    value: str
    used: int


@dataclass(frozen=True)
class RateUse:
    """One rate limit of the job: starts in its current window, when the next slot frees up
    (None: a slot is free now), or for a limit per key value its busiest values."""

    name: str  # "own" for the job's rate_limit, else the [limits.<name>] table
    text: str  # "30/m", "60/m per {customer_id}"
    rate: int
    per: float
    started: int | None = None
    next_slot: datetime | None = None
    busiest: tuple[KeyUse, ...] = ()
    undefined: bool = False  # named in ``limits`` but no such [limits.<name>] table


@dataclass(frozen=True)
class JobFlowUse:
    """What the job page shows under "Limits"."""

    queue: str
    queue_paused: bool
    serving_workers: int
    live_workers: int
    max_concurrency: int
    running: int
    key_template: str | None
    key_limit: int
    busiest_keys: tuple[KeyUse, ...]
    rates: tuple[RateUse, ...]


def job_flow_use(session: Session, definition: JobDefinition, *, now: datetime, stale_after: float) -> JobFlowUse:
    """The job's limits and their use now (a few small queries, each on an index)."""
    flow = definition.flow
    paused = bool(session.scalar(select(QueueState.paused).where(QueueState.name == flow.queue)))
    workers = [LiveWorker(row.name, row.threads, parse_served(row.queues)) for row in session.execute(
        select(WORKERS.c.name, WORKERS.c.threads, WORKERS.c.queues)
        .where(WORKERS.c.heartbeat_at >= now - timedelta(seconds=stale_after)))]
    running = session.scalar(select(func.count()).select_from(RUNS).where(
        status_is(RunStatus.RUNNING), RUNS.c.job_name == definition.name)) or 0
    return JobFlowUse(flow.queue, paused, sum(1 for w in workers if w.serves(flow.queue)), len(workers),
                      definition.max_concurrency, running, flow.concurrency_key.text if flow.concurrency_key else None,
                      flow.concurrency_limit, _busiest_keys(session, definition.name) if flow.concurrency_key else (),
                      tuple(_rates(session, definition, now)))


def _busiest_keys(session: Session, job: str) -> tuple[KeyUse, ...]:
    """The key values this job's running runs hold, with every run holding each (across jobs)."""
    mine = select(RUNS.c.concurrency_key).where(status_is(RunStatus.RUNNING), RUNS.c.job_name == job,
                                                 RUNS.c.concurrency_key.is_not(None))
    rows = session.execute(select(RUNS.c.concurrency_key, func.count().label("n"))
                           .where(status_is(RunStatus.RUNNING), RUNS.c.concurrency_key.in_(mine))
                           .group_by(RUNS.c.concurrency_key).order_by(func.count().desc(), RUNS.c.concurrency_key)
                           .limit(BUSIEST))
    return tuple(KeyUse(key, n) for key, n in rows)


def _rates(session: Session, definition: JobDefinition, now: datetime) -> list[RateUse]:
    flow = definition.flow
    limits: list[tuple[str, str, RateLimit | None]] = []
    if flow.rate_limit is not None:
        limits.append(("own", f"job:{definition.name}", flow.rate_limit))
    named: Mapping[str, RateLimit] = named_limits(session) if flow.limits else {}
    tables = named_limit_specs(session) if flow.limits else {}
    # a table without a rate limits only LLM requests (lexyjobs.llm.providers): no start slots to show
    limits += [(name, name, named.get(name)) for name in flow.limits if name in named or name not in tables]
    out = []
    for name, bucket, limit in limits:
        if limit is None:
            out.append(RateUse(name, "not defined", 0, 0.0, undefined=True))
        elif limit.key is not None:
            out.append(RateUse(name, limit.text, limit.rate, limit.per,
                               busiest=_busiest_buckets(session, bucket, now - timedelta(seconds=limit.per))))
        else:
            started, next_slot = _window(session, bucket, limit.rate, limit.per, now)
            out.append(RateUse(name, limit.text, limit.rate, limit.per, started, next_slot))
    return out


def _window(session: Session, bucket: str, rate: int, per: float, now: datetime) -> tuple[int, datetime | None]:
    """Starts in the bucket's window and, when it is full, when the next slot frees up (``per``
    after the ``rate``-th newest start; the rule of ``lexyjobs.flow.limits``)."""
    newest: Sequence[datetime] = list(session.scalars(
        select(SLOTS.c.at).where(SLOTS.c.bucket == bucket, SLOTS.c.at > now - timedelta(seconds=per))
        .order_by(SLOTS.c.at.desc()).limit(rate)))
    if len(newest) < rate:
        return len(newest), None
    return len(newest), newest[rate - 1] + timedelta(seconds=per)


def _busiest_buckets(session: Session, name: str, since: datetime) -> tuple[KeyUse, ...]:
    """The key values of a per-key limit with the most starts in the window (buckets
    ``<name>|<value>``: a range of ``ix_rate_slots_bucket_at``, '}' being the character after '|')."""
    rows = session.execute(select(SLOTS.c.bucket, func.count()).where(
        SLOTS.c.bucket >= f"{name}|", SLOTS.c.bucket < f"{name}}}", SLOTS.c.at > since)
        .group_by(SLOTS.c.bucket).order_by(func.count().desc(), SLOTS.c.bucket).limit(BUSIEST))
    return tuple(KeyUse(bucket.partition("|")[2], n) for bucket, n in rows)
