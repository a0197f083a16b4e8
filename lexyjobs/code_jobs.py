"""``@job``: declare a Python function as a job. Kept apart from ``lexyjobs.registry`` (which
brings SQLAlchemy and the store) so that a module declaring its jobs imports almost nothing: the
child process of an ``isolation = "process"`` run imports that module for every run."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from lexyjobs.errors import InvalidDefinition

F = TypeVar("F", bound=Callable[..., Any])

_CODE_JOBS: dict[str, dict[str, Any]] = {}


def job(name: str | None = None, **fields: Any) -> Callable[[F], F]:
    """Declare a Python function as a job: ``@job(schedule="@daily", params={...})``. The job's
    name is ``name``, or the function's name with ``_`` turned into ``-``. Only records the
    definition; nothing touches the database until the app starts (``registry.sync_jobs``).
    The function gains ``.enqueue(**params, priority=, run_at=, delay=, session=)`` (see
    ``lexyjobs.enqueue``), which imports the engine only when called."""
    def decorate(func: F) -> F:
        job_name = name or func.__name__.replace("_", "-")
        ref = f"{func.__module__}:{func.__qualname__}"
        if job_name in _CODE_JOBS and _CODE_JOBS[job_name]["func"] != ref:
            raise InvalidDefinition(job_name, "name", f"already declared by {_CODE_JOBS[job_name]['func']}")
        _CODE_JOBS[job_name] = {"kind": "python", "func": ref, **fields}
        setattr(func, "__lexyjobs_job__", job_name)
        setattr(func, "enqueue", _enqueuer(job_name))
        return func
    return decorate


def _enqueuer(job_name: str) -> Callable[..., Any]:
    def enqueue(*, priority: int | None = None, run_at: Any = None, delay: Any = None, session: Any = None,
                by: str | None = None, **params: Any) -> Any:
        """Queue a run of this job with ``params``; returns its ``lexyjobs.Run`` handle. A
        parameter named like an option (``priority``…) goes through ``lexyjobs.enqueue``."""
        from lexyjobs.enqueueing import enqueue as enqueue_run  # SQLAlchemy: only once it is used

        return enqueue_run(job_name, params, priority=priority, run_at=run_at, delay=delay, session=session, by=by)
    enqueue.__qualname__ = f"{job_name}.enqueue"
    return enqueue


def code_jobs() -> dict[str, dict[str, Any]]:
    """Raw definitions of every ``@job`` function imported so far."""
    return dict(_CODE_JOBS)
