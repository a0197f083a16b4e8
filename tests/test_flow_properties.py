"""A stateful property test (hypothesis) of the claim's flow-control rules on a real database
(SQLite file and Postgres), with a fake clock: random enqueues, claims by several workers (one
at a time, and three at once in threads), finished runs and time passing. After every step:

- no job runs more than its ``max_concurrency``, no concurrency key more than its limit;
- no rate bucket had more than ``rate`` starts in any window of ``per`` seconds;
- no starvation: a claim that took fewer runs than it asked for left no queued run that could
  start (its job, key and buckets all with room) — so whenever such a run exists and a worker
  has room, some run is claimed (no head-of-line blocking behind runs that must wait).

The oracle is written from the job definitions below, not from the claim's code: it counts the
running runs in the database and the starts the test saw."""
from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete, select

from lexyjobs import claiming, registry, run_counts, runs
from lexyjobs.db import Database, utcnow
from lexyjobs.flow.limits import SLOTS
from lexyjobs.models import Run, RunEvent, RunLog
from lexyjobs.states import RunStatus, transition

JOBS_TOML = '''
[limits.api]
rate = "2/5s"

[jobs.keyed]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 0
concurrency_key = "key:{k}"
concurrency_limit = 2
params = { k = { type = "integer" } }

[jobs.also-keyed]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 0
concurrency_key = "key:{k}"
concurrency_limit = 2
limits = ["api"]
params = { k = { type = "integer" } }

[jobs.capped]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 2

[jobs.rated]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 0
rate_limit = "3/10s"

[jobs.shared]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 0
limits = ["api"]

[jobs.per-key]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 0
rate_limit = "1/4s per {k}"
params = { k = { type = "integer" } }

[jobs.free]
kind = "python"
func = "jobfuncs:noop"
max_concurrency = 0
'''
CAPS = {"capped": 2}
KEY_LIMIT = 2
KEYED = {"keyed", "also-keyed"}
RATES = {"job:rated": (3, 10.0), "api": (2, 5.0)}  # and job:per-key|<k>: 1 per 4s
JOBS = sorted(["keyed", "also-keyed", "capped", "rated", "shared", "per-key", "free"])


def buckets_of(job: str, k: int | None) -> list[tuple[str, int, float]]:
    """The rate buckets a run of ``job`` takes a slot from, from the definitions above."""
    names = {"rated": ["job:rated"], "shared": ["api"], "also-keyed": ["api"]}.get(job, [])
    out = [(name, *RATES[name]) for name in names]
    return out + ([(f"job:per-key|{k}", 1, 4.0)] if job == "per-key" else [])


