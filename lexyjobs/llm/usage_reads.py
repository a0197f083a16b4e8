"""Reads of ``llm_usage_days`` (written by ``lexyjobs.llm.spend``): day by day over the last N UTC
days for the charts, the job page, the dashboard and ``GET /api/llm/usage``; and totals per (job,
provider, model, currency) over every row for ``/metrics``. Days are UTC 'YYYY-MM-DD' text, as
stored: it sorts and compares like the dates, so a window is a range of the primary key
(day, job_name, provider, model).

Costs stay per currency (``{"USD": 0.42, "EUR": 0.1}``): a job's own prices and its provider's
may be in different currencies, and their sum would be a number in none. A row without a known
price (currency '') counts its requests and tokens; its cost, 0 by construction, is left out."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import Table, exists, func, select
from sqlalchemy.orm import Session

from lexyjobs.models import LlmUsageDay

USAGE = cast(Table, LlmUsageDay.__table__)
DEFAULT_DAYS = 14
MAX_DAYS = 90
TOP_JOBS = 5
_SUMS = (func.sum(USAGE.c.requests), func.sum(USAGE.c.cached), func.sum(USAGE.c.prompt_tokens),
         func.sum(USAGE.c.completion_tokens), func.sum(USAGE.c.cost))


@dataclass
class Usage:
    """Requests, tokens and cost of some rows added up."""

    requests: int = 0
    cached: int = 0           # requests answered from the cache (no tokens, no cost)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: dict[str, float] = field(default_factory=dict)  # currency -> amount

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def empty(self) -> bool:
        return not (self.requests or self.tokens or any(self.cost.values()))

    @property
    def main_currency(self) -> str | None:
        """The currency with the largest amount (ties: the first by name), None without cost."""
        return min(self.cost, key=lambda c: (-self.cost[c], c)) if self.cost else None

    def add(self, requests: Any, cached: Any, prompt: Any, completion: Any, cost: Any, currency: str) -> None:
        """Add one (grouped) row; SQL sums may be None or Decimal, hence ``Any``."""
        self.requests += int(requests or 0)
        self.cached += int(cached or 0)
        self.prompt_tokens += int(prompt or 0)
        self.completion_tokens += int(completion or 0)
        if currency or cost:  # a priced row, even at 0 (all cached); '' only with an amount
            self.cost[currency] = self.cost.get(currency, 0.0) + float(cost or 0.0)

    def merge(self, other: Usage) -> None:
        self.add(other.requests, other.cached, other.prompt_tokens, other.completion_tokens, 0.0, "")
        for currency, amount in other.cost.items():
            self.cost[currency] = self.cost.get(currency, 0.0) + amount

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (``GET /api/llm/usage``); amounts rounded to 6 decimals like a run's details."""
        return {"requests": self.requests, "cached": self.cached, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "tokens": self.tokens,
                "cost": {currency: round(amount, 6) for currency, amount in sorted(self.cost.items())}}


@dataclass(frozen=True)
class Window:
    """Usage over consecutive UTC days ending today: ``days`` holds every day, oldest first,
    days without usage as zeros; ``jobs`` each job's sum over the window."""

    days: dict[str, Usage]
    jobs: dict[str, Usage]

    @property
    def first_day(self) -> str:
        return next(iter(self.days))

    @property
    def last_day(self) -> str:
        return next(reversed(self.days))

    @property
    def today(self) -> Usage:
        return self.days[self.last_day]

    @property
    def total(self) -> Usage:
        summed = Usage()
        for usage in self.days.values():
            summed.merge(usage)
        return summed

    @property
    def empty(self) -> bool:
        return all(usage.empty for usage in self.days.values())

    def top_jobs(self, limit: int = TOP_JOBS) -> list[tuple[str, Usage]]:
        """The jobs that spent most: by their cost in the window's main currency (amounts in
        other currencies are not compared with it), then by tokens, then by name."""
        main = self.total.main_currency or ""
        ranked = sorted(self.jobs.items(), key=lambda item: (-item[1].cost.get(main, 0.0), -item[1].tokens, item[0]))
        return [(job, usage) for job, usage in ranked if not usage.empty][:limit]


def day_keys(now: datetime, days: int = DEFAULT_DAYS) -> list[str]:
    """The ``days`` UTC days ending with ``now``'s, oldest first ('YYYY-MM-DD')."""
    today = now.astimezone(timezone.utc).date()
    return [(today - timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def window(session: Session, *, now: datetime, days: int = DEFAULT_DAYS, job: str | None = None) -> Window:
    """Usage of the ``days`` UTC days ending today (of one ``job``, or of all): one statement,
    a range of the primary key grouped by day, job and currency (a few rows per day)."""
    keys = day_keys(now, days)
    query = (select(USAGE.c.day, USAGE.c.job_name, USAGE.c.currency, *_SUMS)
             .where(USAGE.c.day >= keys[0], USAGE.c.day <= keys[-1])
             .group_by(USAGE.c.day, USAGE.c.job_name, USAGE.c.currency))
    if job is not None:
        query = query.where(USAGE.c.job_name == job)
    per_day: dict[str, Usage] = {key: Usage() for key in keys}
    per_job: dict[str, Usage] = {}
    for day, name, currency, requests, cached, prompt, completion, cost in session.execute(query):
        per_day[day].add(requests, cached, prompt, completion, cost, currency)
        per_job.setdefault(name, Usage()).add(requests, cached, prompt, completion, cost, currency)
    return Window(per_day, per_job)


def has_usage(session: Session, job: str) -> bool:
    """Whether the job has ever made a request (a scan of a table of a few rows per job and day)."""
    return bool(session.scalar(select(exists().where(USAGE.c.job_name == job))))


@dataclass(frozen=True)
class Total:
    """Everything one (job, provider, model, currency) has counted, all days together."""

    job: str
    provider: str
    model: str
    currency: str
    requests: int
    cached: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


def totals(session: Session) -> list[Total]:
    """Sums over every row by (job, provider, model, currency), sorted: the ``/metrics``
    counters. Nothing deletes usage rows, so each sum only grows (as a counter must); the table
    holds a row per day, job, provider and model, so the whole-table GROUP BY stays small."""
    keys = (USAGE.c.job_name, USAGE.c.provider, USAGE.c.model, USAGE.c.currency)
    rows = session.execute(select(*keys, *_SUMS).group_by(*keys).order_by(*keys))
    return [Total(job, provider, model, currency, int(requests or 0), int(cached or 0), int(prompt or 0),
                  int(completion or 0), float(cost or 0.0))
            for job, provider, model, currency, requests, cached, prompt, completion, cost in rows]
