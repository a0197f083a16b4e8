"""The flow-control fields of a job definition, parsed, and the run columns they give at enqueue.

- ``queue = "ai"``: the named queue its runs wait in (default ``default``);
- ``concurrency_key = "brand:{brand_id}"`` and ``concurrency_limit = 2``: at most 2 runs whose
  key renders to the same text run at once, across every job that uses that key text;
- ``rate_limit = "30/m"`` or ``"60/m per {customer_id}"``, and ``limits = ["openai"]`` naming
  ``[limits.openai]`` tables: a run takes a slot of each before it starts;
- ``unique = ["site_id"]`` and ``unique_while = "queued" | "active"``: an enqueue that repeats
  an active run's values of these params returns that run instead."""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from lexyjobs.durations import parse_duration

DEFAULT_QUEUE = "default"
QUEUE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
UNIQUE_WHILE = ("queued", "active")
_RATE = re.compile(r"\s*(\d+)\s*/\s*([^\s]+)\s*(?:per\s+(.+?))?\s*")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0,
          "d": 86400.0, "day": 86400.0}


@dataclass(frozen=True)
class KeyTemplate:
    """A text with ``{param}`` placeholders, e.g. ``brand:{brand_id}``."""

    text: str
    fields: tuple[str, ...]

    def render(self, params: Mapping[str, Any]) -> str:
        """The key for ``params``; a missing param renders empty, text values as they are,
        other values as JSON (``true``, ``3``), so equal values give equal keys."""
        out = []
        for literal, name, _, _ in string.Formatter().parse(self.text):
            out.append(literal)
            if name is not None:
                value = params.get(name)
                out.append("" if value is None else value if isinstance(value, str) else json.dumps(value))
        return "".join(out)


@dataclass(frozen=True)
class RateLimit:
    """``rate`` runs per ``per`` seconds, for each value of ``key`` when it is given."""

    rate: int
    per: float
    key: KeyTemplate | None = None

    @property
    def text(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.per)
        base = f"{self.rate}/{unit or f'{self.per:g}s'}"
        return f"{base} per {self.key.text}" if self.key else base


@dataclass(frozen=True)
class FlowSpec:
    """The flow-control fields of one job definition."""

    queue: str = DEFAULT_QUEUE
    concurrency_key: KeyTemplate | None = None
    concurrency_limit: int = 1
    rate_limit: RateLimit | None = None
    limits: tuple[str, ...] = ()
    unique: tuple[str, ...] | None = None  # None: not unique; (): the whole job
    unique_while: str = "active"

    @property
    def used(self) -> bool:
        return self != FlowSpec(queue=self.queue)


def parse_key_template(value: Any, params: Sequence[str] | None) -> KeyTemplate:
    """A key template; its placeholders must be plain names of the job's params (when the job
    declares params). ValueError says what is wrong."""
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValueError("must be a text of 1–200 characters, e.g. \"brand:{brand_id}\"")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"is not a key template ({exc}); write {{param}} for a parameter's value") from None
    fields = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"'{{{name}}}' is not a parameter name: write {{param}} only, no formats or attributes")
        if params is not None and name not in params:
            raise ValueError(f"'{{{name}}}' is not one of the job's params ({', '.join(params) or 'none'})")
        fields.append(name)
    return KeyTemplate(value, tuple(fields))


def parse_rate(value: Any, params: Sequence[str] | None = None) -> RateLimit:
    """``"30/m"``, ``"500/min"``, ``"10/s"``, ``"1000/1h"``, ``"60/m per {customer_id}"``."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("must be a rate like \"30/m\", \"10/s\", \"1000/h\" or \"60/m per {customer_id}\"")
    count, unit, key = int(match.group(1)), match.group(2).lower(), match.group(3)
    per = _UNITS.get(unit.rstrip("s") if len(unit) > 3 else unit)
    if per is None:
        try:
            per = parse_duration(unit)
        except ValueError:
            raise ValueError(f"'{unit}' is not a period: use s, m, h, d or a duration like 10s") from None
    if not 1 <= count <= 1_000_000 or per <= 0:
        raise ValueError("needs 1 to 1,000,000 runs per a period longer than 0s")
    return RateLimit(count, per, parse_key_template(key, params) if key else None)


def unique_key(job: str, fields: tuple[str, ...], params: Mapping[str, Any]) -> str:
    """What makes two runs of ``job`` duplicates: the job and the values of ``fields``."""
    values = json.dumps([params.get(name) for name in fields], sort_keys=True, separators=(",", ":"))
    return f"{job}:{values}"


def flow_columns(definition: Any, params: Mapping[str, Any],
                 named_limits: Mapping[str, RateLimit] | None) -> dict[str, Any]:
    """The flow-control columns of a run of ``definition`` (a JobDefinition) with ``params``.
    A named limit that is not defined is left out (the load reports it)."""
    flow: FlowSpec = definition.flow
    named = [(name, (named_limits or {})[name]) for name in flow.limits if name in (named_limits or {})]
    key = flow.concurrency_key.render(params) if flow.concurrency_key else None
    return {"queue": flow.queue, "concurrency_key": key, "concurrency_limit": flow.concurrency_limit if key else None,
            "rate_limits": rate_buckets(definition.name, flow.rate_limit, named, params),
            "unique_key": None if flow.unique is None else unique_key(definition.name, flow.unique, params)}


def rate_buckets(job: str, own: RateLimit | None, named: Sequence[tuple[str, RateLimit]],
                 params: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The rate-limit buckets a run of ``job`` with ``params`` takes a slot from: its own limit
    (bucket ``job:<name>``) and each named one (``<name>``), per key value when keyed."""
    limits = ([(f"job:{job}", own)] if own else []) + list(named)
    if not limits:
        return None
    return [{"bucket": name + (f"|{limit.key.render(params)}" if limit.key else ""), "rate": limit.rate,
             "per": limit.per} for name, limit in limits]
