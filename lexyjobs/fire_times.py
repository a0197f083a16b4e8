"""The schedule time a run is for (``ctx.fire_time``, ``LEXYJOBS_FIRE_TIME``, ``{{ fire_time }}``).

A scheduled run carries its fire's key, ``job@<fire time, UTC, ISO 8601>`` (``scheduler.fire_key``),
written when the scheduler records the fire; a backfill's run the same key with ``#backfill-<id>``
after it (``lexyjobs.backfill``); a manual retry of either (``retry_of``) is for the same fire.
Every other run is for no fire time."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from lexyjobs.db import Database
from lexyjobs.models import Run

MAX_RETRY_CHAIN = 50  # retries of retries followed back at most this far


def fire_time_of(fire_key: str | None) -> datetime | None:
    """The time in a fire key, or None (no key, or not one the scheduler wrote)."""
    if not fire_key or "@" not in fire_key:
        return None
    try:
        return datetime.fromisoformat(fire_key.rpartition("@")[2].partition("#")[0])
    except ValueError:
        return None


def fire_time_of_run(db: Database, run_id: int) -> datetime | None:
    """The fire time of run ``run_id``, following manual retries back to the run they retried."""
    with db.read() as session:
        for _ in range(MAX_RETRY_CHAIN):
            row = session.execute(select(Run.fire_key, Run.retry_of).where(Run.id == run_id)).first()
            if row is None:
                return None
            if row.fire_key is not None or row.retry_of is None:
                return fire_time_of(row.fire_key)
            run_id = row.retry_of
    return None
