"""Typed run parameters: a job declares them; enqueue validates values and fills defaults.
The panel renders its run-now form from the same ``ParamSpec`` list."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from lexyjobs.errors import InvalidDefinition, InvalidParams

PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
PARAM_TYPES = ("string", "integer", "number", "boolean", "choice", "json")
_SPEC_KEYS = {"type", "required", "default", "min", "max", "choices", "help"}
_MISSING: Any = object()
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    required: bool = False
    default: Any = _MISSING
    min: float | None = None  # for strings: length
    max: float | None = None
    choices: tuple[Any, ...] = field(default_factory=tuple)
    help: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


def parse_param_schema(job: str, raw: Any) -> dict[str, ParamSpec]:
    """Validate a job's ``params`` table. A value that is not a table is a default whose type is
    inferred (``retries = 3`` is an optional integer defaulting to 3)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(job, "params", "must be a table of parameter definitions")
    return {name: _parse_spec(job, name, value) for name, value in raw.items()}


def _parse_spec(job: str, name: str, raw: Any) -> ParamSpec:
    where = f"params.{name}"
    if not PARAM_NAME.fullmatch(name):
        raise InvalidDefinition(job, where, "a parameter name is letters, digits and '_', starting with a letter")
    if not isinstance(raw, Mapping):
        raw = {"type": _infer_type(raw), "default": raw}
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise InvalidDefinition(job, where, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_SPEC_KEYS))}")
    kind = raw.get("type", "string")
    if kind not in PARAM_TYPES:
        raise InvalidDefinition(job, where, f"type '{kind}' is not one of {', '.join(PARAM_TYPES)}")
    choices = raw.get("choices", ())
    if not isinstance(choices, (list, tuple)):
        raise InvalidDefinition(job, f"{where}.choices", "must be a list")
    if kind == "choice" and not choices:
        raise InvalidDefinition(job, where, "a choice parameter needs a non-empty 'choices' list")
    for bound in ("min", "max"):
        value = raw.get(bound)
        if bound in raw and (isinstance(value, bool) or not isinstance(value, (int, float))
                             or not math.isfinite(value)):
            raise InvalidDefinition(job, f"{where}.{bound}", "must be a number")
    if not isinstance(raw.get("required", False), bool):
        raise InvalidDefinition(job, f"{where}.required", "must be true or false")
    spec = ParamSpec(name=name, type=kind, required=raw.get("required", False), default=raw.get("default", _MISSING),
                     min=raw.get("min"), max=raw.get("max"), choices=tuple(choices), help=str(raw.get("help", "")))
    if spec.has_default:
        try:
            _check(spec, spec.default, from_string=False)
        except ValueError as exc:
            raise InvalidDefinition(job, f"{where}.default", str(exc)) from None
    return spec


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "json"


def validate_params(schema: Mapping[str, ParamSpec], values: Mapping[str, Any] | None, *,
                    from_strings: bool = False) -> dict[str, Any]:
    """Check ``values`` against ``schema`` and return them with defaults filled in. With
    ``from_strings`` (CLI ``--param k=v``, HTML forms) text is converted to the declared type.
    Raises InvalidParams naming every bad parameter."""
    values = dict(values or {})
    errors: dict[str, str] = {}
    for name in values:
        if name not in schema:
            known = ", ".join(schema) or "none"
            errors[name] = f"unknown parameter (this job takes: {known})"
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in values and not (from_strings and values[name] == "" and spec.type != "string"):
            try:
                out[name] = _check(spec, values[name], from_string=from_strings)
            except ValueError as exc:
                errors[name] = str(exc)
        elif spec.has_default:
            out[name] = spec.default
        elif spec.required:
            errors[name] = "is required"
    if errors:
        raise InvalidParams(errors)
    return out


def _check(spec: ParamSpec, value: Any, *, from_string: bool) -> Any:
    if from_string and isinstance(value, str):
        value = value_from_text(spec, value)
    if spec.type == "string":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        _bounds(spec, len(value), "characters")
    elif spec.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        _bounds(spec, value)
    elif spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):  # NaN/inf are not JSON (Postgres rejects them)
            raise ValueError("must be a number")
        _bounds(spec, value)
    elif spec.type == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
    elif spec.type == "choice":
        if value not in spec.choices:
            raise ValueError(f"must be one of {', '.join(map(str, spec.choices))}")
    elif spec.type == "json":
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError("must be JSON data") from None
    return value


def value_from_text(spec: ParamSpec, text: str) -> Any:
    """Text typed in a form or on the command line as a value of the parameter's type (a choice
    keeps the type of the matching choice); ValueError says what is wrong."""
    try:
        if spec.type == "integer":
            return int(text)
        if spec.type == "number":
            return float(text)
        if spec.type == "json":
            return json.loads(text)
    except ValueError:
        raise ValueError({"integer": "must be a whole number", "number": "must be a number",
                          "json": "must be valid JSON"}[spec.type]) from None
    if spec.type == "boolean":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError("must be true or false")
    if spec.type == "choice":
        for choice in spec.choices:
            if str(choice) == text:
                return choice
    return text


def _bounds(spec: ParamSpec, value: float, unit: str = "") -> None:
    suffix = f" {unit}" if unit else ""
    if spec.min is not None and value < spec.min:
        raise ValueError(f"must be at least {spec.min:g}{suffix}")
    if spec.max is not None and value > spec.max:
        raise ValueError(f"must be at most {spec.max:g}{suffix}")


def schema_to_json(schema: Mapping[str, ParamSpec]) -> list[dict[str, Any]]:
    """The schema as JSON (for the API and the panel's run-now form)."""
    return [{"name": s.name, "type": s.type, "required": s.required,
             **({"default": s.default} if s.has_default else {}),
             **({"min": s.min} if s.min is not None else {}), **({"max": s.max} if s.max is not None else {}),
             **({"choices": list(s.choices)} if s.choices else {}), "help": s.help} for s in schema.values()]
