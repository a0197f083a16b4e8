"""The ``openai`` kind: definition checks, then real runs through a real worker (both databases)
against the OpenAI-compatible test server on 127.0.0.1 (tests/openai_server.py): rendering in the
sandbox, what is sent (model, settings, key, base URL), text and JSON results, recorded details
and the run detail page, retries of 429 (honouring Retry-After) and 5xx, 401 without the key,
cancel of a slow request and the job timeout."""
from __future__ import annotations

import json
import re
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import LLM_KEY as KEY, wait_for
from openai_server import COMPLETIONS_PATH, Reply

from lexyjobs import runs, store
from lexyjobs.definitions import parse_definition
from lexyjobs.errors import InvalidDefinition
from lexyjobs.models import Run

TERMINAL = ("succeeded", "failed", "canceled")
BASIC = {"kind": "openai", "model": "gpt-test", "prompt": "Say hello."}


def finished(db: Any, run_id: int, timeout: float = 10.0) -> Run:
    """Wait until the run reaches a terminal status and return it."""
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def event_notes(db: Any, run_id: int) -> list[str]:
    with db.read() as session:
        return [e.note or "" for e in store.run_events(session, run_id)]


def rejected(fields: dict[str, Any]) -> InvalidDefinition:
    """What parsing BASIC with ``fields`` changed raises (a field set to None is left out)."""
    raw = {key: value for key, value in {**BASIC, **fields}.items() if value is not None}
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition("summarise", raw)
    return caught.value


# ---------------------------------------------------------------- definition


@pytest.mark.parametrize("fields, field, says", [
    pytest.param({"prompt": None}, "prompt", "is required for an openai job", id="prompt-missing"),
    pytest.param({"prompt": "  "}, "prompt", "is required for an openai job", id="prompt-blank"),
    pytest.param({"prompt": ["a"]}, "prompt", "is required for an openai job", id="prompt-list"),
    pytest.param({"model": None}, "model", "is required for an openai job", id="model-missing"),
    pytest.param({"temperature": 2.5}, "temperature", "must be a number from 0 to 2", id="temperature-high"),
    pytest.param({"temperature": -0.1}, "temperature", "must be a number from 0 to 2", id="temperature-negative"),
    pytest.param({"temperature": "warm"}, "temperature", "must be a number from 0 to 2", id="temperature-text"),
    pytest.param({"temperature": True}, "temperature", "must be a number from 0 to 2", id="temperature-bool"),
    pytest.param({"max_tokens": 0}, "max_tokens", "must be a whole number from 1 to", id="max-tokens-zero"),
    pytest.param({"max_tokens": 10.5}, "max_tokens", "must be a whole number from 1 to", id="max-tokens-fraction"),
    pytest.param({"prompt": "Hello {{ name "}, "prompt",
                 "template syntax error on line 1: unexpected end of template", id="prompt-syntax"),
    pytest.param({"system": "ok\n{% if x %}never closed"}, "system", "template syntax error on line 2",
                 id="system-syntax"),
    pytest.param({"system": 3}, "system", "must be text", id="system-number"),
    pytest.param({"response_format": "xml"}, "response_format", "'xml' is not one of text, json", id="format-xml"),
    pytest.param({"base_url": "ftp://example.com"}, "base_url", "must start with http:// or https://", id="base-url"),
    pytest.param({"api_key": 42}, "api_key", "must be text", id="api-key-number"),
    pytest.param({"engine": "davinci"}, "engine", "unknown field for a openai job", id="unknown-field"),
])
def test_an_invalid_openai_definition_names_the_field_and_the_problem(fields: dict[str, Any], field: str,
                                                                      says: str) -> None:
    error = rejected(fields)
    assert error.field == field
    assert says in error.problem, error.problem


def test_a_valid_definition_keeps_the_settings_and_accepts_numbers_as_text() -> None:
    definition = parse_definition("summarise", {**BASIC, "system": "You are terse.", "temperature": "0.3",
                                                "max_tokens": "256", "response_format": "json",
                                                "api_key": "${LJ_KEY}", "base_url": "http://127.0.0.1:1/v1"})
    assert definition.config == {"mode": "chat", "stream": True, "prompt": "Say hello.", "system": "You are terse.",
                                 "model": "gpt-test",
                                 "temperature": 0.3, "max_tokens": 256, "response_format": "json",
                                 "api_key": "${LJ_KEY}", "base_url": "http://127.0.0.1:1/v1"}
    assert parse_definition("plain", BASIC).config["response_format"] == "text"


