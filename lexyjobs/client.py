"""``lexyjobs.Client``: the JSON API from another process (one that does not share the database).

    client = Client("https://example.com/admin/jobs", token="...")
    run = client.run("send-report", {"month": "2024-01"})
    client.wait(run.id, timeout=60).result

Imports only ``requests``. The API's errors (``{"error": {code, message, details}}``) become
``ClientError`` subclasses by HTTP status, with ``.status``, ``.code``, ``.message`` and
``.details``; a server that cannot be reached is ``ConnectionFailed`` (status None)."""
from __future__ import annotations

import time
import urllib.parse
from datetime import datetime
from typing import Any, Iterable, Mapping

import requests

FIRST_PAUSE, MAX_PAUSE = 0.05, 1.0  # wait(): polls start quick and settle at one a second
FINISHED = frozenset({"succeeded", "failed", "canceled", "blocked", "skipped"})


class ClientError(Exception):
    """The API refused the request, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error", details: Any = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.details = message, status, code, details


class InvalidRequest(ClientError):
    """400: the request is malformed."""


class Unauthorized(ClientError):
    """401: the token is missing, unknown or revoked."""


class Forbidden(ClientError):
    """403: the token's role does not allow this."""


class NotFound(ClientError):
    """404: no such job or run."""


class Conflict(ClientError):
    """409: the run's state does not allow this (e.g. canceling a finished run)."""


class ValidationError(InvalidRequest):
    """422: a field or a parameter is invalid (``details`` says which)."""


class RateLimited(ClientError):
    """429: too many requests."""


class ServerError(ClientError):
    """5xx: the server failed."""


class ConnectionFailed(ClientError):
    """The server could not be reached (or did not answer in time)."""


class WaitTimeout(ClientError, TimeoutError):
    """The run did not finish within wait()'s timeout."""


BY_STATUS: dict[int, type[ClientError]] = {400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                           409: Conflict, 422: ValidationError, 429: RateLimited}


class ClientRun:
    """A run as the API last showed it (``GET /api/runs/<id>``); ``refresh()`` asks again."""

    def __init__(self, client: Client, data: Mapping[str, Any], *, message: str | None = None) -> None:
        self._client, self._data, self._message = client, dict(data), message

    def __repr__(self) -> str:
        return f"<ClientRun {self.id} {self.status}>"

    id = property(lambda self: int(self._data["id"]))
    status = property(lambda self: str(self._data.get("status")))
    result = property(lambda self: self._data.get("result"))
    error = property(lambda self: self._data.get("error"))
    finished = property(lambda self: self.status in FINISHED)
    succeeded = property(lambda self: self.status == "succeeded")
    existing = property(lambda self: self._message is not None, doc="run()/retry() answered with a run that was "
                        "already there (API `existing: true`): same idempotency key, or a unique job's duplicate")
    message = property(lambda self: self._message, doc="with existing: why no new run was made")

    @property
    def status_url(self) -> str:
        return self._client.url(f"/api/runs/{self.id}")

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def refresh(self) -> ClientRun:
        self._data = self._client.get(self.id).to_dict()
        return self

    def wait(self, timeout: float | None = None) -> ClientRun:
        self._data = self._client.wait(self.id, timeout).to_dict()
        return self

    def cancel(self) -> str:
        return self._client.cancel(self.id)

    def retry(self) -> ClientRun:
        return self._client.retry(self.id)


class Client:
    """The lexyjobs API at ``base_url`` (where the panel is mounted, e.g. ``http://host:8000`` or
    ``https://host/admin/jobs``) with a bearer ``token``; ``timeout``: seconds per request."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def run(self, job: str, params: Mapping[str, Any] | None = None, *, priority: int | None = None,
            run_at: datetime | str | None = None, key: str | None = None) -> ClientRun:
        """Queue a run of ``job`` (POST /api/jobs/<job>/run); returns it, status ``queued``. With
        ``key`` (sent as ``Idempotency-Key``), a repeat within the server's idempotency window
        returns the first run (``existing``) instead, so a retried call never runs twice; a unique
        job's duplicate also returns the run already there."""
        body: dict[str, Any] = {}
        if params is not None:
            body["params"] = dict(params)
        if priority is not None:
            body["priority"] = priority
        if run_at is not None:
            body["run_at"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
        headers = {"Idempotency-Key": key} if key is not None else {}
        answer = self._call("POST", f"/api/jobs/{urllib.parse.quote(job, safe='')}/run", json=body, headers=headers)
        return ClientRun(self, {"id": answer["run_id"], "job": job, "status": answer["status"]},
                         message=answer.get("message") if answer.get("existing") else None)

    def get(self, run_id: int) -> ClientRun:
        return ClientRun(self, self._call("GET", f"/api/runs/{int(run_id)}"))

    def wait(self, run_id: int, timeout: float | None = None) -> ClientRun:
        """Poll the run until it finishes (any outcome); WaitTimeout after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_PAUSE
        while True:
            run = self.get(run_id)
            if run.finished:
                return run
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"run {run_id} is still {run.status} after {timeout:g}s", status=None,
                                  code="timeout", details={"run_id": run_id, "status": run.status})
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 1.5, MAX_PAUSE)

    def cancel(self, run_id: int) -> str:
        """"canceled" (it was queued) or "cancel requested" (running); Conflict if finished."""
        return str(self._call("POST", f"/api/runs/{int(run_id)}/cancel")["outcome"])

    def retry(self, run_id: int) -> ClientRun:
        """Queue a new run like a finished one; returns the new run (or, for a unique job whose
        duplicate is active, that run, with ``existing``)."""
        answer = self._call("POST", f"/api/runs/{int(run_id)}/retry")
        return ClientRun(self, {"id": answer["run_id"], "status": answer["status"], "retry_of": run_id},
                         message=answer.get("message") if answer.get("existing") else None)

    def list(self, job: str | None = None, status: str | Iterable[str] | None = None, limit: int = 50) -> list[ClientRun]:
        """Runs newest first (at most 200 per request: the API's page size limit)."""
        query: dict[str, Any] = {"limit": limit}
        if job is not None:
            query["job"] = job
        if status is not None:
            query["status"] = status if isinstance(status, str) else ",".join(status)
        return [ClientRun(self, data) for data in self._call("GET", "/api/runs", params=query)["runs"]]

    def stats(self) -> dict[str, Any]:
        """``GET /api/stats``: runs per status, queue depth and the last 24 hours."""
        return dict(self._call("GET", "/api/stats"))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, self.url(path), timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ConnectionFailed(f"cannot reach lexyjobs at {self.base_url}: {exc}", code="connection_failed") from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.status_code < 400:
            if body is None:
                raise ServerError(f"{method} {path}: expected JSON, got {response.headers.get('Content-Type')}",
                                  status=response.status_code, code="bad_response")
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = {"code": "http_error", "message": f"{method} {path}: HTTP {response.status_code}"}
        kind = BY_STATUS.get(response.status_code, ServerError if response.status_code >= 500 else ClientError)
        raise kind(str(error.get("message") or response.reason), status=response.status_code,
                   code=str(error.get("code") or "error"), details=error.get("details"))
