"""Adding, changing, removing and testing the panel's alert targets (admins), each with an audit
entry. ``parse`` checks a submitted form and says what is wrong in plain words (``InvalidTarget``,
naming the field); a URL or signing secret left empty on edit keeps the stored one."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from lexyjobs.actions import Actor
from lexyjobs.alerts.notifiers import Answer, Notice, answers
from lexyjobs.alerts.targets import KINDS, Target, get, shown_url
from lexyjobs.config import ALERT_EVENTS, Settings, _is_email, _is_http_url, secret_key
from lexyjobs.db import Database, utcnow
from lexyjobs.errors import Conflict, LexyjobsError, NotFound
from lexyjobs.models import AlertTargetRow, Job
from lexyjobs.sealing import seal

RESERVED = frozenset(KINDS)   # the environment's targets are recorded under these names
MAX_NAME, MAX_URL, MAX_SECRET, MAX_DESTINATION = 100, 2000, 500, 2000
_LIST = re.compile(r"[,\s]+")


class InvalidTarget(LexyjobsError):
    """The alert target form is invalid (``details["field"]`` names the field)."""

    status_code = 422
    code = "invalid_alert_target"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, details={"field": field})
        self.field = field


@dataclass(frozen=True)
class TargetInput:
    """A checked form: what is stored (``url``/``signing_secret`` None on edit: keep the stored one)."""

    kind: str
    name: str
    destination: str
    events: list[str]
    after_failures: int
    jobs: list[str]
    categories: list[str]
    enabled: bool
    url: str | None
    signing_secret: str | None
    clear_secret: bool


def split_list(text: str) -> list[str]:
    """``a, b c`` → ``["a", "b", "c"]`` (commas or spaces), without repeats."""
    return list(dict.fromkeys(item for item in _LIST.split(text.strip()) if item))


def parse(form: Mapping[str, str], events: list[str], db: Database, settings: Settings, *,
          existing: Target | None = None) -> TargetInput:
    """Check a submitted form (``events``: the ticked boxes) against the jobs and settings."""
    kind = existing.kind if existing else form.get("kind", "")
    if kind not in KINDS:
        raise InvalidTarget("kind", "choose webhook, Slack or e-mail")
    name = form.get("name", "").strip()
    if not name:
        raise InvalidTarget("name", "give the target a name, e.g. ops-slack")
    if len(name) > MAX_NAME:
        raise InvalidTarget("name", f"the name is longer than {MAX_NAME} characters")
    if name.lower() in RESERVED:
        raise InvalidTarget("name", f"'{name}' names an environment target in the alerts' deliveries; choose another name")
    url, destination = _url(kind, form.get("url", "").strip(), existing)
    if kind == "email":
        destination = _addresses(form.get("email", ""), settings)
    signing_secret = form.get("signing_secret", "")
    if len(signing_secret) > MAX_SECRET:
        raise InvalidTarget("signing_secret", f"the signing secret is longer than {MAX_SECRET} characters")
    if not events:
        raise InvalidTarget("events", "tick at least one event")
    unknown = [e for e in events if e not in ALERT_EVENTS]
    if unknown:
        raise InvalidTarget("events", f"'{unknown[0]}' is not an event; events are {', '.join(ALERT_EVENTS)}")
    return TargetInput(kind, name, destination, [e for e in ALERT_EVENTS if e in events],
                       _after_failures(form.get("after_failures", "1")), *_scope(form, db),
                       enabled=form.get("enabled") in ("on", "true", "1", "yes"), url=url,
                       signing_secret=signing_secret if kind == "webhook" and signing_secret else None,
                       clear_secret=kind == "webhook" and form.get("clear_secret") in ("on", "true", "1", "yes"))


def _url(kind: str, url: str, existing: Target | None) -> tuple[str | None, str]:
    if kind == "email":
        return None, ""
    if not url:
        if existing is None:
            raise InvalidTarget("url", "enter the URL alerts are POSTed to")
        if existing.problem:
            raise InvalidTarget("url", "the stored URL cannot be read (the secret key changed): enter it again")
        return None, existing.shown
    if len(url) > MAX_URL:
        raise InvalidTarget("url", f"the URL is longer than {MAX_URL} characters")
    if not _is_http_url(url) or any(ch.isspace() for ch in url):
        raise InvalidTarget("url", "enter an http:// or https:// URL, e.g. https://hooks.example.com/alerts")
    return url, shown_url(url)


def _addresses(text: str, settings: Settings) -> str:
    addresses = split_list(text)
    if not addresses:
        raise InvalidTarget("email", "enter one or more e-mail addresses")
    for address in addresses:
        if not _is_email(address) or "<" in address:
            raise InvalidTarget("email", f"'{address}' is not an e-mail address (name@example.com)")
    if not settings.smtp_host:
        raise InvalidTarget("email", "e-mail needs an SMTP server: set LEXYJOBS_SMTP_HOST (and the other "
                            "LEXYJOBS_SMTP_* settings it needs) and restart, then add the target")
    shown = ", ".join(addresses)
    if len(shown) > MAX_DESTINATION:
        raise InvalidTarget("email", f"the addresses are longer than {MAX_DESTINATION} characters")
    return shown


def _after_failures(text: str) -> int:
    try:
        after = int(text.strip() or "1")
    except ValueError:
        raise InvalidTarget("after_failures", "failures in a row must be a whole number from 1 to 1000") from None
    if not 1 <= after <= 1000:
        raise InvalidTarget("after_failures", "failures in a row must be a whole number from 1 to 1000")
    return after


def _scope(form: Mapping[str, str], db: Database) -> tuple[list[str], list[str]]:
    """The jobs and categories named in the form, each checked against the (not archived) jobs."""
    jobs, categories = split_list(form.get("jobs", "")), [c.strip() for c in form.get("categories", "").split(",") if c.strip()]
    with db.read() as session:
        known = session.execute(select(Job.name, Job.category).where(Job.archived.is_(False))).all()
    names, known_categories = {row.name for row in known}, {row.category for row in known}
    for job in jobs:
        if job not in names:
            raise InvalidTarget("jobs", f"there is no job named '{job}'")
    for category in categories:
        if category not in known_categories:
            raise InvalidTarget("categories", f"no job is in a category named '{category}'")
    return jobs, list(dict.fromkeys(categories))


# ---------------------------------------------------------------- store (admins, audited)


def add(db: Database, actor: Actor, target: TargetInput, settings: Settings) -> int:
    actor.require("admin")
    now, who = utcnow(), actor.identity.actor
    row = AlertTargetRow(kind=target.kind, name=target.name, created_at=now, created_by=who)
    _fill(row, target, None, settings, now=now, who=who)
    try:
        with db.write() as session:
            session.add(row)
            session.flush()
            target_id = row.id
    except IntegrityError:
        raise Conflict(f"there is already an alert target named '{target.name}'", details={"field": "name"}) from None
    actor.record("alert_target.add", target.name, _audit(target), db=db)
    return target_id


def update(db: Database, actor: Actor, existing: Target, target: TargetInput, settings: Settings) -> None:
    actor.require("admin")
    now, who = utcnow(), actor.identity.actor
    try:
        with db.write() as session:
            row = session.get(AlertTargetRow, existing.id)
            if row is None:
                raise NotFound(f"no alert target with id {existing.id}")
            _fill(row, target, existing, settings, now=now, who=who)
    except IntegrityError:
        raise Conflict(f"there is already an alert target named '{target.name}'", details={"field": "name"}) from None
    changed = {"renamed_from": existing.name} if existing.name != target.name else {}
    actor.record("alert_target.edit", target.name, {**_audit(target), **changed}, db=db)


def remove(db: Database, actor: Actor, target: Target) -> None:
    actor.require("admin")
    with db.write() as session:
        session.execute(delete(AlertTargetRow).where(AlertTargetRow.id == target.id))
    actor.record("alert_target.remove", target.name, {"kind": target.kind}, db=db)


def send_test(db: Database, actor: Actor, target: Target, settings: Settings) -> Answer:
    """Send a test alert to ``target`` now (nothing is recorded in the alerts); what it answered."""
    actor.require("admin")
    if target.problem:
        answer = Answer(False, target.problem)
    else:
        notice = Notice(event="failed", job="lexyjobs-test", title="lexyjobs", at=utcnow(), details={"test": True},
                        text=f"lexyjobs: this is a test alert to '{target.name}', sent from Settings by "
                             f"{actor.identity.actor}; nothing failed.")
        [answer] = answers(notice, target.as_rule(), settings).values()
    actor.record("alert_target.test", target.name, {"kind": target.kind, "ok": answer.ok, "answer": answer.text},
                 db=db)
    return answer


def lookup(db: Database, settings: Settings, target_id: int) -> Target:
    found = get(db, settings, target_id)
    if found is None:
        raise NotFound(f"no alert target with id {target_id}; it may have been removed")
    return found


def _fill(row: AlertTargetRow, target: TargetInput, existing: Target | None, settings: Settings, *,
          now: datetime, who: str) -> None:
    url = target.url or (existing.url if existing else None)
    signing = None if target.clear_secret else target.signing_secret or (existing.signing_secret if existing else None)
    secrets = {key: value for key, value in (("url", url), ("signing_secret", signing)) if value}
    row.name, row.destination = target.name, target.destination
    row.secret = seal(json.dumps(secrets), secret_key(settings)) if secrets else None
    row.events, row.after_failures = target.events, target.after_failures
    row.jobs, row.categories, row.enabled = target.jobs, target.categories, target.enabled
    row.updated_at, row.updated_by = now, who


def _audit(target: TargetInput) -> dict[str, object]:
    """What the audit log keeps of a change: never the URL or the secret."""
    return {"kind": target.kind, "destination": target.destination, "events": target.events,
            "after_failures": target.after_failures, "jobs": target.jobs, "categories": target.categories,
            "enabled": target.enabled, "url_changed": target.url is not None,
            "signing_secret_changed": target.signing_secret is not None or target.clear_secret}
