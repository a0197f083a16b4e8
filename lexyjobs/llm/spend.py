"""What ``openai`` runs spend, kept within their limits: ``RunSpend.admit`` before each request
(the run's ``max_cost`` and ``max_tokens_total``, the daily budgets of the job and of its
provider, the provider's requests and tokens per minute) and ``RunSpend.record`` after it (tokens
and cost into ``llm_usage_days``, the request's real token count into the provider's window —
its usage written at most once a second, ``RunSpend.flush``, and when the run ends).

A job's provider is the first ``[limits.<name>]`` it names that says anything about LLM requests;
its usage counts there. Every such table it names limits its requests per minute. Days are UTC.

The per-minute windows are rows of ``llm_requests``, counted and added to in one write
transaction per request (serialized by SQLite's write lock, or a Postgres advisory lock per
provider), so every thread and process shares them."""
from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence, cast

from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from lexyjobs.context import JobFailed, RunContext, RunDeferred
from lexyjobs.flow.waiting import BUDGET_HOLD
from lexyjobs.db import utcnow
from lexyjobs.llm.providers import FIELDS as PROVIDER_FIELDS
from lexyjobs.llm.providers import Money, Price, Provider, format_amount, parse_money, parse_provider
from lexyjobs.models import LlmRequest, LlmUsageDay

USAGE = cast(Table, LlmUsageDay.__table__)
REQUESTS = cast(Table, LlmRequest.__table__)
WINDOW = 60.0  # seconds of requests_per_minute and tokens_per_minute (tests shorten it)
FLUSH_EVERY = 1.0  # seconds between writes of a run's usage (and at its end)
CHARS_PER_TOKEN = 4  # a request's prompt tokens are estimated from its characters until the answer counts them


class LimitReached(JobFailed):
    """A run's own ``max_cost`` or ``max_tokens_total`` would be passed: nothing more is sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def day_of(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d")


def next_day(at: datetime) -> datetime:
    start = at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(days=1)


def estimate_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens a request may use, before it is sent: its text's characters
    over CHARS_PER_TOKEN, and ``max_tokens`` (0 when not set)."""
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", ()))
    chars += sum(len(str(text)) for text in body.get("input", ())) if isinstance(body.get("input"), list) else 0
    return math.ceil(chars / CHARS_PER_TOKEN), int(body.get("max_tokens") or 0)


@dataclass
class _Pending:
    """One (day, model)'s usage counted since the last flush."""

    requests: int = 0
    cached: int = 0
    prompt: int = 0
    completion: int = 0
    cost: float = 0.0
    currency: str = ""

    def add(self, cached: int, prompt: int, completion: int, cost: float, currency: str) -> None:
        self.merge(_Pending(1, cached, prompt, completion, cost, currency))

    def merge(self, other: _Pending) -> None:
        self.requests += other.requests
        self.cached += other.cached
        self.prompt += other.prompt
        self.completion += other.completion
        self.cost += other.cost
        self.currency = other.currency or self.currency


