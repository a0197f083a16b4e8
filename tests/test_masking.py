"""Secrets out of sight: ``mask_config``/``restore_masked`` for showing definitions, the
``Redactor`` that replaces secret values by ``****``, and end to end on both databases: the
values a job references (``${ENV}``) and lexyjobs' own secrets never reach a run's log, error,
traceback, result, details, progress message or events."""
from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import wait_for
from sqlalchemy import text

from lexyjobs import runs, store
from lexyjobs.context import RunContext
from lexyjobs.masking import (MASK, MIN_SECRET_LENGTH, OWN_SECRETS, Redactor, mask_config, referenced_names,
                              restore_masked)
from lexyjobs.models import Run

TERMINAL = ("succeeded", "failed", "canceled")
CANARY_ENV = "LJ_TEST_CANARY"
RECORDING_TABLES = ("runs", "run_logs", "run_events")
WAIT_FOR_GATE = 'i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done'


# ------------------------------------------------------------ mask_config / restore_masked

SPEC = {
    "kind": "http",
    "url": "https://api.example.com/v1?api_key=${API_KEY}",
    "headers": {"Authorization": "Bearer ${SERVICE_TOKEN}", "X-Api-Key": "literal-key-123",
                "X-Team": "data", "Cookie": "sid=abc123"},
    "body": {"password": "hunter22", "user": "alice", "tokens": ["t-1111", "${T2}"]},
    "timeout": 30,
}


def test_mask_config_hides_literal_values_under_sensitive_names():
    shown = mask_config(SPEC)
    assert shown["headers"]["X-Api-Key"] == MASK
    assert shown["headers"]["Cookie"] == MASK
    assert shown["body"]["password"] == MASK
    assert shown["body"]["tokens"] == [MASK, "${T2}"]  # items of a list inherit the list's name


def test_mask_config_keeps_references_and_ordinary_values_visible():
    shown = mask_config(SPEC)
    assert shown["headers"]["Authorization"] == "Bearer ${SERVICE_TOKEN}"
    assert shown["url"] == SPEC["url"]
    assert shown["headers"]["X-Team"] == "data"
    assert shown["body"]["user"] == "alice"
    assert shown["timeout"] == 30
    assert SPEC["body"]["password"] == "hunter22"  # a copy: the spec itself is untouched


@pytest.mark.parametrize("value, shown", [
    ("${TOKEN}", "${TOKEN}"),
    ("Bearer ${TOKEN}", "Bearer ${TOKEN}"),
    ("Basic ${USER}${PASS}", "Basic ${USER}${PASS}"),
    ("Bearer abcdef", MASK),
    ("abc${TOKEN}", MASK),     # part of the secret is written literally
    ("$TOKEN", MASK),          # not a reference: a literal
    ("", MASK),
])
def test_mask_config_shows_a_sensitive_value_only_when_it_is_nothing_but_references(value, shown):
    assert mask_config({"token": value}) == {"token": shown}


def test_restore_masked_puts_the_hidden_values_back_into_an_unchanged_spec():
    assert restore_masked(mask_config(SPEC), SPEC) == SPEC


def test_restore_masked_keeps_what_the_user_changed():
    edited = mask_config(SPEC)
    edited["headers"]["X-Api-Key"] = "new-key-456"
    edited["body"]["user"] = "bob"
    restored = restore_masked(edited, SPEC)
    assert restored["headers"]["X-Api-Key"] == "new-key-456"
    assert restored["body"]["user"] == "bob"
    assert restored["body"]["password"] == "hunter22"
    assert restored["headers"]["Cookie"] == "sid=abc123"


def test_restore_masked_leaves_a_mask_with_nothing_behind_it():
    assert restore_masked({"password": MASK}, {}) == {"password": MASK}
    assert restore_masked({"password": MASK}, {"password": 5}) == {"password": MASK}
    # a list that changed length cannot be matched item by item
    assert restore_masked({"tokens": [MASK, MASK]}, {"tokens": ["a"]}) == {"tokens": [MASK, MASK]}


def test_referenced_names_finds_references_at_any_depth():
    assert referenced_names(SPEC) == {"API_KEY", "SERVICE_TOKEN", "T2"}
    assert referenced_names({"argv": ["echo", "$HOME", "${A}-${B_2}"], "n": 3, "empty": {}, "l": []}) == {"A", "B_2"}
    assert referenced_names("${1BAD} ${} ${ok}") == {"ok"}
    assert referenced_names(None) == set()


# ------------------------------------------------------------ Redactor

def test_redactor_masks_every_occurrence_of_each_secret():
    redactor = Redactor(["s3cret-value", "other-token"])
    assert redactor.text("a s3cret-value b s3cret-value c other-token") == f"a {MASK} b {MASK} c {MASK}"
    assert redactor.text("nothing here") == "nothing here"


def test_overlapping_secrets_are_masked_as_a_whole():
    redactor = Redactor(["abcdef", "defghi"])
    assert redactor.text("x abcdefghi y") == f"x {MASK} y"  # no "ghi" left over
    assert redactor.text("abcdef defghi") == f"{MASK} {MASK}"


