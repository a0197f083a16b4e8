"""What a running job sees: ``RunContext`` (params, progress, log, cancellation). The worker
reads the buffered progress and log lines from it and writes them, fenced, to the database."""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable

from lexyjobs.masking import Redactor

log = logging.getLogger(__name__)

CANCEL = "cancel"      # someone asked to cancel: the run ends canceled
TIMEOUT = "timeout"    # the job's timeout passed: the attempt fails (and may be retried)
SHUTDOWN = "shutdown"  # the process is stopping: the run is re-queued
LOST = "lost"          # the lease was lost (run rescued elsewhere): the result is discarded


class RunCanceled(Exception):
    """Raised by ``check_cancelled()`` so a job function can stop early."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"run stopped: {reason}")
        self.reason = reason


class JobFailed(Exception):
    """An expected failure: its message becomes the run's error, without a traceback.
    ``retry_after`` (seconds) makes the next attempt, if any, wait at least that long (e.g. a
    server's ``Retry-After``); the job's backoff still applies when it is longer.
    ``retryable=False``: another attempt cannot help (a configuration problem such as an unset
    ``${VAR}``): the run fails at once, whatever attempts are left."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable


class RunDeferred(Exception):
    """The run cannot go on before ``until`` (a daily budget is spent: ``by`` names it, e.g.
    "budget:provider openai"): it goes back to the queue, held until then (keeping its place),
    and the attempt does not count. Its message is the run's note and error."""

    def __init__(self, message: str, until: datetime, by: str) -> None:
        super().__init__(message)
        self.until, self.by = until, by


class ChildError(Exception):
    """A job function running in a child process (python ``isolation = "process"``) raised an
    unexpected exception: its ``Type: message`` and traceback, as the child saw them."""

    def __init__(self, error: str, traceback: str | None) -> None:
        super().__init__(error)
        self.error, self.traceback = error, traceback


class RunContext:
    """Handed to every job. Thread-safe: the worker thread writes, the monitor thread reads.
    Log text and progress messages pass through ``redactor`` (secret values become ``****``)
    before they are buffered, so nothing unmasked ever waits to be written."""

    def __init__(self, *, run_id: int, job_name: str, params: dict[str, Any], attempt: int,
                 max_attempts: int, timeout: float | None = None, kill_grace: float = 5.0,
                 redactor: Redactor | None = None) -> None:
        self.run_id = run_id
        self.job_name = job_name
        self.params = params
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.timeout = timeout  # seconds, or None
        self.kill_grace = kill_grace
        self.redactor = redactor if redactor is not None else Redactor([])
        self.details: dict[str, Any] = {}  # kind facts recorded on the run (exit code, HTTP status…)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._cancel_reason: str | None = None
        self._callbacks: list[Callable[[str], None]] = []
        self._log_chunks: list[str] = []
        self._progress: tuple[float | None, str | None] | None = None
        self._progress_dirty = False
        self._log: logging.Logger | None = None
        # set by the worker: records a job process group on the run (see ``process_started``)
        self.on_process: Callable[[int], None] | None = None
        # set by the worker: its Database, for kinds that keep state across attempts (the items
        # of an openai batch, lexyjobs.llm.items); None when a job runs without one (tests)
        self.db: Any = None
        # set by the worker: the shared [limits.<name>] tables the job names (its ``limits``)
        self.limits: tuple[str, ...] = ()
        self._fire_time: tuple[datetime | None] | None = None  # read on first use (``fire_time``)

    # --- used by jobs

    @property
    def fire_time(self) -> datetime | None:
        """The schedule time this run is for (UTC): a cron or interval fire's own time, even when
        it starts late; None for a run nobody's schedule made (manual, API, dependency…)."""
        if self._fire_time is None:
            from lexyjobs.fire_times import fire_time_of_run

            self._fire_time = (fire_time_of_run(self.db, self.run_id) if self.db is not None else None,)
        return self._fire_time[0]

    @property
    def log(self) -> logging.Logger:
        """A logger whose lines land in the run's log (created on first use)."""
        if self._log is None:
            logger = logging.Logger(f"lexyjobs.run.{self.run_id}", logging.DEBUG)
            handler = _ContextHandler(self)
            handler.setFormatter(_FORMAT)
            logger.addHandler(handler)
            self._log = logger
        return self._log

    def progress(self, percent: float | None, message: str | None = None) -> None:
        """Report progress (0–100) with an optional message; shown live in the panel."""
        if percent is not None:
            percent = max(0.0, min(100.0, float(percent)))
            if percent != percent:  # NaN
                percent = None
        if message is not None:
            message = self.redactor.text(str(message)).replace("\x00", "\\x00")
        with self._lock:
            self._progress = (percent, message)
            self._progress_dirty = True

    @property
    def cancelled(self) -> bool:
        """True once the run should stop (cancel, timeout or shutdown)."""
        return self._stopped.is_set()

    @property
    def cancel_reason(self) -> str | None:
        return self._cancel_reason

    def check_cancelled(self) -> None:
        """Raise RunCanceled if the run should stop; call it between units of work."""
        if self._stopped.is_set():
            raise RunCanceled(self._cancel_reason or CANCEL)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up and raise RunCanceled as soon as the run should stop."""
        if self._stopped.wait(seconds):
            raise RunCanceled(self._cancel_reason or CANCEL)

    def write(self, text: str) -> None:
        """Append raw text (e.g. a subprocess's output) to the run's log."""
        if text:
            text = self.redactor.text(text)  # per call: a secret split across two writes is not seen
            with self._lock:
                self._log_chunks.append(text)

    # --- used by the worker and kinds

    def on_cancel(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(reason)`` when the run is stopped (at once if it already is).
        Returns a function that unregisters it."""
        with self._lock:
            already = self._cancel_reason
            if already is None:
                self._callbacks.append(callback)
        if already is not None:
            callback(already)  # in the job's own thread: its errors are the job's

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
        return remove

    def process_started(self, pgid: int) -> None:
        """A kind started the run's process group ``pgid`` (die-with-parent, see
        ``lexyjobs.children``): the worker records it on the run at once, so that a rescue on
        this host makes sure the group is gone before the run can start again."""
        if self.on_process is not None:
            self.on_process(pgid)

    def cancel(self, reason: str) -> None:
        """Stop the run for ``reason``; only the first reason counts."""
        with self._lock:
            if self._cancel_reason is not None:
                return
            self._cancel_reason = reason
            callbacks = list(self._callbacks)
        self._stopped.set()
        for callback in callbacks:
            try:
                callback(reason)
            except Exception:  # a job's callback must not break the thread that stops it
                log.exception("run %s: cancel callback failed", self.run_id)

    def take_updates(self) -> tuple[tuple[float | None, str | None] | None, str]:
        """(new progress or None, log text since the last call) — for the worker's flush."""
        with self._lock:
            progress = self._progress if self._progress_dirty else None
            self._progress_dirty = False
            text = "".join(self._log_chunks)
            self._log_chunks.clear()
        return progress, text

    def current_progress(self) -> tuple[float | None, str | None] | None:
        with self._lock:
            return self._progress


_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s")


class _ContextHandler(logging.Handler):
    def __init__(self, ctx: RunContext) -> None:
        super().__init__()
        self.ctx = ctx

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.ctx.write(self.format(record) + "\n")
        except Exception:  # logging must never break the job
            self.handleError(record)
