"""Human durations: ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"2 hours"``, ``"90 minutes"``
or a plain number of seconds."""
from __future__ import annotations

import math
import re

MAX_SECONDS = 10 * 366 * 86400.0
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Words for the units, longest first so that "mins" is not read as "m" + "ins" (spaces are gone by then).
_WORDS = {"milliseconds": "ms", "millisecond": "ms", "seconds": "s", "second": "s", "secs": "s", "sec": "s",
          "minutes": "m", "minute": "m", "mins": "m", "min": "m", "hours": "h", "hour": "h", "hrs": "h", "hr": "h",
          "days": "d", "day": "d", "weeks": "w", "week": "w"}
_PART = re.compile(r"(\d+(?:\.\d+)?)(" + "|".join([*_WORDS, "ms", "s", "m", "h", "d", "w"]) + ")")
SHAPES = "'30s', '5m', '1h30m', '2d' or '2 hours'"


def parse_duration(value: object) -> float:
    """Return seconds for a duration string or number; raise ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m' or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and _PART.sub("", text) == "":
            seconds = sum(float(n) * _UNITS[_WORDS.get(u, u)] for n, u in _PART.findall(text))
        else:
            raise ValueError(f"'{value}' is not a duration like {SHAPES}")
    else:
        raise ValueError("expected a duration like '30s', '5m' or a number of seconds")
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"'{str(value)[:40]}' is longer than the longest duration lexyjobs takes (10 years)")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: 0.25 -> '250ms', 90 -> '1m30s', 7200 -> '2h'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out, rest = [], int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


def parse_duration_range(value: object) -> tuple[float | None, float | None]:
    """``"10m..40m"`` -> ``(600.0, 2400.0)``; either end may be left out (``"..40m"``, ``"10m.."``),
    not both. ValueError with a readable message otherwise."""
    if not isinstance(value, str) or value.count("..") != 1:
        raise ValueError("must be a range like '10m..40m' (shortest..longest; '..40m' or '10m..' leave one end open)")
    low_text, high_text = (part.strip() for part in value.split(".."))
    if not low_text and not high_text:
        raise ValueError("needs at least one end, e.g. '10m..40m', '..40m' or '10m..'")
    low = parse_duration(low_text) if low_text else None
    high = parse_duration(high_text) if high_text else None
    if high is not None and high <= 0:
        raise ValueError("its longest end must be longer than 0s")
    if low is not None and high is not None and low > high:
        raise ValueError(f"'{value}' ends before it starts: the shortest comes first, e.g. '10m..40m'")
    return low, high
