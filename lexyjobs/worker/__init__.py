"""The worker pool of one process: claims runs, executes them on its threads, heartbeats them,
enforces timeouts and cancels, rescues runs of dead workers, and stops gracefully.

One module per part, each given the shared ``Pool`` (runs held, counts, outcomes, signals):
- ``core``: ``Worker``, which builds the parts, starts their threads and stops them (re-queueing
  what is left);
- ``dispatcher`` (thread): writes finished runs and claims new ones, both in one transaction per
  cycle (batches of up to ``workers`` runs), then waits for a wake-up or the poll interval;
- ``executor`` (run threads, daemons so a stuck job never blocks exit): execute one run at a time;
- ``monitor`` (thread): timeouts, cancel requests, progress/log flush and heartbeats (fenced by
  lease), the process's own row in the workers registry, rescue of stale runs, pruning of dead
  workers;
- ``wakeups`` (thread): LISTEN for other processes' enqueues on Postgres, a ``data_version``
  watch on SQLite.

Every module logs as ``lexyjobs.worker``, the logger name the README documents."""
from __future__ import annotations

from lexyjobs.worker.core import Worker

__all__ = ["Worker"]
