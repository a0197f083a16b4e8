"""htmx glue: render a page or only its partial, and the unchanged-poll fast path."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from flask import Response, render_template, request

from lexyjobs.api.inputs import BadInput
from lexyjobs.db import utcnow

POLL_SECONDS = 2


def wants_partial() -> bool:
    """An htmx request for a fragment (boosted navigations and history restores want the page)."""
    headers = request.headers
    return bool(headers.get("HX-Request")) and not headers.get("HX-Boosted") and not headers.get("HX-History-Restore-Request")


def render(page: str, partial: str, **context: Any) -> str:
    """The partial alone for htmx, else the whole page (which includes the partial)."""
    return render_template(partial if wants_partial() else page, **context)


def unchanged(stamp: str) -> bool:
    """True when the poll says the client already shows ``stamp`` (answer 204: htmx swaps nothing)
    and no time it shows something changing at (its ``due``, see ``due_args``) has come."""
    return wants_partial() and request.args.get("stamp") == stamp and not _due_passed()


def due_args(times: Iterable[datetime | None]) -> dict[str, Any]:
    """The poll URL's ``due``: the earliest of ``times`` at which what the fragment shows changes
    with no write to tell it (a delayed run comes due, a running run turns too long). The page's
    script polls then even while the events stream is live, and the poll is answered in full."""
    earliest = min((at for at in times if at is not None), default=None)
    if earliest is None:
        return {}
    earliest += timedelta(microseconds=-earliest.microsecond % 1000)  # to the millisecond, never before
    return {"due": earliest.isoformat(timespec="milliseconds")}


def _due_passed() -> bool:
    due = request.args.get("due")
    if not due:
        return False
    try:
        return datetime.fromisoformat(due) <= utcnow()
    except ValueError:
        raise BadInput("due", "must be an ISO 8601 time") from None


def no_change() -> Response:
    return Response(status=204)
