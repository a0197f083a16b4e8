"""The scheduling process's housekeeping threads: the alerter (every few seconds) and retention
(hourly). Each is a ``Periodic``: a daemon thread calling one function at a fixed interval, that
logs a failure and tries again at the next tick, so housekeeping never stops for good and never
touches the worker's or the scheduler's threads."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from lexyjobs import retention
from lexyjobs.alerts.alerter import CHECK_SECONDS, Alerter
from lexyjobs.config import Settings
from lexyjobs.db import Database
from lexyjobs.failures import FailureLog, failure_log

log = logging.getLogger(__name__)

PRUNE_SECONDS = 3600.0
FIRST_PRUNE_SECONDS = 60.0  # not during start-up, when the worker rescues and the scheduler catches up


class Periodic:
    def __init__(self, name: str, interval: float, task: Callable[[], Any], *, first: float | None = None,
                 failures: FailureLog | None = None) -> None:
        self.name = name
        self.failures = failures or FailureLog()
        self.interval = interval
        self.first = interval if first is None else first
        self.task = task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lexyjobs-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        delay = self.first
        while not self._stop.wait(delay):
            try:
                self.task()
            except Exception as exc:
                self.failures.failed(log, f"{self.name} failed; trying again in {self.interval:g}s", exc)
            delay = self.interval


def housekeeping(db: Database, settings: Settings) -> list[Periodic]:
    """The threads a scheduling process runs (not started)."""
    policy = retention.Policy(settings.retention_days, settings.retention_failed_days, settings.audit_retention_days)

    def prune() -> None:
        report = retention.prune(db, policy)
        if report.total or report.alerts or report.audit:
            log.info("retention: deleted %d finished runs (%s), %d alerts and %d audit entries", report.total,
                     ", ".join(f"{n} {s}" for s, n in report.runs.items() if n), report.alerts, report.audit)

    failures = failure_log(db)
    threads = [Periodic("alerts", CHECK_SECONDS, Alerter(db, settings).check, failures=failures)]
    if settings.retention_days or settings.retention_failed_days or settings.audit_retention_days:
        threads.append(Periodic("retention", PRUNE_SECONDS, prune, first=FIRST_PRUNE_SECONDS, failures=failures))
    return threads