@dataclass
class RunSpend:
    """One attempt's spending and the limits it checks. ``own``: the job's own budget and prices
    (a Provider named ""); ``providers``: the LLM tables the job names, its provider first."""

    ctx: RunContext
    own: Provider
    providers: Sequence[Provider]
    max_cost: Money | None = None
    max_tokens_total: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    currency: str | None = None
    requests: int = 0
    cached: int = 0
    reported: bool = False  # an answer had token counts
    model: str | None = None  # as the last answer named it
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)  # by (day, model): not yet written
    _pending_lock: threading.Lock = field(default_factory=threading.Lock)
    _flushed_at: float = field(default_factory=time.monotonic)

    @property
    def provider(self) -> str:
        return self.providers[0].name if self.providers else ""

    def price(self, model: str) -> Price | None:
        for source in (self.own, *self.providers[:1]):
            found = source.price(model)
            if found is not None:
                return found
        return None

    async def admit(self, body: dict[str, Any]) -> list[int]:
        """Wait until ``body`` may be sent, or raise: LimitReached (the run's own limits),
        JobFailed or RunDeferred (a daily budget is spent, per its ``on_budget``). Returns the
        provider window rows it took (``record`` corrects their token counts)."""
        prompt, completion = estimate_tokens(body)
        price = self.price(str(body.get("model")))
        estimate = price.cost(prompt, completion) if price else 0.0
        async with self._lock:  # the run's parallel requests check its totals one at a time
            self._check_run_limits(prompt + completion, estimate)
        if self.budgets():
            await asyncio.to_thread(self._check_budgets, estimate)
        taken = []
        for provider in self.providers:
            if provider.limits_requests:
                taken.append(await self._take_slot(provider, prompt + completion))
        return taken

    def _check_run_limits(self, tokens: int, estimate: float) -> None:
        used = self.prompt_tokens + self.completion_tokens
        if self.max_tokens_total is not None and used + tokens > self.max_tokens_total:
            raise LimitReached(f"max_tokens_total {self.max_tokens_total:,} would be passed: {used:,} tokens used, "
                               f"the next request needs about {tokens:,}")
        if self.max_cost is not None and self.cost + estimate > self.max_cost.amount:
            raise LimitReached(f"max_cost {self.max_cost} would be passed: {format_amount(self.cost)} "
                               f"{self.max_cost.currency} spent, the next request costs about {format_amount(estimate)}")

    def budgets(self) -> list[tuple[str, Provider, Any]]:
        """The daily budgets that apply: (scope, where it is set, the usage rows it counts)."""
        budgets = [(f"job {self.ctx.job_name}", self.own, USAGE.c.job_name == self.ctx.job_name)]
        if self.providers:
            budgets.append((f"provider {self.provider}", self.providers[0], USAGE.c.provider == self.provider))
        return [b for b in budgets if b[1].budget_per_day is not None and self.ctx.db is not None]

    def _check_budgets(self, estimate: float) -> None:
        now = utcnow()
        with self.ctx.db.read() as session:
            for scope, source, where in self.budgets():
                budget = cast(Money, source.budget_per_day)
                spent = (session.scalar(select(func.coalesce(func.sum(USAGE.c.cost), 0.0))
                                        .where(USAGE.c.day == day_of(now), where)) or 0.0) + self._unflushed_cost()
                if spent + estimate <= budget.amount:
                    continue
                message = (f"the daily budget of {scope} is spent: {format_amount(spent)} of {budget} today "
                           f"(UTC)" + (f", and the next request costs about {format_amount(estimate)}" if estimate else ""))
                if source.on_budget == "fail":
                    raise JobFailed(message, retryable=False)
                until = next_day(now)
                raise RunDeferred(f"{message}; waiting until {until:%Y-%m-%d %H:%M} UTC", until, f"{BUDGET_HOLD}{scope}")

    async def _take_slot(self, provider: Provider, tokens: int) -> int:
        """A row in the provider's window, once it has room (waiting as long as it takes)."""
        while True:
            taken, wait = await asyncio.to_thread(take_slot, self.ctx.db, provider, tokens, utcnow())
            if taken is not None:
                return taken
            self.ctx.log.info("waiting %.1fs for provider %s's %s", wait, provider.name, describe_rates(provider))
            self.ctx.progress(None, f"waiting for provider {provider.name}: {describe_rates(provider)}")
            await asyncio.sleep(wait)

    async def record(self, model: str, usage: tuple[int, int] | None, taken: Sequence[int], *,
                     cached: bool = False) -> None:
        """Count one answer: its tokens and cost in the run's totals, and (``flush``, at most
        every FLUSH_EVERY seconds) in ``llm_usage_days``, and its real token count in the provider
        windows it ``taken`` (at once, for a window that counts tokens)."""
        prompt, completion = usage if usage is not None and not cached else (0, 0)
        price = self.price(model)
        cost = price.cost(prompt, completion) if price else 0.0
        async with self._lock:
            self.requests += 1
            self.cached += cached
            self.reported = self.reported or usage is not None or cached
            self.model = model
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.cost += cost
            self.currency = price.currency if price else self.currency
        with self._pending_lock:
            row = self._pending.setdefault((day_of(utcnow()), model), _Pending())
            row.add(int(cached), prompt, completion, cost, price.currency if price else "")
            due = time.monotonic() - self._flushed_at >= FLUSH_EVERY
        if taken and any(p.tokens_per_minute is not None for p in self.providers):
            # the window counts the estimate until then: correct it at once for every process's next count
            await asyncio.to_thread(self._correct, taken, prompt + completion)
        if due:
            await asyncio.to_thread(self.flush)

    def _correct(self, taken: Sequence[int], tokens: int) -> None:
        with self.ctx.db.write() as session:
            session.execute(update(REQUESTS).where(REQUESTS.c.id.in_(list(taken))).values(tokens=tokens))

    def flush(self) -> None:
        """Write what was counted since the last flush, in one transaction (the kind flushes once
        more when the run ends, whatever its end)."""
        with self._pending_lock:
            pending, self._pending, self._flushed_at = self._pending, {}, time.monotonic()
        if self.ctx.db is None or not pending:
            return
        try:
            with self.ctx.db.write() as session:
                for (day, model), row in pending.items():
                    add_usage(session, day, self.ctx.job_name, self.provider, model, requests=row.requests,
                              cached=row.cached, prompt=row.prompt, completion=row.completion, cost=row.cost,
                              currency=row.currency)
        except SQLAlchemyError as exc:  # the answers are good: keep the counts for the next flush
            self.ctx.log.warning("could not record the LLM usage yet (%s); trying again with the next answer",
                                 type(exc).__name__)
            with self._pending_lock:
                for key, row in pending.items():
                    self._pending.setdefault(key, _Pending()).merge(row)

    def _unflushed_cost(self) -> float:
        with self._pending_lock:
            return sum(row.cost for row in self._pending.values())

    def totals(self) -> dict[str, Any]:
        """A batch run's details: its requests, model and tokens (a single request's answer says its own)."""
        out: dict[str, Any] = {"requests": self.requests}
        if self.model:
            out["model"] = self.model
        if self.reported:
            out.update(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
        return out

    def details(self) -> dict[str, Any]:
        """What the run's details say about its spending."""
        out: dict[str, Any] = {}
        if self.currency is not None:
            out.update(cost=round(self.cost, 6), currency=self.currency)
        if self.cached:
            out["cached_requests"] = self.cached
        return out


def add_usage(session: Session, day: str, job: str, provider: str, model: str, *, requests: int, cached: int,
              prompt: int, completion: int, cost: float, currency: str) -> None:
    """Add to one row of ``llm_usage_days`` (inserted on the day's first request)."""
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(USAGE).values(
        day=day, job_name=job, provider=provider, model=model[:200], requests=requests, cached=cached,
        prompt_tokens=prompt, completion_tokens=completion, cost=cost, currency=currency)
    excluded = statement.excluded
    session.execute(statement.on_conflict_do_update(
        index_elements=["day", "job_name", "provider", "model"],
        set_={"requests": USAGE.c.requests + excluded.requests, "cached": USAGE.c.cached + excluded.cached,
              "prompt_tokens": USAGE.c.prompt_tokens + excluded.prompt_tokens,
              "completion_tokens": USAGE.c.completion_tokens + excluded.completion_tokens,
              "cost": USAGE.c.cost + excluded.cost,
              "currency": func.coalesce(func.nullif(excluded.currency, ""), USAGE.c.currency)}))


def take_slot(db: Any, provider: Provider, tokens: int, now: datetime) -> tuple[int | None, float]:
    """Take a place in ``provider``'s window for a request of about ``tokens`` tokens: (its row
    id, 0), or (None, seconds until there may be room). A request larger than the whole
    tokens_per_minute goes alone, into an empty window."""
    with db.write() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"llm:{provider.name}"})
        start = now - timedelta(seconds=WINDOW)
        session.execute(delete(REQUESTS).where(REQUESTS.c.provider == provider.name, REQUESTS.c.at <= start))
        rows = session.execute(select(REQUESTS.c.at, REQUESTS.c.tokens).where(REQUESTS.c.provider == provider.name)
                               .order_by(REQUESTS.c.at)).all()
        wait = _wait(provider, rows, tokens, now)
        if wait > 0:
            return None, wait
        row_id = session.execute(insert(REQUESTS).values(provider=provider.name, at=now, tokens=tokens)
                                 .returning(REQUESTS.c.id)).scalar_one()
        return row_id, 0.0


