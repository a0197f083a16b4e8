"""The claim under concurrency keys and rate limits (lexyjobs.claiming): a run blocked by its
key, its job's limit or a rate limit never blocks later runs whose key is free (no head-of-line
blocking, even when the whole batch is blocked runs); runs over a rate limit wait, held until
their slot (never failed) and a worker starts them within about a poll interval of it; a 429
with Retry-After still delays the retry of a rate-limited HTTP job by the server's time."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from conftest import wait_for
from test_kind_http import FakeServer, http_server  # noqa: F401  (the fixture)

from lexyjobs import claiming, registry, runs, store
from lexyjobs.db import Database, utcnow
from lexyjobs.states import RunStatus, transition


def claim(db: Database, limit: int, now: datetime, worker: str = "w:1") -> list[claiming.ClaimedRun]:
    with db.write() as session:
        return claiming.claim_runs(session, limit, worker=worker, now=now, postgres=db.is_postgres)


def finish(db: Database, claimed: claiming.ClaimedRun, now: datetime) -> None:
    with db.write() as session:
        transition(session, claimed.id, RunStatus.SUCCEEDED, expected=RunStatus.RUNNING, lease=claimed.lease, at=now)


def row(db: Database, run_id: int) -> Any:
    with db.read() as session:
        return store.get_run(session, run_id)


def later() -> datetime:
    """A claim time after every enqueue of the test (runs are due from their real enqueue time)."""
    return utcnow() + timedelta(hours=1)


def test_runs_of_a_busy_key_do_not_block_a_free_key_behind_them(db: Database, make_job: Callable[..., str]) -> None:
    make_job("crawl", max_concurrency=0, concurrency_key="site:{site}", concurrency_limit=1,
             params={"site": {"type": "string"}})
    busy = [runs.enqueue(db, "crawl", {"site": "a"}) for _ in range(40)]
    free = runs.enqueue(db, "crawl", {"site": "b"})
    now = later()
    got = claim(db, 4, now)
    assert [c.id for c in got] == [busy[0], free]  # one of site a (its limit), then site b past 39 others
    assert claim(db, 4, now) == []  # both keys at their limit: nothing, however many runs wait
    finish(db, got[0], now)
    assert [c.id for c in claim(db, 4, now)] == [busy[1]]


def test_a_key_limit_holds_across_jobs_sharing_the_key(db: Database, make_job: Callable[..., str]) -> None:
    for name in ("post", "refresh"):  # seed 001: per-brand limits over several jobs
        make_job(name, max_concurrency=0, concurrency_key="brand:{brand_id}", concurrency_limit=2,
                 params={"brand_id": {"type": "integer"}})
    ids = [runs.enqueue(db, job, {"brand_id": 1}) for job in ("post", "refresh", "post")]
    other = runs.enqueue(db, "refresh", {"brand_id": 2})
    got = claim(db, 10, later())
    assert [c.id for c in got] == ids[:2] + [other]
    with db.read() as session:
        assert store.get_run(session, ids[0]).concurrency_key == "brand:1"  # type: ignore[union-attr]


def test_a_full_job_limit_does_not_block_other_jobs(db: Database, make_job: Callable[..., str]) -> None:
    make_job("single", max_concurrency=1)
    make_job("free", max_concurrency=0)
    blocked = [runs.enqueue(db, "single") for _ in range(30)]
    other = runs.enqueue(db, "free")
    assert [c.id for c in claim(db, 2, later())] == [blocked[0], other]


def test_runs_over_a_rate_limit_are_held_until_their_slot_and_never_fail(db: Database,
                                                                         make_job: Callable[..., str]) -> None:
    make_job("rated", max_concurrency=0, rate_limit="3/10s")
    ids = [runs.enqueue(db, "rated") for _ in range(5)]
    start = later()
    assert [c.id for c in claim(db, 5, start)] == ids[:3]
    for run_id in ids[3:]:
        held = row(db, run_id)
        assert (held.status, held.held_until, held.held_by) == ("queued", start + timedelta(seconds=10), "job:rated")
    assert claim(db, 5, start + timedelta(seconds=9.9)) == []
    assert [c.id for c in claim(db, 5, start + timedelta(seconds=10))] == ids[3:]


def test_a_batch_full_of_rate_limited_runs_does_not_hide_a_free_run(db: Database,
                                                                    make_job: Callable[..., str]) -> None:
    make_job("rated", max_concurrency=0, rate_limit="1/h")
    make_job("free", max_concurrency=0)
    first = runs.enqueue(db, "rated")
    now = later()
    assert [c.id for c in claim(db, 1, now)] == [first]
    waiting = [runs.enqueue(db, "rated") for _ in range(30)]
    other = runs.enqueue(db, "free")
    assert [c.id for c in claim(db, 1, now)] == [other]  # past 30 runs over the limit, in one claim
    assert {row(db, i).held_until for i in waiting} == {now + timedelta(hours=1)}


def test_a_keyed_rate_limit_counts_each_key_value_apart(db: Database, make_job: Callable[..., str]) -> None:
    make_job("call", max_concurrency=0, rate_limit="1/m per {customer_id}",
             params={"customer_id": {"type": "integer"}})
    ids = [runs.enqueue(db, "call", {"customer_id": c}) for c in (1, 1, 2)]
    assert [c.id for c in claim(db, 3, later())] == [ids[0], ids[2]]
    assert row(db, ids[1]).held_by == "job:call|1"


def test_a_named_limit_is_shared_by_the_jobs_naming_it(db: Database, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[limits.openai]\nrate = "2/m"\n'
                         '[jobs.summarize]\nkind = "python"\nfunc = "jobfuncs:noop"\nlimits = ["openai"]\nmax_concurrency = 0\n'
                         '[jobs.embed]\nkind = "python"\nfunc = "jobfuncs:noop"\nlimits = ["openai"]\n'
                         'max_concurrency = 0\n')
    registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True)
    ids = [runs.enqueue(db, job) for job in ("summarize", "embed", "summarize", "embed")]
    now = later()
    assert [c.id for c in claim(db, 4, now)] == ids[:2]
    assert [row(db, i).held_by for i in ids[2:]] == ["openai", "openai"]


def test_a_rate_limited_run_is_never_claimed_ahead(db: Database, make_job: Callable[..., str]) -> None:
    make_job("rated", max_concurrency=0, rate_limit="100/s")
    make_job("free", max_concurrency=0)
    ids = [runs.enqueue(db, "rated") for _ in range(3)] + [runs.enqueue(db, "free")]
    with db.write() as session:
        got = claiming.claim_runs(session, 4, worker="w", now=later(), postgres=db.is_postgres, begin=1)
    assert [(c.id, c.begun) for c in got] == [(ids[0], True), (ids[3], False)]


def test_a_worker_starts_a_held_run_within_a_poll_interval_of_its_slot(db: Database, make_job: Callable[..., str],
                                                                        start_worker: Callable[..., Any]) -> None:
    make_job("rated", max_concurrency=0, rate_limit="2/2s")
    ids = [runs.enqueue(db, "rated") for _ in range(4)]
    start_worker(poll_interval=0.2)

    def all_done() -> list[Any] | None:
        found = [row(db, i) for i in ids]
        return found if all(r.status == "succeeded" for r in found) else None
    done = wait_for(all_done, 15)
    first, third = min(r.started_at for r in done[:2]), min(r.started_at for r in done[2:])
    assert third - first >= timedelta(seconds=2)  # the 3rd and 4th waited for their slot
    assert third - (first + timedelta(seconds=2)) <= timedelta(seconds=0.2 + 0.3)  # its slot + a poll


def test_a_429_with_retry_after_delays_a_rate_limited_http_run_by_the_servers_time(
        db: Database, make_job: Callable[..., str], start_worker: Callable[..., Any],
        http_server: FakeServer) -> None:  # noqa: F811
    make_job("throttled", kind="http", url=http_server.url("/throttled/429/40"), max_attempts=2, backoff="0s",
             backoff_jitter=0, rate_limit="100/m", concurrency_key="api", concurrency_limit=1)
    start_worker()
    run_id = runs.enqueue(db, "throttled")
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "queued" and r.attempt == 1 and r)
    with db.read() as session:
        requeued = store.run_events(session, run_id)[-1]
    assert run.scheduled_for - requeued.at == timedelta(seconds=40)
