"""The LLM usage chart (server-rendered SVG, no chart library; the look of ``charts.py``): one
column per UTC day, a bar of its tokens (prompt stacked under completion) and beneath it a strip
per currency with a bar of the day's cost and its amount written above. Each column's tooltip
holds every figure of the day. Pure: the days are passed in (``usage_reads.Window.days``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lexyjobs.llm.providers import format_amount
from lexyjobs.llm.usage_reads import Usage, Window

WIDTH = 720                  # as the throughput charts, for a half-width column
WIDE = 1100                  # a full-width chart (job page, dashboard): about a unit a pixel, text at its size
GUTTER = 60                  # left of the bars: the scale's labels
TOKENS_TOP, TOKENS_HEIGHT = 22, 128
STRIP_HEIGHT, STRIP_BAR = 46, 28   # a cost strip: a row of amounts, then bars STRIP_BAR tall
MAX_STRIPS = 3               # currencies drawn as strips (more stay in the tooltips)
GAP = 4
MIN_LABEL_SLOT = 40          # narrower columns (many days) get no amounts written above them


@dataclass(frozen=True)
class CostBar:
    y: float
    height: float
    label: str               # the amount, short ("0.42", "1.2k"); '' on a day without cost


@dataclass(frozen=True)
class DayColumn:
    day: str
    x: float
    width: float
    prompt_y: float
    prompt_height: float
    completion_y: float
    completion_height: float
    costs: tuple[CostBar, ...]   # one per strip, in the strips' order
    tooltip: str

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class Strip:
    currency: str
    top: float               # the amounts' row
    baseline: float          # the bars stand on it


@dataclass(frozen=True)
class UsageChart:
    columns: list[DayColumn]
    strips: list[Strip]
    width: int               # of the SVG viewBox
    peak_tokens: int         # the tokens scale: the busiest day
    height: float            # of the SVG viewBox
    plot_bottom: float       # the lowest baseline (tooltips' hit areas end there)
    first_label: str
    last_label: str
    total: Usage

    @property
    def tokens_baseline(self) -> int:
        return TOKENS_TOP + TOKENS_HEIGHT

    @property
    def peak_label(self) -> str:
        return short_count(self.peak_tokens)


@dataclass(frozen=True)
class UsageView:
    """What ``_partials/_llm_usage.html`` shows: the chart and the two summary lines."""

    chart: UsageChart
    days: int
    today: str               # "31 requests, 12,345 tokens, 0.42 USD"
    total: str               # the same over the whole window


def usage_view(found: Window, *, width: int = WIDTH) -> UsageView:
    return UsageView(usage_chart(found.days, width=width), len(found.days), summary_text(found.today),
                     summary_text(found.total))


def usage_chart(days: dict[str, Usage], *, width: int = WIDTH) -> UsageChart:
    """Lay out the columns of ``days`` ('YYYY-MM-DD' → usage, oldest first, zero days included)."""
    total = Usage()
    for usage in days.values():
        total.merge(usage)
    base = TOKENS_TOP + TOKENS_HEIGHT
    currencies = sorted(total.cost, key=lambda c: (-total.cost[c], c))[:MAX_STRIPS]
    strips = [Strip(c, base + 8 + i * STRIP_HEIGHT, base + 4 + (i + 1) * STRIP_HEIGHT) for i, c in enumerate(currencies)]
    peak = max([u.tokens for u in days.values()] + [1])
    cost_peaks = {c: max([u.cost.get(c, 0.0) for u in days.values()]) or 1.0 for c in currencies}
    slot = (width - GUTTER) / max(len(days), 1)
    labelled = slot >= MIN_LABEL_SLOT
    columns = []
    for index, (day, usage) in enumerate(days.items()):
        prompt_h = _height(usage.prompt_tokens, peak, TOKENS_HEIGHT)
        completion_h = _height(usage.completion_tokens, peak, TOKENS_HEIGHT)
        costs = []
        for strip in strips:
            amount = usage.cost.get(strip.currency, 0.0)
            tall = _height(amount, cost_peaks[strip.currency], STRIP_BAR)
            costs.append(CostBar(round(strip.baseline - tall, 1), tall, short_amount(amount) if labelled else ""))
        columns.append(DayColumn(day, round(GUTTER + index * slot + GAP / 2, 1), round(slot - GAP, 1),
                                 round(base - prompt_h, 1), prompt_h, round(base - prompt_h - completion_h, 1),
                                 completion_h, tuple(costs), day_tooltip(day, usage)))
    bottom = strips[-1].baseline if strips else base
    keys = list(days)
    return UsageChart(columns, strips, width, peak, bottom + 18, bottom, _label(keys[0]) if keys else "",
                      _label(keys[-1]) if keys else "", total)


def _height(value: float, peak: float, full: float) -> float:
    """Proportional to ``value``; a value too small to see still gets half a unit."""
    if value <= 0:
        return 0.0
    return round(max(full * value / peak, 0.5), 2)


def _label(day: str) -> str:
    return date.fromisoformat(day).strftime("%b %d")


def day_tooltip(day: str, usage: Usage) -> str:
    """'2026-12-05: 12,345 tokens (10,000 prompt + 2,345 completion), 0.42 USD, 31 requests (3 cached)'."""
    split = f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion"
    parts = [f"{day}: {usage.tokens:,} tokens ({split})"]
    if usage.cost:
        parts.append(cost_text(usage.cost))
    parts.append(requests_text(usage))
    return ", ".join(parts)


def cost_text(cost: dict[str, float]) -> str:
    """'0.42 USD', or '0.42 USD + 0.10 EUR' (largest first): currencies are never added together."""
    ordered = sorted(cost, key=lambda c: (-cost[c], c))
    return " + ".join(f"{format_amount(cost[c])} {c}".rstrip() for c in ordered)


def requests_text(usage: Usage) -> str:
    text = f"{usage.requests:,} request{'s' if usage.requests != 1 else ''}"
    return f"{text} ({usage.cached:,} cached)" if usage.cached else text


def summary_text(usage: Usage) -> str:
    """'31 requests, 12,345 tokens, 0.42 USD' (no cost part without a price)."""
    parts = [requests_text(usage), f"{usage.tokens:,} tokens"]
    if usage.cost:
        parts.append(cost_text(usage.cost))
    return ", ".join(parts)


def short_amount(amount: float) -> str:
    """An amount in at most 5 characters, for a label above a narrow bar: '' for none. The
    bounds sit where rounding would carry into one more digit (99.996 → '100', not '100.00')."""
    if amount <= 0:
        return ""
    if amount < 0.005:
        return "<0.01"
    if amount < 99.995:
        return f"{amount:.2f}"
    if amount < 999.5:
        return f"{amount:.0f}"
    if amount < 99_950:
        return f"{amount / 1000:.1f}k"
    if amount < 999_500:
        return f"{amount / 1000:.0f}k"
    return f"{amount / 1_000_000:.1f}M"


def short_count(value: int) -> str:
    """The scale's top label, at most 4 characters: 950, '9.5k', '112k', '1.2M'."""
    if value < 1000:
        return str(value)
    for unit, size in (("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000)):
        scaled = value / size
        if scaled < 9.95:
            return f"{scaled:.1f}".removesuffix(".0") + unit
        if scaled < 999.5:
            return f"{scaled:.0f}{unit}"
    return f"{value / 1_000_000_000:.0f}G"