def readme_example() -> dict[str, Any]:
    """The ``openai`` job of the README's TOML example."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"```toml\n(\[jobs\.weekly-summary\].*?)```", readme, re.DOTALL)
    assert block, "the README's openai example is gone"
    return dict(tomllib.loads(block.group(1))["jobs"]["weekly-summary"])


def test_the_readme_example_runs_as_documented(db, make_job, start_worker, llm):
    llm.script(Reply(content='{"trend": "up"}'))
    make_job("weekly-summary", **readme_example())
    start_worker()
    run = finished(db, runs.enqueue(db, "weekly-summary", {"week": "2025-W09", "keywords": ["llm", "rag"]}))
    assert run.status == "succeeded", run.error
    assert run.result == {"trend": "up"}
    (request,) = llm.received
    assert request.messages == [
        {"role": "system", "content": "You are a terse analyst. Answer in JSON."},
        {"role": "user", "content": "Summarise the keyword trends of week 2025-W09 in at most 120 words.\n"
                                    "- llm\n- rag\n"}]
    assert (request.body["temperature"], request.body["max_tokens"]) == (0.2, 400)


def test_the_api_refuses_a_bad_template_with_422(api_client) -> None:
    response = api_client.post("/api/jobs", json={"name": "summarise", **BASIC, "prompt": "{{ topic "})
    error = api_client.error(response, 422, "invalid_job", field="prompt")
    assert "template syntax error" in error["message"]


def test_the_panel_form_creates_an_openai_job_from_text_fields(db, panel_as) -> None:
    admin = panel_as("admin")
    form = {"name": "summarise", "kind": "openai", "enabled": "true", "k_model": "gpt-test",
            "k_prompt": "Summarise {{ topic }}", "k_temperature": "0.3", "k_max_tokens": "200"}
    response = admin.post("/jobs/new", data={**form, "k_temperature": "hot"})
    assert response.status_code == 422
    assert "must be a number from 0 to 2" in response.get_data(as_text=True)
    response = admin.post("/jobs/new", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    with db.read() as session:
        job_row = store.get_job(session, "summarise")
        assert job_row is not None
        config = parse_definition("summarise", job_row.spec).config
    assert (config["temperature"], config["max_tokens"], config["prompt"]) == (0.3, 200, "Summarise {{ topic }}")


# ---------------------------------------------------------------- requests and results


def test_the_prompts_are_rendered_with_the_params_and_sent_with_the_settings(db, make_job, start_worker, llm):
    prompt = "Summarise {{ topic }} in {{ words }} words.{% for t in tags %} #{{ t }}{% endfor %}"
    make_job("summarise", **{**BASIC, "system": "You write for {{ audience }}.", "prompt": prompt},
             temperature=0.2, max_tokens=64,
             params={"topic": {"type": "string"}, "words": 50, "audience": {"type": "string", "default": "engineers"},
                     "tags": {"type": "json", "default": ["a", "b"]}})
    start_worker()
    run = finished(db, runs.enqueue(db, "summarise", {"topic": "the <b>week</b>", "words": 30}))
    assert run.status == "succeeded", run.error
    assert run.result == "Hello from the test model."
    (request,) = llm.received
    assert request.path == COMPLETIONS_PATH
    assert request.messages == [{"role": "system", "content": "You write for engineers."},
                                {"role": "user", "content": "Summarise the <b>week</b> in 30 words. #a #b"}]
    assert request.body["model"] == "gpt-test"
    assert request.body["temperature"] == 0.2 and request.body["max_tokens"] == 64
    assert "response_format" not in request.body
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_without_optional_settings_model_prompt_and_streaming_are_sent(db, make_job, start_worker, llm):
    make_job("hello", **BASIC)
    start_worker()
    assert finished(db, runs.enqueue(db, "hello")).status == "succeeded"
    (request,) = llm.received
    assert request.body == {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello."}],
                            "stream": True, "stream_options": {"include_usage": True}}


def test_stream_false_sends_one_plain_request_and_gets_the_same_result(db, make_job, start_worker, llm):
    make_job("whole", **BASIC, stream=False)
    start_worker()
    run = finished(db, runs.enqueue(db, "whole"))
    assert run.status == "succeeded" and run.result == "Hello from the test model."
    (request,) = llm.received
    assert set(request.body) == {"model", "messages"}
    assert run.details is not None and "first_token_ms" not in run.details


def test_key_and_base_url_come_from_the_jobs_env_references_and_are_never_stored(db, make_job, start_worker, llm,
                                                                                monkeypatch: pytest.MonkeyPatch):
    own_key = f"sk-own-{uuid.uuid4().hex}"
    monkeypatch.setenv("LJ_TEST_LLM_KEY", own_key)
    monkeypatch.setenv("LJ_TEST_LLM_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the job's own base_url wins
    make_job("own-endpoint", **BASIC, api_key="${LJ_TEST_LLM_KEY}", base_url="${LJ_TEST_LLM_URL}")
    start_worker()
    run_id = runs.enqueue(db, "own-endpoint")
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    (request,) = llm.received
    assert request.headers["authorization"] == f"Bearer {own_key}"
    with db.read() as session:
        job_row = store.get_job(session, "own-endpoint")
        assert job_row is not None
        spec = job_row.spec
    assert spec["api_key"] == "${LJ_TEST_LLM_KEY}"
    stored = json.dumps([spec, run.params, run.result, run.details, run.error, event_notes(db, run_id)])
    assert own_key not in stored and own_key not in log_text(db, run_id)


def test_without_any_api_key_the_run_fails_saying_how_to_set_one(db, make_job, start_worker, llm,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    make_job("keyless", **BASIC, max_attempts=3, backoff="0s")
    start_worker()
    run = finished(db, runs.enqueue(db, "keyless"))
    assert run.status == "failed" and run.attempt == 1  # a configuration problem: not retried
    assert run.error is not None and run.error.startswith("no API key: set OPENAI_API_KEY or the job's api_key")
    assert llm.received == []


@pytest.mark.parametrize("prompt, error", [
    ("Summarise {{ topic }}.", "prompt: 'topic' is undefined"),
    ("{{ params.topic.title }}", "prompt: 'dict object' has no attribute 'topic'"),
    ("{{ 10 / 0 }}", "prompt: ZeroDivisionError: division by zero"),
], ids=["missing-param", "missing-key", "arithmetic"])
def test_a_template_that_cannot_render_fails_the_run_before_any_request(db, make_job, start_worker, llm,
                                                                        prompt: str, error: str):
    make_job("needs-topic", **{**BASIC, "prompt": prompt}, max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "needs-topic"))
    assert run.status == "failed"
    assert run.error == error
    assert run.traceback is None
    assert llm.received == []


@pytest.mark.parametrize("template, attribute, owner", [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "__class__", "str"),
    ("{{ topic.__init__.__globals__ }}", "__init__", "str"),
    ("{{ params.update(topic='changed') }}", "update", "dict"),
])
def test_the_sandbox_keeps_templates_away_from_python_objects(db, make_job, start_worker, llm, template: str,
                                                              attribute: str, owner: str):
    make_job("escape", **{**BASIC, "system": template}, max_attempts=1, params={"topic": "x"})
    start_worker()
    run = finished(db, runs.enqueue(db, "escape"))
    assert run.status == "failed"
    assert run.error == (f"system: not allowed in a template: access to attribute '{attribute}' of "
                         f"'{owner}' object is unsafe.")
    assert llm.received == []


@pytest.mark.parametrize("content", [
    '{"rows": 3, "summary": "all good", "tags": ["a"]}',
    '```json\n{"rows": 3, "summary": "all good", "tags": ["a"]}\n```',
], ids=["plain", "fenced"])
def test_a_json_reply_becomes_the_parsed_result(db, make_job, start_worker, llm, content: str):
    llm.script(Reply(content=content))
    make_job("report", **{**BASIC, "prompt": "Answer in JSON."}, response_format="json")
    start_worker()
    run = finished(db, runs.enqueue(db, "report"))
    assert run.status == "succeeded", run.error
    assert run.result == {"rows": 3, "summary": "all good", "tags": ["a"]}
    assert llm.received[0].body["response_format"] == {"type": "json_object"}


def test_a_reply_that_is_not_json_fails_with_the_parse_error_and_the_raw_text_in_the_log(db, make_job,
                                                                                         start_worker, llm):
    raw = "Sure! Here is your JSON: {rows: three}"
    llm.script(Reply(content=raw, finish_reason="length"))
    make_job("report", **BASIC, response_format="json", max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "report")
    run = finished(db, run_id)
    assert run.status == "failed"
    assert run.error == ("the reply is not valid JSON: Expecting value: line 1 column 1 (char 0) (the reply was cut "
                         "off at max_tokens); the raw text is in the run's log")
    log = log_text(db, run_id)
    assert "the reply is not valid JSON (Expecting value: line 1 column 1 (char 0)); it was:\n" + raw in log
    assert run.details is not None and run.details["finish_reason"] == "length"  # recorded on failures too


def test_nan_in_a_json_reply_is_refused_as_not_json(db, make_job, start_worker, llm):
    llm.script(Reply(content='{"score": NaN}'))
    make_job("report", **BASIC, response_format="json", max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "report"))
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("the reply is not valid JSON: NaN is not a JSON value")


def test_the_details_are_recorded_and_shown_on_the_run_detail_page(db, make_job, start_worker, llm, panel_as):
    content = "Grüße — 3 rows"  # not ASCII: output_bytes counts UTF-8 bytes, not characters
    llm.script(Reply(content=content, delay=0.2, usage=(42, 7)))
    make_job("greet", **BASIC)
    start_worker()
    run_id = runs.enqueue(db, "greet")
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.details is not None
    generation_ms = run.details.pop("generation_ms")
    assert isinstance(generation_ms, int) and 200 <= generation_ms < 5000
    assert run.details.pop("prompt") == [{"role": "user", "content": "Say hello."}]
    first_token_ms = run.details.pop("first_token_ms")
    assert isinstance(first_token_ms, int) and 200 <= first_token_ms <= generation_ms
    assert run.details == {"model": "gpt-test-0613", "prompt_tokens": 42, "completion_tokens": 7,
                           "output_bytes": len(content.encode()), "finish_reason": "stop"}
    assert len(content.encode()) != len(content)
    assert run.progress_message is None  # "waiting for gpt-test" went with the answer
    assert "gpt-test-0613 answered from http://127.0.0.1:" in log_text(db, run_id)
    page = panel_as("viewer").get(f"/runs/{run_id}").get_data(as_text=True)
    assert "<h2>Details</h2>" in page
    for key, value in (("model", "gpt-test-0613"), ("prompt_tokens", "42"), ("completion_tokens", "7"),
                       ("generation_ms", str(generation_ms)), ("output_bytes", str(len(content.encode())))):
        assert f'<th scope="row">{key}</th><td>{value}</td>' in page


def test_a_server_without_usage_gets_details_without_token_counts(db, make_job, start_worker, llm):
    llm.script(Reply(usage=None))
    make_job("hello", **BASIC)
    start_worker()
    run = finished(db, runs.enqueue(db, "hello"))
    assert run.status == "succeeded"
    assert run.details is not None and "prompt_tokens" not in run.details and run.details["model"] == "gpt-test-0613"


# ---------------------------------------------------------------- failures and retries


def test_a_429_with_retry_after_waits_within_the_attempt_without_burning_one(db, make_job, start_worker, llm):
    llm.script(Reply(status=429, message="Rate limit reached", headers={"Retry-After": "1"}))
    make_job("limited", **BASIC, max_attempts=1, backoff="0s")
    start_worker()
    run_id = runs.enqueue(db, "limited")
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.attempt == 1
    first, second = llm.received
    assert second.at - first.at >= 1.0
    assert (f"HTTP 429 from {llm.base_url}: Rate limit reached; waiting 1s as it asks (Retry-After), then sending "
            "again") in log_text(db, run_id)


def test_a_429_asking_for_more_than_the_attempt_has_fails_it_with_the_wait_for_the_next(db, make_job,
                                                                                        start_worker, llm):
    llm.script(Reply(status=429, message="Rate limit reached", headers={"Retry-After": "60"}))
    make_job("limited", **BASIC, max_attempts=2, backoff="0s", backoff_max="1s", timeout="5s")
    start_worker()
    run_id = runs.enqueue(db, "limited")
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2
    retried = [n for n in event_notes(db, run_id) if "retrying" in n]
    assert retried == [f"attempt 1 of 2 failed: HTTP 429 Too Many Requests from {llm.base_url}: Rate limit reached; "
                       "retrying in 1s"]


def test_a_500_is_retried_by_the_jobs_policy_and_can_then_succeed(db, make_job, start_worker, llm):
    llm.script(Reply(status=500, message="The server had an error"))
    make_job("flaky", **BASIC, max_attempts=2, backoff="0s")
    start_worker()
    run_id = runs.enqueue(db, "flaky")
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2 and len(llm.received) == 2
    assert f"HTTP 500 Internal Server Error from {llm.base_url}: The server had an error" in event_notes(db, run_id)[1]


def test_a_503_that_keeps_failing_ends_failed_after_max_attempts(db, make_job, start_worker, llm):
    llm.script(*[Reply(status=503, message="overloaded")] * 2)
    make_job("down", **BASIC, max_attempts=2, backoff="0s")
    start_worker()
    run = finished(db, runs.enqueue(db, "down"))
    assert run.status == "failed"
    assert run.error == f"HTTP 503 Service Unavailable from {llm.base_url}: overloaded"
    assert run.attempt == 2 and len(llm.received) == 2


def test_a_401_fails_with_the_servers_message_but_never_the_key(db, make_job, start_worker, llm):
    literal = f"sk-literal-{uuid.uuid4().hex}"  # written in the job itself: only the kind knows it is the key
    # a server that echoes the key, and asks for a long wait that a 401 must not get
    llm.script(*[Reply(status=401, message=f"Incorrect API key provided: {literal}.",
                       headers={"Retry-After": "30"})] * 2)
    make_job("wrong-key", **BASIC, api_key=literal, max_attempts=2, backoff="0s")
    start_worker()
    run_id = runs.enqueue(db, "wrong-key")
    started = time.monotonic()
    run = finished(db, run_id)
    assert time.monotonic() - started < 5  # the normal policy (0s), not the server's 30 s
    assert run.status == "failed"
    assert run.error == f"HTTP 401 Unauthorized from {llm.base_url}: Incorrect API key provided: ****."
    assert len(llm.received) == 2
    assert llm.received[0].headers["authorization"] == f"Bearer {literal}"
    recorded = json.dumps([run.result, run.details, run.error, event_notes(db, run_id), log_text(db, run_id)])
    assert literal not in recorded and KEY not in recorded


def test_an_unreachable_endpoint_fails_naming_it(db, make_job, start_worker, llm):
    llm.stop()  # nothing listens on its port any more
    make_job("nowhere", **BASIC, max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "nowhere"))
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith(f"cannot reach {llm.base_url}: ")


# ---------------------------------------------------------------- cancel and timeout


def test_cancel_of_a_slow_request_ends_the_run_promptly(db, make_job, start_worker, llm):
    llm.script(Reply(delay=10))
    make_job("slow", **BASIC)
    start_worker()
    run_id = runs.enqueue(db, "slow")
    wait_for(lambda: llm.received)
    running = wait_for(lambda: (r := runs.get_run(db, run_id)).progress_message and r, timeout=3)
    assert (running.status, running.progress_message) == ("running", "waiting for gpt-test")
    started = time.monotonic()
    assert runs.cancel(db, run_id) == "cancel requested"
    run = finished(db, run_id, timeout=5)
    assert time.monotonic() - started < 2
    assert run.status == "canceled" and run.result is None
    assert llm.answered == 0  # ended without waiting for the server
    wait_for(lambda: llm.aborted == 1, timeout=2)  # and the request itself was aborted


def test_the_job_timeout_applies_to_the_request(db, make_job, start_worker, llm):
    llm.script(Reply(delay=10))
    make_job("too-slow", **BASIC, timeout="1s", max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "too-slow")
    wait_for(lambda: llm.received)
    started = time.monotonic()
    run = finished(db, run_id, timeout=5)
    assert time.monotonic() - started < 3
    assert run.status == "failed"
    assert run.error == "timed out after 1s"
    assert llm.answered == 0
    wait_for(lambda: llm.aborted == 1, timeout=2)
