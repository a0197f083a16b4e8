"""A real ``python app.py`` with ``LEXYJOBS_OTEL=true`` exports its traces over OTLP/HTTP to the
collector the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` names: here a stand-in on 127.0.0.1 that
decodes each ``POST /v1/traces`` body as OpenTelemetry's protobuf ``ExportTraceServiceRequest``.
The API call that enqueues a run, its enqueue span and its attempt arrive as one trace, under
the service name from ``OTEL_SERVICE_NAME``. SQLite and Postgres."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import wait_for
from liveserver import E2E_TOKEN, running_server
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Collector:
    """Receives OTLP/HTTP trace exports; ``spans`` holds (service name, span) for each span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.paths.append(self.path)
                export = ExportTraceServiceRequest()
                export.ParseFromString(body)
                for resource_spans in export.resource_spans:
                    service = next((a.value.string_value for a in resource_spans.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend((service, span) for span in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, prefix: str) -> list[tuple[str, Any]]:
        return [(service, span) for service, span in self.spans if span.name.startswith(prefix)]


@pytest.fixture
def collector() -> Iterator[Collector]:
    stand_in = Collector()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def test_a_real_server_exports_the_run_trace_over_otlp_http(db_url: str, tmp_path: Path, collector: Collector):
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.nightly]\nkind = "python"\nfunc = "jobfuncs:noop"\n')
    with running_server(db_url, jobs_file, LEXYJOBS_OTEL="true", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                        OTEL_SERVICE_NAME="jobs-test", OTEL_BSP_SCHEDULE_DELAY="100", NO_PROXY="127.0.0.1") as srv:
        status, answer = srv.call("POST", "/api/jobs/nightly/run", E2E_TOKEN, {})
        assert status == 202, answer
        wait_for(lambda: srv.call("GET", f"/api/runs/{answer['run_id']}", E2E_TOKEN)[1]["status"] == "succeeded")
        wait_for(lambda: collector.named("run nightly"), timeout=15)
    [(service, attempt)] = collector.named("run nightly")
    [(_, enqueue)] = collector.named("enqueue nightly")
    [(_, request)] = collector.named("POST /api/jobs/")
    assert service == "jobs-test" and set(collector.paths) == {"/v1/traces"}
    assert attempt.trace_id == enqueue.trace_id == request.trace_id
    assert attempt.parent_span_id == enqueue.span_id and enqueue.parent_span_id == request.span_id
    attributes = {a.key: a.value for a in attempt.attributes}
    assert attributes["lexyjobs.run_id"].int_value == answer["run_id"]
    assert attributes["lexyjobs.outcome"].string_value == "succeeded"
