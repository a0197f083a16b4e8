"""The flow-control benchmark (bench/flow.py) on tiny numbers, so the harness never rots: it
drains runs over concurrency keys under a shared rate limit and reports runs/s and the limit
checks (which a too-small window would break); its section in ``python -m bench all``'s report."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench import flow
from bench.__main__ import report, steps

PG_URL = os.environ.get("LEXYJOBS_TEST_POSTGRES_URL")


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG_URL, reason="Postgres tests need LEXYJOBS_TEST_POSTGRES_URL"))])
def test_the_flow_bench_drains_under_keys_and_a_rate_limit_and_checks_them(db: str, tmp_path: Path) -> None:
    out = tmp_path / "flow.json"
    summary = flow.main(["--db", db, "--runs", "24", "--keys", "3", "--key-limit", "2", "--rate", "10/s",
                         "--threads", "4", "--repeat", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == summary
    assert summary["limits_held"] is True and summary["key_limit"] == 2 and summary["rate"] == "10/s"
    assert 1 <= summary["most_per_key"] <= 2 and summary["most_in_window"] == 10  # the rate was the bound
    assert 0 < summary["processing"]["min"] <= summary["processing"]["median"] < 24 / 1.0  # 24 runs took > 1 s


def test_the_limit_checks_count_overlaps_and_windows() -> None:
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    s = [t + timedelta(seconds=x) for x in (0, 0.5, 0.99, 1.0, 1.2)]
    assert flow.most_in_window(s, 1.0) == 4 and flow.most_in_window(s, 0.3) == 3  # [0.5, 1.5), [0.99, 1.29)
    assert flow.most_at_once([(s[0], s[2]), (s[1], s[3]), (s[2], s[4])]) == 2  # an end before a start at one instant


def test_bad_options_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        flow.main(["--db", "sqlite", "--rate", "10 per minute"])
    assert "--rate must be a rate like" in capsys.readouterr().err


def test_bench_all_runs_it_and_reports_it() -> None:
    assert {"flow sqlite", "flow postgres"} <= {step.key for step in steps(quick=True)}
    figures = {"processing": {"median": 700, "min": 650, "max": 720}, "most_per_key": 2, "key_limit": 2,
               "most_in_window": 1990, "rate": "2000/s", "limits_held": True}
    text = report({"flow sqlite": figures}, quick=True, took=60, pg_url="postgresql://nobody@127.0.0.1:1/none",
                  raw_name="raw.txt")
    assert "| sqlite | 700 /s (650–720) | 2 (limit 2) | 1990 (limit 2000/s) | yes |" in text
