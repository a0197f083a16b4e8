"""The claim: which queued runs a worker takes, under every flow-control rule.

``claim_runs`` moves up to ``limit`` due queued runs to ``running`` for one worker in the
caller's transaction. Order: priority desc, scheduled_for, id (= creation). Rules, each holding
across threads and processes:

- a run of a **paused queue**, or of a queue this worker does not serve (or has no room for:
  ``queues``), is not taken;
- a job's ``max_concurrency`` and a **concurrency key**'s ``concurrency_limit`` are never
  exceeded: runs at their limit are excluded in the candidate query (so they cannot block the
  runs behind them), and the claim counts again under a lock before taking the last slots;
- a run over a **rate limit** is not taken and is *held* (``held_until`` its next slot,
  ``held_by`` the bucket), so later claims pass over it cheaply and ``waiting_for`` can say why.

Candidates the rules pass over in Python (several of one key in one batch, rate limits) leave
room: the claim asks again, up to ``ROUNDS`` times, for rows it has not seen, leaving out in SQL
the keys and jobs this claim filled (so a queue full of one key's runs costs one more round,
not one per run) and reading more rows the more were passed over (rate-limited runs cannot be
left out in SQL; they are held, so the next claims pass them by in SQL). So a batch is not cut
short by runs that must wait (no head-of-line blocking). A rate-limited run is never claimed
ahead (beyond ``begin``): its slot is taken at the claim, so the claim must be its start.

Locking. SQLite: the caller's ``BEGIN IMMEDIATE`` transaction already serializes claimers.
Postgres: candidates are taken ``FOR UPDATE SKIP LOCKED`` (claimers never wait for each other's
runs); the rows of concurrency-limited jobs ``FOR NO KEY UPDATE`` and an advisory lock per
concurrency key and rate bucket are taken, in sorted order in the first round and only if free
(try-lock, else the run is passed over) in later ones, so claimers never deadlock; counts read
after the locks see every committed claim."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Text, TypeDecorator, bindparam, func, literal_column, or_, select, text, type_coerce, update
from sqlalchemy.orm import Session

from lexyjobs import prepared
from lexyjobs.flow.limits import Windows
from lexyjobs.models import QueueState
from lexyjobs.states import INCREMENT, RUNS, RunStatus, transition_many
from lexyjobs.store import JOBS, status_is

ROUNDS = 4
_LOCK_NAMESPACE = "lexyjobs-flow:"


@dataclass(frozen=True)
class ClaimedRun:
    """What a worker needs to execute a run it just claimed."""

    id: int
    job_name: str
    job_version: int
    lease: int
    attempt: int
    max_attempts: int
    params: dict[str, Any]
    trigger: str
    pipeline_id: str | None = None
    begun: bool = True  # counted as begun at the claim; False: claimed ahead, ``mark_begun`` when it begins
    queue: str = "default"


def claim_runs(session: Session, limit: int, *, worker: str, now: datetime, postgres: bool,
               events: list[dict[str, Any]] | None = None, begin: int | None = None,
               queues: Mapping[str, int | None] | None = None) -> list[ClaimedRun]:
    """Claim up to ``limit`` due queued runs for ``worker`` (see the module's docstring). The
    first ``begin`` of them (default: all) go to idle threads and count as begun (``begun_at`` =
    now); the others are claimed ahead and wait, ``begun_at`` NULL, until ``mark_begun``.
    ``queues``: the queues served, each with the runs it may still take (None: no cap); None
    serves every queue. Event rows: see ``transition_many``."""
    room = None if queues is None else {q: n for q, n in queues.items() if n is None or n > 0}
    if limit <= 0 or room == {}:
        return []
    rules = _Rules(session, postgres, now, room, begin=limit if begin is None else begin)
    seen: list[int] = []
    fetch, passed = limit, 0
    for round_ in range(ROUNDS):
        params: dict[str, Any] = {"now": now, "limit": fetch}
        if round_:  # later rounds: only rows not seen, of keys, jobs and queues that still have room
            params.update(seen=seen, full_keys=sorted(rules.full_keys()), full_jobs=sorted(rules.full_jobs()))
        if room is not None:
            params["queues"] = sorted(rules.open_queues())
            if not params["queues"]:
                break
        rows = _candidates(session, postgres, room is not None, round_ > 0, params)
        if not round_ and room is None and not any(r.max_concurrency > 0 or r.concurrency_key or r.rate_limits
                                                   for r in rows):
            return _move(session, rows, worker=worker, now=now, events=events, begin=begin)  # no rule applies
        seen.extend(row.id for row in rows)
        passed += rules.choose(rows, limit, first_round=round_ == 0)
        need = limit - len(rules.chosen)
        if need <= 0 or len(rows) < fetch or not passed:
            break  # enough, no more candidates, or nothing passed over to make up for
        fetch = need + 4 * passed  # the runs passed over hint at how many more must be read
    rules.hold(session)
    return _move(session, rules.chosen, worker=worker, now=now, events=events, begin=begin)


class _Rules:
    """One claim's bookkeeping: runs chosen, counts by job and key, rate windows, runs held."""

    def __init__(self, session: Session, postgres: bool, now: datetime, room: dict[str, int | None] | None, *,
                 begin: int) -> None:
        self.session, self.postgres, self.now, self.begin = session, postgres, now, begin
        self.room = dict(room) if room is not None else None
        self.limits: dict[str, int] = {}  # each key's concurrency_limit, as its runs say
        self.caps: dict[str, int] = {}  # each job's max_concurrency
        self.jobs_unlocked: set[str] = set()  # jobs whose row another claimer holds (Postgres): pass over
        self.ahead_only = False  # the last run refused was refused only for being claimed ahead
        self.chosen: list[Any] = []
        self.by_job: dict[str, int] = {}
        self.by_key: dict[str, int] = {}
        self.locked: set[str] = set()   # advisory locks held (Postgres)
        self.unlocked: set[str] = set()  # advisory locks another claimer holds: pass over
        self.windows = Windows(now)
        self.held: dict[int, tuple[datetime, str]] = {}

    def choose(self, rows: Sequence[Any], limit: int, *, first_round: bool) -> int:
        """Take what the rules allow of ``rows`` (in claim order) up to ``limit`` in all; returns
        how many were passed over."""
        self._prepare(rows, first_round)
        passed = 0
        for row in rows:
            if len(self.chosen) >= limit:
                break
            if self._allowed(row):
                self.chosen.append(row)
            elif not self.ahead_only:  # one that may only begin now is no reason to read further
                passed += 1
        return passed

    def full_keys(self) -> set[str]:
        """Keys at their limit in this claim, or locked by another claimer: a later round skips them."""
        full = {key for key, count in self.by_key.items() if count >= self.limits.get(key, 1)}
        return full | {name[2:] for name in self.unlocked if name.startswith("k:")}

    def full_jobs(self) -> set[str]:
        """Jobs at their max_concurrency in this claim (or locked by another claimer)."""
        return {job for job, count in self.by_job.items() if count >= self.caps.get(job, 1)} | self.jobs_unlocked

    def open_queues(self) -> set[str]:
        """The served queues with room left."""
        return {queue for queue, free in (self.room or {}).items() if free is None or free > 0}

    def _prepare(self, rows: Sequence[Any], first_round: bool) -> None:
        """Lock (Postgres) and count the jobs and keys of ``rows`` not seen yet."""
        self.caps.update({r.job_name: r.max_concurrency for r in rows if r.max_concurrency > 0})
        self.limits.update({r.concurrency_key: r.concurrency_limit for r in rows if r.concurrency_key})
        wanted = sorted({r.job_name for r in rows if r.max_concurrency > 0} - set(self.by_job))
        jobs = wanted
        keys = sorted({r.concurrency_key for r in rows if r.concurrency_key} - set(self.by_key))
        buckets = sorted({b["bucket"] for r in rows for b in r.rate_limits or ()})
        if self.postgres:
            jobs = self._lock_jobs(wanted, wait=first_round)
            self.jobs_unlocked.update(set(wanted) - set(jobs))
            self._lock_names([f"k:{key}" for key in keys] + [f"r:{bucket}" for bucket in buckets], wait=first_round)
        if jobs:
            self.by_job.update({job: 0 for job in jobs})
            self.by_job.update(dict(self.session.execute(_RUNNING_OF_JOBS, {"names": jobs}).all()))
        keys = [key for key in keys if f"k:{key}" not in self.unlocked]
        if keys:
            self.by_key.update({key: 0 for key in keys})
            self.by_key.update(dict(self.session.execute(_RUNNING_OF_KEYS, {"keys": keys}).all()))

    def _lock_jobs(self, jobs: list[str], *, wait: bool) -> list[str]:
        """FOR NO KEY UPDATE on the jobs' rows in name order (SKIP LOCKED unless ``wait``);
        returns the jobs locked."""
        if not jobs:
            return []
        return list(self.session.scalars(_LOCK_JOBS if wait else _TRY_LOCK_JOBS, {"names": jobs}))

    def _lock_names(self, names: Iterable[str], *, wait: bool) -> None:
        """Advisory locks on ``names`` (keys and buckets), in one statement: waiting, in sorted
        order (first round), or only those free (later rounds; the others are passed over)."""
        todo = sorted(set(names) - self.locked - self.unlocked)
        if not todo:
            return
        if wait:
            self.session.execute(_LOCK_NAMES, {"names": [_LOCK_NAMESPACE + n for n in todo]})
            self.locked.update(todo)
            return
        rows = self.session.execute(_TRY_LOCK_NAMES, {"names": [_LOCK_NAMESPACE + n for n in todo]})
        got = {str(name): bool(ok) for name, ok in rows}
        for name in todo:
            (self.locked if got.get(_LOCK_NAMESPACE + name) else self.unlocked).add(name)

    def _allowed(self, row: Any) -> bool:
        self.ahead_only = False
        if self.room is not None:
            free = self.room.get(row.queue)
            if free is not None and free <= 0:
                return False
        if row.max_concurrency > 0:
            if row.job_name not in self.by_job or self.by_job[row.job_name] >= row.max_concurrency:
                return False
        if row.concurrency_key:
            if row.concurrency_key not in self.by_key or self.by_key[row.concurrency_key] >= row.concurrency_limit:
                return False
        if row.rate_limits:
            if any(f"r:{b['bucket']}" in self.unlocked for b in row.rate_limits):
                return False
            if len(self.chosen) >= self.begin:
                self.ahead_only = True
                return False  # never claimed ahead: its slot is its start, so it must begin now
            blocked = self.windows.blocked_until(self.session, row.rate_limits)
            if blocked is not None:
                self.held[row.id] = blocked
                return False
        if row.max_concurrency > 0:
            self.by_job[row.job_name] += 1
        if row.concurrency_key:
            self.by_key[row.concurrency_key] += 1
        if self.room is not None and self.room.get(row.queue) is not None:
            self.room[row.queue] = (self.room[row.queue] or 0) - 1
        return True

    def hold(self, session: Session) -> None:
        """Write the rate slots taken, and hold the runs over a rate limit until their slot."""
        self.windows.write(session)
        if self.held:
            session.execute(_HOLD, [{"b_id": run_id, "b_until": until, "b_by": bucket}
                                    for run_id, (until, bucket) in self.held.items()])


def _move(session: Session, chosen: Sequence[Any], *, worker: str, now: datetime,
          events: list[dict[str, Any]] | None, begin: int | None) -> list[ClaimedRun]:
    """Move the chosen runs to running: the first ``begin`` begun now, the others ahead."""
    ids = [row.id for row in chosen]
    begin = len(ids) if begin is None else max(begin, 0)
    by_id = {}
    unhold = {"held_until": None, "held_by": None} if any(row.rate_limits for row in chosen) else {}  # only they are held
    for part, begun_at in ((ids[:begin], now), (ids[begin:], None)):
        moved = transition_many(session, part, RunStatus.RUNNING, expected=RunStatus.QUEUED, at=now, values={
            "attempt": INCREMENT, "lease": INCREMENT, "started_at": now, "finished_at": None, "begun_at": begun_at,
            "worker": worker, "heartbeat_at": now, "progress": None, "progress_message": None,
            "process_group": None, "process_host": None, **unhold},
            returning=(RUNS.c.max_attempts, RUNS.c.params, RUNS.c.trigger, RUNS.c.pipeline_id), events=events)
        by_id.update({m.id: (m, begun_at is not None) for m in moved})
    rows = {row.id: row for row in chosen}
    return [ClaimedRun(m.id, m.job_name, rows[m.id].version, m.lease, m.attempt, m.max_attempts, m.params, m.trigger,
                       m.pipeline_id, begun, rows[m.id].queue) for m, begun in (by_id[i] for i in ids if i in by_id)]


def _queued(postgres: bool) -> Any:
    """The claim's ``status = 'queued'``. SQLite is told the term is not selective (``likelihood``):
    otherwise, lacking statistics, it reads the queued runs through a status-led index and sorts
    them all on every claim, instead of taking the first few in order from ``ix_runs_queue``."""
    term = status_is(RunStatus.QUEUED)
    return term if postgres else func.likelihood(term, literal_column("0.9"))


class _Buckets(TypeDecorator[Any]):
    """``runs.rate_limits`` as the claim reads it: most runs have none (stored as JSON ``null``),
    and decoding that text for every candidate cost more than the rest of a no-op claim's Python."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, str):  # SQLite: the JSON text (Postgres' driver has decoded it already)
            return None if value == "null" else json.loads(value)
        return value


def _candidates(session: Session, postgres: bool, by_queue: bool, more: bool, params: dict[str, Any]) -> Sequence[Any]:
    """The rows of ``_candidates_query``: the common shape (every queue, first round) as a
    prepared statement (``lexyjobs.prepared``), the others, with their lists, through SQLAlchemy."""
    query = _candidates_query(postgres, by_queue, more)
    if by_queue or more:
        return session.execute(query, params).all()
    return prepared.run(session, query, params)


@functools.cache
def _candidates_query(postgres: bool, by_queue: bool, more: bool = False) -> Any:
    """The claim's candidates: due queued runs in claim order, ``limit`` of them, skipping runs
    of paused queues (``by_queue``: of the queues in ``:queues`` only), runs held by a rate
    limit, and runs whose job or concurrency key is at its limit (``more``, a later round: also
    the runs in ``:seen`` and those of ``:full_jobs`` and ``:full_keys``). Built once per shape (its
    construction costs more than running it), with ``now``, ``limit`` (and ``queues``) as
    parameters.

    The job's columns come from subqueries, not a join: so the plan stays "walk ix_runs_queue
    in order, stop after ``limit``" (a join made Postgres, without fresh statistics, hash-join
    and sort every queued run)."""
    cap, version = (select(column).where(JOBS.c.name == RUNS.c.job_name).scalar_subquery()
                    for column in (JOBS.c.max_concurrency, JOBS.c.version))
    running = RUNS.alias("running")  # the candidate's job's running runs: a count on ix_runs_running
    running_of_job = (select(func.count()).select_from(running)
                      .where(running.c.job_name == RUNS.c.job_name, running.c.status == literal_column("'running'"))
                      .scalar_subquery())
    holders = RUNS.alias("holders")  # the candidate's key's running runs: a count on ix_runs_concurrency_key
    running_of_key = (select(func.count()).select_from(holders)
                      .where(holders.c.concurrency_key == RUNS.c.concurrency_key,
                             holders.c.status == literal_column("'running'"))
                      .scalar_subquery())
    paused = select(QueueState.name).where(QueueState.paused.is_(True))
    conditions = [_queued(postgres), RUNS.c.scheduled_for <= bindparam("now"),
                  or_(RUNS.c.held_until.is_(None), RUNS.c.held_until <= bindparam("now")),
                  RUNS.c.queue.not_in(paused), or_(cap <= 0, running_of_job < cap),
                  or_(RUNS.c.concurrency_key.is_(None), running_of_key < RUNS.c.concurrency_limit)]
    if by_queue:
        conditions.append(RUNS.c.queue.in_(bindparam("queues", expanding=True)))
    if more:  # a later round (see claim_runs): not the rows seen, nor keys and jobs found full
        conditions += [RUNS.c.id.not_in(bindparam("seen", expanding=True)),
                       RUNS.c.job_name.not_in(bindparam("full_jobs", expanding=True)),
                       or_(RUNS.c.concurrency_key.is_(None),
                           RUNS.c.concurrency_key.not_in(bindparam("full_keys", expanding=True)))]
    query = (select(RUNS.c.id, RUNS.c.job_name, RUNS.c.queue, RUNS.c.concurrency_key, RUNS.c.concurrency_limit,
                    type_coerce(RUNS.c.rate_limits, _Buckets).label("rate_limits"), cap.label("max_concurrency"),
                    version.label("version"))
             .where(*conditions)
             .order_by(RUNS.c.priority.desc(), RUNS.c.scheduled_for, RUNS.c.id)
             .limit(bindparam("limit")))
    return query.with_for_update(skip_locked=True, of=RUNS) if postgres else query


def has_due_runs(session: Session, *, now: datetime, queues: Sequence[str] | None = None) -> bool:
    """True when at least one queued run is due in a queue that is not paused (and is one of
    ``queues``, when given): a cheap read before a claim. It ignores the other flow-control
    rules, so it may say yes when the claim then takes nothing."""
    conditions = [status_is(RunStatus.QUEUED), RUNS.c.scheduled_for <= now,
                  or_(RUNS.c.held_until.is_(None), RUNS.c.held_until <= now),
                  RUNS.c.queue.not_in(select(QueueState.name).where(QueueState.paused.is_(True)))]
    if queues is not None:
        conditions.append(RUNS.c.queue.in_(list(queues)))
    return session.execute(select(RUNS.c.id).where(*conditions).limit(1)).first() is not None


# The claim's statements for the concurrency-limited jobs named in ``names``: lock their rows in
# name order (FOR NO KEY UPDATE, waiting or skipping), then count their running runs; and the
# running runs of concurrency keys.
_NAMES: Any = bindparam("names", expanding=True)
_LOCK_JOBS = (select(JOBS.c.name).where(JOBS.c.name.in_(_NAMES)).order_by(JOBS.c.name)
              .with_for_update(of=JOBS, key_share=True))
_TRY_LOCK_JOBS = (select(JOBS.c.name).where(JOBS.c.name.in_(_NAMES)).order_by(JOBS.c.name)
                  .with_for_update(of=JOBS, key_share=True, skip_locked=True))
_RUNNING_OF_JOBS = (select(RUNS.c.job_name, func.count()).where(status_is(RunStatus.RUNNING), RUNS.c.job_name.in_(_NAMES))
                    .group_by(RUNS.c.job_name))
_RUNNING_OF_KEYS = (select(RUNS.c.concurrency_key, func.count())
                    .where(status_is(RunStatus.RUNNING), RUNS.c.concurrency_key.in_(bindparam("keys", expanding=True)))
                    .group_by(RUNS.c.concurrency_key))
# Advisory locks on many names in one round trip: the names come sorted from the subquery and are
# locked as its rows stream through (waiting), or tried (each name with whether it was got).
_LOCK_NAMES = text("SELECT count(pg_advisory_xact_lock(hashtext(n))) FROM "
                   "(SELECT n FROM unnest(CAST(:names AS text[])) AS n ORDER BY n) AS sorted")
_TRY_LOCK_NAMES = text("SELECT n, pg_try_advisory_xact_lock(hashtext(n)) FROM "
                       "(SELECT n FROM unnest(CAST(:names AS text[])) AS n ORDER BY n) AS sorted")
_HOLD = (update(RUNS).where(RUNS.c.id == bindparam("b_id"), status_is(RunStatus.QUEUED))
         .values(held_until=bindparam("b_until"), held_by=bindparam("b_by")))
