"""JSON Schemas of a job definition as the API takes it: the fields every kind has
(``lexyjobs.definitions.COMMON_FIELDS``) and each kind's own (its ``FIELDS``), with the types,
ranges and null handling their validators apply, so a body the schema refuses is refused by the
server too (422 naming the field).

What JSON Schema cannot say stays a 422 of the server: whether a cron expression, a timezone, a
duration, a function reference or a Jinja template means something, whether ``depends_on`` names
existing jobs, and whether ``params`` suit the job's parameter definitions.

To add a field: put it in ``COMMON`` (every kind) or under its kind in ``KIND_FIELDS`` — a field
a validator accepts but the schema does not list is refused by the schema (additionalProperties)."""
from __future__ import annotations

from typing import Any

from lexyjobs.definitions import NAME_PATTERN, OVERLAP_POLICIES
from lexyjobs.flow.spec import QUEUE_PATTERN, UNIQUE_WHILE
from lexyjobs.kinds import PASSTHROUGH_PATTERN, KIND_NAMES

STRING, BOOLEAN, NULL = {"type": "string"}, {"type": "boolean"}, {"type": "null"}
ANY: dict[str, Any] = {}
JOB_NAME = {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"}
QUEUE_NAME = {"type": "string", "pattern": f"^{QUEUE_PATTERN.pattern}$"}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, NULL]}


def _integer(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _number(low: float, high: float) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high}


DURATION = _or_null({"anyOf": [{"type": "string", "description": "e.g. 30s, 5m, 1h30m, 2d"}, {"type": "number"}]})
TEXT_TABLE = {"type": "object", "additionalProperties": STRING}
PASSTHROUGH = {"type": "array", "items": {"type": "string", "pattern": f"^{PASSTHROUGH_PATTERN.pattern}$"},
               "description": "`LEXYJOBS_*` variables the job process still gets (names or glob patterns)"}

# null is "not set" for the fields read with a default (schedule, timezone, run_at, durations,
# alerts); the others must have their type when present.
COMMON: dict[str, Any] = {
    "title": STRING, "description": STRING, "category": STRING,
    "schedule": _or_null({"type": "string", "description": "cron (0 */6 * * *), alias (@daily), every 15m, every 2 hours or every day at 02:00"}),
    "timezone": _or_null({"type": "string", "description": "IANA name, e.g. Europe/Paris"}),
    "run_at": _or_null({"type": "string", "description": "ISO 8601; without an offset, in the job's timezone"}),
    "enabled": BOOLEAN, "idempotent": BOOLEAN, "priority": _integer(0, 10), "max_attempts": _integer(1, 100),
    "backoff": DURATION, "backoff_max": DURATION, "timeout": DURATION, "stale_after": DURATION,
    "misfire_grace": DURATION, "late_after": DURATION,
    "expected_duration": _or_null({"type": "string", "description": "shortest..longest, e.g. 10m..40m, ..40m or 10m.."}),
    "max_runs_per_hour": _or_null(_integer(1, 1_000_000)), "backoff_factor": _number(1, 100), "backoff_jitter": _number(0, 1),
    "max_concurrency": _integer(0, 10_000), "depends_on": {"type": "array", "items": JOB_NAME},
    "params": _or_null({"type": "object", "description": "{name: {type, required, default, min, max, choices, help}}"}),
    "overlap": {"enum": list(OVERLAP_POLICIES)},
    "alerts": _or_null({"anyOf": [BOOLEAN, {"type": "object", "description": "overrides of LEXYJOBS_ALERT_*"}]}),
    "queue": QUEUE_NAME, "concurrency_key": {"type": "string", "description": "e.g. brand:{brand_id}"},
    "concurrency_limit": _integer(1, 10_000),
    "rate_limit": _or_null({"type": "string", "description": "e.g. 30/m, 10/s or 60/m per {customer_id}"}),
    "limits": {"type": "array", "items": QUEUE_NAME, "description": "names of [limits.<name>] tables"},
    "unique": _or_null({"type": "array", "items": STRING, "description": "param names; [] = any two runs"}),
    "unique_while": {"enum": list(UNIQUE_WHILE)},
}

