"""The OpenAPI document is exact about job definitions: it lists every field the validators
know (a field added to a kind or to the common fields without its schema fails here), and
bodies it allows or refuses are allowed or refused by the server alike. The whole API is checked
against the document by schemathesis in test_schemathesis.py; these are the cases named in
issue 14 plus the null handling, on both databases."""
from __future__ import annotations

from typing import Any

import pytest
from conftest import ApiClient, json_schema_errors

from lexyjobs.api.job_schema import COMMON, KIND_FIELDS
from lexyjobs.api.openapi import document
from lexyjobs.definitions import COMMON_FIELDS
from lexyjobs.kinds import kinds


def component(name: str) -> dict[str, Any]:
    """The component ``name`` as a standalone JSON Schema (its ``$ref``s resolvable)."""
    return {**document()["components"]["schemas"][name], "components": document()["components"]}


def allowed(name: str, body: Any) -> bool:
    errors = json_schema_errors(component(name), body)
    assert errors is not None, "no JSON Schema validator installed"
    return not errors


def test_the_document_lists_every_field_the_validators_know():
    assert set(COMMON) == set(COMMON_FIELDS) - {"kind"}
    assert {kind: set(fields) for kind, fields in KIND_FIELDS.items()} == \
        {name: set(kind.fields) for name, kind in kinds().items()}


PYTHON_JOB = {"kind": "python", "func": "jobfuncs:noop"}


@pytest.mark.parametrize(("schema", "body"), [
    ("NewJob", {"name": "", **PYTHON_JOB}),                           # name: ""
    ("NewJob", {"name": "Upper", **PYTHON_JOB}),
    ("NewJob", {"name": "ok", "kind": "python"}),                     # func missing
    ("NewJob", {"name": "ok", **PYTHON_JOB, "argv": ["x"]}),          # a shell field on a python job
    ("JobDefinition", {"func": "jobfuncs:noop"}),                     # PUT without kind
    ("JobDefinition", {**PYTHON_JOB, "priority": None}),              # null where only a number is taken
    ("JobDefinition", {**PYTHON_JOB, "title": None}),
    ("JobDefinition", {**PYTHON_JOB, "priority": 11}),
    ("JobDefinition", {**PYTHON_JOB, "overlap": "sometimes"}),
    ("JobDefinition", {**PYTHON_JOB, "depends_on": ["Not A Name"]}),
    ("RunRequest", {"priority": None}),
    ("RunRequest", {"params": None}),
    ("RunRequest", {"run_at": ""}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_what_the_document_refuses_the_server_refuses(api_client: ApiClient, make_job: Any, schema: str,
                                                      body: dict[str, Any]) -> None:
    assert not allowed(schema, body)
    make_job("existing")
    if schema == "NewJob":
        response = api_client.post("/api/jobs", json=body)
    elif schema == "JobDefinition":
        response = api_client.put("/api/jobs/existing", json=body)
    else:
        response = api_client.post("/api/jobs/existing/run", json=body, role="operator")
    assert response.status_code == 422, response.get_data(as_text=True)


@pytest.mark.parametrize("body", [
    {**PYTHON_JOB, "schedule": None, "timezone": None, "run_at": None, "timeout": None, "alerts": None, "params": None},
    {**PYTHON_JOB, "name": "existing", "priority": 10, "backoff": 5, "backoff_max": "1h", "max_concurrency": 0},
    {"kind": "shell", "argv": ["true"], "cwd": None, "env": {"A": "x", "B": 2, "C": True}},
    {"kind": "http", "url": "http://127.0.0.1:9/x", "method": "post", "headers": {"X": "y"}, "body": None},
], ids=["nulls-that-mean-unset", "name-repeated", "shell", "http"])
def test_what_the_document_allows_the_server_takes(api_client: ApiClient, make_job: Any, body: dict[str, Any]) -> None:
    assert allowed("JobDefinition", body)
    make_job("existing")
    response = api_client.put("/api/jobs/existing", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_patch_may_remove_any_field_with_null(api_client: ApiClient, make_job: Any) -> None:
    make_job("existing", priority=3, title="Shown")
    body = {"priority": None, "title": None}
    assert allowed("JobChanges", body) and not allowed("JobChanges", {"unknown": 1})
    job = api_client.ok(api_client.patch("/api/jobs/existing", json=body))
    assert job["title"] == "existing" and "priority" not in job["definition"]
