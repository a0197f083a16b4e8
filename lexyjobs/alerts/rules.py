"""Who is alerted about what. The global rule comes from ``LEXYJOBS_ALERT_*``; a job's ``alerts``
field overrides it key by key, or is ``false`` to silence the job:

.. code-block:: toml

    [jobs.nightly-report]
    alerts = { events = ["failed", "recovered"], after_failures = 3, slack = "${SLACK_HOOK}" }

URLs may reference environment variables (``${NAME}``), expanded when an alert is sent."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from lexyjobs.config import ALERT_EVENTS, Settings
from lexyjobs.errors import InvalidDefinition

JOB_FIELD_HELP = ("`false` (no alerts), or a table overriding the `LEXYJOBS_ALERT_*` settings for this job: "
                  "`events`, `after_failures`, `webhook`, `webhook_secret`, `slack`, `email`")
_TEXT_KEYS = ("webhook", "webhook_secret", "slack")


@dataclass(frozen=True)
class AlertRule:
    events: tuple[str, ...] = ALERT_EVENTS
    after_failures: int = 1
    webhook: str | None = None
    webhook_secret: str | None = None
    slack: str | None = None
    email: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertRule:
        return cls(events=settings.alert_events, after_failures=settings.alert_after_failures,
                   webhook=settings.alert_webhook, webhook_secret=settings.alert_webhook_secret,
                   slack=settings.alert_slack, email=settings.alert_email)

    @property
    def has_targets(self) -> bool:
        return bool(self.webhook or self.slack or self.email)

    def wants(self, event: str) -> bool:
        return self.has_targets and event in self.events

    def describe(self) -> str:
        """What this rule sends and where, in words (URLs and secrets left out)."""
        if not self.has_targets:
            return "none: no alert target is set"
        if not self.events:
            return "none: this job's alerts are off"
        targets = [name for name, on in (("webhook", self.webhook), ("Slack", self.slack)) if on]
        if self.email:
            targets.append(f"email to {len(self.email)} address{'es' if len(self.email) > 1 else ''}")
        streak = f" (failed after {self.after_failures} failures in a row)" if self.after_failures > 1 else ""
        events = "every event" if set(self.events) == set(ALERT_EVENTS) else ", ".join(self.events)
        return f"{events}{streak} → {', '.join(targets)}"

    def for_job(self, job_alerts: bool | Mapping[str, Any] | None) -> AlertRule:
        """This rule as the job's ``alerts`` field (already validated) changes it."""
        if job_alerts is None or job_alerts is True:
            return self
        if job_alerts is False:
            return dataclasses.replace(self, events=())
        changes = dict(job_alerts)
        for key in ("events", "email"):
            if key in changes:
                changes[key] = tuple(changes[key])
        return dataclasses.replace(self, **changes)


def parse_job_alerts(job: str, raw: Any) -> bool | dict[str, Any] | None:
    """Validate a job's ``alerts`` field; returns it normalized (email as a list)."""
    if raw is None or isinstance(raw, bool):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(job, "alerts", "must be false or a table, e.g. { events = [\"failed\"], "
                                "slack = \"${SLACK_HOOK}\" }")
    allowed = {f.name for f in dataclasses.fields(AlertRule)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidDefinition(job, "alerts", f"unknown key '{unknown[0]}'; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    if "events" in raw:
        events = raw["events"]
        if not isinstance(events, list) or not all(isinstance(e, str) and e in ALERT_EVENTS for e in events):
            raise InvalidDefinition(job, "alerts", f"events must be a list of {', '.join(ALERT_EVENTS)}")
        out["events"] = list(events)
    if "after_failures" in raw:
        after = raw["after_failures"]
        if isinstance(after, bool) or not isinstance(after, int) or not 1 <= after <= 1000:
            raise InvalidDefinition(job, "alerts", "after_failures must be a whole number from 1 to 1000")
        out["after_failures"] = after
    for key in _TEXT_KEYS:
        if key in raw:
            value = raw[key]
            if not isinstance(value, str) or not value.strip():
                raise InvalidDefinition(job, "alerts", f"{key} must be a non-empty text")
            if key != "webhook_secret" and not value.startswith(("http://", "https://", "${")):
                raise InvalidDefinition(job, "alerts", f"{key} must be an http:// or https:// URL (or ${{ENV}})")
            out[key] = value
    if "email" in raw:
        email = [raw["email"]] if isinstance(raw["email"], str) else raw["email"]
        if not isinstance(email, list) or not all(isinstance(a, str) and "@" in a for a in email):
            raise InvalidDefinition(job, "alerts", "email must be an address or a list of addresses")
        out["email"] = email
    return out
