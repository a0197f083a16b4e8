"""Login throttling kept in memory (per process; ``lexyjobs serve`` is the one process that
serves the login form). It slows whoever guesses, not the owner of the account:

- per (client address, username) pair: ``PAIR_FREE_FAILURES`` failures are free, then each next
  attempt of the pair waits ``PAIR_FIRST_DELAY`` seconds after the last failure, doubling up to
  ``PAIR_MAX_DELAY`` (an earlier attempt is refused with the wait); a success forgets the pair;
- per client address, across usernames (password spraying): at most ``per_minute`` failures in
  a sliding minute, further attempts are refused until the oldest leaves the minute;
- per username, from anywhere: failures beyond ``per_minute`` in the last minute only *delay*
  every attempt on that name, by ``USER_STEP_DELAY`` each, at most ``USER_MAX_DELAY`` — never a
  refusal, so nobody can lock an account by failing on purpose.

A correct password from an address that has not failed is therefore never refused. An IPv6
address counts as its /64 network (one host usually holds a whole /64, so its addresses are free). An attempt
counts as a failure from the moment it is let through (so parallel requests cannot slip past a
budget while their passwords are being checked) until it succeeds (``Attempt.succeeded``)."""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

WINDOW = 60.0                # seconds of the per-address and per-username budgets
PAIR_FREE_FAILURES = 3       # failures of one (address, username) pair before delays begin
PAIR_FIRST_DELAY = 1.0       # then 1, 2, 4 … seconds between attempts of the pair
PAIR_MAX_DELAY = 300.0       # at most 5 minutes
PAIR_FORGET = 3600.0         # a pair with no failure for an hour starts afresh
USER_STEP_DELAY = 0.1        # added per username failure beyond the per-minute budget …
USER_MAX_DELAY = 2.0         # … up to this many seconds
MAX_KEYS = 20_000            # idle keys are forgotten beyond this, so a scan cannot grow memory


@dataclass
class _Pair:
    failures: int = 0
    last: float = 0.0


@dataclass
class Attempt:
    """The throttle's answer for one login attempt."""

    refused_for: float = 0.0   # > 0: refused, retry after this many seconds (nothing was counted)
    delay: float = 0.0         # seconds to wait before checking the password (the username is under attack)
    reason: str = ""           # "pair" or "address" when refused
    _undo: Callable[[], None] | None = field(default=None, repr=False)

    def succeeded(self) -> None:
        """The password was right: the attempt is not a failure after all."""
        if self._undo is not None:
            self._undo()
            self._undo = None


class LoginThrottle:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, deque[float]] = {}
        self._usernames: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, address: str, username: str) -> Attempt:
        """Decide on one attempt; when it is let through it counts as a failure until ``succeeded``."""
        now = self.clock()
        with self._lock:
            self._forget_idle(now)
            pair = self._pairs.get((address, username)) or _Pair()
            if pair.failures and now - pair.last > PAIR_FORGET:
                pair = _Pair()
            wait = pair_delay(pair.failures) - (now - pair.last)
            if wait > 0:
                return Attempt(refused_for=wait, reason="pair")
            by_address = _recent(self._addresses, address, now)
            if len(by_address) >= self.per_minute:
                return Attempt(refused_for=max(by_address[0] + WINDOW - now, 0.001), reason="address")
            by_username = _recent(self._usernames, username, now)
            delay = min(USER_MAX_DELAY, USER_STEP_DELAY * max(0, len(by_username) - self.per_minute))
            self._pairs[(address, username)] = _Pair(pair.failures + 1, now)
            by_address.append(now)
            by_username.append(now)
            return Attempt(delay=delay, _undo=lambda: self._undo(address, username, now))

    def _undo(self, address: str, username: str, at: float) -> None:
        with self._lock:
            self._pairs.pop((address, username), None)  # a success forgets the pair's failures
            for hits, key in ((self._addresses, address), (self._usernames, username)):
                queue = hits.get(key)
                if queue is not None and at in queue:
                    queue.remove(at)

    def _forget_idle(self, now: float) -> None:
        if len(self._pairs) > MAX_KEYS:
            self._pairs = {k: p for k, p in self._pairs.items() if now - p.last <= PAIR_MAX_DELAY}
        for hits in (self._addresses, self._usernames):
            if len(hits) > MAX_KEYS:
                for key in [k for k, q in hits.items() if not q or q[-1] <= now - WINDOW]:
                    del hits[key]


def address_key(address: str | None) -> str:
    """The budget a client address draws on: itself, or its /64 network for IPv6."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "-"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def pair_delay(failures: int) -> float:
    """Seconds an (address, username) pair waits after its last failure, having failed ``failures`` times."""
    if failures < PAIR_FREE_FAILURES:
        return 0.0
    return min(PAIR_MAX_DELAY, PAIR_FIRST_DELAY * 2 ** min(failures - PAIR_FREE_FAILURES, 30))


def _recent(hits: dict[str, deque[float]], key: str, now: float) -> deque[float]:
    """The hits of ``key`` within the last WINDOW seconds (older ones dropped)."""
    queue = hits.setdefault(key, deque())
    while queue and queue[0] <= now - WINDOW:
        queue.popleft()
    return queue
