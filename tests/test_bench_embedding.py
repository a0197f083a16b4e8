"""``python -m bench.embedding`` (smoke test: a few imports and calls) and its section of the report."""
from __future__ import annotations

from bench.__main__ import report, steps
from bench.embedding import main


def test_it_times_the_import_and_an_enqueue_on_sqlite(tmp_path):
    out = tmp_path / "embedding.json"
    figures = main(["--repeat", "2", "--calls", "10", "--db", "sqlite", "--json", str(out)])
    assert out.exists()
    imported = figures["import"]
    assert imported["threads"] == [1] and imported["heavy_modules"] == []  # import lexyjobs starts and pulls nothing
    assert 0 < imported["min_ms"] <= imported["median_ms"] <= imported["max_ms"]
    for mode in ("alone", "in_session"):
        f = figures["enqueue"]["sqlite"][mode]
        assert f["calls"] == 10 and 0 < f["p50_ms"] <= f["p99_ms"]


def test_postgres_is_skipped_cleanly_without_a_url():
    figures = main(["--repeat", "1", "--calls", "1", "--db", "postgres", "--pg-url", ""])
    assert figures["enqueue"]["postgres"] == {"skipped": "no --pg-url or LEXYJOBS_TEST_POSTGRES_URL"}


def test_python_m_bench_runs_it_and_reports_it():
    assert "embedding" in [step.key for step in steps(quick=True)]
    f = {"calls": 500, "p50_ms": 2.0, "p99_ms": 9.0, "mean_ms": 2.5}
    text = report({"embedding": {"import": {"repeat": 20, "median_ms": 40.0, "min_ms": 38.0, "max_ms": 45.0,
                                            "threads": [1], "heavy_modules": []},
                                 "enqueue": {"sqlite": {"alone": f, "in_session": f},
                                             "postgres": {"skipped": "no URL"}}}},
                  quick=True, took=60, pg_url="postgresql://nobody@127.0.0.1:1/none", raw_name="raw.txt")
    assert "`import lexyjobs` in a fresh interpreter: 40.0 ms (38.0–45.0, 20 runs)" in text
    assert "| sqlite | `enqueue(job)` (own transaction) | 2.00 ms | 9.00 ms | 2.50 ms |" in text
    assert "| postgres | skipped: no URL | | | |" in text
