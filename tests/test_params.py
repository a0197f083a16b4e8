"""Typed run parameters (lexyjobs.params): schema parsing, validation, defaults, string coercion."""
from __future__ import annotations

from typing import Any

import pytest

from lexyjobs.errors import InvalidDefinition, InvalidParams
from lexyjobs.params import parse_param_schema, schema_to_json, validate_params


def schema(**specs: Any):  # type: ignore[no-untyped-def]
    return parse_param_schema("job-p", specs)


def invalid(spec: dict[str, Any], values: dict[str, Any] | None, *, from_strings: bool = False) -> dict[str, str]:
    """Validate expecting InvalidParams; return its errors (param name -> problem)."""
    with pytest.raises(InvalidParams) as info:
        validate_params(parse_param_schema("job-p", spec), values, from_strings=from_strings)
    error = info.value
    for name, problem in error.errors.items():
        assert f"param '{name}': {problem}" in error.message
    assert error.status_code == 422 and error.details == error.errors
    return error.errors


# ---------------------------------------------------------------- every type


@pytest.mark.parametrize(("spec", "good"), [
    ({"type": "string"}, ["", "hello", "ünïcode"]),
    ({"type": "integer"}, [0, -3, 10**12]),
    ({"type": "number"}, [0, 1.5, -2, 1e9]),
    ({"type": "boolean"}, [True, False]),
    ({"type": "choice", "choices": ["fast", "slow", 3]}, ["fast", "slow", 3]),
    ({"type": "json"}, [{"a": [1, 2]}, [1, "x"], "text", 5, None, True]),
], ids=["string", "integer", "number", "boolean", "choice", "json"])
def test_each_type_accepts_its_values(spec: dict[str, Any], good: list[Any]) -> None:
    for value in good:
        assert validate_params(schema(p=spec), {"p": value}) == {"p": value}


@pytest.mark.parametrize(("spec", "bad", "problem"), [
    ({"type": "string"}, [3, None, ["a"], True], "must be a string"),
    ({"type": "integer"}, [1.5, "3", True, None], "must be a whole number"),
    ({"type": "number"}, ["1.5", False, None, [1]], "must be a number"),
    ({"type": "boolean"}, [1, 0, "true", None], "must be true or false"),
    ({"type": "choice", "choices": ["fast", "slow"]}, ["FAST", "medium", 1, None], "must be one of fast, slow"),
    ({"type": "json"}, [object(), {1, 2}, {"x": object()}], "must be JSON data"),
], ids=["string", "integer", "number", "boolean", "choice", "json"])
def test_each_type_rejects_other_values_naming_the_param(spec: dict[str, Any], bad: list[Any], problem: str) -> None:
    for value in bad:
        assert invalid({"level": spec}, {"level": value}) == {"level": problem}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_numbers_that_json_cannot_hold_are_rejected(value: float) -> None:
    assert invalid({"x": {"type": "number"}}, {"x": value}) == {"x": "must be a number"}
    assert invalid({"j": {"type": "json"}}, {"j": {"ratio": value}}) == {"j": "must be JSON data"}


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_non_finite_number_strings_are_rejected(text: str) -> None:
    assert invalid({"x": {"type": "number"}}, {"x": text}, from_strings=True) == {"x": "must be a number"}
    assert invalid({"j": {"type": "json"}}, {"j": text.replace("nan", "NaN").replace("inf", "Infinity")},
                   from_strings=True) == {"j": "must be JSON data"}


def test_every_bad_param_is_named_at_once() -> None:
    errors = invalid({"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "string", "required": True},
                      "ok": {"type": "string"}}, {"a": "x", "b": "y", "ok": "fine"})
    assert errors == {"a": "must be a whole number", "b": "must be true or false", "c": "is required"}


# ---------------------------------------------------------------- required, defaults, bounds


def test_a_required_param_must_be_given() -> None:
    assert invalid({"day": {"type": "string", "required": True}}, {}) == {"day": "is required"}
    assert invalid({"day": {"type": "string", "required": True}}, None) == {"day": "is required"}
    assert validate_params(schema(day={"type": "string", "required": True}), {"day": "mon"}) == {"day": "mon"}


