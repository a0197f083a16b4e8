"""Providers: what a ``[limits.<name>]`` table of jobs.toml says about the LLM requests of the
``openai`` jobs that name it in ``limits`` — requests and tokens per minute, a daily budget and
what a run over it does, and the price of each model — and the same budget and prices on a job
itself. Parsing only: no database, no client (``lexyjobs.flow.named`` checks the tables with it)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

FIELDS = ("requests_per_minute", "tokens_per_minute", "budget_per_day", "on_budget", "prices")
JOB_FIELDS = ("budget_per_day", "on_budget", "prices")  # what a job may say of itself
ON_BUDGET = ("wait", "fail")
DEFAULT_CURRENCY = "USD"
_MONEY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]{3})?\s*")


@dataclass(frozen=True)
class Money:
    amount: float
    currency: str

    def __str__(self) -> str:
        return f"{format_amount(self.amount)} {self.currency}"


@dataclass(frozen=True)
class Price:
    """Per 1,000,000 tokens, in ``currency``."""

    input: float
    output: float
    currency: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


@dataclass(frozen=True)
class Provider:
    """A named limit's LLM side (all optional). ``name`` "" is a job's own budget and prices."""

    name: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget_per_day: Money | None = None
    on_budget: str = "wait"
    prices: Mapping[str, Price] = field(default_factory=dict)

    @property
    def limits_requests(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    def price(self, model: str) -> Price | None:
        """The price of ``model``: its own, else the longest priced name it starts with (a
        server answers ``gpt-4o-mini-2024-07-18`` for ``gpt-4o-mini``)."""
        if model in self.prices:
            return self.prices[model]
        starts = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(starts, key=len)] if starts else None


def format_amount(amount: float) -> str:
    """0.5 → "0.50", 20 → "20.00", 0.00042 → "0.00042": cents, or the digits a tiny cost needs."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"{amount:,.2f}"
    return f"{amount:.6f}".rstrip("0")


def parse_money(value: Any) -> Money:
    """``"20 USD"``, ``"0.5 EUR"``, ``"20"`` or 20 (USD). ValueError says what is expected."""
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    match = _MONEY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError('must be an amount with its currency, e.g. "20 USD" or "0.50 EUR"')
    return Money(float(match.group(1)), (match.group(2) or DEFAULT_CURRENCY).upper())


def parse_prices(value: Any, currency: str) -> dict[str, Price]:
    """``{"gpt-4o-mini" = {input = 0.15, output = 0.60}}``: per 1M tokens, in ``currency``."""
    if not isinstance(value, Mapping):
        raise ValueError('must be a table of models, e.g. prices = { "gpt-4o-mini" = { input = 0.15, output = 0.60 } }')
    prices = {}
    for model, price in value.items():
        if not isinstance(price, Mapping) or set(price) - {"input", "output"} or "input" not in price:
            raise ValueError(f"'{model}' must be {{ input = <per 1M tokens>, output = <per 1M tokens> }} "
                             "(output may be left out for embedding models)")
        amounts = [price["input"], price.get("output", 0)]
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a < 1_000_000 for a in amounts):
            raise ValueError(f"'{model}': input and output are amounts per 1M tokens, e.g. 0.15")
        prices[str(model)] = Price(float(amounts[0]), float(amounts[1]), currency)
    return prices


def parse_provider(name: str, raw: Mapping[str, Any]) -> Provider:
    """The LLM fields of a limit table (or of a job, ``name`` ""); ValueError(field, problem)."""
    values: dict[str, Any] = {}
    for key in ("requests_per_minute", "tokens_per_minute"):
        if raw.get(key) is not None:
            number = raw[key]
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 100_000_000:
                raise ValueError(key, "must be a whole number from 1 to 100,000,000")
            values[key] = number
    budget = None
    if raw.get("budget_per_day") is not None:
        try:
            budget = parse_money(raw["budget_per_day"])
        except ValueError as exc:
            raise ValueError("budget_per_day", str(exc)) from None
    on_budget = raw.get("on_budget", "wait")
    if on_budget not in ON_BUDGET:
        raise ValueError("on_budget", f"must be \"wait\" (until the next UTC day) or \"fail\", not '{on_budget}'")
    prices: dict[str, Price] = {}
    if raw.get("prices") is not None:
        try:
            prices = parse_prices(raw["prices"], budget.currency if budget else DEFAULT_CURRENCY)
        except ValueError as exc:
            raise ValueError("prices", str(exc)) from None
    return Provider(name, budget_per_day=budget, on_budget=on_budget, prices=prices, **values)
