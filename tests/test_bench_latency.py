"""The pickup latency and start-up benchmarks (``bench/latency.py``, ``bench/startup.py``) on tiny
numbers, so the harnesses never rot. Only sanity is asserted, never timings: those belong to the
benchmark runs, not to a shared test machine."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import _pg_or_skip

from bench import latency, startup


@pytest.fixture(params=["sqlite", "postgres"])
def bench_db(request: pytest.FixtureRequest) -> list[str]:
    """The ``--db`` arguments of a bench: SQLite, then Postgres (skipped without its URL)."""
    if request.param == "sqlite":
        return ["--db", "sqlite"]
    return ["--db", "postgres", "--pg-url", _pg_or_skip()]


def test_the_latency_bench_measures_both_modes(bench_db: list[str], tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    report = latency.main([*bench_db, "--samples", "5", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["db"] == bench_db[1] and report["poll_interval_s"] == 0.5
    for mode in latency.MODES:
        figures = report[mode]
        assert figures["samples"] == 5
        assert 0 < figures["min_ms"] <= figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_the_stamp_file_reads_only_complete_lines(tmp_path: Path) -> None:
    stamps = latency.StampFile(tmp_path / "stamps.txt")
    with stamps.path.open("a") as out:
        out.write("7 1700000000.25\n8 17000")
        out.flush()
        assert stamps.started_at(7, 1.0, lambda: "") == 1700000000.25
        out.write("00001.5\n")
    assert stamps.started_at(8, 1.0, lambda: "") == 1700000001.5
    with pytest.raises(SystemExit, match="run 9 did not start"):
        stamps.started_at(9, 0.01, lambda: "no worker here")


def test_the_startup_bench_starts_and_stops_the_server_on_sqlite(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    report = startup.main(["--db", "sqlite", "--repeat", "1", "--idle", "0.5", "--enqueues", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    for kind in startup.STARTS:
        assert set(report[kind]) == set(startup.FIGURES)
        assert report[kind]["healthz_ms"]["median"] > 0 and report[kind]["stop_ms"]["median"] > 0
        assert 10 < report[kind]["rss_mb"]["median"] < 2000
        assert report[kind]["idle_cpu_pct"]["median"] >= 0
    # the one-shot command line: `lexyjobs run hello` enqueued twice (each checked), imports timed
    assert set(report["cli"]) == set(startup.CLI_FIGURES)
    assert all(report["cli"][figure]["min"] > 0 for figure in startup.CLI_FIGURES)