def test_a_secret_inside_a_longer_one_is_masked_with_it():
    redactor = Redactor(["token", "my-token-123"])
    assert redactor.text("my-token-123 and token") == f"{MASK} and {MASK}"


def test_short_and_empty_values_are_ignored():
    short = "x" * (MIN_SECRET_LENGTH - 1)
    redactor = Redactor([short, "", "a-long-secret"])
    assert redactor.text(f"{short} a-long-secret") == f"{short} {MASK}"
    assert not Redactor([short, ""])


def test_secrets_with_regex_characters_are_matched_literally():
    redactor = Redactor(["a.b*c(d)"])
    assert redactor.text("a.b*c(d) aXbbc(d)") == f"{MASK} aXbbc(d)"


def test_a_secret_is_masked_where_json_escaped_it():
    secret = 'pa"ss\\wörd'
    redactor = Redactor([secret])
    echoed = json.dumps({"auth": secret})
    assert secret not in json.loads(redactor.text(echoed))["auth"]
    assert redactor.text(echoed) == json.dumps({"auth": MASK})


def test_redactor_value_masks_strings_and_keys_at_any_depth():
    redactor = Redactor(["s3cret-value"])
    value = {"s3cret-value": ["x s3cret-value", 1, None, True, ("s3cret-value",)], "n": 2.5, 3: "s3cret-value"}
    assert redactor.value(value) == {MASK: [f"x {MASK}", 1, None, True, [MASK]], "n": 2.5, 3: MASK}
    assert redactor.value(None) is None


def test_a_redactor_without_secrets_returns_its_input_unchanged():
    redactor = Redactor([])
    assert not redactor
    result = {"rows": [1, 2, 3], "note": "anything"}
    assert redactor.value(result) is result
    line = "some log line\n"
    assert redactor.text(line) is line


def test_for_config_masks_the_referenced_variables_and_lexyjobs_own_secrets():
    environ = {"SERVICE_TOKEN": "svc-token-value", "UNREFERENCED": "not-a-secret-here",
               "LEXYJOBS_API_TOKEN": "own-api-token-value", "EMPTY": ""}
    redactor = Redactor.for_config({"headers": {"Authorization": "Bearer ${SERVICE_TOKEN}", "X": "${EMPTY}"},
                                    "url": "${MISSING}"}, environ)
    shown = redactor.text("svc-token-value own-api-token-value not-a-secret-here")
    assert shown == f"{MASK} {MASK} not-a-secret-here"


def test_a_worker_asking_per_run_gets_the_values_the_variables_have_now():
    """One redactor per set of values (a worker asks once per run), built again when a value changes."""
    from lexyjobs.definitions import JobDefinition

    definition = JobDefinition(name="calls", kind="http", config={"url": "https://x.test/${PATH_TOKEN}"})
    assert definition.secret_names == {"PATH_TOKEN"}
    before = Redactor.for_names(definition.secret_names, {"PATH_TOKEN": "first-token"})
    assert Redactor.for_names(definition.secret_names, {"PATH_TOKEN": "first-token"}) is before
    after = Redactor.for_names(definition.secret_names, {"PATH_TOKEN": "second-token"})
    assert after.text("first-token second-token") == f"first-token {MASK}"


def test_for_config_without_references_or_own_secrets_is_a_no_op():
    assert "LEXYJOBS_API_TOKEN" in OWN_SECRETS
    assert not Redactor.for_config({"func": "jobs:refresh"}, {"HOME": "/home/someone"})
    assert not Redactor.for_config(None, {})


def test_the_run_context_masks_log_text_log_records_and_progress_messages():
    ctx = RunContext(run_id=1, job_name="j", params={}, attempt=1, max_attempts=1,
                     redactor=Redactor(["s3cret-value"]))
    ctx.write("raw s3cret-value\n")
    ctx.log.info("logged %s", "s3cret-value")
    ctx.progress(10, "using s3cret-value")
    progress, log = ctx.take_updates()
    assert progress == (10, f"using {MASK}")
    assert "s3cret-value" not in log
    assert log.count(MASK) == 2


def test_a_run_context_without_a_redactor_changes_nothing():
    ctx = RunContext(run_id=1, job_name="j", params={}, attempt=1, max_attempts=1)
    ctx.write("plain s3cret-value\n")
    ctx.progress(5, "s3cret-value")
    assert ctx.take_updates() == ((5, "s3cret-value"), "plain s3cret-value\n")


# ------------------------------------------------------------ end to end

@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    """A secret value in LJ_TEST_CANARY (set before any worker starts: it reads os.environ)."""
    value = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv(CANARY_ENV, value)
    return value


