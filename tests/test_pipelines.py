"""Pipelines on both databases: fan-out/fan-in, failures blocking, retries inside a pipeline,
manual retry resuming, cancel, running from a middle node, cycle and unknown-upstream rejection."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import wait_for

from lexyjobs import registry, runs, store
from lexyjobs.db import Database
from lexyjobs.errors import Conflict, InvalidDefinition
from lexyjobs.models import Run
from lexyjobs.pipelines import descendants, find_cycle, graph_problems
from lexyjobs.states import TERMINAL

DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}


def test_descendants_are_everything_downstream_nearest_first() -> None:
    assert descendants(DIAMOND, "a") == ["b", "c", "d"]
    assert descendants(DIAMOND, "b") == ["d"]
    assert descendants(DIAMOND, "d") == []


def test_a_cycle_is_found_and_named_as_a_path() -> None:
    assert find_cycle(DIAMOND) is None
    cycle = find_cycle({"a": ("c",), "b": ("a",), "c": ("b",), "x": ()})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_graph_problems_name_unknown_upstreams_and_cycles() -> None:
    graph = {"a": ("b",), "b": ("a",), "c": ("nope",), "d": ("a",)}
    problems = graph_problems(graph, ["a", "b", "c", "d"])
    assert problems["c"] == ("depends_on", "unknown upstream job(s): nope")
    assert problems["a"][1].startswith("dependency cycle: ") and "a" in problems["a"][1] and "b" in problems["a"][1]
    assert "b" in problems and "d" not in problems


def _pipeline_runs(db: Database, pipeline_id: str) -> dict[str, list[Run]]:
    with db.read() as session:
        found: dict[str, list[Run]] = {}
        for run in session.query(Run).filter(Run.pipeline_id == pipeline_id).order_by(Run.id):
            found.setdefault(run.job_name, []).append(run)
    return found


def _settled(db: Database, pipeline_id: str, jobs: set[str]) -> dict[str, list[Run]]:
    """Wait until every job in ``jobs`` has a run in the pipeline and nothing is active."""
    def check() -> dict[str, list[Run]] | None:
        found = _pipeline_runs(db, pipeline_id)
        done = jobs <= set(found) and all(r.status in TERMINAL for rs in found.values() for r in rs)
        return found if done else None
    return wait_for(check, timeout=15)


@pytest.fixture
def diamond(make_job: Callable[..., str]) -> Callable[..., None]:
    """a → (b, c) → d with configurable functions per step."""
    def build(**funcs: Any) -> None:
        for name, upstreams in DIAMOND.items():
            fields: dict[str, Any] = {"func": funcs.get(name, "jobfuncs:noop"), "max_attempts": 1,
                                      "depends_on": list(upstreams)}
            if isinstance(funcs.get(name), dict):
                fields.update(funcs[name])
            make_job(name, **fields)
    return build


def test_running_a_job_with_downstreams_runs_fan_out_then_fan_in_once(db, diamond, start_worker) -> None:
    diamond()
    start_worker()
    root = runs.enqueue(db, "a")
    pipeline_id = runs.get_run(db, root).pipeline_id
    assert pipeline_id
    found = _settled(db, pipeline_id, {"a", "b", "c", "d"})
    assert {job: [r.status for r in rs] for job, rs in found.items()} == {
        "a": ["succeeded"], "b": ["succeeded"], "c": ["succeeded"], "d": ["succeeded"]}
    b, c, d = found["b"][0], found["c"][0], found["d"][0]
    assert b.trigger == c.trigger == d.trigger == "dependency"
    assert b.parent_run_id == c.parent_run_id == root
    assert d.parent_run_id in (b.id, c.id)
    assert d.created_at >= max(b.finished_at, c.finished_at)  # fan-in waits for both upstreams


def test_a_job_without_downstreams_starts_no_pipeline(db, diamond) -> None:
    diamond()
    assert runs.get_run(db, runs.enqueue(db, "d")).pipeline_id is None


def test_a_failed_step_blocks_what_depends_on_it_and_nothing_else(db, diamond, start_worker) -> None:
    diamond(b="jobfuncs:boom")
    start_worker()
    pipeline_id = runs.get_run(db, runs.enqueue(db, "a")).pipeline_id
    found = _settled(db, pipeline_id, {"a", "b", "c", "d"})
    assert [r.status for r in found["b"]] == ["failed"]
    assert [r.status for r in found["c"]] == ["succeeded"]
    assert [r.status for r in found["d"]] == ["blocked"]
    blocked = found["d"][0]
    assert "upstream b failed" in blocked.error and blocked.attempt == 0 and blocked.finished_at is not None


def test_a_step_that_succeeds_on_retry_lets_the_pipeline_continue(db, diamond, start_worker, tmp_path: Path) -> None:
    diamond(b={"func": "jobfuncs:fail_once_then_succeed", "max_attempts": 2, "backoff": "0s",
               "params": {"marker": {"type": "string", "default": str(tmp_path / "marker")}}})
    start_worker()
    pipeline_id = runs.get_run(db, runs.enqueue(db, "a")).pipeline_id
    found = _settled(db, pipeline_id, {"a", "b", "c", "d"})
    assert [(r.status, r.attempt) for r in found["b"]] == [("succeeded", 2)]
    assert [r.status for r in found["d"]] == ["succeeded"]


def test_a_manual_retry_of_the_failed_step_resumes_the_blocked_steps(db, diamond, start_worker,
                                                                      tmp_path: Path) -> None:
    diamond(b={"func": "jobfuncs:fail_once_then_succeed",
               "params": {"marker": {"type": "string", "default": str(tmp_path / "marker")}}})
    start_worker()
    pipeline_id = runs.get_run(db, runs.enqueue(db, "a")).pipeline_id
    first = _settled(db, pipeline_id, {"a", "b", "c", "d"})
    assert [r.status for r in first["d"]] == ["blocked"]
    retry_id = runs.retry(db, first["b"][0].id)
    assert runs.get_run(db, retry_id).pipeline_id == pipeline_id
    wait_for(lambda: [r.status for r in _pipeline_runs(db, pipeline_id).get("d", [])] == ["blocked", "succeeded"])
    assert [r.status for r in _pipeline_runs(db, pipeline_id)["c"]] == ["succeeded"]  # not run again


def test_canceling_a_queued_step_blocks_its_downstream(db, diamond) -> None:
    diamond()
    root = runs.enqueue(db, "a")
    pipeline_id = runs.get_run(db, root).pipeline_id
    assert runs.cancel(db, root) == "canceled"
    found = _pipeline_runs(db, pipeline_id)
    assert {job: [r.status for r in rs] for job, rs in found.items()} == {
        "a": ["canceled"], "b": ["blocked"], "c": ["blocked"], "d": ["blocked"]}


def test_running_from_a_middle_step_runs_it_and_what_is_downstream(db, diamond, start_worker) -> None:
    diamond()
    start_worker()
    pipeline_id = runs.get_run(db, runs.enqueue(db, "b")).pipeline_id
    found = _settled(db, pipeline_id, {"b", "d"})
    assert set(found) == {"b", "d"}  # a and c are not part of this pipeline
    assert [r.status for r in found["d"]] == ["succeeded"]


def test_simultaneous_upstreams_enqueue_the_fan_in_step_exactly_once(db, make_job, start_worker) -> None:
    make_job("root", max_concurrency=0, depends_on=[])
    for name in ("left", "right"):
        make_job(name, max_concurrency=0, depends_on=["root"])
    make_job("join", max_concurrency=0, depends_on=["left", "right"])
    start_worker(workers=8)
    pipelines = [runs.get_run(db, runs.enqueue(db, "root")).pipeline_id for _ in range(15)]
    for pipeline_id in pipelines:
        found = _settled(db, pipeline_id, {"root", "left", "right", "join"})
        assert [r.status for r in found["join"]] == ["succeeded"], found


def test_a_dependency_cycle_is_rejected_with_the_cycle_named(lj, make_job) -> None:
    make_job("first")
    make_job("second", depends_on=["first"])
    with pytest.raises(InvalidDefinition) as error:
        registry.update_job(lj.db, "first", {"kind": "python", "func": "jobfuncs:noop", "depends_on": ["second"]})
    assert error.value.field == "depends_on" and "cycle" in error.value.message
    assert "first" in error.value.message and "second" in error.value.message
    with lj.db.read() as session:
        assert store.job_dependencies(session)["first"] == ()  # nothing written


def test_an_unknown_upstream_is_rejected(lj) -> None:
    with pytest.raises(InvalidDefinition, match="unknown upstream job"):
        registry.create_job(lj.db, "orphan", {"kind": "python", "func": "jobfuncs:noop", "depends_on": ["ghost"]})


def test_a_job_others_depend_on_cannot_be_deleted(lj, make_job) -> None:
    make_job("upstream")
    make_job("downstream", depends_on=["upstream"])
    with pytest.raises(Conflict, match="downstream"):
        registry.delete_job(lj.db, "upstream")


def test_a_cycle_in_the_jobs_file_is_reported_and_the_other_jobs_load(lj, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("""
[jobs.ok]
kind = "shell"
argv = ["true"]

