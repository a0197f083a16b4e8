"""``/api/jobs``: list, create, read, update, delete, run now, pause and resume."""
from __future__ import annotations

from typing import Any

from flask import Response, jsonify, url_for

from lexyjobs import actions, load_problems, queries, store
from lexyjobs.api import bp
from lexyjobs.api.inputs import InvalidInput, idempotency_header, json_object, query_bool, \
    query_choice, query_text
from lexyjobs.db import utcnow
from lexyjobs.definitions import SOURCES, InvalidDefinition, definition_from_job, parse_run_at
from lexyjobs.errors import JobNotFound
from lexyjobs.guard import actor
from lexyjobs.health import jobs_health
from lexyjobs.kinds import KIND_NAMES
from lexyjobs.queries import RunFilter
from lexyjobs.runs import Enqueued
from lexyjobs.runtime import current
from lexyjobs.serialize import job_dict

RUN_FIELDS = ("params", "priority", "run_at")


@bp.get("/jobs")
def list_jobs() -> Response:
    category, kind, source = query_text("category"), query_choice("kind", KIND_NAMES), query_choice("source", SOURCES)
    paused, archived = query_bool("paused"), query_bool("archived") or False
    db, now = current().db, utcnow()
    with db.read() as session:
        rows = [j for j in store.list_jobs(session, include_archived=archived)
                if (category is None or j.category == category) and (kind is None or j.kind == kind)
                and (source is None or j.source == source) and (paused is None or j.enabled != paused)]
        problems = [load_problems.problem_dict(p) for p in load_problems.list_problems(session)]
    healths = jobs_health(db, now, [j.name for j in rows], stale_after=current().settings.stale_after)
    jobs = [job_dict(j, _definition(j), healths.get(j.name), now) for j in rows]
    return jsonify(jobs=jobs, total=len(jobs), problems=problems)


@bp.post("/jobs")
def create_job() -> tuple[Response, int, dict[str, str]]:
    body = json_object()
    name = body.pop("name", None)
    if not isinstance(name, str):
        raise InvalidInput("name", "is required (text)")
    actions.create_job(current().db, actor(), name, body)
    return _job_response(name), 201, {"Location": url_for("lexyjobs.api.get_job", name=name)}


@bp.get("/jobs/<job_name:name>")
def get_job(name: str) -> Response:
    response = _job_response(name)
    with current().db.read() as session:
        counts = queries.status_counts(session, RunFilter(job=name))
        latest = queries.search_runs(session, RunFilter(job=name), limit=1)
        problems = [load_problems.problem_dict(p) for p in load_problems.list_problems(session, name)]
    data = response.get_json()
    data["runs"] = {"stats": counts, "latest_run_id": latest[0].id if latest else None,
                    "list_url": url_for("lexyjobs.api.list_runs", job=name)}
    data["problems"] = problems
    return jsonify(data)


@bp.put("/jobs/<job_name:name>")
def replace_job(name: str) -> Response:
    body = json_object()
    if body.pop("name", name) != name:
        raise InvalidInput("name", "cannot be changed; create a new job instead")
    actions.update_job(current().db, actor(), name, body)
    return _job_response(name)


@bp.patch("/jobs/<job_name:name>")
def patch_job(name: str) -> Response:
    """Merge the given fields into the definition; a field set to null is removed."""
    body = json_object()
    if body.pop("name", name) != name:
        raise InvalidInput("name", "cannot be changed; create a new job instead")
    with current().db.read() as session:
        row = store.get_job(session, name)
    if row is None:
        raise JobNotFound(name)
    merged = {**row.spec, **body}
    actions.update_job(current().db, actor(), name, {k: v for k, v in merged.items() if v is not None})
    return _job_response(name)


@bp.delete("/jobs/<job_name:name>")
def delete_job(name: str) -> tuple[str, int]:
    actions.delete_job(current().db, actor(), name)
    return "", 204


@bp.post("/jobs/<job_name:name>/run")
def run_job(name: str) -> tuple[Response, int, dict[str, str]]:
    body = json_object(RUN_FIELDS, optional=True)
    lexy = current()
    definition = lexy.catalog.get(name)
    params = body.get("params")
    if "params" in body and not isinstance(params, dict):
        raise InvalidInput("params", "must be an object of parameter values (leave it out for none)")
    priority = body.get("priority")
    if "priority" in body and (not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 10):
        raise InvalidInput("priority", "must be a whole number from 0 to 10 (leave it out for the job's own)")
    scheduled_for = None
    if body.get("run_at") is not None:
        try:
            scheduled_for = parse_run_at(body["run_at"], definition.timezone)
        except ValueError as exc:
            raise InvalidInput("run_at", str(exc)) from None
    key = idempotency_header(lexy.settings.idempotency_window)
    done = actions.run_job(lexy.db, actor(), name, params, priority=priority, scheduled_for=scheduled_for, key=key)
    return enqueued_response(done)


def enqueued_response(done: Enqueued, **extra: object) -> tuple[Response, int, dict[str, str]]:
    """202 with the new run, or 200 with the run that answered instead (``existing: true`` and
    the ``message`` saying why), as the OpenAPI document's ``Accepted`` says."""
    status_url = url_for("lexyjobs.api.get_run", run_id=done.run_id)
    if done.existing is None:
        body = jsonify(run_id=done.run_id, status="queued", status_url=status_url, existing=False, **extra)
        return body, 202, {"Location": status_url}
    found = done.existing
    return (jsonify(run_id=done.run_id, status=found.status, status_url=status_url, existing=True,
                    message=found.message, **extra), 200, {"Location": status_url})


@bp.post("/jobs/<job_name:name>/pause")
def pause_job(name: str) -> Response:
    actions.set_paused(current().db, actor(), name, True)
    return _job_response(name)


@bp.post("/jobs/<job_name:name>/resume")
def resume_job(name: str) -> Response:
    actions.set_paused(current().db, actor(), name, False)
    return _job_response(name)


def _job_response(name: str) -> Response:
    db, now = current().db, utcnow()
    with db.read() as session:
        row = store.get_job(session, name)
    if row is None:
        raise JobNotFound(name)
    health = jobs_health(db, now, [name], stale_after=current().settings.stale_after).get(name)
    return jsonify(job_dict(row, _definition(row), health, now))


def _definition(row: Any) -> Any:
    try:
        return definition_from_job(row)
    except InvalidDefinition:
        return None
