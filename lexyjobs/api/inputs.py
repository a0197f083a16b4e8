"""Reading request input strictly: JSON bodies with known fields and types, query arguments with
ranges. Every problem raises BadInput (or InvalidInput) naming the field."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Iterable

from flask import request

from lexyjobs.errors import LexyjobsError
from lexyjobs.flow.unique import IdempotencyKey, idempotency_key

MAX_LIMIT = 200
MAX_TEXT = 200  # characters of a text query argument
MAX_LOG_OFFSET = 2**62  # a log offset (``?after=``) beyond any log: larger is refused, as the document says
WHOLE_NUMBER = re.compile(r"-?[0-9]+")  # int() would also take "1_000", "+5" and " 5"


class BadInput(LexyjobsError):
    """The request is malformed."""

    status_code = 400
    code = "bad_request"

    def __init__(self, field: str | None, problem: str, *, status: int | None = None) -> None:
        message = f"{field}: {problem}" if field else problem
        super().__init__(message, details={"field": field, "problem": problem})
        if status is not None:
            self.status_code = status


class InvalidInput(BadInput):
    """A field has the wrong type or value."""

    status_code = 422
    code = "invalid_field"


def json_object(allowed: Iterable[str] | None = None, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; ``allowed`` (when given) lists the fields it may have."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise BadInput("body", "a JSON object is required")
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise BadInput("body", f"is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadInput("body", f"must be a JSON object, not {type(body).__name__}")
    _check_storable(body, "")
    if allowed is not None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise InvalidInput(unknown[0], f"unknown field; allowed: {', '.join(sorted(allowed))}")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def _check_storable(value: Any, path: str) -> None:
    """Refuse text a database cannot store: NUL characters and unpaired surrogates."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path or "body")
            _check_storable(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path}[{index}]")
    elif isinstance(value, str):
        _check_text(value, path or "body")


def _check_text(text: str, field: str) -> str:
    if "\x00" in text:
        raise InvalidInput(field, "must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "is not valid Unicode text") from None
    return text


def _given(name: str) -> str | None:
    """The query argument ``name``, or None when it is absent. In the JSON API an empty value is
    refused (the OpenAPI document says each argument is non-empty: leave it out to not filter);
    the panel's forms send every field, filled in or not, so there an empty value means absent."""
    raw = request.args.get(name)
    if raw == "":
        if _strict():
            raise BadInput(name, "is empty; leave the argument out instead")
        return None
    return raw


def _strict() -> bool:
    """The JSON API reads query arguments exactly as its OpenAPI document describes them."""
    return request.blueprint == "lexyjobs.api"


def query_int(name: str, default: int, low: int, high: int) -> int:
    raw = _given(name)
    if raw is None:
        return default
    text = raw if _strict() else raw.strip()
    if not WHOLE_NUMBER.fullmatch(text):
        raise BadInput(name, f"'{raw[:40]}' is not a whole number")
    if len(text) > 40 or not low <= int(text) <= high:  # int() refuses over 4300 digits
        raise BadInput(name, f"must be between {low} and {high}")
    return int(text)


def query_text(name: str, *, max_length: int = MAX_TEXT) -> str | None:
    raw = _given(name)
    if raw is None:
        return None
    if len(raw) > max_length:
        raise BadInput(name, f"is longer than {max_length} characters")
    try:
        return _check_text(raw, name)
    except InvalidInput as exc:
        raise BadInput(name, exc.details["problem"]) from None


def query_choices(name: str, choices: Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list of values, each one of ``choices``."""
    raw = query_text(name)
    if raw is None:
        return ()
    allowed = tuple(choices)
    values = tuple(raw.split(",")) if _strict() else tuple(v.strip() for v in raw.split(",") if v.strip())
    for value in values:
        if value not in allowed:
            shown = f"'{value}'" if value else "an empty item"
            raise BadInput(name, f"{shown} is not one of {', '.join(allowed)} (comma-separated, no blanks)")
    twice = next((value for i, value in enumerate(values) if value in values[:i]), None)
    if twice is not None and _strict():
        raise BadInput(name, f"'{twice}' is listed twice")
    return values


def query_choice(name: str, choices: Iterable[str]) -> str | None:
    """One value out of ``choices``."""
    raw = query_text(name)
    allowed = tuple(choices)
    if raw is not None and raw not in allowed:
        raise BadInput(name, f"'{raw}' is not one of {', '.join(allowed)}")
    return raw


def query_bool(name: str) -> bool | None:
    """``true`` or ``false`` (the panel also takes 1/0 and yes/no)."""
    raw = query_text(name)
    if raw is None:
        return None
    value = raw if _strict() else raw.lower()
    if value in (("true",) if _strict() else ("true", "1", "yes")):
        return True
    if value in (("false",) if _strict() else ("false", "0", "no")):
        return False
    raise BadInput(name, f"'{raw}' is not true or false")


def query_datetime(name: str) -> datetime | None:
    """An ISO 8601 datetime; without an offset it is UTC."""
    raw = query_text(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise BadInput(name, f"'{raw}' is not an ISO 8601 datetime like 2025-03-01T09:30:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def page_and_limit(default_limit: int = 50) -> tuple[int, int]:
    return query_int("page", 1, 1, 1_000_000), query_int("limit", default_limit, 1, MAX_LIMIT)


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "total": total, "pages": (total + limit - 1) // limit}


IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_header(window: float) -> IdempotencyKey | None:
    """The request's ``Idempotency-Key``, validated (422 naming the header), or None."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    return None if raw is None else idempotency_key(raw, window, field=IDEMPOTENCY_HEADER)

