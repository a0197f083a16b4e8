"""URL converters shared by the API and the panel: ``<run_id:run_id>``, ``<job_name:name>`` and ``<queue_name:name>``
refuse what cannot exist (404) before a route touches the database."""
from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import BaseConverter, IntegerConverter

from lexyjobs.definitions import NAME_PATTERN
from lexyjobs.flow.spec import QUEUE_PATTERN


class RunIdConverter(IntegerConverter):
    """A run id: a whole number that fits the database's 64-bit key (bigger ones are 404)."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, max=2**63 - 1)


class JobNameConverter(BaseConverter):
    """A job name as definitions allow it (other text is 404 without touching the database)."""

    regex = NAME_PATTERN.pattern


class QueueNameConverter(BaseConverter):
    """A queue name as definitions allow it (other text is 404 without touching the database)."""

    regex = QUEUE_PATTERN.pattern


def init_app(app: Flask) -> None:
    """Register the converters; call before any blueprint that uses them."""
    app.url_map.converters.update(run_id=RunIdConverter, job_name=JobNameConverter,
                                  queue_name=QueueNameConverter)
