"""Transactional enqueue (issue 15 §3): ``lexyjobs.enqueue(..., session=<host Session or
Connection>)`` writes the run in the host application's transaction. A plain SQLAlchemy model of
"the host" lives in the same database; commit → both rows and a real worker runs the job;
rollback → neither, and no wake-up. Real SQLite files, real Postgres schemas, a real worker process."""
from __future__ import annotations

import gc
import subprocess
import time
import weakref
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, create_engine, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session, sessionmaker

import lexyjobs
from conftest import PYTHON, ROOT, subprocess_env, wait_for
from lexyjobs import runs
from lexyjobs.db import Database, utcnow
from lexyjobs.runtime import Runtime


class HostBase(DeclarativeBase):
    pass


class Order(HostBase):
    """The host application's own table."""

    __tablename__ = "host_orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


@pytest.fixture
def host_engine(lj: Runtime, db_url: str):  # type: ignore[no-untyped-def]
    """The host's own engine on lexyjobs' database (same file / same schema), with its table."""
    engine = create_engine(db_url)
    HostBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def wakes(lj: Runtime) -> list[float]:
    """Times at which this process's workers were woken by an enqueue (Database.on_enqueue)."""
    seen: list[float] = []
    lj.db.on_enqueue(lambda: seen.append(time.monotonic()))
    return seen


def orders(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(Order.item).order_by(Order.id)))


def run_count(lj: Runtime) -> int:
    return lexyjobs.stats(runtime=lj)["total"]


def test_commit_writes_both_rows_and_a_worker_runs_the_job(lj, make_job, host_engine, start_worker, wakes) -> None:
    make_job("ship", func="jobfuncs:echo_params", params={"order": {"type": "integer", "required": True}})
    start_worker()
    with Session(host_engine) as session:
        order = Order(item="book")
        session.add(order)
        session.flush()
        run = lexyjobs.enqueue("ship", {"order": order.id}, session=session)
        assert run.status == "queued" and run_count(lj) == 0  # not visible outside the transaction yet
        assert wakes == []
        session.commit()
    assert wakes, "the host's commit wakes this process's workers"
    assert orders(host_engine) == ["book"]
    assert run.wait(10).result == {"order": 1}


def test_rollback_leaves_neither_row_and_wakes_nobody(lj, make_job, host_engine, wakes) -> None:
    make_job("ship")
    with Session(host_engine) as session:
        session.add(Order(item="book"))
        lexyjobs.enqueue("ship", session=session)
        session.rollback()
        session.add(Order(item="later"))  # the same session commits something else afterwards
        session.commit()
    assert orders(host_engine) == ["later"] and run_count(lj) == 0
    assert wakes == []  # neither at the rollback nor at the later commit


def test_a_failed_enqueue_leaves_the_host_transaction_usable(lj, make_job, host_engine) -> None:
    make_job("typed", params={"n": {"type": "integer", "required": True}})
    with Session(host_engine) as session:
        session.add(Order(item="book"))
        with pytest.raises(lexyjobs.InvalidParams):
            lexyjobs.enqueue("typed", {"n": "x"}, session=session)
        session.commit()
    assert orders(host_engine) == ["book"] and run_count(lj) == 0


def test_a_scoped_session_works_like_flask_sqlalchemy(lj, make_job, host_engine) -> None:
    make_job("ship")
    scoped = scoped_session(sessionmaker(host_engine))
    scoped.add(Order(item="pen"))
    run = lexyjobs.enqueue("ship", session=scoped)
    scoped.commit()
    scoped.remove()
    assert orders(host_engine) == ["pen"] and lexyjobs.get_run(run.id).status in ("queued", "running", "succeeded")


def test_a_connection_commits_and_rolls_back_with_the_run(lj, make_job, host_engine, start_worker) -> None:
    make_job("ship")
    with host_engine.connect() as conn:
        conn.execute(Order.__table__.insert().values(item="kept"))
        kept = lexyjobs.enqueue("ship", session=conn)
        conn.commit()
        gone = lexyjobs.enqueue("ship", session=conn)  # begins the next transaction itself
        conn.execute(Order.__table__.insert().values(item="dropped"))
        conn.rollback()
    assert orders(host_engine) == ["kept"]
    with pytest.raises(lexyjobs.RunNotFound):
        gone.refresh()
    start_worker()  # woken by NOTIFY / the SQLite watch / the poll: no after-commit hook on a Connection
    assert kept.wait(10).succeeded