def test_defaults_are_filled_in_and_optional_params_without_default_are_left_out() -> None:
    s = schema(since={"type": "string", "default": "yesterday"}, limit={"type": "integer", "default": 10},
               dry={"type": "boolean", "default": False}, note={"type": "string"})
    assert validate_params(s, {}) == {"since": "yesterday", "limit": 10, "dry": False}
    assert validate_params(s, {"limit": 3, "note": "x"}) == {"since": "yesterday", "limit": 3, "dry": False, "note": "x"}


def test_a_required_param_with_a_default_is_satisfied_by_the_default() -> None:
    assert validate_params(schema(n={"type": "integer", "required": True, "default": 1}), {}) == {"n": 1}


@pytest.mark.parametrize(("spec", "value", "problem"), [
    ({"type": "integer", "min": 1, "max": 100}, 0, "must be at least 1"),
    ({"type": "integer", "min": 1, "max": 100}, 101, "must be at most 100"),
    ({"type": "number", "min": 0.5}, 0.25, "must be at least 0.5"),
    ({"type": "number", "max": 2.5}, 2.75, "must be at most 2.5"),
    ({"type": "string", "min": 2}, "a", "must be at least 2 characters"),
    ({"type": "string", "max": 3}, "abcd", "must be at most 3 characters"),
], ids=["int-min", "int-max", "number-min", "number-max", "string-min-length", "string-max-length"])
def test_min_and_max_are_enforced(spec: dict[str, Any], value: Any, problem: str) -> None:
    assert invalid({"p": spec}, {"p": value}) == {"p": problem}


@pytest.mark.parametrize(("spec", "value"), [
    ({"type": "integer", "min": 1, "max": 100}, 1), ({"type": "integer", "min": 1, "max": 100}, 100),
    ({"type": "number", "min": 0.5, "max": 2.5}, 2.5), ({"type": "string", "min": 2, "max": 3}, "abc"),
])
def test_bounds_are_inclusive(spec: dict[str, Any], value: Any) -> None:
    assert validate_params(schema(p=spec), {"p": value}) == {"p": value}


def test_an_unknown_param_is_rejected_naming_it_and_the_known_ones() -> None:
    errors = invalid({"since": {"type": "string"}, "limit": 5}, {"sincee": "today"})
    assert list(errors) == ["sincee"]
    assert errors["sincee"] == "unknown parameter (this job takes: since, limit)"


def test_a_job_without_params_rejects_any_param() -> None:
    assert invalid({}, {"x": 1}) == {"x": "unknown parameter (this job takes: none)"}
    assert validate_params({}, None) == {}


# ---------------------------------------------------------------- strings (CLI, forms)


def test_strings_are_converted_to_the_declared_types() -> None:
    s = schema(n={"type": "integer"}, x={"type": "number"}, on={"type": "boolean"}, off={"type": "boolean"},
               cfg={"type": "json"}, mode={"type": "choice", "choices": [1, 2, "auto"]}, name={"type": "string"})
    values = {"n": "3", "x": "2.5", "on": "true", "off": "No", "cfg": '{"a": [1, 2]}', "mode": "2", "name": "007"}
    out = validate_params(s, values, from_strings=True)
    assert out == {"n": 3, "x": 2.5, "on": True, "off": False, "cfg": {"a": [1, 2]}, "mode": 2, "name": "007"}
    assert type(out["n"]) is int and type(out["mode"]) is int


@pytest.mark.parametrize("text", ["1", "yes", "on", "TRUE"])
def test_true_words_become_true(text: str) -> None:
    assert validate_params(schema(b={"type": "boolean"}), {"b": text}, from_strings=True) == {"b": True}


@pytest.mark.parametrize(("spec", "text", "problem"), [
    ({"type": "integer"}, "3.5", "must be a whole number"),
    ({"type": "integer"}, "three", "must be a whole number"),
    ({"type": "number"}, "fast", "must be a number"),
    ({"type": "boolean"}, "maybe", "must be true or false"),
    ({"type": "json"}, "{not json", "must be valid JSON"),
    ({"type": "choice", "choices": ["a", "b"]}, "c", "must be one of a, b"),
    ({"type": "integer", "max": 5}, "6", "must be at most 5"),
], ids=["int-float", "int-word", "number-word", "bool-word", "json-broken", "choice-other", "int-over-max"])
def test_bad_strings_are_rejected_naming_the_param(spec: dict[str, Any], text: str, problem: str) -> None:
    assert invalid({"p": spec}, {"p": text}, from_strings=True) == {"p": problem}