def finished(db: Any, run_id: int, timeout: float = 10.0) -> Run:
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def recorded(db: Any) -> str:
    """Every row of the tables a run writes (runs, run_logs, run_events), all columns, as text."""
    with db.engine.connect() as conn:
        rows = [(table, tuple(row)) for table in RECORDING_TABLES
                for row in conn.execute(text(f"SELECT * FROM {table}"))]
    assert {table for table, _ in rows} == set(RECORDING_TABLES)  # the scan did see each table
    return "\n".join(map(repr, rows))


def assert_never_recorded(db: Any, secret: str) -> None:
    everything = recorded(db)
    assert everything.count(secret) == 0
    assert MASK in everything


def test_a_shell_job_printing_its_token_shows_the_mask_in_its_log(db, make_job, start_worker, canary):
    make_job("leaky", kind="shell", env={"TOKEN": "${LJ_TEST_CANARY}"}, max_attempts=2, backoff="0s",
             argv=["sh", "-c", 'echo "token is $TOKEN"; echo "failing with $TOKEN" >&2; exit 3'])
    start_worker()
    run_id = runs.enqueue(db, "leaky")
    run = finished(db, run_id)
    assert run.status == "failed"
    assert run.error == "exit code 3"
    log = log_text(db, run_id)
    assert f"token is {MASK}\n" in log
    assert f"failing with {MASK}\n" in log
    assert log.count(MASK) == 4  # both attempts
    assert_never_recorded(db, canary)


def test_a_shell_progress_message_with_the_token_is_masked(db, make_job, start_worker, canary, tmp_path: Path):
    gate = tmp_path / "gate"
    make_job("progress", kind="shell", env={"TOKEN": "${LJ_TEST_CANARY}"},
             argv=["sh", "-c", f"echo '::progress 50 using '\"$TOKEN\"; echo \"with $TOKEN\"; {WAIT_FOR_GATE}",
                   "sh", str(gate)])
    start_worker()
    run_id = runs.enqueue(db, "progress")
    live = wait_for(lambda: (r := runs.get_run(db, run_id)).progress is not None and r)
    assert (live.status, live.progress, live.progress_message) == ("running", 50, f"using {MASK}")
    gate.touch()
    run = finished(db, run_id)
    assert (run.status, run.progress_message) == ("succeeded", f"using {MASK}")
    assert log_text(db, run_id) == f"with {MASK}\n"
    assert_never_recorded(db, canary)


def leak_own_secret(ctx: RunContext) -> None:
    """A python job (func ``test_masking:leak_own_secret``) that logs and raises lexyjobs' API token."""
    token = os.environ["LEXYJOBS_API_TOKEN"]
    ctx.log.warning("calling the API with %s", token)
    ctx.progress(20, f"token {token}")
    raise RuntimeError(f"the API refused {token}")


def test_lexyjobs_own_secrets_are_masked_in_error_and_traceback(db, make_job, start_worker,
                                                               monkeypatch: pytest.MonkeyPatch):
    token = f"own-token-{uuid.uuid4().hex}"
    monkeypatch.setenv("LEXYJOBS_API_TOKEN", token)
    make_job("own", kind="python", func="test_masking:leak_own_secret", max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "own")
    run = finished(db, run_id)
    assert run.status == "failed"
    assert run.error == f"RuntimeError: the API refused {MASK}"
    assert run.traceback is not None and f"RuntimeError: the API refused {MASK}" in run.traceback
    assert run.progress_message == f"token {MASK}"
    assert f"calling the API with {MASK}" in log_text(db, run_id)
    assert_never_recorded(db, token)


class _EchoHeaders(BaseHTTPRequestHandler):
    """Answers every request with its headers as a JSON object; ``/status/<code>`` sets the status."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        body = json.dumps(dict(self.headers.items())).encode()
        code = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The base URL of a real HTTP server on 127.0.0.1 that echoes request headers."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="test-echo-server", daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_http_response_echoing_the_token_is_stored_masked(db, make_job, start_worker, echo_server, canary):
    make_job("echo", kind="http", url=f"{echo_server}/headers",
             headers={"Authorization": "Bearer ${LJ_TEST_CANARY}", "X-Team": "data"})
    start_worker()
    run = finished(db, runs.enqueue(db, "echo"))
    assert run.status == "succeeded"
    assert run.result["Authorization"] == f"Bearer {MASK}"
    assert run.result["X-Team"] == "data"
    assert_never_recorded(db, canary)


def test_an_http_error_body_echoing_the_token_is_stored_masked(db, make_job, start_worker, echo_server, canary):
    make_job("echo-500", kind="http", url=f"{echo_server}/status/500", max_attempts=2, backoff="0s",
             headers={"Authorization": "Bearer ${LJ_TEST_CANARY}"})
    start_worker()
    run = finished(db, runs.enqueue(db, "echo-500"))
    assert run.status == "failed"
    assert run.attempt == 2  # the failed attempt's event note carries the error too
    assert run.error is not None and run.error.startswith("HTTP 500 Internal Server Error: ")
    assert f'"Authorization": "Bearer {MASK}"' in run.error
    assert_never_recorded(db, canary)
