"""The OpenAPI 3.1 document of ``/api``. A test checks that its paths and methods are exactly the
registered routes, and schemathesis (tests/test_schemathesis.py, every check) that the server
takes exactly the requests it allows and answers as it says. Job definition schemas:
``lexyjobs.api.job_schema``."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from lexyjobs.alerts.history import EVENTS as ALERT_EVENTS, STATUSES as ALERT_STATUSES
from lexyjobs.api.inputs import MAX_LOG_OFFSET, MAX_TEXT
from lexyjobs.api.job_schema import JOB_NAME, QUEUE_NAME, schemas as job_schemas
from lexyjobs.definitions import SOURCES
from lexyjobs.flow.waiting import REASONS as WAITING_REASONS
from lexyjobs.health_signals import SIGNAL_KINDS
from lexyjobs.kinds import KIND_NAMES
from lexyjobs.llm import item_reads
from lexyjobs.runs import TRIGGERS as RUN_TRIGGERS
from lexyjobs.states import RunStatus

STATUSES = [s.value for s in RunStatus]
TRIGGERS = list(RUN_TRIGGERS)
HEALTH_STATES = ["ok", "warning", "error", "unknown"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], *, required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, "additionalProperties": extra}


STRING, INTEGER, NUMBER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
ANY: dict[str, Any] = {}
STATUS_COUNTS = _object({"total": INTEGER, **{s: INTEGER for s in STATUSES}})

JOB = {
    "name": STRING, "title": STRING, "category": STRING, "kind": {"enum": list(KIND_NAMES)},
    "source": {"enum": ["code", "file", "db"]}, "editable": BOOLEAN, "enabled": BOOLEAN, "archived": BOOLEAN,
    "schedule": _nullable(STRING), "schedule_description": STRING, "timezone": _nullable(STRING),
    "next_fire": _nullable(TIME), "description": STRING, "depends_on": {"type": "array", "items": STRING},
    "params": {"type": "array", "items": {"type": "object"}}, "health": _nullable(_ref("Health")),
    "definition": {"type": "object", "description": "the definition as written; ${ENV} references are not "
                                                      "expanded and literal secrets are shown as ****"},
    "unset_env": {"type": "array", "items": STRING,
                  "description": "${VAR} references of the definition not set in the server's environment: "
                                 "a run would fail at once, naming the variable"},
    "version": INTEGER, "created_at": TIME, "updated_at": TIME}
RUN = {
    "id": INTEGER, "job": STRING, "status": {"enum": STATUSES}, "priority": INTEGER, "params": {"type": "object"},
    "trigger": {"enum": TRIGGERS}, "created_by": _nullable(STRING), "created_at": TIME, "scheduled_for": TIME,
    "started_at": _nullable(TIME), "finished_at": _nullable(TIME), "queue_seconds": _nullable(NUMBER),
    "processing_seconds": _nullable(NUMBER), "attempt": INTEGER, "max_attempts": INTEGER,
    "progress": _nullable(NUMBER), "progress_message": _nullable(STRING), "result": ANY,
    "error": _nullable(STRING), "details": _nullable({"type": "object"}), "worker": _nullable(STRING),
    "cancel_requested": BOOLEAN, "cancel_requested_at": _nullable(TIME), "cancel_note": _nullable(STRING),
    "retry_of": _nullable(INTEGER), "pipeline_id": _nullable(STRING),
    "parent_run_id": _nullable(INTEGER),
    "waiting_for": _nullable(_ref("WaitingFor"))}

EXISTING = {  # an enqueue answered by a run that was already there (lexyjobs.flow.unique)
    "existing": {"type": "boolean", "description": "true (status 200): no run was created; `run_id` is the run "
                                                   "that answers for this request: the first one with the same "
                                                   "Idempotency-Key, or the queued/running duplicate of a unique "
                                                   "job. false (status 202): a new run"},
    "message": {"type": "string", "description": "with existing: why, e.g. \"run 12 of job crawl is already "
                                                 "queued with the same site_id=4; not enqueued again\""}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]([ -~]*[!-~])?$"},
    "description": "1–200 printable ASCII characters (e.g. a UUID). The same key for the same job within "
                   "LEXYJOBS_IDEMPOTENCY_WINDOW (default 24h) answers 200 with the first run (`existing: true`) "
                   "instead of creating another; with other params it is refused (422 idempotency_key_reused)"}

QUEUE = {
    "name": STRING, "paused": BOOLEAN, "paused_at": _nullable(TIME), "paused_by": _nullable(STRING),
    "queued": {"type": "integer", "description": "queued runs, due now or later"},
    "due": {"type": "integer", "description": "queued runs due now"},
    "oldest_wait_seconds": _nullable({"type": "number", "description": "how long the longest-waiting due run has waited"}),
    "running": INTEGER,
    "finished_per_minute": {"type": "number", "description": "runs finished per minute over the last 5 minutes"},
    "jobs": {"type": "integer", "description": "job definitions whose runs go to this queue"},
    "workers": {"type": "array", "description": "live worker processes serving it, each with its thread cap "
                                                 "for it (null: none)",
                "items": _object({"name": STRING, "cap": _nullable(INTEGER)})}}

LLM_USAGE = {
    "requests": {"type": "integer", "description": "requests sent, answers from the cache included"},
    "cached": {"type": "integer", "description": "requests answered from the cache (no tokens, no cost)"},
    "prompt_tokens": INTEGER, "completion_tokens": INTEGER, "tokens": INTEGER,
    "cost": {"type": "object", "additionalProperties": NUMBER,
             "description": "amount per currency, e.g. {\"USD\": 0.42} (amounts in different currencies are not "
                            "added; empty when no price is known)"}}
DAY = {"type": "string", "format": "date"}

SCHEMAS: dict[str, Any] = {
    **job_schemas(),
    "Error": _object({"error": _object({"code": STRING, "message": STRING, "details": ANY})}),
    "Health": _object({"state": {"enum": HEALTH_STATES}, "reason": STRING,
                       "window_seconds": NUMBER, "stale": BOOLEAN,
                       "signals": {"type": "array", "items": _ref("HealthSignal")}}),
    "HealthSignal": _object({"kind": {"enum": list(SIGNAL_KINDS)}, "message": STRING, "run_id": _nullable(INTEGER),
                             "details": {"type": "object", "description": "the facts behind it, e.g. seconds, "
                                         "longest, shortest, runs_last_hour, allowed, waited_seconds, waiting_for"}},
                            extra=False),
    "Job": _object(JOB),
    "JobDetail": _object({**JOB, "runs": _object({"stats": STATUS_COUNTS, "latest_run_id": _nullable(INTEGER),
                                                  "list_url": STRING}),
                          "problems": {"type": "array", "items": _ref("LoadProblem")}}),
    "JobList": _object({"jobs": {"type": "array", "items": _ref("Job")}, "total": INTEGER,
                        "problems": {"type": "array", "items": _ref("LoadProblem")}}),
    "LoadProblem": _object({"job": _nullable(STRING), "field": _nullable(STRING), "problem": STRING,
                            "message": STRING, "source": {"enum": ["code", "file"]}, "origin": STRING,
                            "recorded_at": TIME}),
    "RunRequest": _object({"params": {"type": "object", "description": "values for the job's params (422 when "
                                                                       "they do not suit its parameter definitions)"},
                           "priority": {"type": "integer", "minimum": 0, "maximum": 10,
                                        "description": "leave it out for the job's own"},
                           "run_at": _nullable({"type": "string", "format": "date-time",
                                                "description": "ISO 8601; an offset-less time is also taken, in the "
                                                               "job's timezone; null or left out: now"})},
                          required=[]),
    "Accepted": _object({"run_id": INTEGER, "status": STRING, "status_url": STRING, **EXISTING},
                        required=["run_id", "status", "status_url", "existing"]),
    "Run": _object(RUN),
    "WaitingFor": {**_object({
        "reason": {"enum": list(WAITING_REASONS)}, "until": _nullable(TIME), "message": STRING, "queue": STRING,
        "holders": {"type": "array", "items": INTEGER}, "key": _nullable(STRING), "bucket": _nullable(STRING),
        "limit": _nullable(INTEGER), "idle_threads": _nullable(INTEGER)}),
        "description": "why a queued run has not started (null on other runs): due later (delay or retry backoff), "
                       "queue paused, no live worker for its queue, rate limit (until its next slot), job limit or "
                       "concurrency key (holders: the running runs), or worker (ready)"},
    "RunDetail": _object({**RUN, "traceback": _nullable(STRING), "log_size": INTEGER,
                          "retried_by": {"type": "array", "items": INTEGER}, "log_url": STRING,
                          "events": {"type": "array", "items": _object({
                              "at": TIME, "from": _nullable(STRING), "to": STRING, "attempt": INTEGER,
                              "note": _nullable(STRING)})}}),
    "Pagination": _object({"page": INTEGER, "limit": INTEGER, "total": INTEGER, "pages": INTEGER}),
    "RunList": _object({"runs": {"type": "array", "items": _ref("Run")}, "pagination": _ref("Pagination"),
                        "stats": STATUS_COUNTS}),
    "BackfillRequest": _object({
        "start": {**TIME, "description": "first time covered (an offset-less time is UTC)"},
        "end": {**TIME, "description": "last time covered, not in the future"},
        "per": {"enum": ["fire", "day"], "description": "one run per fire time of the schedule (default), or per "
                                                        "day (midnight in the job's timezone)"},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 50,
                        "description": "most of its runs at once (default 1: one after the other, oldest first)"},
        "include_succeeded": {**BOOLEAN, "description": "also run times that already have a succeeded run"}},
        required=["start", "end"]),
    "BackfillStarted": _object({"backfill_id": INTEGER, "run_ids": {"type": "array", "items": INTEGER},
                                "skipped": {"type": "array", "items": TIME}, "status_url": STRING}),
    "Backfill": _object({"id": INTEGER, "job": STRING, "start": TIME, "end": TIME, "per": {"enum": ["fire", "day"]},
                         "concurrency": INTEGER, "total": INTEGER, "skipped": INTEGER, "created_by": _nullable(STRING),
                         "created_at": TIME, "canceled_at": _nullable(TIME),
                         "counts": {"type": "object", "additionalProperties": INTEGER,
                                    "description": "its runs by status"},
                         "done": INTEGER, "finished": BOOLEAN,
                         "progress": {**STRING, "description": "e.g. \"5 of 7 days done\""}}),
    "BackfillCancel": _object({"backfill_id": INTEGER, "canceled": INTEGER, "cancel_requested": INTEGER}),
    "CancelResult": _object({"run_id": INTEGER, "status": STRING, "outcome": {"enum": ["canceled", "cancel requested"]},
                             "message": STRING, "status_url": STRING}),
    "RetryResult": _object({"run_id": INTEGER, "status": STRING, "status_url": STRING, "retry_of": INTEGER,
                            **EXISTING}, required=["run_id", "status", "status_url", "retry_of", "existing"]),
    "Log": _object({"run_id": INTEGER, "text": STRING, "next_offset": INTEGER, "trimmed": INTEGER, "finished": BOOLEAN}),
    "RunItems": _object({"run_id": INTEGER, "items": {"type": "array", "items": _object({
        "idx": INTEGER, "status": {"enum": list(item_reads.STATUSES)},
        "result": {**ANY, "description": "the item's result (ok; null when the job's save hook took it)"},
        "error": _nullable(STRING), "attempt": INTEGER, "finished_at": TIME})},
        "next_after": _nullable({"type": "integer", "description": "pass as `after` for the next page; null: "
                                                                   "this was the last"})}),
    "Stats": _object({
        "runs": STATUS_COUNTS,
        "queue": _object({"queued_due": INTEGER, "oldest_queued_seconds": _nullable(NUMBER), "running": INTEGER,
                          "last_24h": _object({"finished": INTEGER, "succeeded": INTEGER, "failed": INTEGER,
                                               "failure_rate": _nullable(NUMBER),
                                               "avg_queue_seconds": _nullable(NUMBER),
                                               "avg_processing_seconds": _nullable(NUMBER)})}),
        "jobs": _object({"total": INTEGER, "paused": INTEGER, "scheduled": INTEGER})}),
    "HealthReport": _object({
        "status": {"enum": ["ok", "unavailable"]}, "checks": {"type": "object"},
        "counts": _object({"ok": INTEGER, "warning": INTEGER, "error": INTEGER, "unknown": INTEGER}),
        "jobs": {"type": "array", "items": _object({"name": STRING, "title": STRING, "category": STRING,
                                                    "state": {"enum": HEALTH_STATES}, "reason": STRING,
                                                    "signals": {"type": "array", "items": _ref("HealthSignal")}})}}),
    "AuditList": _object({"entries": {"type": "array", "items": _object({
        "id": INTEGER, "at": TIME, "actor": STRING, "action": STRING, "target": _nullable(STRING),
        "client": _nullable(STRING), "details": _nullable({"type": "object"})})}, "pagination": _ref("Pagination")}),
    "AlertList": _object({"alerts": {"type": "array", "items": _object({
        "id": INTEGER, "job": STRING, "event": {"enum": list(ALERT_EVENTS)}, "run_id": _nullable(INTEGER),
        "message": STRING, "status": {"enum": list(ALERT_STATUSES)}, "deliveries": {"type": "object"},
        "created_at": TIME, "sent_at": _nullable(TIME)})}, "pagination": _ref("Pagination")}),
    "Me": _object({"name": STRING, "role": {"enum": ["viewer", "operator", "admin"]}, "kind": {"enum": ["user", "token", "cli"]}}),
    "WorkerList": _object({"workers": {"type": "array", "items": _object({
        "name": STRING, "host": STRING, "pid": INTEGER, "version": STRING, "threads": INTEGER,
        "queues": _nullable({"type": "array", "items": STRING, "description": "the queues it serves, e.g. "
                             "[\"default\", \"ai:2\"] (name:thread cap); null: every queue"}), "started_at": TIME,
        "heartbeat_at": TIME, "runs": {"type": "array", "items": _object({
            "id": INTEGER, "job": STRING, "started_at": _nullable(TIME), "progress": _nullable(NUMBER)})}})},
        "total": INTEGER}),
    "Queue": _object(QUEUE),
    "QueueList": _object({"queues": {"type": "array", "items": _ref("Queue")}, "total": INTEGER}),
    "QueueResult": _object({"queue": _ref("Queue"), "changed": BOOLEAN}),
    "LlmUsage": _object({
        "days": INTEGER, "job": _nullable(STRING), "first_day": DAY, "last_day": DAY,
        "rows": {"type": "array", "description": "every UTC day of the window, oldest first, days without "
                                                 "usage as zeros", "items": _object({"day": DAY, **LLM_USAGE})},
        "totals": _object(LLM_USAGE)}),
    "CategoryResult": _object({"category": STRING, "paused": BOOLEAN,
                               "changed": {"type": "array", "items": STRING,
                                           "description": "the jobs whose state this changed"}}),
}

ERRORS = {
    "400": "malformed request (bad JSON, bad query argument)",
    "401": "no API token, or an unknown or revoked one",
    "403": "the token's role does not allow this",
    "404": "no such job, run, queue or category",
    "409": "conflicts with the current state (finished run, read-only job, name taken…)",
    "413": "the body is larger than LEXYJOBS_MAX_BODY",
    "422": "a field has the wrong type or value (the message names it)",
}


def _op(summary: str, ok: str, schema: str | None, *, errors: str = "400 401 404", body: str | None = None,
        params: list[dict[str, Any]] | None = None, role: str = "viewer", required_body: bool = True) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "success"}}
    if schema is not None:
        responses[ok]["content"] = {"application/json": {"schema": _ref(schema)}}
    for code in errors.split():
        responses[code] = {"description": ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}
    operation: dict[str, Any] = {"summary": summary, "description": f"Role: {role} or higher.", "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": required_body,
                                    "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        operation["parameters"] = params
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _choices(name: str, values: list[str], description: str) -> dict[str, Any]:
    """A comma-separated list of ``values`` (``?status=queued,failed``)."""
    return {**_query(name, {"type": "array", "items": {"enum": values}, "minItems": 1, "uniqueItems": True}, description),
            "style": "form", "explode": False}


# A text argument: not empty (leave it out instead), no NUL, at most MAX_TEXT characters.
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": "^[^\\u0000]*$"}


NAME = {"name": "name", "in": "path", "required": True, "schema": JOB_NAME}
QUEUE_PARAM = {"name": "name", "in": "path", "required": True, "schema": QUEUE_NAME}
CATEGORY = {"name": "category", "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000/]+$"}}
RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
BACKFILL_ID = {"name": "backfill_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
PAGE = [_query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "page number, from 1"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "items per page (default 50, max 200)")]
RUN_FILTERS = [
    _choices("status", STATUSES, "comma-separated statuses"),
    _query("job", TEXT, "job name"), _query("category", TEXT, "job category"),
    _choices("trigger", TRIGGERS, "comma-separated, what created the run"),
    _query("since", TIME, "created at or after"), _query("until", TIME, "created before"),
    _query("q", TEXT, "text in params or error"),
]
JOB_FILTERS = [_query("category", TEXT, "job category"), _query("kind", {"enum": list(KIND_NAMES)}, "job kind"),
               _query("source", {"enum": list(SOURCES)}, "where the job is defined"),
               _query("paused", BOOLEAN, "only paused / active jobs"),
               _query("archived", BOOLEAN, "include jobs gone from their code/file source")]
WRITE = "400 401 403 404 409 413 422"


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    from lexyjobs import __version__

    job, run = [NAME], [RUN_ID]
    paths = {
        "/api/jobs": {
            "get": _op("List jobs with schedule, next fire and health", "200", "JobList", params=JOB_FILTERS,
                       errors="400 401"),
            "post": _op("Create a job (stored in the database)", "201", "Job", body="NewJob", role="admin",
                        errors="400 401 403 409 413 422"),
        },
        "/api/jobs/{name}": {
            "get": _op("A job with its run stats", "200", "JobDetail", params=job),
            "put": _op("Replace a database job's definition", "200", "Job", body="JobDefinition", params=job,
                       role="admin", errors=WRITE),
            "patch": _op("Change some fields of a database job (null removes a field)", "200", "Job",
                         body="JobChanges", params=job, role="admin", errors=WRITE),
            "delete": _op("Delete a database job and its runs", "204", None, params=job, role="admin",
                          errors="401 403 404 409"),
        },
        "/api/jobs/{name}/run": {"post": _op("Run now (or at run_at)", "202", "Accepted", body="RunRequest",
                                             params=job + [IDEMPOTENCY_KEY], role="operator", errors=WRITE,
                                             required_body=False)},
        "/api/jobs/{name}/backfill": {"post": _op(
            "Backfill a past range: one run per fire time (or day), oldest first, as one group", "202",
            "BackfillStarted", body="BackfillRequest", params=job, role="operator", errors=WRITE)},
        "/api/backfills/{backfill_id}": {"get": _op("A backfill and its progress", "200", "Backfill",
                                                    params=[BACKFILL_ID])},
        "/api/backfills/{backfill_id}/cancel": {"post": _op("Cancel a backfill's queued and running runs", "200",
                                                            "BackfillCancel", params=[BACKFILL_ID], role="operator",
                                                            errors="400 401 403 404 413 422")},
        "/api/jobs/{name}/pause": {"post": _op("Pause the schedule", "200", "Job", params=job, role="operator",
                                               errors="401 403 404")},
        "/api/jobs/{name}/resume": {"post": _op("Resume the schedule", "200", "Job", params=job, role="operator",
                                                errors="401 403 404")},
        "/api/runs": {"get": _op("Search runs, with pagination and status counts", "200", "RunList",
                                 params=RUN_FILTERS + PAGE, errors="400 401")},
        "/api/runs/{run_id}": {"get": _op("A run with events, queue and processing time", "200", "RunDetail",
                                          params=run)},
        "/api/runs/{run_id}/cancel": {"post": _op("Cancel a queued or running run", "200", "CancelResult",
                                                  params=run, role="operator", errors="400 401 403 404 409 413 422")},
        "/api/runs/{run_id}/retry": {"post": _op("Retry a finished run (a new run)", "202", "RetryResult",
                                                 params=run, role="operator", errors="400 401 403 404 409 413 422")},
        "/api/runs/{run_id}/log": {"get": _op("The run's log from character offset `after`", "200", "Log",
                                              params=run + [_query("after", {"type": "integer", "minimum": 0,
                                                                             "maximum": MAX_LOG_OFFSET},
                                                                   "offset returned as next_offset")])},
        "/api/runs/{run_id}/items": {"get": _op(
            "A batch run's items (openai jobs over items) in index order, each with its outcome", "200", "RunItems",
            params=run + [_query("status", {"enum": list(item_reads.STATUSES)}, "only the items that succeeded, or "
                                 "only those that failed"),
                          _query("after", {"type": "integer", "minimum": 0, "maximum": item_reads.MAX_INDEX},
                                 "items with a higher index (next_after of the previous page); left out: from the first"),
                          _query("limit", {"type": "integer", "minimum": 1, "maximum": item_reads.MAX_PAGE},
                                 f"items per page (default {item_reads.DEFAULT_PAGE}, max {item_reads.MAX_PAGE})")])},
        "/api/stats": {"get": _op("Run counts, queue depth, last 24 h outcomes and times", "200", "Stats",
                                  errors="401")},
        "/api/health": {"get": _op("Health of every job and of the process", "200", "HealthReport", errors="401")},
        "/api/workers": {"get": _op("Live worker processes and their current runs", "200", "WorkerList",
                                    errors="401")},
        "/api/audit": {"get": _op("The audit log, newest first", "200", "AuditList", role="admin",
                                  params=[_query("actor", TEXT, "who"), _query("action", TEXT, "e.g. run.create"),
                                          _query("target", TEXT, "job name, run id, user or token"),
                                          _query("since", TIME, "at or after"), _query("until", TIME, "before")] + PAGE,
                                  errors="400 401 403")},
        "/api/alerts": {"get": _op("Alerts sent (or tried), newest first, with each target's answer", "200",
                                   "AlertList", params=[_query("job", TEXT, "job name"),
                                                        _choices("event", list(ALERT_EVENTS), "comma-separated events"),
                                                        _choices("status", list(ALERT_STATUSES), "comma-separated delivery statuses")]
                                   + PAGE, errors="400 401")},
        "/api/queues": {"get": _op("Named queues: paused, depth, oldest wait, running, throughput, workers", "200",
                                   "QueueList", errors="401")},
        "/api/queues/{name}/pause": {"post": _op("Pause a queue: no process claims its runs (schedules still "
                                                 "fire; the runs wait)", "200", "QueueResult", params=[QUEUE_PARAM],
                                                 role="operator", errors="401 403 404")},
        "/api/queues/{name}/resume": {"post": _op("Resume a paused queue", "200", "QueueResult", params=[QUEUE_PARAM],
                                                  role="operator", errors="401 403 404")},
        "/api/categories/{category}/pause": {"post": _op("Pause the schedules of every job of a category", "200",
                                                         "CategoryResult", params=[CATEGORY], role="operator",
                                                         errors="401 403 404")},
        "/api/categories/{category}/resume": {"post": _op("Resume every job of a category", "200", "CategoryResult",
                                                          params=[CATEGORY], role="operator", errors="401 403 404")},
        "/api/llm/usage": {"get": _op("Requests, tokens and cost of openai jobs per UTC day, of every job or one",
                                      "200", "LlmUsage",
                                      params=[_query("days", {"type": "integer", "minimum": 1, "maximum": 90},
                                                     "the days ending today (UTC) (default 14)"),
                                              _query("job", TEXT, "one job's usage (404 when no such job)")])},
        "/api/me": {"get": _op("Who the token belongs to", "200", "Me", errors="401")},
        "/api/openapi.json": {"get": _op("This document", "200", None, errors="401")},
    }
    paths["/api/jobs/{name}/run"]["post"]["responses"]["200"] = {
        "description": "no new run: an existing one answers (`existing: true`, `message` says why): the same "
                       "Idempotency-Key was used for this job within LEXYJOBS_IDEMPOTENCY_WINDOW, or the job is "
                       "`unique` and a duplicate is queued (or running)",
        "content": {"application/json": {"schema": _ref("Accepted")}}}
    paths["/api/runs/{run_id}/retry"]["post"]["responses"]["200"] = {
        "description": "no new run: the job is `unique` and a duplicate is queued (or running); `run_id` is "
                       "that run (`existing: true`, `message` says why)",
        "content": {"application/json": {"schema": _ref("RetryResult")}}}
    paths["/api/runs/{run_id}/cancel"]["post"]["responses"]["202"] = {
        "description": "a running run was asked to stop (a run event records who asked): its worker stops it "
                       "and it ends canceled, or, if it finished first, it keeps its outcome and its "
                       "cancel_note says \"cancel requested at T; it finished first\"", "content": {"application/json": {"schema": _ref("CancelResult")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lexyjobs API", "version": __version__,
                 "description": "Send `Authorization: Bearer <token>`. Errors: `{\"error\": {code, message, details}}`."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
