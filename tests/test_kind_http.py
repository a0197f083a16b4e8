"""The ``http`` kind end to end against a real HTTP server on 127.0.0.1, on both databases:
results, failures and retries, timeout, ``${ENV}`` headers that never reach the database,
params as JSON body or query string, recorded details, and cancel of a request in flight."""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import wait_for

from lexyjobs import runs, store
from lexyjobs.models import Run

TERMINAL = ("succeeded", "failed", "canceled")
SLOW_SECONDS = 10.0   # how long /slow holds a request unless the test releases it
DELAY_SECONDS = 0.2   # how long /delayed takes


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    """The test server: ``url(path)`` and every request it received."""

    base: str
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            server.received.append(Received(self.command, parts.path, parse_qs(parts.query),
                                            dict(self.headers.items()), self.rfile.read(length)))
            if parts.path == "/json":
                self._send(200, json.dumps({"rows": 3, "ok": True}).encode(), "application/json")
            elif parts.path == "/text":
                self._send(200, b"hello, plain text", "text/plain")
            elif parts.path.startswith("/status/"):
                code = int(parts.path.rsplit("/", 1)[1])
                self._send(code, f"upstream said {code}".encode(), "text/plain")
            elif parts.path.startswith("/throttled/"):  # /throttled/<status>/<Retry-After>
                status, wait = parts.path.split("/")[2:4]
                self.send_response(int(status))
                self.send_header("Retry-After", wait)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts.path == "/slow":
                server.release.wait(SLOW_SECONDS)
                self._send(200, b'{"late": true}', "application/json")
            elif parts.path == "/delayed":
                time.sleep(DELAY_SECONDS)
                self._send(200, b'{"delayed": true}', "application/json")
            else:
                self._send(200, b'{"echo": true}', "application/json")

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A real HTTP server on 127.0.0.1 (random port) in a daemon thread."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # never route the loopback requests through a proxy
    fake = FakeServer(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    fake.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    yield fake
    fake.release.set()  # let held /slow requests finish
    httpd.shutdown()
    httpd.server_close()


def finished(db: Any, run_id: int, timeout: float = 10.0) -> Run:
    """Wait until the run reaches a terminal status and return it."""
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in TERMINAL and r, timeout)


def log_text(db: Any, run_id: int) -> str:
    with db.read() as session:
        return store.read_log(session, run_id)[0]


def test_a_json_response_becomes_the_result(db, make_job, start_worker, http_server):
    make_job("fetch", kind="http", url=http_server.url("/json"))
    start_worker()
    run = finished(db, runs.enqueue(db, "fetch"))
    assert run.status == "succeeded"
    assert run.result == {"rows": 3, "ok": True}
    assert [r.method for r in http_server.hits("/json")] == ["GET"]


def test_a_plain_text_response_is_stored_with_its_status_code(db, make_job, start_worker, http_server):
    make_job("fetch-text", kind="http", url=http_server.url("/text"))
    start_worker()
    run = finished(db, runs.enqueue(db, "fetch-text"))
    assert run.status == "succeeded"
    assert run.result == {"status_code": 200, "body": "hello, plain text"}


@pytest.mark.parametrize("code, reason", [(404, "Not Found"), (500, "Internal Server Error")])
def test_a_non_2xx_response_fails_each_attempt_until_attempts_run_out(db, make_job, start_worker, http_server,
                                                                      code, reason):
    path = f"/status/{code}"
    make_job("broken", kind="http", url=http_server.url(path), max_attempts=2, backoff="0s")
    start_worker()
    run = finished(db, runs.enqueue(db, "broken"))
    assert run.status == "failed"
    assert run.error == f"HTTP {code} {reason}: upstream said {code}"
    assert run.attempt == 2
    assert len(http_server.hits(path)) == 2
    assert run.details is not None and run.details["status_code"] == code


def test_a_slow_endpoint_fails_at_the_job_timeout(db, make_job, start_worker, http_server):
    make_job("slow", kind="http", url=http_server.url("/slow"), timeout="1s", max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "slow")
    wait_for(lambda: http_server.hits("/slow"))
    started = time.monotonic()
    run = finished(db, run_id, timeout=SLOW_SECONDS)
    assert time.monotonic() - started < 3  # the endpoint would only answer after SLOW_SECONDS
    assert not http_server.release.is_set()
    assert run.status == "failed"
    assert run.error is not None and "timed out" in run.error


