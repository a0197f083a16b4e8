"""Job definitions: one parser for every source (``@job`` decorator, jobs.toml, API/CLI). A bad
definition raises InvalidDefinition naming the job and the field."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import cached_property
from typing import Any, Mapping, Protocol

from lexyjobs.alerts.rules import JOB_FIELD_HELP as ALERTS_HELP
from lexyjobs.alerts.rules import parse_job_alerts
from lexyjobs.cron import Schedule, parse_schedule, parse_timezone
from lexyjobs.durations import parse_duration, parse_duration_range
from lexyjobs.errors import InvalidDefinition
from lexyjobs.flow.spec import QUEUE_PATTERN, UNIQUE_WHILE, FlowSpec, parse_key_template, parse_rate
from lexyjobs.kinds import KIND_NAMES
from lexyjobs.kinds import kind as find_kind
from lexyjobs.models import Job
from lexyjobs.params import ParamSpec, parse_param_schema
from lexyjobs.backoff import RetryPolicy

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
SOURCES = ("code", "file", "db")
OVERLAP_POLICIES = ("queue", "skip", "replace")

COMMON_FIELDS: dict[str, str] = {
    "title": "display name (default: the job name)",
    "description": "what the job does",
    "category": "group in the panel, e.g. \"Metrics\" (default \"General\")",
    "kind": "python, http, shell or openai",
    "schedule": "cron (`0 */6 * * *`), alias (`@daily`), interval (`every 15m`, `every 2 hours`) or time of day "
                "(`every day at 02:00`, `every monday at 09:30`); omit for manual-only",
    "timezone": "IANA timezone of the cron schedule and of a `run_at` without offset (default UTC)",
    "run_at": "fire once at this ISO 8601 datetime, e.g. `2025-03-01T09:30` (in `timezone`) or with an offset; not with `schedule`",
    "enabled": "false = paused: never fires, can still be run by hand (default true)",
    "priority": "0–10, higher runs first (default 0)",
    "max_attempts": "attempts before a run stays failed (default 3)",
    "backoff": "wait before the 2nd attempt (default 10s)",
    "backoff_factor": "multiplier per further attempt (default 2)",
    "backoff_max": "longest wait between attempts (default 1h)",
    "backoff_jitter": "fraction of the wait taken off at random, 0–1 (default 0.2)",
    "timeout": "longest an attempt may run, e.g. `5m` (default none; http requests 60s)",
    "max_concurrency": "runs of this job at once, 0 = unlimited (default 1)",
    "idempotent": "false = never re-executed after a crash: the run fails instead (default true)",
    "depends_on": "upstream job names (pipelines)",
    "params": "parameter definitions: `{ name = { type, required, default, min, max, choices, help } }`",
    "stale_after": "health window: no success for this long turns the job orange",
    "expected_duration": "how long a successful run takes, e.g. `10m..40m` (default learned from its recent successes): "
                         "longer is `too_long`, shorter `too_short`",
    "max_runs_per_hour": "more runs than this in an hour is `too_often` (default: judged from the schedule)",
    "late_after": "a scheduled run still waiting in the queue after this long is `late_start` "
                  "(default 10 % of the schedule's period, 5m to 1h)",
    "misfire_grace": "a fire missed by up to this much still runs once on start (default 1h)",
    "overlap": "a fire while a run is queued/running: queue, skip or replace (default queue)",
    "alerts": ALERTS_HELP,
    "queue": "the named queue its runs wait in (default \"default\"); processes serve all queues or some (`LEXYJOBS_QUEUES`)",
    "concurrency_key": "runs with the same key run `concurrency_limit` at a time, across jobs, e.g. `brand:{brand_id}`",
    "concurrency_limit": "runs at once per value of `concurrency_key` (default 1)",
    "rate_limit": "runs started per period, e.g. `30/m`, `10/s`, or per key: `60/m per {customer_id}`",
    "limits": "names of shared `[limits.<name>]` rate limits this job takes a slot from",
    "unique": "params that make two runs duplicates (`[]`: any two runs): a duplicate enqueue returns the existing run",
    "unique_while": "which runs a duplicate is looked for among: queued, or active (queued or running; default)",
}


@dataclass(frozen=True)
class JobDefinition:
    name: str
    kind: str
    config: dict[str, Any]                 # kind-specific fields, validated by the kind
    source: str = "db"
    title: str = ""
    description: str = ""
    category: str = "General"
    schedule: Schedule | None = None
    timezone: str = "UTC"
    run_at: datetime | None = None         # one-off fire time (aware); never together with schedule
    enabled: bool = True
    priority: int = 0
    max_attempts: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    max_concurrency: int = 1
    idempotent: bool = True
    depends_on: tuple[str, ...] = ()
    params: dict[str, ParamSpec] = field(default_factory=dict)
    stale_after: float | None = None
    expected_duration: tuple[float | None, float | None] | None = None  # (shortest, longest) seconds, see health_signals
    max_runs_per_hour: int | None = None
    late_after: float | None = None
    misfire_grace: float = 3600.0
    overlap: str = "queue"
    alerts: bool | dict[str, Any] | None = None  # None: the global LEXYJOBS_ALERT_* rule (lexyjobs.alerts.rules)
    flow: FlowSpec = field(default_factory=FlowSpec)
    spec: dict[str, Any] = field(default_factory=dict)  # the fields as written (what jobs.toml holds)

    @cached_property
    def secret_names(self) -> frozenset[str]:
        """The environment variables its config references (``${NAME}``), whose values are masked
        in its runs' output: walked once per definition, not once per run."""
        from lexyjobs.masking import referenced_names

        return frozenset(referenced_names(self.config))

    def row(self) -> dict[str, Any]:
        """Column values for the jobs table."""
        return {"name": self.name, "title": self.title, "category": self.category, "kind": self.kind,
                "source": self.source, "spec": self.spec, "schedule": self.schedule.text if self.schedule else None,
                "max_concurrency": self.max_concurrency}


