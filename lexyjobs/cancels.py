"""Cancel requests of running runs, and what a run's record says about them.

A queued run is canceled at once. A running one is flagged (``runs.cancel_requested``, with the
time of the first request in ``cancel_requested_at``) and every request is a run event that
names who asked (a user, ``token:<name>``, ``cli``, the scheduler) — the status does not change,
so the event goes from ``running`` to ``running``. The worker stops the run when it sees the
flag, within about a second; the run then ends ``canceled``. A run whose body finished before
that keeps its real outcome (succeeded or failed), and its record says so: ``FINISHED_FIRST``
becomes the note of its last event and the ``cancel_note`` of the API's run."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from lexyjobs import store
from lexyjobs.states import RunStatus, insert_events

FINISHED_FIRST = "cancel requested at {at}; it finished first"
STOPPING = "cancel requested at {at}; its worker is stopping it"
# What a ``202 cancel requested`` answer means (the API's message, the CLI's line, the panel's flash).
REQUESTED_MEANING = ("its worker stops it within about a second and it ends canceled; if it finishes first, "
                     "it keeps its outcome with the note \"cancel requested at …; it finished first\"")


def meaning(outcome: str) -> str:
    """What ``runs.cancel``'s outcome means, for the API's answer, the CLI and the panel."""
    if outcome == "canceled":
        return "it had not started"
    return REQUESTED_MEANING


def request(session: Session, run_id: int, *, by: str | None, now: datetime) -> bool:
    """Ask the worker of a running run to stop it, and record the request as a run event.
    False (nothing written) if the run is not running."""
    attempt = store.request_cancel(session, run_id, now=now)
    if attempt is None:
        return False
    insert_events(session, [{"run_id": run_id, "at": now, "from_status": RunStatus.RUNNING.value,
                             "to_status": RunStatus.RUNNING.value, "attempt": attempt,
                             "note": f"cancel requested by {by or 'unknown'}"}])
    return True


def when(at: datetime | None) -> str:
    """A request's time as notes show it, to the millisecond (runs end within a second of one)."""
    if at is None:
        return "an unrecorded time"
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} UTC"


def finished_first(at: datetime | None) -> str:
    return FINISHED_FIRST.format(at=when(at))


def note(run: Any) -> str | None:
    """What ``run`` (a Run) says about a cancel request: being stopped, or finished first; None
    when nobody asked or it ended canceled (its status says it all)."""
    if not run.cancel_requested:
        return None
    if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        return finished_first(run.cancel_requested_at)
    if run.status == RunStatus.RUNNING:
        return STOPPING.format(at=when(run.cancel_requested_at))
    return None