def test_env_references_in_headers_are_substituted_but_never_stored(db, make_job, start_worker, http_server,
                                                                    monkeypatch: pytest.MonkeyPatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("LJ_TEST_SERVICE_TOKEN", secret)
    make_job("authed", kind="http", url=http_server.url("/json"),
             headers={"Authorization": "Bearer ${LJ_TEST_SERVICE_TOKEN}", "X-Team": "data"})
    start_worker()
    run_id = runs.enqueue(db, "authed")
    run = finished(db, run_id)
    assert run.status == "succeeded"
    (request,) = http_server.hits("/json")
    assert request.headers["Authorization"] == f"Bearer {secret}"
    assert request.headers["X-Team"] == "data"
    with db.read() as session:
        job_row = store.get_job(session, "authed")
        assert job_row is not None
        spec = job_row.spec
        events = store.run_events(session, run_id)
    assert spec["headers"]["Authorization"] == "Bearer ${LJ_TEST_SERVICE_TOKEN}"
    stored = json.dumps([spec, run.params, run.result, run.details, run.error, [e.note for e in events]])
    assert secret not in stored
    assert secret not in log_text(db, run_id)


def test_a_missing_env_variable_fails_the_run_naming_it(db, make_job, start_worker, http_server,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LJ_TEST_MISSING_TOKEN", raising=False)
    make_job("unset", kind="http", url=http_server.url("/json"),
             headers={"Authorization": "Bearer ${LJ_TEST_MISSING_TOKEN}"}, max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "unset"))
    assert run.status == "failed"
    assert run.error == "environment variable LJ_TEST_MISSING_TOKEN is not set"
    assert http_server.received == []


def test_a_url_invalid_once_expanded_fails_without_quoting_the_secret(db, make_job, start_worker,
                                                                       monkeypatch: pytest.MonkeyPatch):
    # requests' InvalidURL quotes the host it could not parse: here a piece of the secret
    # (with its space, no masking could recognise the fragment), so the message names the URL as defined.
    monkeypatch.setenv("LJ_TEST_HOST_SECRET", "Qm4host pa/ss")
    make_job("bad-url", kind="http", url="http://${LJ_TEST_HOST_SECRET}/x", max_attempts=1)
    start_worker()
    run = finished(db, runs.enqueue(db, "bad-url"))
    assert run.status == "failed"
    assert run.error is not None and "${LJ_TEST_HOST_SECRET}" in run.error and "not a valid URL" in run.error
    recorded = json.dumps([run.error, run.details, run.result]) + log_text(db, run.id)
    assert "Qm4host" not in recorded


def test_a_post_without_a_body_sends_the_params_as_json(db, make_job, start_worker, http_server):
    make_job("post", kind="http", method="POST", url=http_server.url("/echo"),
             params={"since": {"type": "string"}, "limit": {"type": "integer", "default": 50}})
    start_worker()
    run = finished(db, runs.enqueue(db, "post", {"since": "2024-01-01"}))
    assert run.status == "succeeded"
    (request,) = http_server.hits("/echo")
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"since": "2024-01-01", "limit": 50}
    assert request.query == {}


def test_a_get_sends_the_params_as_a_query_string(db, make_job, start_worker, http_server):
    make_job("get", kind="http", url=http_server.url("/echo"),
             params={"since": {"type": "string"}, "limit": {"type": "integer", "default": 50}})
    start_worker()
    run = finished(db, runs.enqueue(db, "get", {"since": "2024-01-01"}))
    assert run.status == "succeeded"
    (request,) = http_server.hits("/echo")
    assert request.method == "GET"
    assert request.query == {"since": ["2024-01-01"], "limit": ["50"]}
    assert request.body == b""


def test_the_run_details_record_status_code_and_duration(db, make_job, start_worker, http_server):
    make_job("timed", kind="http", url=http_server.url("/delayed"))
    start_worker()
    run_id = runs.enqueue(db, "timed")
    run = finished(db, run_id)
    assert run.status == "succeeded"
    assert run.details is not None
    assert run.details["status_code"] == 200
    assert isinstance(run.details["duration_ms"], int)
    assert DELAY_SECONDS * 1000 <= run.details["duration_ms"] < 5000
    assert run.details["response_bytes"] == len(b'{"delayed": true}')
    assert f"GET {http_server.url('/delayed')} -> 200 in" in log_text(db, run_id)


def test_cancel_stops_a_request_in_flight_promptly(db, make_job, start_worker, http_server):
    make_job("hang", kind="http", url=http_server.url("/slow"))
    start_worker()
    run_id = runs.enqueue(db, "hang")
    wait_for(lambda: http_server.hits("/slow"))
    assert runs.get_run(db, run_id).status == "running"
    started = time.monotonic()
    assert runs.cancel(db, run_id) == "cancel requested"
    run = finished(db, run_id, timeout=5)
    assert time.monotonic() - started < 2
    assert not http_server.release.is_set()  # the server never answered
    assert run.status == "canceled"
    assert run.result is None


@pytest.mark.parametrize("status, waits", [(429, 40), (503, 40), (404, 0)])
def test_retry_after_of_a_429_or_5xx_sets_the_least_wait_before_the_next_attempt(db, make_job, start_worker,
                                                                                 http_server, status, waits):
    make_job("throttled", kind="http", url=http_server.url(f"/throttled/{status}/40"), max_attempts=2,
             backoff="0s", backoff_jitter=0)
    start_worker()
    run_id = runs.enqueue(db, "throttled")
    if not waits:  # other statuses ignore the header: the next attempt follows the backoff (0s)
        assert finished(db, run_id).attempt == 2
        return
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "queued" and r.attempt == 1 and r)
    with db.read() as session:
        requeued = store.run_events(session, run_id)[-1]
    assert run.scheduled_for - requeued.at == timedelta(seconds=waits)