def _wait(provider: Provider, rows: Sequence[Any], tokens: int, now: datetime) -> float:
    """Seconds until the window (``rows``: (at, tokens), oldest first) has room for one more
    request of ``tokens``; 0: it has now."""
    until = now
    rpm, tpm = provider.requests_per_minute, provider.tokens_per_minute
    if rpm is not None and len(rows) >= rpm:
        until = max(until, rows[len(rows) - rpm].at + timedelta(seconds=WINDOW))
    if tpm is not None and rows:
        over = sum(r.tokens for r in rows) + tokens - tpm
        for row in rows:  # the oldest leave first: wait until enough of them have
            if over <= 0:
                break
            over -= row.tokens
            until = max(until, row.at + timedelta(seconds=WINDOW))
    return max(0.0, (until - now).total_seconds())


def describe_rates(provider: Provider) -> str:
    parts = []
    if provider.requests_per_minute is not None:
        parts.append(f"{provider.requests_per_minute:,} requests")
    if provider.tokens_per_minute is not None:
        parts.append(f"{provider.tokens_per_minute:,} tokens")
    return " and ".join(parts) + " a minute"


def spend_for(ctx: RunContext, config: dict[str, Any]) -> RunSpend:
    """The spending limits of a run of a job with this kind ``config``: its own fields, and the
    LLM side of the ``[limits.<name>]`` tables it names (read now: a changed table applies to
    the next run)."""
    from lexyjobs.llm.definition import own_provider
    from lexyjobs.store import named_limit_specs

    tables: dict[str, dict[str, Any]] = {}
    if ctx.limits and ctx.db is not None:
        with ctx.db.read() as session:
            tables = named_limit_specs(session)
    named = [parse_provider(name, tables[name]) for name in ctx.limits
             if name in tables and set(tables[name]) & set(PROVIDER_FIELDS)]
    return RunSpend(ctx, own_provider(config), named, config.get("max_cost") and parse_money(config["max_cost"]),
                    config.get("max_tokens_total"))
