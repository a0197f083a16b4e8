"""OpenTelemetry traces of runs and of the panel's and API's requests (``LEXYJOBS_OTEL=true``).

Off (the default), every function here is a no-op and ``opentelemetry`` is never imported. On,
the SDK exports through OTLP/HTTP as the standard ``OTEL_EXPORTER_OTLP_*`` and
``OTEL_SERVICE_NAME`` variables say (service name ``lexyjobs`` unless set); when a host app has
already installed a tracer provider, lexyjobs uses it instead of its own.

A run is one trace, whichever process runs it:

* ``enqueue <job>`` (producer): a short span made where the run is created, a child of the
  current span — the ``POST /api/jobs/<name>/run`` request's, say, so the API call and the run it
  made are one trace. Its W3C ``traceparent`` is stored with the run (``runs.trace_parent``).
* ``run <job>`` (consumer), one per attempt, a child of that span, made by the worker that
  executes the attempt, with ``lexyjobs.job``, ``lexyjobs.run_id``, ``lexyjobs.attempt``,
  ``lexyjobs.queue``, ``lexyjobs.trigger``, ``lexyjobs.wait_ms`` (from the time it was due to this
  attempt's start: the wait in the queue) and ``lexyjobs.outcome``; error status when it fails.
  While it runs it is the current span, so http and openai jobs send its ``traceparent`` to the
  services they call (``outgoing_headers``), unless the job sets that header itself.
* Every request to lexyjobs' own routes is a server span ``<METHOD> <route>``, continuing an
  incoming ``traceparent``; a host app's own routes are left alone."""
from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from flask import Blueprint, Response

    from lexyjobs.claiming import ClaimedRun
    from lexyjobs.config import Settings
    from lexyjobs.db import Database

INSTALL_HINT = "pip install 'lexyjobs[otel]'"
_tracer: Any = None  # set by enable(): tracing is on exactly when it is not None
_own_provider: Any = None  # the provider enable() installed (flushed at shutdown), None if the host's


def enabled() -> bool:
    return _tracer is not None


def enable(settings: Settings) -> None:
    """Turn tracing on when ``LEXYJOBS_OTEL`` says so (once per process)."""
    if not settings.otel or _tracer is not None:
        return
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SystemExit(f"lexyjobs: LEXYJOBS_OTEL=true needs OpenTelemetry: {INSTALL_HINT}") from None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the host app's: its exporters, its sampling
        use_provider(current, own=False)
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "lexyjobs"}).merge(Resource.create()))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    use_provider(provider, own=True)


def use_provider(provider: Any, *, own: bool = False) -> None:
    """Trace with ``provider`` (tests pass one with an in-memory exporter); None turns tracing off."""
    global _tracer, _own_provider
    if provider is None:
        _tracer = _own_provider = None
        return
    from lexyjobs import __version__

    _tracer = provider.get_tracer("lexyjobs", __version__)
    _own_provider = provider if own else None


def shutdown() -> None:
    """Export what is still buffered (at process stop)."""
    if _own_provider is not None:
        _own_provider.force_flush()


# ---- runs


def enqueue_columns(job: str, trigger: str) -> dict[str, Any]:
    """``{"trace_parent": …}`` for a new run's row (nothing when tracing is off)."""
    if _tracer is None:
        return {}
    from opentelemetry.trace import SpanKind

    span = _tracer.start_span(f"enqueue {job}", kind=SpanKind.PRODUCER,
                              attributes={"lexyjobs.job": job, "lexyjobs.trigger": trigger})
    span.end()
    return {"trace_parent": _traceparent(span.get_span_context())}


@contextlib.contextmanager
def attempt(db: Database, claim: ClaimedRun, *, started: datetime) -> Iterator[Any]:
    """The attempt's span, current in this thread while the job runs; yields None when off.
    ``outcome(span, …)`` records how it ended."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    from lexyjobs.models import Run

    try:
        with db.read() as session:
            stored = session.execute(select(Run.trace_parent, Run.scheduled_for).where(Run.id == claim.id)).first()
    except SQLAlchemyError:  # the run goes on all the same, in a trace of its own
        stored = None
    parent = _context_of(stored.trace_parent) if stored is not None and stored.trace_parent else None
    attributes = {"lexyjobs.job": claim.job_name, "lexyjobs.run_id": claim.id, "lexyjobs.attempt": claim.attempt,
                  "lexyjobs.queue": claim.queue, "lexyjobs.trigger": claim.trigger}
    if stored is not None:
        attributes["lexyjobs.wait_ms"] = max(0, round((started - stored.scheduled_for).total_seconds() * 1000))
    span = _tracer.start_span(f"run {claim.job_name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        yield span


def outcome(span: Any, status: str | None, error: str | None = None) -> None:
    """Record the attempt's outcome (``succeeded``, ``failed``, ``canceled``, ``queued`` for a retry
    or deferral, None when it was given back) on its span."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("lexyjobs.outcome", status or "returned")
    if status == "failed":
        span.set_status(Status(StatusCode.ERROR, (error or "")[:500]))


def outgoing_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``) added, unless
    tracing is off or the job set ``traceparent`` itself."""
    result = dict(headers or {})
    if _tracer is None or any(name.lower() == "traceparent" for name in result):
        return result
    from opentelemetry import propagate

    propagate.inject(result)
    return result


def _traceparent(span_context: Any) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def _context_of(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


# ---- web requests


def init_blueprint(bp: Blueprint) -> None:
    """A server span around every request to lexyjobs' routes (registered before the guard, so
    refused requests are traced too)."""
    bp.before_request(_start_request_span)
    bp.after_request(_note_status)
    bp.teardown_request(_end_request_span)


def _start_request_span() -> None:
    if _tracer is None:
        return
    from flask import g, request
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import SpanKind

    route = request.url_rule.rule if request.url_rule is not None else request.path
    span = _tracer.start_span(f"{request.method} {route}", context=propagate.extract(_lowercase(request.headers)),
                              kind=SpanKind.SERVER, attributes={"http.request.method": request.method,
                                                                "http.route": route, "url.path": request.path})
    g.lexyjobs_span = span
    g.lexyjobs_span_token = context.attach(trace.set_span_in_context(span))


def _lowercase(headers: Any) -> dict[str, str]:
    """The propagators look up ``traceparent`` in lower case; werkzeug's keys are title-cased."""
    return {name.lower(): value for name, value in headers.items()}


def _note_status(response: Response) -> Response:
    from flask import g

    span = g.get("lexyjobs_span")
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
    return response


def _end_request_span(error: BaseException | None) -> None:
    from flask import g

    span = g.pop("lexyjobs_span", None)
    if span is None:
        return
    from opentelemetry import context

    if error is not None:
        span.record_exception(error)
    span.end()
    context.detach(g.pop("lexyjobs_span_token"))
