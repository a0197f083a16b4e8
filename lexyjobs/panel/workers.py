"""Panel page: workers (everyone). This process (its worker, scheduler and database), then every
live worker process from the registry (``lexyjobs.workers``): host, pid, version, threads,
started, last heartbeat and its current runs. The live part polls like the other pages and
answers 204 while nothing it shows has changed (heartbeats alone do not count)."""
from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response

from lexyjobs import workers as registry
from lexyjobs.db import utcnow
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import no_change, render, unchanged
from lexyjobs.runtime import Runtime, current
from lexyjobs.workers import WorkerInfo

LOADED_AT = utcnow()  # when this process loaded the panel: close enough to "serving since"
RUNS_SHOWN = 5        # current runs linked per worker; the rest are counted
LATE_BEATS = 2        # heartbeats missed before a worker shows as late


@dataclass(frozen=True)
class WorkerRow:
    """A live worker as the page shows it."""

    info: WorkerInfo
    state: str  # busy (running runs), idle, or late (missed heartbeats: it stalls or died)


@bp.get("/workers")
def workers() -> str | Response:
    """This process, and every live worker process with its current runs."""
    lexy, now = current(), utcnow()
    with lexy.db.read() as session:
        found = registry.live_workers(session, now=now, stale_after=lexy.settings.stale_after)
    rows = [WorkerRow(w, worker_state(w, now, late_after=LATE_BEATS * lexy.settings.heartbeat_interval))
            for w in found]
    stamp = _stamp(rows)
    if unchanged(stamp):
        return no_change()
    return render("lexyjobs/workers.html", "lexyjobs/_partials/_workers_live.html", here=this_process(lexy), workers=rows,
                  stamp=stamp, runs_shown=RUNS_SHOWN, stale_after=lexy.settings.stale_after)


def worker_state(worker: WorkerInfo, now: datetime, *, late_after: float) -> str:
    """``late`` when its heartbeat is older than ``late_after`` seconds (it is pruned, and its
    runs rescued, at LEXYJOBS_STALE_AFTER), else ``busy`` with running runs, else ``idle``."""
    if (now - worker.heartbeat_at).total_seconds() > late_after:
        return "late"
    return "busy" if worker.runs else "idle"


def _stamp(rows: list[WorkerRow]) -> str:
    """Changes when a worker comes or goes, changes state or its runs change; not with every
    heartbeat (the page shows heartbeat times relative, and a heartbeat on time changes nothing)."""
    parts = [(r.info.name, r.info.threads, r.state, [run.id for run in r.info.runs]) for r in rows]
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def this_process(lexy: Runtime) -> dict[str, Any]:
    health = lexy.health()
    return {"pid": os.getpid(), "host": socket.gethostname(), "loaded_at": LOADED_AT, "started": lexy.started,
            "worker": lexy.worker.name if lexy.worker else None,
            "threads": lexy.worker.size if lexy.worker else None, "worker_alive": health["worker"],
            "scheduler": lexy.scheduler.name if lexy.scheduler else None, "scheduler_alive": health["scheduler"],
            "database": health["database"]}
