"""Retry backoff: exponential, capped, with jitter, and never shorter than a server's Retry-After.
Pure: the random source and the time are passed in."""
from __future__ import annotations

import email.utils
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone


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


def retry_delay(failed_attempt: int, policy: RetryPolicy, rng: random.Random,
                retry_after: float | None = None) -> float:
    """The backoff after ``failed_attempt``, but at least ``retry_after`` seconds (what the failed
    attempt was told to wait, e.g. a server's Retry-After), itself capped at ``policy.cap``: the
    job's longest wait between attempts also bounds what a server may ask for."""
    delay = backoff(failed_attempt, policy, rng)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.cap))
    return delay


_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """The wait an HTTP ``Retry-After`` header asks for: delay-seconds (``120``) or an HTTP date
    (``Wed, 21 Oct 2015 07:28:00 GMT``), as seconds from ``now`` (never negative). None when the
    header is absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())