KIND_FIELDS: dict[str, dict[str, Any]] = {
    "python": {"func": {"type": "string", "description": "package.module:function"},
               "isolation": {"enum": ["thread", "process"]}, "env_passthrough": _or_null(PASSTHROUGH)},
    "http": {"method": {"type": "string", "description": "GET, POST, PUT, PATCH, DELETE or HEAD (any case)"},
             "url": STRING, "headers": TEXT_TABLE, "body": ANY, "verify_tls": BOOLEAN},
    "shell": {"argv": {"type": "array", "items": STRING, "minItems": 1}, "cwd": _or_null(STRING),
              "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
              "env_passthrough": _or_null(PASSTHROUGH)},
    "openai": {"mode": {"enum": ["chat", "embeddings"]},
               "prompt": {"type": "string", "description": "required in mode chat"}, "system": _or_null(STRING),
               "model": STRING, "temperature": _or_null(_number(0, 2)), "max_tokens": _or_null(_integer(1, 10_000_000)),
               "response_format": {"enum": ["text", "json"]}, "stream": BOOLEAN, "input": _or_null(STRING),
               "dimensions": _or_null(_integer(1, 100_000)), "batch_size": _integer(1, 2048),
               "items": _or_null({"type": "string", "description": "module:function returning the items"}),
               "parallel": _or_null(_integer(1, 64)),
               "save": _or_null({"type": "string", "description": "module:function called with (ctx, results)"}),
               "max_cost": _or_null({"type": ["string", "number"], "description": "e.g. 0.50 USD"}),
               "max_tokens_total": _or_null(_integer(1, 10**12)),
               "budget_per_day": _or_null({"type": ["string", "number"], "description": "e.g. 5 USD"}),
               "on_budget": {"enum": ["wait", "fail"]},
               "prices": _or_null({"type": "object", "description": "model -> {input, output} per 1M tokens",
                                   "additionalProperties": {"type": "object"}}),
               "cache_for": _or_null({"type": "string", "description": "e.g. 24h"}), "cache_shared": BOOLEAN,
               "api_key": _or_null(STRING), "base_url": _or_null(STRING)},
}
REQUIRED = {"python": ["func"], "http": ["url"], "shell": ["argv"], "openai": ["model"]}
assert set(KIND_FIELDS) == set(KIND_NAMES), "every kind needs its fields here"


def definition(kind: str, *, name_required: bool) -> dict[str, Any]:
    """The complete definition of a ``kind`` job (POST: with its name; PUT: the name may be repeated)."""
    properties = {"name": JOB_NAME, "kind": {"const": kind}, **COMMON, **KIND_FIELDS[kind]}
    required = ["name"] * name_required + ["kind", *REQUIRED[kind]]
    return {"type": "object", "title": f"{kind} job", "properties": properties, "required": required,
            "additionalProperties": False}


def schemas() -> dict[str, Any]:
    """``NewJob`` (POST), ``JobDefinition`` (PUT) and ``JobChanges`` (PATCH) for the components."""
    return {
        "NewJob": {"oneOf": [definition(kind, name_required=True) for kind in KIND_NAMES],
                   "description": "a job's name and the fields of its [jobs.<name>] table"},
        "JobDefinition": {"oneOf": [definition(kind, name_required=False) for kind in KIND_NAMES],
                          "description": "the fields of a [jobs.<name>] table; the name may be repeated"},
        "JobChanges": {
            "type": "object", "additionalProperties": False,
            "description": "fields to change; null removes a field. The merged definition must be valid "
                           "for its kind (422 names the field otherwise)",
            "properties": {"name": JOB_NAME, "kind": {"enum": list(KIND_NAMES)},
                           **{key: _or_null(schema) if schema else schema for key, schema in
                              {**COMMON, **{k: v for fields in KIND_FIELDS.values() for k, v in fields.items()}}.items()}},
        },
    }
