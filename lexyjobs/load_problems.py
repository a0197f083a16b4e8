"""Job definitions the last load rejected (a typo'd field in jobs.toml, a module that failed to
import, a cycle in ``depends_on``), kept in the ``load_problems`` table.

Why the database and not a second look at the file when showing them: the CLI and the API may be
other processes than the one that loaded the jobs (the CLI typed in another folder must not read
that folder's jobs.toml), and problems of ``@job`` code can only be seen by importing it. So the
process that loads the definitions records what it rejected, in the transaction that saves the
good ones, and every reader shows exactly that.

A load replaces the problems of the sources it loaded: the server (``serve``, which also archives
jobs gone from their source) replaces all of them; a ``lexyjobs worker`` replaces those of its
own jobs file and, when it imports code, of the code. Fixing the file and restarting clears them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lexyjobs.errors import InvalidDefinition
from lexyjobs.models import LoadProblem

CODE = "code"  # the origin of @job functions and LEXYJOBS_IMPORTS modules


@dataclass(frozen=True)
class Found:
    """One rejected definition as a load found it: ``origin`` is the jobs file's path or CODE;
    ``about_job`` is False for a problem of the whole file or of an imported module."""
    origin: str
    error: InvalidDefinition
    about_job: bool = True


def replace(session: Session, found: Iterable[Found], *, origins: Iterable[str] | None, now: datetime) -> None:
    """Delete the recorded problems of ``origins`` (None: every origin), then record ``found``;
    in the caller's transaction, so readers see the old set or the new one, never half."""
    query = delete(LoadProblem)
    if origins is not None:
        query = query.where(LoadProblem.origin.in_(list(origins)))
    session.execute(query)
    session.add_all(LoadProblem(origin=f.origin, job=f.error.job if f.about_job else None, field=f.error.field,
                                problem=f.error.problem, message=f.error.message, recorded_at=now) for f in found)


def list_problems(session: Session, job: str | None = None) -> list[LoadProblem]:
    """The recorded problems in the order they were found; ``job``: only that job's."""
    query = select(LoadProblem).order_by(LoadProblem.id)
    if job is not None:
        query = query.where(LoadProblem.job == job)
    return list(session.scalars(query))


def problem_dict(problem: LoadProblem) -> dict[str, Any]:
    """The JSON form (API, ``jobs list --json``)."""
    return {"job": problem.job, "field": problem.field, "problem": problem.problem, "message": problem.message,
            "source": "code" if problem.origin == CODE else "file", "origin": problem.origin,
            "recorded_at": problem.recorded_at.isoformat()}


def describe(problem: LoadProblem) -> str:
    """One line: where, what, and what lexyjobs does about it."""
    where = "code" if problem.origin == CODE else problem.origin
    consequence = "; the job keeps its last definition that loaded, if any" if problem.job else ""
    return f"{where}: {problem.message}{consequence}"
