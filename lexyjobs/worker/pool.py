"""The state a worker's threads share (``Pool``): the runs in this process's hands, counted in all
and per queue, the outcomes awaiting the dispatcher, and the signals between the threads.

Every count changes under ``lock`` and in one place (here), so ``busy`` is always the number of
runs held and not finished — claimed-ahead ones waiting for a thread included — which is what the
dispatcher claims against and what ``Worker.stop`` waits on (``idle``)."""
from __future__ import annotations

import threading
import time
from collections import Counter

from lexyjobs import begun
from lexyjobs.context import CANCEL
from lexyjobs.outcomes import Active, Outcome
from lexyjobs.states import RunStatus


class Pool:
    """Runs held by one worker process and the signals between its threads. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size  # run threads
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified whenever a run stops holding a slot
        # Held by the monitor from taking runs' new log lines to storing them, and by a run thread
        # taking its last lines (which the dispatcher stores with the run's end): lines are then
        # stored in the order they were written, and a finished run never lacks some.
        self.log_order = threading.Lock()
        self.active: dict[int, Active] = {}
        self.busy = 0
        self.busy_by_queue: Counter[str] = Counter()
        self.outcomes: list[Outcome] = []
        self.begins = begun.PendingBegins()  # claimed-ahead runs that began, to record as begun
        self.typical_run: float | None = None  # moving average of the seconds a run takes here
        self.paced: set[str] = set()  # jobs whose runs count in it (all but the first run of each)
        self.wakeup = threading.Event()  # set: the dispatcher claims now instead of at the next poll
        self.stopping = threading.Event()  # set by stop(): claim nothing more
        self.closed = threading.Event()  # set once stopped: every loop ends
        # Held by the dispatcher from a claim until the claimed runs are in ``active``, so stop()
        # never misses a run that is already ``running`` in the database.
        self.handover = threading.Lock()

    def wake(self) -> None:
        """Claim now (called after a local enqueue, a NOTIFY or a finished run)."""
        self.wakeup.set()

    def add(self, active: Active) -> None:
        """Hold a claimed run (it takes a slot until it finishes)."""
        with self.lock:
            self.active[active.claim.id] = active
            self.busy += 1
            self.busy_by_queue[active.claim.queue] += 1

    def release(self, active: Active, outcome: Outcome) -> None:
        """Hand the outcome to the dispatcher and free the slot."""
        with self.idle:
            active.finished = True
            if active.executing and active.claim.job_name not in self.paced:
                self.paced.add(active.claim.job_name)  # a job's first run here pays its imports: not the pace
            elif active.executing:
                took = time.monotonic() - active.started
                self.typical_run = took if self.typical_run is None else self.typical_run + 0.1 * (
                    took - self.typical_run)
            self.outcomes.append(outcome)
            self.busy -= 1
            self.busy_by_queue[active.claim.queue] -= 1
            self.idle.notify_all()
        self.wake()

    def cancel_local(self, run_id: int) -> bool:
        """Stop a run of this process at once (after the database was flagged). One still waiting
        for a thread ends here, canceled without ever beginning."""
        with self.idle:
            active = self.active.get(run_id)
            if active is None:
                return False
            if not active.executing and not active.finished:
                active.ctx.cancel(CANCEL)  # under the lock: no thread begins it now (and it has no callbacks)
                active.finished = True
                self.outcomes.append(Outcome(active, RunStatus.CANCELED, error="canceled"))
                self.busy -= 1
                self.busy_by_queue[active.claim.queue] -= 1
                self.idle.notify_all()
        self.wake()
        active.ctx.cancel(CANCEL)
        return True

    def take_outcomes(self) -> list[Outcome]:
        with self.lock:
            outcomes, self.outcomes = self.outcomes, []
        return outcomes

    def put_back(self, outcome: Outcome) -> None:
        """Keep an outcome that could not be written for the next cycle."""
        with self.lock:
            self.outcomes.append(outcome)

    def unfinished(self) -> list[Active]:
        with self.lock:
            return [a for a in self.active.values() if not a.finished]
