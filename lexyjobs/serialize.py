"""Jobs, runs and audit entries as JSON-able data, for the API and the CLI. Secrets stay masked
(``lexyjobs.masking``): definitions show ``${ENV}`` references, never their values."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from lexyjobs import cancels
from lexyjobs.cron import describe, parse_timezone, upcoming_fire
from lexyjobs.definitions import JobDefinition
from lexyjobs.health import Health
from lexyjobs.health_signals import Signal
from lexyjobs.kinds import unset_env
from lexyjobs.masking import mask_config
from lexyjobs.models import AuditEntry, Job, Run, RunEvent
from lexyjobs.params import schema_to_json


def schedule_summary(definition: JobDefinition | None, job: Job, now: datetime) -> tuple[str, datetime | None]:
    """The schedule in words and the next fire (in the job's timezone; None when paused or none)."""
    if definition is None:
        return job.schedule or "manual", None
    zone = parse_timezone(definition.timezone)
    if definition.run_at is not None:
        at = definition.run_at.astimezone(zone)
        return f"Once at {at:%Y-%m-%d %H:%M} ({definition.timezone})", at if job.enabled and at > now else None
    if definition.schedule is None:
        return "manual", None
    upcoming = upcoming_fire(definition.schedule, zone, now) if job.enabled else None
    return describe(definition.schedule, definition.timezone), upcoming


def shown_spec(job: Job) -> dict[str, Any]:
    """The job's stored definition with ``enabled`` as it is now: the ``jobs.enabled`` column is
    the one truth (a pause made at run time changes it, not a file's definition), so the
    configuration, the edit form and the API never say ``enabled: true`` of a paused job."""
    if "enabled" in job.spec or not job.enabled:
        return {**job.spec, "enabled": job.enabled}
    return dict(job.spec)


def job_dict(job: Job, definition: JobDefinition | None, health: Health | None, now: datetime) -> dict[str, Any]:
    """A job with its masked definition, schedule in words, next fire and health."""
    words, upcoming = schedule_summary(definition, job, now)
    return {
        "name": job.name, "title": job.title, "category": job.category, "kind": job.kind, "source": job.source,
        "editable": job.source == "db" or job.archived, "enabled": job.enabled, "archived": job.archived,
        "schedule": job.schedule, "schedule_description": words,
        "timezone": definition.timezone if definition else None,
        "next_fire": iso(upcoming), "description": definition.description if definition else "",
        "depends_on": list(definition.depends_on) if definition else [],
        "params": schema_to_json(definition.params) if definition else [],
        "health": health_dict(health) if health else None,
        "definition": mask_config(shown_spec(job)), "version": job.version,
        "unset_env": unset_env(definition.kind, definition.config) if definition else [],
        "created_at": iso(job.created_at), "updated_at": iso(job.updated_at),
    }


def health_dict(health: Health) -> dict[str, Any]:
    """A job's health: state, reason, stale window, whether it is stale and its signals."""
    return {"state": health.state, "reason": health.reason, "window_seconds": health.window_seconds,
            "stale": health.stale, "signals": [signal_dict(s) for s in health.signals]}


def signal_dict(signal: Signal) -> dict[str, Any]:
    """One health signal (lexyjobs.health_signals) without the alerter's episode bookkeeping."""
    return {"kind": signal.kind, "message": signal.message, "run_id": signal.run_id, "details": signal.details}


def run_dict(run: Run, waiting_for: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run with its derived queue time (due → started) and processing time (started → finished),
    and for a queued run why it waits (``lexyjobs.flow.waiting``; None when not computed)."""
    queue = seconds_between(run.scheduled_for, run.started_at) if run.started_at else None
    processing = seconds_between(run.started_at, run.finished_at) if run.started_at and run.finished_at else None
    return {"id": run.id, "job": run.job_name, "status": run.status, "priority": run.priority, "params": run.params,
            "trigger": run.trigger, "created_by": run.created_by, "created_at": iso(run.created_at),
            "scheduled_for": iso(run.scheduled_for), "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at), "queue_seconds": queue, "processing_seconds": processing,
            "attempt": run.attempt, "max_attempts": run.max_attempts, "progress": run.progress,
            "progress_message": run.progress_message, "result": run.result, "error": run.error,
            "details": run.details, "worker": run.worker, "cancel_requested": run.cancel_requested,
            "cancel_requested_at": iso(run.cancel_requested_at), "cancel_note": cancels.note(run),
            "retry_of": run.retry_of, "pipeline_id": run.pipeline_id, "parent_run_id": run.parent_run_id,
            "waiting_for": waiting_for}


def event_dict(event: RunEvent) -> dict[str, Any]:
    return {"at": iso(event.at), "from": event.from_status, "to": event.to_status, "attempt": event.attempt,
            "note": event.note}


def audit_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": iso(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "client": entry.client, "details": entry.details}


def seconds_between(start: datetime, end: datetime) -> float:
    return round(max(0.0, (end - start).total_seconds()), 3)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
