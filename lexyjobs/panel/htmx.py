"""htmx glue: render a page or only its partial, and the unchanged-poll fast path."""
from __future__ import annotations

from typing import Any

from flask import Response, render_template, request

POLL_SECONDS = 2


def wants_partial() -> bool:
    """An htmx request for a fragment (boosted navigations and history restores want the page)."""
    headers = request.headers
    return bool(headers.get("HX-Request")) and not headers.get("HX-Boosted") and not headers.get("HX-History-Restore-Request")


def render(page: str, partial: str, **context: Any) -> str:
    """The partial alone for htmx, else the whole page (which includes the partial)."""
    return render_template(partial if wants_partial() else page, **context)


def unchanged(stamp: str) -> bool:
    """True when the poll says the client already shows ``stamp`` (answer 204: htmx swaps nothing)."""
    return wants_partial() and request.args.get("stamp") == stamp


def no_change() -> Response:
    return Response(status=204)