def test_a_session_on_another_database_is_refused(lj, make_job, db_url, tmp_path) -> None:
    make_job("ship")
    if lj.db.is_sqlite:
        other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    else:  # the same server and database, its default schema (public) instead of the test's
        other = create_engine(db_url.split("?")[0])
    with Session(other) as session, pytest.raises(lexyjobs.OtherDatabase) as refused:
        lexyjobs.enqueue("ship", session=session)
    assert refused.value.code == "other_database" and "session" in refused.value.message
    other.dispose()
    assert run_count(lj) == 0


def test_the_same_sqlite_file_by_another_path_is_accepted(lj, make_job, tmp_path) -> None:
    if not lj.db.is_sqlite:
        pytest.skip("SQLite paths")
    make_job("ship")
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    engine = create_engine(f"sqlite:///{link / 'jobs.db'}")
    with Session(engine) as session:
        lexyjobs.enqueue("ship", session=session)
        session.commit()
    engine.dispose()
    assert run_count(lj) == 1


def test_something_else_as_session_is_a_clear_error(lj, make_job) -> None:
    make_job("ship")
    with pytest.raises(lexyjobs.LexyjobsError, match="Session, scoped_session or Connection"):
        lexyjobs.enqueue("ship", session="db.session")


def test_postgres_wakes_a_worker_process_at_commit(lj, make_job, db_url, host_engine, tmp_path: Path) -> None:
    """Another process's worker hears the NOTIFY sent in the host's transaction when it commits:
    with a 30 s poll, only the NOTIFY can make it pick the run up within a second."""
    if not lj.db.is_postgres:
        pytest.skip("NOTIFY is Postgres'")
    make_job("ship")
    log = tmp_path / "worker.log"
    env = subprocess_env(db_url, LEXYJOBS_POLL_INTERVAL="30", LEXYJOBS_JOBS_FILE="", LEXYJOBS_WORKERS="1")
    with open(log, "wb") as out:
        worker = subprocess.Popen([PYTHON, "-m", "lexyjobs", "worker"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "lexyjobs worker " in log.read_text(errors="replace") or worker.poll() is not None, 30)
        assert worker.poll() is None, log.read_text()
        time.sleep(0.5)  # its LISTEN connection is up a moment after the start-up line
        with Session(host_engine) as session:
            session.add(Order(item="book"))
            run = lexyjobs.enqueue("ship", session=session)
            time.sleep(1.0)  # not before the commit: the NOTIFY waits for it
            assert run_count(lj) == 0
            session.commit()
            committed = time.monotonic()
        run.wait(5)
        took = time.monotonic() - committed
        assert run.succeeded and took < 1.0, f"picked up {took:.2f}s after the commit"
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_host_rows_and_runs_share_one_transaction_count(lj, make_job, host_engine) -> None:
    """Many host transactions, every other one rolled back: exactly the committed ones have runs."""
    make_job("ship")
    for n in range(10):
        with Session(host_engine) as session:
            session.add(Order(item=f"o{n}"))
            lexyjobs.enqueue("ship", session=session)
            session.commit() if n % 2 == 0 else session.rollback()
    with host_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Order)) == 5
        assert conn.scalar(text("SELECT count(*) FROM runs")) == 5
    assert run_count(lj) == 5


def test_lexyjobs_own_enqueues_wake_once_each_and_a_rolled_back_one_not_at_all(lj, make_job, wakes) -> None:
    make_job("woken", max_concurrency=0)
    runs.enqueue(lj.db, "woken")
    runs.enqueue_many(lj.db, [runs.RunRequest("woken"), runs.RunRequest("woken")])
    assert len(wakes) == 2
    with pytest.raises(RuntimeError), lj.db.write() as session:
        runs.insert_requests(session, [runs.RunRequest("woken")], now=utcnow())
        lj.db.enqueued(session)
        raise RuntimeError("the caller failed after enqueueing")
    with lj.db.write() as session:  # a later write that enqueues nothing wakes nobody either
        session.execute(select(1))
    assert len(wakes) == 2 and run_count(lj) == 3


def test_a_database_nobody_holds_is_collected_with_its_connections(lj, make_job) -> None:
    """The enqueue hooks hold their Database weakly: one bound to a class-wide event (a
    sessionmaker's) kept every Database and its open connections alive for good."""
    make_job("briefly", max_concurrency=0)
    other = Database(lj.db.url)
    runs.enqueue(other, "briefly")
    with other.read() as session:
        session.execute(select(1))
    gone = weakref.ref(other)
    del other, session
    gc.collect()
    assert gone() is None and run_count(lj) == 1
