"""OpenTelemetry traces (lexyjobs.tracing), on SQLite and Postgres, collected with the SDK's
in-memory exporter: an API request that enqueues a run, the run's enqueue span and each of its
attempts are one trace with the run's attributes; http and openai jobs send that trace's
``traceparent`` to the servers they call (real ones on 127.0.0.1); an incoming ``traceparent``
is continued. Off, nothing of OpenTelemetry is imported; asked for without the packages, the
start stops with one line. tests/test_tracing_export.py exports from a real server over OTLP/HTTP."""
from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import ROOT, wait_for
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lexyjobs import accounts, runs, tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)
    provider.shutdown()


@pytest.fixture
def token(lj: Any) -> str:
    return accounts.create_token(lj.db, "tracer", "admin")


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def finished(db: Any, run_id: int) -> Any:
    return wait_for(lambda: (run := runs.get_run(db, run_id)).status in ("succeeded", "failed") and run, timeout=20)


def test_an_api_request_its_run_and_each_attempt_are_one_trace(app, db, make_job, start_worker, spans, token,
                                                              tmp_path):
    make_job("flaky", func="jobfuncs:fail_once_then_succeed", max_attempts=3, backoff="0s", backoff_jitter=0,
             params={"marker": {"type": "string", "required": True}})
    answer = app.test_client().post("/api/jobs/flaky/run", json={"params": {"marker": str(tmp_path / "m")}},
                                    headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    run_id = answer.get_json()["run_id"]
    start_worker()
    assert finished(db, run_id).status == "succeeded"
    wait_for(lambda: len(named(spans, "run flaky")) == 2)
    names = [span.name for span in spans.get_finished_spans()]
    requests = named(spans, "POST /api/jobs/")
    assert len(requests) == 1, names
    request = requests[0]
    [enqueue] = named(spans, "enqueue flaky")
    attempts = sorted(named(spans, "run flaky"), key=lambda span: span.attributes["lexyjobs.attempt"])
    trace_id = request.context.trace_id
    assert {span.context.trace_id for span in (enqueue, *attempts)} == {trace_id}
    assert enqueue.parent.span_id == request.context.span_id  # the API call links to its run
    assert all(span.parent.span_id == enqueue.context.span_id for span in attempts)
    assert request.attributes["http.response.status_code"] == 202
    assert {span.attributes["lexyjobs.run_id"] for span in attempts} == {run_id}
    assert [(a.attributes["lexyjobs.attempt"], a.attributes["lexyjobs.outcome"], a.status.status_code.name)
            for a in attempts] == [(1, "failed", "ERROR"), (2, "succeeded", "UNSET")]
    assert "first attempt fails on purpose" in attempts[0].status.description
    for attempt in attempts:
        assert (attempt.attributes["lexyjobs.job"], attempt.attributes["lexyjobs.queue"],
                attempt.attributes["lexyjobs.trigger"]) == ("flaky", "default", "api")
        assert attempt.attributes["lexyjobs.wait_ms"] >= 0
    with db.read() as session:
        stored = session.get(runs.Run, run_id).trace_parent
    assert stored == f"00-{trace_id:032x}-{enqueue.context.span_id:016x}-{int(enqueue.context.trace_flags):02x}"


class Recorder:
    """An HTTP server on 127.0.0.1 that answers 200 and keeps each request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = Recorder()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_http_jobs_send_the_run_trace_to_the_service_unless_they_set_it(db, make_job, start_worker, spans,
                                                                      recorder):
    make_job("call", kind="http", url=recorder.url)
    make_job("own", kind="http", url=recorder.url, headers={"traceparent": INCOMING})
    first, second = runs.enqueue(db, "call"), runs.enqueue(db, "own")
    start_worker()
    assert finished(db, first).status == "succeeded" and finished(db, second).status == "succeeded"
    wait_for(lambda: len(named(spans, "run ")) == 2)
    [attempt] = named(spans, "run call")
    sent = {h["traceparent"] for h in recorder.headers}
    assert traceparent_of(attempt) in sent
    assert INCOMING in sent  # the job's own header is left alone


def test_openai_jobs_send_the_run_trace_to_the_model_server(db, make_job, start_worker, spans, llm):
    make_job("ask", kind="openai", model="test-model", prompt="Say hi", stream=False)
    run_id = runs.enqueue(db, "ask")
    start_worker()
    assert finished(db, run_id).status == "succeeded", runs.get_run(db, run_id).error
    wait_for(lambda: named(spans, "run ask"))
    [attempt] = named(spans, "run ask")
    assert [r.headers.get("traceparent") for r in llm.received] == [traceparent_of(attempt)]


def test_an_incoming_traceparent_is_continued_and_refusals_are_traced(app, lj, spans):
    client = app.test_client()
    assert client.get("/api/me", headers={"traceparent": INCOMING}).status_code == 401
    [span] = named(spans, "GET /api/me")
    assert f"{span.context.trace_id:032x}" == TRACE_ID and span.parent.span_id == 0x00f067aa0ba902b7
    assert span.attributes["http.response.status_code"] == 401 and span.kind.name == "SERVER"


def test_off_nothing_of_opentelemetry_is_imported(tmp_path: Path):
    script = f"""
import sys, time
sys.path.insert(0, {str(ROOT / 'tests')!r})
from lexyjobs import create_app, runs
app = create_app({{"database_url": "sqlite:///{tmp_path / 'jobs.db'}", "jobs_file": None, "data_dir": {str(tmp_path)!r},
                  "workers": 1, "poll_interval": 0.05}})
lexy = app.extensions["lexyjobs"]
lexy.start()
from lexyjobs import registry
registry.create_job(lexy.db, "noop", {{"kind": "python", "func": "jobfuncs:noop"}})
run_id = runs.enqueue(lexy.db, "noop")
app.test_client().get("/healthz")
deadline = time.monotonic() + 20
while runs.get_run(lexy.db, run_id).status != "succeeded" and time.monotonic() < deadline:
    time.sleep(0.05)
lexy.stop(0)
print(runs.get_run(lexy.db, run_id).status, sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "succeeded []", done.stdout + done.stderr


def test_asked_for_without_the_packages_the_start_stops_with_one_line(tmp_path: Path):
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if not installed
from lexyjobs import create_app
create_app({{"database_url": "sqlite:///{tmp_path / 'jobs.db'}", "jobs_file": None, "data_dir": {str(tmp_path)!r},
            "otel": True}})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip() == "lexyjobs: LEXYJOBS_OTEL=true needs OpenTelemetry: pip install 'lexyjobs[otel]'"