def parse_definition(name: Any, raw: Any, *, source: str = "db") -> JobDefinition:
    """Validate ``raw`` (the fields of a ``[jobs.<name>]`` table) and build a JobDefinition."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidDefinition(str(name), "name", "must be 1–100 characters of a-z, 0-9, '-', '_' or '.', "
                                "starting with a letter or digit")
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(name, None, "must be a table of fields")
    kind_name = raw.get("kind")
    kind = find_kind(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        shown = kind_name if isinstance(kind_name, str) else json.dumps(kind_name, default=str)
        problem = "is required" if kind_name is None else f"'{shown}' is not a job kind"
        raise InvalidDefinition(name, "kind", f"{problem}; use one of {', '.join(KIND_NAMES)}")
    for key, value in raw.items():  # stored as JSON: TOML dates (but run_at's), NaN and the like cannot be
        if key == "run_at":
            continue  # a TOML datetime is its natural form; it is validated and stored as text below
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidDefinition(name, key, "must be plain data (text, numbers, true/false, lists, tables); "
                                    "dates and NaN are not allowed") from None
    unknown = sorted(set(raw) - set(COMMON_FIELDS) - set(kind.fields))
    if unknown:
        raise InvalidDefinition(name, unknown[0], f"unknown field for a {kind_name} job; allowed: "
                                f"{', '.join(sorted(set(COMMON_FIELDS) | set(kind.fields)))}")
    v = _Validator(name, raw)
    schedule = v.get("schedule", parse_schedule, None)
    timezone = v.get("timezone", lambda t: parse_timezone(t) and t, "UTC")
    run_at = v.get("run_at", lambda value: parse_run_at(value, timezone), None)
    if run_at is not None and schedule is not None:
        raise InvalidDefinition(name, "run_at", "cannot be combined with schedule: a job fires on its schedule "
                                "or once at run_at")
    spec = dict(raw)
    if isinstance(spec.get("run_at"), datetime):  # a TOML datetime: stored as text, like every other spec value
        spec["run_at"] = spec["run_at"].isoformat()
    return JobDefinition(
        name=name, kind=kind.name, config=kind.validate(name, {k: raw[k] for k in kind.fields if k in raw}),
        source=source, title=v.text("title", name), description=v.text("description", ""),
        category=v.text("category", "General") or "General", schedule=schedule, timezone=timezone, run_at=run_at,
        enabled=v.boolean("enabled", True), priority=v.integer("priority", 0, 0, 10),
        max_attempts=v.integer("max_attempts", 3, 1, 100),
        retry=RetryPolicy(base=v.duration("backoff", 10.0), factor=v.number("backoff_factor", 2.0, 1.0, 100.0),
                          cap=v.duration("backoff_max", 3600.0), jitter=v.number("backoff_jitter", 0.2, 0.0, 1.0)),
        timeout=v.duration("timeout", None, positive=True), max_concurrency=v.integer("max_concurrency", 1, 0, 10_000),
        idempotent=v.boolean("idempotent", True), depends_on=v.names("depends_on"),
        params=parse_param_schema(name, raw.get("params")), stale_after=v.duration("stale_after", None, positive=True),
        expected_duration=v.get("expected_duration", parse_duration_range, None),
        max_runs_per_hour=v.get("max_runs_per_hour", _runs_per_hour, None),
        late_after=v.duration("late_after", None, positive=True),
        misfire_grace=v.duration("misfire_grace", 3600.0), overlap=v.choice("overlap", OVERLAP_POLICIES, "queue"),
        alerts=parse_job_alerts(name, raw.get("alerts")), flow=_flow(v, raw), spec=spec,
    )


def _flow(v: _Validator, raw: Mapping[str, Any]) -> FlowSpec:
    """The flow-control fields (lexyjobs.flow.spec); placeholders must name declared params."""
    declared = list(raw["params"]) if isinstance(raw.get("params"), Mapping) else None
    queue = v.text("queue", "default")
    if not QUEUE_PATTERN.fullmatch(queue):
        raise v.fail("queue", "must be 1–100 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit")
    key = v.get("concurrency_key", lambda text: parse_key_template(text, declared), None)
    if "concurrency_limit" in raw and key is None:
        raise v.fail("concurrency_limit", "needs a concurrency_key (for a limit on the job itself: max_concurrency)")
    unique = raw.get("unique")
    if unique is not None and (not isinstance(unique, list) or not all(isinstance(n, str) for n in unique)
                               or (declared is not None and not set(unique) <= set(declared))):
        raise v.fail("unique", f"must be a list of the job's param names ({', '.join(declared or []) or 'none'}); "
                     "[] = any two runs of the job")
    if "unique_while" in raw and unique is None:
        raise v.fail("unique_while", "needs unique (the params that make two runs duplicates)")
    return FlowSpec(queue=queue, concurrency_key=key, concurrency_limit=v.integer("concurrency_limit", 1, 1, 10_000),
                    rate_limit=v.get("rate_limit", lambda text: parse_rate(text, declared), None),
                    limits=v.get("limits", _limit_names, ()), unique=None if unique is None else tuple(unique),
                    unique_while=v.choice("unique_while", UNIQUE_WHILE, "active"))


def parse_run_at(value: Any, tz_name: str) -> datetime:
    """A one-off fire time: an ISO 8601 text (or a TOML datetime), in ``tz_name`` when it has no
    offset. ValueError says what is wrong."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO 8601 datetime like '2025-03-01T09:30' or "
                             "'2025-03-01T09:30:00+01:00'") from None
    if isinstance(value, (date, time)) and not isinstance(value, datetime):
        raise ValueError("needs both a date and a time, e.g. '2025-03-01T09:30'")
    if not isinstance(value, datetime):
        raise ValueError("must be an ISO 8601 datetime like '2025-03-01T09:30'")
    return value if value.tzinfo is not None else value.replace(tzinfo=parse_timezone(tz_name))


