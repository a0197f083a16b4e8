"""A sliding-window rate limiter kept in memory (per process): enough to make guessing passwords
slow; ``lexyjobs serve`` is the one process that serves the login form."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class SlidingWindow:
    """At most ``limit`` hits per key within ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """0 if every key may hit now (and count the hit on each), else the seconds to wait."""
        now = self.clock()
        with self._lock:
            queues = [self._queue(key, now) for key in keys]
            waits = [q[0] + self.window - now for q in queues if len(q) >= self.limit]
            if waits:
                return max(max(waits), 0.001)
            for queue in queues:
                queue.append(now)
            return 0.0

    def _queue(self, key: str, now: float) -> deque[float]:
        if len(self._hits) > 10_000:  # forget idle keys so a scan of many addresses cannot grow memory
            self._hits = {k: q for k, q in self._hits.items() if q and q[-1] > now - self.window}
        queue = self._hits.setdefault(key, deque())
        while queue and queue[0] <= now - self.window:
            queue.popleft()
        return queue
