"""Pipelines: jobs chained by ``depends_on``. Running a job that has downstream jobs starts a
pipeline (a ``pipeline_id`` shared by its runs). The pipeline's steps are its root job and
everything downstream of it. When a step succeeds, each downstream step whose upstreams (within
the pipeline) have all succeeded is enqueued (trigger ``dependency``); when a step ends failed or
canceled, the steps downstream of it are recorded ``blocked`` and do not run. A later successful
retry of the failed step (same pipeline) resumes them."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from sqlalchemy.orm import Session

from lexyjobs import runs, store
from lexyjobs.definitions import definition_from_job
from lexyjobs.errors import LexyjobsError
from lexyjobs.states import RunStatus

Graph = Mapping[str, Sequence[str]]  # job name -> its upstream job names

_ACTIVE_OR_DONE = {RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.SUCCEEDED.value}


@dataclass(frozen=True)
class Finished:
    """A run that just reached a terminal status, in the transaction that moved it."""

    run_id: int
    job_name: str
    pipeline_id: str | None
    status: RunStatus


def downstream_map(graph: Graph) -> dict[str, list[str]]:
    """Job name -> the jobs that depend on it directly."""
    children: dict[str, list[str]] = {}
    for job, upstreams in graph.items():
        for upstream in upstreams:
            children.setdefault(upstream, []).append(job)
    return children


def descendants(graph: Graph, root: str) -> list[str]:
    """Every job downstream of ``root`` (not ``root`` itself), nearest first."""
    children = downstream_map(graph)
    seen: list[str] = []
    queue = deque(children.get(root, []))
    while queue:
        job = queue.popleft()
        if job not in seen and job != root:
            seen.append(job)
            queue.extend(children.get(job, []))
    return seen


def find_cycle(graph: Graph) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(job: str) -> list[str] | None:
        state[job] = 1
        path.append(job)
        for upstream in graph.get(job, ()):
            if state.get(upstream) == 1:
                return path[path.index(upstream):] + [upstream]
            if upstream in graph and upstream not in state:
                found = visit(upstream)
                if found:
                    return found
        path.pop()
        state[job] = 2
        return None

    for job in sorted(graph):
        if job not in state:
            found = visit(job)
            if found:
                return list(reversed(found))
    return None


def graph_problems(graph: Graph, names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """For the jobs in ``names`` (being defined), the problems with their ``depends_on`` in the
    whole ``graph``: job -> (field, problem). Unknown upstreams and cycles (named) are problems."""
    problems: dict[str, tuple[str, str]] = {}
    for name in names:
        unknown = [u for u in graph.get(name, ()) if u not in graph]
        if unknown:
            problems[name] = ("depends_on", f"unknown upstream job(s): {', '.join(unknown)}")
    remaining = {job: ups for job, ups in graph.items() if job not in problems}
    while (cycle := find_cycle(remaining)) is not None:
        text = " → ".join(cycle)
        for job in set(cycle):
            if job in names:
                problems[job] = ("depends_on", f"dependency cycle: {text}")
            remaining.pop(job, None)
    return problems


def advance(session: Session, finished: Sequence[Finished], *, now: datetime, postgres: bool) -> int:
    """Enqueue or block the downstream steps of ``finished`` runs, in the caller's transaction
    (so a step's end and its consequences commit together). Returns how many runs it queued:
    the caller then wakes the workers (``Database.enqueued``)."""
    in_pipelines = [f for f in finished if f.pipeline_id and f.status != RunStatus.QUEUED]
    if not in_pipelines:
        return 0
    queued = 0
    graph = store.job_dependencies(session)
    children = downstream_map(graph)
    for pipeline_id in sorted({f.pipeline_id for f in in_pipelines if f.pipeline_id}):
        store.lock_pipeline(session, pipeline_id, postgres=postgres)
        rows = store.pipeline_runs(session, pipeline_id)
        steps = {rows[0].job_name, *descendants(graph, rows[0].job_name)}
        latest = {row.job_name: row.status for row in rows}
        new_rows = []
        for done in (f for f in in_pipelines if f.pipeline_id == pipeline_id):
            if done.status == RunStatus.SUCCEEDED:
                for child in children.get(done.job_name, []):
                    upstreams = [u for u in graph[child] if u in steps]
                    if child in steps and latest.get(child) not in _ACTIVE_OR_DONE and \
                            all(latest.get(u) == RunStatus.SUCCEEDED.value for u in upstreams):
                        new_rows.append(_next_step(session, child, done, now))
                        latest[child] = RunStatus.QUEUED.value
            else:
                for job in descendants(graph, done.job_name):
                    if job in steps and latest.get(job) not in _ACTIVE_OR_DONE | {RunStatus.BLOCKED.value}:
                        new_rows.append(_blocked(job, done, now))
                        latest[job] = RunStatus.BLOCKED.value
        store.insert_runs(session, new_rows)
        queued += sum(1 for row in new_rows if row["status"] == RunStatus.QUEUED.value)
    return queued


def _next_step(session: Session, job: str, parent: Finished, now: datetime) -> dict[str, object]:
    request = runs.RunRequest(job, trigger="dependency", created_by=f"pipeline (after run {parent.run_id})",
                              pipeline_id=parent.pipeline_id, parent_run_id=parent.run_id)
    job_row = store.get_job(session, job)
    try:
        if job_row is None:
            raise LexyjobsError(f"job '{job}' no longer exists")
        return runs.run_row(definition_from_job(job_row), request, now)
    except LexyjobsError as exc:  # e.g. a required param without default: it cannot run on its own
        return runs.not_run_row(job, RunStatus.BLOCKED, reason=f"cannot start after run {parent.run_id}: {exc.message}",
                                trigger="dependency", now=now, pipeline_id=parent.pipeline_id,
                                parent_run_id=parent.run_id, created_by="pipeline")


def _blocked(job: str, cause: Finished, now: datetime) -> dict[str, object]:
    return runs.not_run_row(job, RunStatus.BLOCKED, trigger="dependency", now=now, created_by="pipeline",
                            reason=f"blocked: upstream {cause.job_name} {cause.status.value} (run {cause.run_id})",
                            pipeline_id=cause.pipeline_id, parent_run_id=cause.run_id)
