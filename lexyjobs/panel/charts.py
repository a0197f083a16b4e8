"""Server-rendered SVG charts (no chart library): bars of finished runs per bucket, succeeded
stacked under failed, with the failure rate as a line. Pure: buckets and ``now`` are passed in."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH, HEIGHT, GAP = 720, 160, 2


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    label: str     # the bucket's start, for the tooltip
    succeeded: int
    failed: int
    other: int     # canceled, blocked, skipped


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    failure_line: str   # SVG polyline points (failure rate, 0–100 % of the height)
    peak: int           # runs in the busiest bucket (the y scale)
    total: int
    failed: int
    first_label: str
    last_label: str

    @property
    def failure_rate(self) -> float | None:
        """Failed / (succeeded + failed): canceled, blocked and skipped runs are no verdict."""
        decided = sum(b.succeeded + b.failed for b in self.bars)
        return None if not decided else self.failed / decided


def bucket_keys(now: datetime, *, hourly: bool) -> list[tuple[str, str]]:
    """The 24 hourly (or 7 daily) bucket keys ending with the current one, with display labels."""
    if hourly:
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
        return [((start + timedelta(hours=i)).strftime("%Y-%m-%dT%H"), (start + timedelta(hours=i)).strftime("%H:00"))
                for i in range(24)]
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=6)
    return [((start + timedelta(days=i)).strftime("%Y-%m-%d"), (start + timedelta(days=i)).strftime("%a %d"))
            for i in range(7)]


def throughput_chart(counts: dict[str, dict[str, int]], keys: list[tuple[str, str]]) -> Chart:
    """Lay out one bar per bucket key; ``counts`` is ``queries.throughput``'s result."""
    totals = [sum(counts.get(key, {}).values()) for key, _ in keys]
    peak = max(totals + [1])
    slot = WIDTH / len(keys)
    bars, points = [], []
    for index, (key, label) in enumerate(keys):
        bucket = counts.get(key, {})
        succeeded, failed = bucket.get("succeeded", 0), bucket.get("failed", 0)
        ok_height, failed_height = HEIGHT * succeeded / peak, HEIGHT * failed / peak
        x = index * slot + GAP / 2
        bars.append(Bar(round(x, 1), round(slot - GAP, 1), round(HEIGHT - ok_height, 1), round(ok_height, 1),
                        round(HEIGHT - ok_height - failed_height, 1), round(failed_height, 1), label, succeeded,
                        failed, totals[index] - succeeded - failed))
        if succeeded + failed:
            rate = failed / (succeeded + failed)
            points.append(f"{x + (slot - GAP) / 2:.1f},{HEIGHT - rate * HEIGHT:.1f}")
    return Chart(bars, " ".join(points), peak, sum(totals), sum(b.failed for b in bars), keys[0][1], keys[-1][1])