def test_an_empty_string_means_not_given_except_for_strings() -> None:
    s = schema(n={"type": "integer", "default": 7}, label={"type": "string", "default": "x"})
    assert validate_params(s, {"n": "", "label": ""}, from_strings=True) == {"n": 7, "label": ""}
    assert invalid({"n": {"type": "integer", "required": True}}, {"n": ""}, from_strings=True) == {"n": "is required"}


def test_without_from_strings_text_is_not_converted() -> None:
    assert invalid({"n": {"type": "integer"}}, {"n": "3"}) == {"n": "must be a whole number"}


# ---------------------------------------------------------------- schema parsing


@pytest.mark.parametrize(("value", "kind"), [(3, "integer"), (0.5, "number"), (True, "boolean"), ("x", "string"),
                                              ([1, 2], "json"), (None, "json")])
def test_a_shorthand_value_is_an_optional_param_with_that_default(value: Any, kind: str) -> None:
    spec = schema(retries=value)["retries"]
    assert (spec.type, spec.default, spec.required) == (kind, value, False)


def test_a_shorthand_integer_still_rejects_text() -> None:
    assert invalid({"retries": 3}, {"retries": "x"}) == {"retries": "must be a whole number"}
    assert validate_params(schema(retries=3), {}) == {"retries": 3}


def test_a_param_without_type_is_a_string() -> None:
    assert schema(note={"help": "anything"})["note"].type == "string"


@pytest.mark.parametrize(("spec", "field", "problem"), [
    ({"type": "float"}, "params.p", "type 'float' is not one of string, integer, number, boolean, choice, json"),
    ({"type": "choice"}, "params.p", "a choice parameter needs a non-empty 'choices' list"),
    ({"type": "choice", "choices": []}, "params.p", "non-empty 'choices'"),
    ({"type": "choice", "choices": "a,b"}, "params.p.choices", "must be a list"),
    ({"type": "string", "choices": 5}, "params.p.choices", "must be a list"),
    ({"type": "number", "min": float("nan")}, "params.p.min", "must be a number"),
    ({"type": "integer", "min": 1, "default": 0}, "params.p.default", "must be at least 1"),
    ({"type": "string", "max": 2, "default": "abc"}, "params.p.default", "must be at most 2 characters"),
    ({"type": "choice", "choices": ["a"], "default": "b"}, "params.p.default", "must be one of a"),
    ({"type": "integer", "default": "3"}, "params.p.default", "must be a whole number"),
    ({"type": "integer", "min": "1"}, "params.p.min", "must be a number"),
    ({"type": "integer", "max": True}, "params.p.max", "must be a number"),
    ({"type": "integer", "required": "yes"}, "params.p.required", "must be true or false"),
    ({"type": "integer", "mni": 1}, "params.p", "unknown key(s) mni; allowed: choices, default, help, max, min"),
])
def test_a_bad_param_schema_is_an_invalid_definition(spec: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse_param_schema("job-p", {"p": spec})
    assert (info.value.job, info.value.field) == ("job-p", field)
    assert problem in info.value.message


def test_params_that_are_not_a_table_are_an_invalid_definition() -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse_param_schema("job-p", ["a", "b"])
    assert info.value.field == "params"
    assert parse_param_schema("job-p", None) == {}


def test_the_schema_converts_to_json_for_forms_and_the_api() -> None:
    s = schema(since={"type": "string", "default": "yesterday", "help": "first day"},
               steps={"type": "integer", "required": True, "min": 1, "max": 100},
               mode={"type": "choice", "choices": ["fast", "slow"]}, retries=3)
    assert schema_to_json(s) == [
        {"name": "since", "type": "string", "required": False, "default": "yesterday", "help": "first day"},
        {"name": "steps", "type": "integer", "required": True, "min": 1, "max": 100, "help": ""},
        {"name": "mode", "type": "choice", "required": False, "choices": ["fast", "slow"], "help": ""},
        {"name": "retries", "type": "integer", "required": False, "default": 3, "help": ""},
    ]


def test_a_null_default_is_kept_in_the_json_schema() -> None:
    assert schema_to_json(schema(extra={"type": "json", "default": None})) == [
        {"name": "extra", "type": "json", "required": False, "default": None, "help": ""}]
