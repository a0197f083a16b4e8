"""A provider's requests per minute are shared by real processes: two ``lexyjobs worker``
processes (one thread each) run three openai runs of a provider allowing 2 requests a minute; the
server gets two requests and the third run waits, saying why, until it is canceled (which stops its
wait at once)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from conftest import LLM_KEY, wait_for
from openai_server import OpenAIServer
from test_kind_openai import finished
from test_processes import Child, spawn  # noqa: F401  (the fixture)

from lexyjobs import registry, runs
from lexyjobs.db import Database

JOBS = '''
[limits.openai]
requests_per_minute = 2

[jobs.ask]
kind = "openai"
model = "gpt-test"
prompt = "Question {{ n }}"
limits = ["openai"]
max_concurrency = 0
params = { n = { type = "integer" } }
'''


def test_two_worker_processes_share_a_providers_requests_per_minute(db: Database, db_url: str, tmp_path: Path,
                                                                    llm: OpenAIServer,
                                                                    spawn: Callable[..., Child]) -> None:  # noqa: F811
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS)
    report = registry.sync_jobs(db, jobs_file=str(jobs_file), archive_missing=True)
    assert report.loaded == ["ask"], report.errors
    ids = [runs.enqueue(db, "ask", {"n": n}) for n in range(3)]
    env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": LLM_KEY, "NO_PROXY": "127.0.0.1",
           "LEXYJOBS_WORKERS": "1", "LEXYJOBS_PREFETCH": "0"}
    for _ in range(2):
        spawn("worker", db_url, **env)
    wait_for(lambda: len(llm.received) == 2, timeout=20)
    waiting = wait_for(lambda: [r for i in ids if (r := runs.get_run(db, i)).status == "running"
                                and r.progress_message == "waiting for provider openai: 2 requests a minute"],
                       timeout=10)
    time.sleep(2)
    assert len(llm.received) == 2  # the window is full for every process
    done = [finished(db, i, timeout=10) for i in ids if i != waiting[0].id]
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    assert len({r.worker for r in (*done, waiting[0])}) == 2  # both processes took runs
    started = time.monotonic()
    runs.cancel(db, waiting[0].id)
    assert finished(db, waiting[0].id, timeout=10).status == "canceled"
    assert time.monotonic() - started < 5
    assert len(llm.received) == 2
