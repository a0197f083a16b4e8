"""The job form's parameter editor: one row of text fields per parameter (name, type, default,
required, choices, min, max, help), turned into a ``params`` table and back. The values are
checked by ``lexyjobs.params`` like any other definition's; this module only converts text."""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

from werkzeug.datastructures import MultiDict

from lexyjobs.errors import InvalidDefinition
from lexyjobs.params import ParamSpec, parse_param_schema, value_from_text

TEXT_FIELDS = ("name", "type", "default", "choices", "min", "max", "help")
NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
Row = dict[str, Any]


def blank_row() -> Row:
    return {**{key: "" for key in TEXT_FIELDS}, "type": "string", "required": False}


def rows_from_form(form: MultiDict[str, str]) -> list[Row]:
    """The rows as typed (``p_<field>`` lists, ``p_required`` the indexes of ticked rows);
    rows left entirely blank are dropped."""
    columns = {key: form.getlist(f"p_{key}") for key in TEXT_FIELDS}
    ticked = set(form.getlist("p_required"))
    rows = []
    for index in range(max((len(values) for values in columns.values()), default=0)):
        row: Row = {key: (values[index].strip() if index < len(values) else "") for key, values in columns.items()}
        row["required"] = str(index) in ticked
        if any(row[key] for key in TEXT_FIELDS if key != "type") or row["required"]:
            rows.append(row)
    return rows


def rows_from_schema(raw: Any) -> list[Row]:
    """A stored ``params`` table as rows (shorthand entries like ``retries = 3`` written out)."""
    try:
        schema = parse_param_schema("job", raw)
    except InvalidDefinition:
        return []
    return [_row(spec) for spec in schema.values()]


def _row(spec: ParamSpec) -> Row:
    return {"name": spec.name, "type": spec.type, "required": spec.required,
            "default": _text(spec.default, spec.type) if spec.has_default else "",
            "choices": ", ".join(str(choice) for choice in spec.choices),
            "min": "" if spec.min is None else f"{spec.min:g}", "max": "" if spec.max is None else f"{spec.max:g}",
            "help": spec.help}


def _text(value: Any, kind: str) -> str:
    if kind == "json":
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def schema_from_rows(job: str, rows: list[Row]) -> dict[str, Any] | None:
    """The ``params`` table the rows describe (None: no parameters). Text that cannot be the
    declared type raises InvalidDefinition naming the row and field."""
    schema: dict[str, Any] = {}
    for row in rows:
        name = row["name"]
        if not name:
            raise InvalidDefinition(job, "params", "a parameter row without a name; name it or clear the row")
        if name in schema:
            raise InvalidDefinition(job, f"params.{name}", "is named twice")
        entry: dict[str, Any] = {"type": row["type"] or "string"}
        if row["required"]:
            entry["required"] = True
        if row["choices"]:
            entry["choices"] = [_scalar(choice.strip()) for choice in row["choices"].split(",") if choice.strip()]
        for bound in ("min", "max"):
            if row[bound]:
                if not NUMBER.fullmatch(row[bound]):
                    raise InvalidDefinition(job, f"params.{name}.{bound}", f"'{row[bound]}' is not a number")
                entry[bound] = _scalar(row[bound])
        if row["help"]:
            entry["help"] = row["help"]
        if row["default"]:
            spec = ParamSpec(name, entry["type"], choices=tuple(entry.get("choices", ())))
            try:  # (an unknown type keeps the text; parse_param_schema then names the type)
                entry["default"] = value_from_text(spec, row["default"])
            except ValueError as exc:
                raise InvalidDefinition(job, f"params.{name}.default", str(exc)) from None
        schema[name] = entry
    return schema or None


def _scalar(text: str) -> Any:
    """A choice or bound as typed: whole numbers and decimals become numbers, the rest stays text."""
    if NUMBER.fullmatch(text):
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return text


def error_of(errors: Mapping[str, str]) -> list[str]:
    """The form's errors that belong to the parameter editor, as lines to show under it."""
    return [problem if key == "params" else f"{key.removeprefix('params.')}: {problem}"
            for key, problem in errors.items() if key == "params" or key.startswith("params.")]