[jobs.loop-a]
kind = "shell"
argv = ["true"]
depends_on = ["loop-b"]

[jobs.loop-b]
kind = "shell"
argv = ["true"]
depends_on = ["loop-a"]
""")
    report = registry.sync_jobs(lj.db, jobs_file=str(jobs_file))
    assert report.loaded == ["ok"]
    assert {e.job for e in report.errors} == {"loop-a", "loop-b"}
    assert all("cycle" in e.message for e in report.errors)


def test_the_demo_pipeline_reproduces_seed_000_end_to_end(lj, start_worker, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXYJOBS_DEMO_DIR", str(tmp_path / "demo"))
    report = registry.sync_jobs(lj.db, jobs_file=str(Path(__file__).resolve().parent.parent / "jobs.toml"))
    assert not report.errors
    start_worker()
    pipeline_id = runs.get_run(lj.db, runs.enqueue(lj.db, "collect-keywords")).pipeline_id
    steps = {"collect-keywords", "keyword-metrics", "social-metrics", "ingest-corpus-metrics"}
    found = _settled(lj.db, pipeline_id, steps)
    assert {job: [r.status for r in rs] for job, rs in found.items()} == {job: ["succeeded"] for job in steps}
    assert len((tmp_path / "demo" / "corpus.jsonl").read_text().splitlines()) == 5
