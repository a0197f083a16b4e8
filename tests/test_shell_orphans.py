"""A shell job's processes never outlive the lexyjobs process that started them, and a rescue never
starts attempt N+1 beside attempt N (issue 14, A1): real servers killed with ``kill -9 -<pgid>``,
real job process groups, /proc to see what is left. SQLite and Postgres."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import wait_for
from crashes import Servers, children_of, command_line, processes_of_run

from lexyjobs import children, claiming, runs, store
from lexyjobs.db import Database

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")]
T0 = datetime(2100, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def servers(tmp_path: Path, db_url: str) -> Iterator[Servers]:
    started = Servers(tmp_path, db_url)
    yield started
    started.close()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def test_a_killed_servers_shell_job_dies_with_it_and_never_overlaps_its_next_attempt(
        db: Database, make_job: Callable[..., str], servers: Servers, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    make_job("orphan", kind="shell", max_concurrency=1,
             argv=["sh", "-c", 'echo start >> "$1"; sleep 4; echo end >> "$1"', "job", str(trace)])
    first = servers.start(LEXYJOBS_WORKERS="1")
    run_id = runs.enqueue(db, "orphan")
    wait_for(lambda: lines(trace) == ["start"], timeout=20)
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).process_group and r)
    assert run.process_host == children.HOST
    assert run.process_group in processes_of_run(run_id)  # the recorded group is the command's

    servers.crash(first)
    crashed_at = time.monotonic()
    wait_for(lambda: not processes_of_run(run_id), timeout=2)  # well before its 4 s sleep is over
    print(f"\nthe job's processes were gone {time.monotonic() - crashed_at:.3f}s after the kill")
    servers.start(LEXYJOBS_WORKERS="1")  # at once, as a supervisor would

    wait_for(lambda: runs.get_run(db, run_id).status == "succeeded", timeout=30)
    assert lines(trace) == ["start", "start", "end"]  # attempt 1 never reached its end, not even later
    assert runs.get_run(db, run_id).attempt == 2


def test_the_rescue_kills_what_survived_of_the_job_before_the_next_attempt(
        db: Database, make_job: Callable[..., str], servers: Servers, tmp_path: Path) -> None:
    """The guard killed too: the command itself dies with the server (PR_SET_PDEATHSIG), its
    grandchild does not, and only the rescue stands between it and a second copy."""
    trace, script = tmp_path / "trace", tmp_path / "job.sh"
    script.write_text('echo start >> "$1"\nsh -c \'sleep 5; echo end >> "$0"\' "$1"\necho done >> "$1"\n',
                      encoding="utf-8")
    make_job("grandchild", kind="shell", max_concurrency=1, argv=["sh", str(script), str(trace)])
    first = servers.start(LEXYJOBS_WORKERS="1")
    run_id = runs.enqueue(db, "grandchild")
    wait_for(lambda: lines(trace) == ["start"] and len(processes_of_run(run_id)) >= 3, timeout=20)
    # The rescue knows the group from the run's record, written just after the command started (on
    # a loaded machine, maybe after its first lines). A crash before that is the guard's to cover.
    wait_for(lambda: runs.get_run(db, run_id).process_group, timeout=20)
    (guard,) = [pid for pid in children_of(first.pid) if command_line(pid)[1:4] == ["-I", "-S", "-c"]]
    os.kill(guard, signal.SIGKILL)
    wait_for(lambda: guard not in children_of(first.pid))

    servers.crash(first)
    wait_for(lambda: len(processes_of_run(run_id)) == 2)  # the command died with the server
    survivors = processes_of_run(run_id)  # its grandchild: sh -c 'sleep 5; ...' and the sleep
    servers.start(LEXYJOBS_WORKERS="1")

    wait_for(lambda: lines(trace)[:2] == ["start", "start"], timeout=20)
    assert not set(survivors) & set(processes_of_run(run_id))  # killed before attempt 2 began
    wait_for(lambda: runs.get_run(db, run_id).status == "succeeded", timeout=30)
    assert lines(trace) == ["start", "start", "end", "done"]  # one "end": attempt 2's


def claim(db: Database, now: datetime) -> claiming.ClaimedRun:
    with db.write() as session:
        (claimed,) = claiming.claim_runs(session, 1, worker="gone:1", now=now, postgres=db.is_postgres)
    return claimed


def start_group(run_id: int) -> subprocess.Popen[bytes]:
    """A process group like a shell job's: ``sh`` and a ``sleep`` child, marked as run ``run_id``'s."""
    return subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True,
                            env={**os.environ, "LEXYJOBS_RUN_ID": str(run_id)})


def stale_run_with_group(db: Database, make_job: Callable[..., str], marked_as: Callable[[int], int]) -> Any:
    """A run claimed by a worker that died, whose recorded process group on this host still runs
    (its processes marked as run ``marked_as(run id)``)."""
    run_id = runs.enqueue(db, make_job("grouped"))
    claimed = claim(db, T0)
    group = start_group(marked_as(run_id))
    wait_for(lambda: len(processes_of_run(marked_as(run_id))) == 2)
    with db.write() as session:
        assert store.record_process(session, store.Lease(run_id, claimed.lease), pgid=group.pid, host=children.HOST,
                                    now=T0)
    return run_id, group


def test_a_rescue_on_the_jobs_host_kills_its_live_process_group_before_requeueing(
        db: Database, make_job: Callable[..., str]) -> None:
    run_id, group = stale_run_with_group(db, make_job, lambda run_id: run_id)
    try:
        assert runs.rescue_stale(db, stale_after=60, now=T0 + timedelta(seconds=70)) == [(run_id, "queued")]
        assert processes_of_run(run_id) == []  # gone by the time the run is back in the queue
        assert group.wait(timeout=5) == -signal.SIGKILL
    finally:
        children.kill_group(group.pid)
        group.wait(timeout=5)


def test_a_group_that_is_not_the_runs_is_left_alone(db: Database, make_job: Callable[..., str]) -> None:
    """The recorded group number now belongs to other processes (numbers are reused once a group
    is gone): the rescue must not kill them, and the run moves on."""
    run_id, group = stale_run_with_group(db, make_job, lambda run_id: run_id + 1000)
    try:
        assert runs.rescue_stale(db, stale_after=60, now=T0 + timedelta(seconds=70)) == [(run_id, "queued")]
        assert len(processes_of_run(run_id + 1000)) == 2 and group.poll() is None
    finally:
        children.kill_group(group.pid)
        group.wait(timeout=5)