class ClaimMachine(RuleBasedStateMachine):
    db: Database

    def __init__(self) -> None:
        super().__init__()
        with self.db.write() as session:
            for table in (RunEvent, RunLog, Run):
                session.execute(delete(table))
            session.execute(delete(SLOTS))
            session.execute(delete(run_counts.RUN_COUNTS))
        self.now = utcnow() + timedelta(days=1)  # after every enqueue: runs are due from their real enqueue time
        self.starts: dict[str, list[datetime]] = defaultdict(list)
        self.params: dict[int, tuple[str, int | None]] = {}

    # ---------------------------------------------------------------- the world

    def _running(self) -> list[Run]:
        with self.db.read() as session:
            return list(session.scalars(select(Run).where(Run.status == "running")))

    def _queued(self) -> list[Run]:
        with self.db.read() as session:
            return list(session.scalars(select(Run).where(Run.status == "queued")))

    def _could_start(self, run: Run, running: list[Run]) -> bool:
        """The oracle: may ``run`` start now by the definitions, the running runs and the starts seen?"""
        job, k = self.params[run.id]
        if job in CAPS and sum(r.job_name == job for r in running) >= CAPS[job]:
            return False
        if job in KEYED and sum(self.params[r.id][0] in KEYED and self.params[r.id][1] == k
                                for r in running) >= KEY_LIMIT:
            return False
        return all(sum(self.now - timedelta(seconds=per) < at <= self.now for at in self.starts[name]) < rate
                   for name, rate, per in buckets_of(job, k))

    def _record(self, claimed: list[claiming.ClaimedRun]) -> None:
        for c in claimed:
            job, k = self.params[c.id]
            for name, _, _ in buckets_of(job, k):
                self.starts[name].append(self.now)

    def _claim(self, worker: str, limit: int) -> list[claiming.ClaimedRun]:
        with self.db.write() as session:
            return claiming.claim_runs(session, limit, worker=worker, now=self.now, postgres=self.db.is_postgres)

    def _assert_nothing_left_that_could_start(self) -> None:
        running = self._running()
        startable = [r.id for r in self._queued() if self._could_start(r, running)]
        assert not startable, f"runs {startable} could start but the claim left them"

    # ---------------------------------------------------------------- rules

    @rule(job=st.sampled_from(JOBS), k=st.integers(0, 2), priority=st.integers(0, 1), count=st.integers(1, 6))
    def enqueue(self, job: str, k: int, priority: int, count: int) -> None:
        params = {"k": k} if job in ("keyed", "also-keyed", "per-key") else {}
        for _ in range(count):
            run_id = runs.enqueue(self.db, job, params, priority=priority)
            self.params[run_id] = (job, params.get("k"))

    @rule(worker=st.sampled_from(["w1", "w2", "w3"]), limit=st.integers(1, 5))
    def claim(self, worker: str, limit: int) -> None:
        claimed = self._claim(worker, limit)
        assert len(claimed) <= limit
        self._record(claimed)
        if len(claimed) < limit:
            self._assert_nothing_left_that_could_start()

    @rule(limits=st.lists(st.integers(1, 4), min_size=3, max_size=3))
    def claim_at_once(self, limits: list[int]) -> None:
        """Three workers claim in threads at the same moment (Postgres: truly concurrently)."""
        got: list[list[claiming.ClaimedRun]] = [[] for _ in limits]
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                got[i] = self._claim(f"t{i}", limits[i])
            except BaseException as exc:  # surfaced below
                errors.append(exc)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(limits))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        claimed = [c for batch in got for c in batch]
        assert len({c.id for c in claimed}) == len(claimed)  # no run claimed twice
        self._record(claimed)

    @rule(pick=st.integers(0, 1000))
    def finish(self, pick: int) -> None:
        running = sorted(self._running(), key=lambda r: r.id)
        if not running:
            return
        run = running[pick % len(running)]
        with self.db.write() as session:
            transition(session, run.id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=run.lease, at=self.now)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 4.0, 5.0, 10.0]))
    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def limits_hold(self) -> None:
        running = self._running()
        by_job = Counter(r.job_name for r in running)
        assert all(by_job[job] <= cap for job, cap in CAPS.items()), by_job
        by_key = Counter(r.concurrency_key for r in running if r.concurrency_key)
        assert all(n <= KEY_LIMIT for n in by_key.values()), by_key

    @invariant()
    def counters_agree(self) -> None:
        """The run counters the panel reads (lexyjobs.run_counts) follow every claim and finish,
        threaded claims included."""
        with self.db.read() as session:
            assert run_counts.drift(session) == {}

    @invariant()
    def rates_hold(self) -> None:
        for name, at in self.starts.items():
            rate, per = RATES.get(name, (1, 4.0))
            at = sorted(at)
            for i, first in enumerate(at):  # starts in [first, first + per): at most rate
                assert sum(first <= t < first + timedelta(seconds=per) for t in at[i:]) <= rate, (name, at)


def test_the_claim_never_exceeds_a_limit_and_never_starves_a_run_that_could_start(db: Database,
                                                                                    tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS_TOML)
    report = registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True)
    assert sorted(report.loaded) == JOBS and not report.errors
    ClaimMachine.db = db
    run_state_machine_as_test(ClaimMachine, settings=settings(
        max_examples=60, stateful_step_count=30, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