DEFINITIONS_KEPT = 1000
_parsed: dict[tuple[str, str, str], JobDefinition] = {}


class StoredJob(Protocol):
    """What a definition is parsed from: a ``Job`` row, or a Core row of those columns."""

    name: str
    source: str
    spec: dict[str, Any]


def definition_from_job(job: Job | StoredJob) -> JobDefinition:
    """The definition stored in a jobs row, remembered by what it is parsed from (name, source and
    the spec's JSON): parsing validates every field, cron expression included, and the panel's
    pages and every enqueue ask for it (at a hundred jobs the parsing cost more than the page's
    SQL). Definitions are frozen, so sharing one is safe. One that does not parse raises every time."""
    key = (job.name, job.source, json.dumps(job.spec))  # key order too: it is the params order
    found = _parsed.get(key)
    if found is None:
        found = parse_definition(job.name, job.spec, source=job.source)
        if len(_parsed) >= DEFINITIONS_KEPT:
            _parsed.clear()
        _parsed[key] = found
    return found


def _runs_per_hour(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ValueError("must be a whole number from 1 to 1000000")
    return value


def _limit_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) and QUEUE_PATTERN.fullmatch(n) for n in value):
        raise ValueError("must be a list of names of [limits.<name>] tables, e.g. [\"openai\"]")
    return tuple(dict.fromkeys(value))


class _Validator:
    """Reads one field at a time and raises InvalidDefinition naming it."""

    def __init__(self, job: str, raw: Mapping[str, Any]) -> None:
        self.job, self.raw = job, raw

    def fail(self, key: str, problem: str) -> InvalidDefinition:
        return InvalidDefinition(self.job, key, problem)

    def get(self, key: str, convert: Any, default: Any) -> Any:
        if key not in self.raw or self.raw[key] is None:
            return default
        try:
            return convert(self.raw[key])
        except (ValueError, TypeError) as exc:
            raise self.fail(key, str(exc)) from None

    def text(self, key: str, default: str) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, "must be text")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number from {low} to {high}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(key, f"must be a number from {low:g} to {high:g}")
        return float(value)

    def duration(self, key: str, default: float | None, *, positive: bool = False) -> Any:
        seconds = self.get(key, parse_duration, default)
        if positive and seconds is not None and seconds <= 0:
            raise self.fail(key, "must be longer than 0s")
        return seconds

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.raw.get(key, default)
        if value not in options:
            raise self.fail(key, f"must be one of {', '.join(options)}")
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(n, str) and NAME_PATTERN.fullmatch(n) for n in value):
            raise self.fail(key, "must be a list of job names")
        if self.job in value:
            raise self.fail(key, "a job cannot depend on itself")
        return tuple(value)
