"""``python -m bench all``: the steps it runs and the report it writes (from figures given here;
running every benchmark takes minutes, so each has its own smoke test)."""
from __future__ import annotations

from typing import Any

from bench.__main__ import report, steps


def figure(median: float) -> dict[str, float]:
    return {"median": median, "min": median * 0.9, "max": median * 1.1}


RESULTS: dict[str, Any] = {
    "drain sqlite 4t": {"enqueue_single": figure(2000), "enqueue_batch": figure(20000), "processing": figure(5000),
                        "start_to_finish": figure(5100)},
    "drain postgres 4t": {"enqueue_single": figure(900), "enqueue_batch": figure(9000), "processing": figure(2000),
                          "start_to_finish": figure(2100)},
    "scaling 1p": {"processing": figure(1400), "start_to_finish": figure(2800), "enqueue_single": figure(1),
                   "enqueue_batch": figure(1)},
    "scaling 2p": {"processing": figure(1500), "start_to_finish": figure(3000), "enqueue_single": figure(1),
                   "enqueue_batch": figure(1)},
    "scaling 4p": {"processing": figure(1500), "start_to_finish": figure(2700), "enqueue_single": figure(1),
                   "enqueue_batch": figure(1)},
    "peers": {"huey": {"processing": figure(2000), "enqueue_single": figure(3000), "pickup_p50": figure(50),
                       "pickup_p99": figure(80)},
              "pgqueuer": {"processing": figure(4000)}, "procrastinate": {"processing": figure(250)},
              "versions": {"huey": "3.5.4"}},
    "latency sqlite": {"inprocess": {"p50_ms": 1.5, "p99_ms": 5, "max_ms": 6},
                       "crossprocess": {"p50_ms": 14, "p99_ms": 27, "max_ms": 30}},
    "lateness postgres": {"fires": 120, "p50_ms": 2, "p99_ms": 4, "max_ms": 5},
    "panel sqlite": {"pages": {"dashboard": {"median_ms": 45}, "dashboard poll (unchanged)": {"median_ms": 2},
                               "timeline window=7d": {"median_ms": 80}}},
    "panel postgres": {"pages": {"dashboard": {"median_ms": 60}, "timeline": {"median_ms": 120}}},
    "startup": {"first_start": {"healthz_ms": figure(700), "rss_mb": figure(72), "idle_cpu_pct": figure(0),
                                "stop_ms": figure(160)},
                "cli": {"cli_enqueue_ms": figure(300), "import_ms": figure(20), "import_cli_ms": figure(35)}},
    "latency postgres": {"error": "psycopg.OperationalError: connection refused"},
}


def test_the_steps_cover_every_figure_of_the_issue() -> None:
    keys = [step.key for step in steps(quick=False)]
    assert {"drain sqlite 4t", "drain sqlite 1t", "drain sqlite FULL 4t", "drain postgres 4t", "drain postgres 1t",
            "scaling 1p", "scaling 2p", "scaling 4p", "peers", "latency sqlite", "latency postgres",
            "lateness sqlite", "lateness postgres", "panel sqlite", "panel postgres", "startup"} <= set(keys)
    full = {step.key: step for step in steps(quick=False)}
    assert "1000000" in full["panel sqlite"].args and full["drain sqlite FULL 4t"].env == {
        "LEXYJOBS_SQLITE_SYNCHRONOUS": "FULL"}


def test_the_report_gives_ratios_targets_and_failed_steps() -> None:
    text = report(RESULTS, quick=False, took=600, pg_url="postgresql://nobody@127.0.0.1:1/none", raw_name="raw.txt")
    assert "| SQLite processing ≥ 3× huey | 5,000 vs 2,000 runs/s | 2.50× | no |" in text
    assert "| SQLite enqueue, one call per run ≥ 1× huey | 2,000 vs 3,000 /s | 0.67× | no |" in text
    assert "| Postgres processing ≥ 1.5× pgqueuer | 2,000 vs 4,000 runs/s | 0.50× | no |" in text
    assert "| Postgres: 4 worker processes faster than 1 | 2,700 vs 2,800 runs/s | 0.96× | no |" in text
    assert "| Postgres processing ≥ 10× procrastinate | 2,000 vs 250 runs/s | 8.00× | no |" in text
    assert "| idle RSS ≤ 80 MB | 72.0 MB |  | yes |" in text
    assert "| CLI enqueue ≤ 250 ms (`lexyjobs run NAME`, SQLite) | 300 ms |  | no |" in text
    assert "| import lexyjobs ≤ 150 ms | 20.0 ms |  | yes |" in text
    assert "| `lexyjobs run NAME`, wall time of the process | 300 ms (270–330) |" in text
    assert ("| every panel page ≤ 50 ms at 1M runs, the timeline included (slowest page, SQLite / Postgres) | "
            "80.0 / 120 ms |  | no |") in text
    assert "| timeline window=7d | 80.0 ms | – |" in text
    assert "| lexyjobs | SQLite (WAL, synchronous=NORMAL) | 4 | 2,000 /s (1,800–2,200) |" in text
    assert "| 2 | 3,000 /s (2,700–3,300) |" in text  # scaling: start to finish
    assert "- latency postgres: psycopg.OperationalError: connection refused" in text
    assert "postgres: unreachable" in text and "Quick run" not in text
