"""Alert targets: those of the environment (``LEXYJOBS_ALERT_*``: read-only, source
"environment") and those admins add in Settings (the ``alert_targets`` table: source "panel").

A panel target has its own events, failure threshold and jobs (by name or category; none: every
job); a job whose ``alerts`` is ``false`` is silent for every target. The alerter reads the panel
targets from the database on every check, so a target added in one process is used by all at
the next check. URLs and signing secrets are stored sealed (lexyjobs.sealing) and never shown:
the panel shows a URL as its scheme and host followed by "…". Adding, changing, removing and
testing are admin actions, each with an audit entry (lexyjobs.alerts.target_forms)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from lexyjobs.alerts.rules import AlertRule
from lexyjobs.config import ENV_VARS, Settings, secret_key
from lexyjobs.db import Database
from lexyjobs.models import AlertTargetRow
from lexyjobs.sealing import Unreadable, open_sealed

KINDS = ("webhook", "slack", "email")
KIND_LABELS = {"webhook": "Webhook", "slack": "Slack", "email": "E-mail"}
UNREADABLE = ("its stored URL or secret cannot be read: the secret key (LEXYJOBS_SECRET_KEY) changed since it "
              "was saved; edit the target and enter them again")


@dataclass(frozen=True)
class Target:
    """One alert target, ready to send (``url`` and ``signing_secret`` in clear: never shown)."""

    kind: str
    name: str
    source: str                      # environment | panel
    shown: str                       # the e-mail addresses, or the URL's scheme and host + "…"
    events: tuple[str, ...]
    after_failures: int
    url: str | None = None
    signing_secret: str | None = None
    email: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    enabled: bool = True
    id: int | None = None
    env: str | None = None           # the environment variable it comes from
    problem: str | None = None       # why it cannot send
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def editable(self) -> bool:
        return self.source == "panel"

    @property
    def signed(self) -> bool:
        return bool(self.signing_secret)

    def covers(self, job: str, category: str) -> bool:
        """Whether alerts about ``job`` (in ``category``) go to this target."""
        if not self.jobs and not self.categories:
            return True
        return job in self.jobs or category in self.categories

    def scope(self) -> str:
        """Which jobs, in words."""
        if not self.jobs and not self.categories:
            return "every job"
        parts = []
        if self.jobs:
            parts.append(("job " if len(self.jobs) == 1 else "jobs ") + ", ".join(self.jobs))
        if self.categories:
            parts.append(("category " if len(self.categories) == 1 else "categories ") + ", ".join(self.categories))
        return " and ".join(parts)

    def as_rule(self) -> AlertRule:
        """The target as a rule with this one target, for ``notifiers.deliver``."""
        return AlertRule(events=self.events, after_failures=self.after_failures,
                         webhook=self.url if self.kind == "webhook" else None,
                         webhook_secret=self.signing_secret if self.kind == "webhook" else None,
                         slack=self.url if self.kind == "slack" else None, email=self.email)


def shown_url(url: str) -> str:
    """A URL as the panel shows it: ``https://hooks.slack.com/…`` (its path and query may be the
    credential, as a Slack webhook's are)."""
    if url.startswith("${"):
        return url.split("}", 1)[0] + "}"
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def environment_targets(settings: Settings) -> list[Target]:
    """The targets of ``LEXYJOBS_ALERT_*``, with the global rule's events and threshold."""
    rule = AlertRule.from_settings(settings)
    found = []

    def add(kind: str, shown: str, env: str, **values: Any) -> None:
        found.append(Target(kind, kind, "environment", shown=shown, events=rule.events,
                            after_failures=rule.after_failures, env=ENV_VARS[env][0], **values))
    if rule.webhook:
        add("webhook", shown_url(rule.webhook), "alert_webhook", url=rule.webhook, signing_secret=rule.webhook_secret)
    if rule.slack:
        add("slack", shown_url(rule.slack), "alert_slack", url=rule.slack)
    if rule.email:
        add("email", ", ".join(rule.email), "alert_email", email=rule.email)
    return found


def panel_targets(db: Database, settings: Settings, *, enabled_only: bool = False) -> list[Target]:
    """The targets added in the panel, by name; their secrets opened with the secret key."""
    query = select(AlertTargetRow).order_by(AlertTargetRow.name)
    if enabled_only:
        query = query.where(AlertTargetRow.enabled.is_(True))
    with db.read() as session:
        rows = list(session.scalars(query))
    key = secret_key(settings, create=False) if any(row.secret for row in rows) else ""
    return [from_row(row, key) for row in rows]


def get(db: Database, settings: Settings, target_id: int) -> Target | None:
    with db.read() as session:
        row = session.get(AlertTargetRow, target_id)
    return None if row is None else from_row(row, secret_key(settings, create=False) if row.secret else "")


def from_row(row: AlertTargetRow, key: str) -> Target:
    secrets: dict[str, str] = {}
    problem = None
    if row.secret:
        try:
            secrets = json.loads(open_sealed(row.secret, key))
        except (Unreadable, ValueError):
            problem = UNREADABLE
    email = tuple(a.strip() for a in row.destination.split(",") if a.strip()) if row.kind == "email" else ()
    return Target(row.kind, row.name, "panel", shown=row.destination, events=tuple(row.events or ()),
                  after_failures=row.after_failures, url=secrets.get("url"), signing_secret=secrets.get("signing_secret"),
                  email=email, jobs=tuple(row.jobs or ()), categories=tuple(row.categories or ()), enabled=row.enabled,
                  id=row.id, problem=problem, updated_at=row.updated_at, updated_by=row.updated_by)


def describe_for_job(db: Database, settings: Settings, job: str, category: str,
                     job_alerts: bool | dict[str, Any] | None) -> str:
    """Who is alerted about ``job``, in words: the environment's rule as the job changes it, then
    the panel targets that cover it (URLs and secrets left out)."""
    rule = AlertRule.from_settings(settings).for_job(job_alerts)
    if job_alerts is False:
        return "none: this job's alerts are off"
    covering = [t for t in panel_targets(db, settings, enabled_only=True) if t.covers(job, category)]
    if not covering:
        return rule.describe()
    parts = [rule.describe()] if rule.has_targets else []
    for target in covering:
        streak = f", failed after {target.after_failures} in a row" if target.after_failures > 1 else ""
        parts.append(f"{target.name} ({KIND_LABELS[target.kind]}, panel): {', '.join(target.events)}{streak}")
    return "; ".join(parts)
