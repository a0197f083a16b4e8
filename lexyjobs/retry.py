"""Retry backoff: exponential, capped, with jitter. Pure: the random source is passed in."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 10.0     # seconds before the 2nd attempt
    factor: float = 2.0    # growth per further attempt
    cap: float = 3600.0    # never wait longer than this
    jitter: float = 0.2    # up to this fraction is taken off at random, so retries spread out


def backoff(failed_attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
    delay = min(policy.cap, policy.base * policy.factor ** max(failed_attempt - 1, 0))
    return delay * (1.0 - policy.jitter * rng.random())
