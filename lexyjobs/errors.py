"""One error hierarchy. Each class carries the HTTP status and a stable code; the API and the
CLI map them to messages in one place. The docstring is the default message."""
from __future__ import annotations

from typing import Any


class LexyjobsError(Exception):
    """Something went wrong."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidDefinition(LexyjobsError):
    """The job definition is invalid."""

    status_code = 422
    code = "invalid_job"

    def __init__(self, job: str, field: str | None, problem: str) -> None:
        where = f"job '{job}'" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}", details={"job": job, "field": field, "problem": problem})
        self.job, self.field, self.problem = job, field, problem


class InvalidParams(LexyjobsError):
    """The run parameters are invalid."""

    status_code = 422
    code = "invalid_params"

    def __init__(self, errors: dict[str, str]) -> None:
        text = "; ".join(f"param '{name}': {problem}" for name, problem in errors.items())
        super().__init__(text, details=errors)
        self.errors = errors


class NotFound(LexyjobsError):
    """Not found."""

    status_code = 404
    code = "not_found"


class JobNotFound(NotFound):
    """No such job."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no job named '{name}'", details={"job": name})


class RunNotFound(NotFound):
    """No such run."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"no run with id {run_id}", details={"run_id": run_id})


class Conflict(LexyjobsError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class TransitionConflict(Conflict):
    """The run is not in a state that allows this change."""

    code = "transition_conflict"


class ReadOnlyJob(Conflict):
    """The job is defined in code or in jobs.toml and cannot be changed here."""

    code = "read_only_job"
