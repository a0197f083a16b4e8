"""``python -m bench.isolation`` (smoke test: one run per mode) and its section of the report."""
from __future__ import annotations

from bench.__main__ import report, steps
from bench.isolation import main


def test_it_times_a_no_op_run_in_a_thread_and_in_a_child_process(tmp_path):
    out = tmp_path / "isolation.json"
    figures = main(["--repeat", "1", "--json", str(out)])
    assert out.exists() and figures["repeat"] == 1
    for mode in ("thread", "process", "process_job_module"):
        assert figures[mode]["min"] <= figures[mode]["median"] <= figures[mode]["max"]
    assert figures["process"]["median"] > figures["thread"]["median"]  # a process start is never free


def test_python_m_bench_runs_it_and_reports_it():
    assert "isolation" in [step.key for step in steps(quick=True)]
    figure = {"median": 120.0, "min": 100.0, "max": 150.0}
    text = report({"isolation": {"repeat": 3, "thread": {"median": 0.05, "min": 0.04, "max": 0.06},
                                 "process": figure, "process_job_module": figure}},
                  quick=True, took=60, pg_url="postgresql://nobody@127.0.0.1:1/none", raw_name="raw.txt")
    assert "| process: a module importing nothing heavy | 120 ms (100–150) |" in text
