"""``Run``: the handle ``lexyjobs.enqueue`` and the read helpers return. It holds a snapshot of
one run (the API's JSON shape, ``serialize.run_dict``); ``refresh()`` re-reads it, ``wait()``
polls until the run finishes. Attributes read the snapshot and never touch the database."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

from lexyjobs.errors import LexyjobsError
from lexyjobs.states import TERMINAL, RunStatus

if TYPE_CHECKING:
    from lexyjobs.runtime import Runtime

FIRST_PAUSE = 0.02  # seconds between polls in wait(): short at first (most runs are quick) …
MAX_PAUSE = 0.5     # … growing to this, so a long wait costs about two light reads a second
FINISHED = frozenset(status.value for status in TERMINAL)


class RunTimeout(LexyjobsError, TimeoutError):
    """The run did not finish in time."""

    status_code = 408
    code = "timeout"


class Run:
    """One run of a job, as last read. ``status`` and the rest are the snapshot's; ``refresh()``
    reads the run again, ``wait()`` until it finishes."""

    def __init__(self, runtime: Runtime, data: Mapping[str, Any], *, message: str | None = None) -> None:
        self._runtime = runtime
        self._data: dict[str, Any] = dict(data)
        self._message = message

    @property
    def existing(self) -> bool:
        """True when ``enqueue``/``retry`` returned a run that was already there instead of a new
        one (same idempotency key, or a unique job's duplicate); ``message`` says which."""
        return self._message is not None

    @property
    def message(self) -> str | None:
        """With ``existing``: why no new run was made, e.g. "run 12 of job crawl is already
        queued with the same site_id=4; not enqueued again"."""
        return self._message

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.job} {self.status}>"

    @property
    def id(self) -> int:
        return int(self._data["id"])

    @property
    def job(self) -> str:
        return str(self._data["job"])

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, canceled, blocked or skipped (at the last read)."""
        return str(self._data["status"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._data.get("params") or {})

    @property
    def result(self) -> Any:
        """What the job returned (JSON), once it succeeded."""
        return self._data.get("result")

    @property
    def error(self) -> str | None:
        """Why it failed (or was canceled, blocked, skipped)."""
        return self._data.get("error")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == RunStatus.SUCCEEDED.value

    @property
    def status_url(self) -> str:
        """The API path of this run (under the extension's URL prefix, if any)."""
        return f"{self._runtime.url_prefix}/api/runs/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        """The run as the API shows it (``GET /api/runs/<id>`` without events), plus ``status_url``."""
        return {**self._data, "status_url": self.status_url}

    @property
    def waiting_for(self) -> dict[str, Any] | None:
        """Why it had not started, while queued (``reason``, ``until``, ``message``…: see
        ``lexyjobs.flow.waiting``); None once it started, or in the snapshot of a fresh enqueue."""
        return self._data.get("waiting_for")

    def refresh(self) -> Run:
        """Read the run again (RunNotFound if it is gone: pruned, or its transaction rolled back),
        with why it waits while it is queued."""
        from lexyjobs import runs
        from lexyjobs.db import utcnow
        from lexyjobs.flow.waiting import runs_json

        run, db = runs.get_run(self._runtime.db, self.id), self._runtime.db
        with db.read() as session:
            self._data = runs_json(session, [run], now=utcnow(), stale_after=self._runtime.settings.stale_after)[0]
        return self

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run finishes (whatever its outcome: check ``succeeded``) and return
        it; RunTimeout after ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_PAUSE
        while not self.refresh().finished:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise RunTimeout(f"run {self.id} is still {self.status} after {timeout:g}s",
                                 details={"run_id": self.id, "status": self.status})
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 1.5, MAX_PAUSE)
        return self

    def cancel(self, *, by: str | None = None) -> str:
        """Cancel it: "canceled" (it was queued) or "cancel requested" (its worker stops it);
        Conflict if it already finished. The snapshot is refreshed."""
        from lexyjobs import code_api

        outcome = code_api.cancel(self.id, by=by, runtime=self._runtime)
        self.refresh()
        return outcome

    def retry(self, *, by: str | None = None) -> Run:
        """Enqueue a new run with the same job and params (it must have finished); returns it (for
        a unique job whose duplicate is active, that run, with ``existing``)."""
        from lexyjobs import code_api

        return code_api.retry(self.id, by=by, runtime=self._runtime)
