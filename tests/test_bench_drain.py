"""The queue benchmarks (bench/drain.py, bench/lateness.py) on tiny numbers, so the harness never
rots; the real figures are taken by ``python -m bench all``, outside the test suite."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench import cpu, drain, lateness

PG_URL = os.environ.get("LEXYJOBS_TEST_POSTGRES_URL")


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG_URL, reason="Postgres tests need LEXYJOBS_TEST_POSTGRES_URL"))])
def test_the_drain_bench_enqueues_and_drains_and_reports_every_figure(db: str, tmp_path: Path) -> None:
    out = tmp_path / "drain.json"
    summary = drain.main(["--db", db, "--runs", "30", "--threads", "2", "--repeat", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == summary
    assert set(drain.RATES) <= set(summary) <= {*drain.RATES, "cpu_busy_pct", "worker_cpu_ms", "postgres_cpu_ms"}
    for name in drain.RATES:
        assert 0 < summary[name]["min"] <= summary[name]["median"] <= summary[name]["max"]


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="bench.cpu reads Linux's /proc")
def test_cpu_usage_counts_a_busy_process_and_the_machine() -> None:
    usage = cpu.Usage([os.getpid()]).start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn 0.3 s of CPU in this process
        pass
    usage.stop()
    assert usage.seconds is not None and 0.25 <= usage.seconds <= 1.0
    assert usage.busy_pct is not None and 0 < usage.busy_pct <= 100
    assert usage.postgres_seconds is not None and usage.postgres_seconds >= 0


def test_the_drain_bench_drives_worker_processes(tmp_path: Path) -> None:
    summary = drain.main(["--db", "sqlite", "--runs", "12", "--processes", "2", "--threads", "1", "--repeat", "1"])
    assert summary["processing"]["median"] > 0


def test_the_lateness_bench_records_consecutive_fires(tmp_path: Path) -> None:
    out = tmp_path / "lateness.json"
    summary = lateness.main(["--db", "sqlite", "--fires", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == summary
    assert summary["fires"] == 3 and summary["gaps"] == 0 and summary["statuses"] == {"succeeded": 3}
    assert summary["min_ms"] <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
