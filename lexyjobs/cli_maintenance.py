"""``lexyjobs prune`` (retention by hand) and ``lexyjobs alerts …`` (what was sent; a test alert to
check the targets). Loaded by lexyjobs.cli when one of its commands runs; uses the
helpers of lexyjobs.cli_commands."""
from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from lexyjobs import retention
from lexyjobs.alerts import history
from lexyjobs.alerts.alerter import Audience, deliver_to
from lexyjobs.alerts.notifiers import Notice
from lexyjobs.alerts.rules import AlertRule
from lexyjobs.alerts.targets import panel_targets
from lexyjobs.cli import fail as _fail
from lexyjobs.cli import handle_errors as _handle_errors
from lexyjobs.cli_commands import _command, _lexy, _reader, _table
from lexyjobs.cli_accounts import _when
from lexyjobs.db import utcnow
from lexyjobs.definitions import definition_from_job
from lexyjobs.errors import JobNotFound
from lexyjobs.store import get_job


@_command("prune")
@click.option("--dry-run", is_flag=True, help="only count what would be deleted")
@click.option("--days", type=click.IntRange(0), default=None, help="override LEXYJOBS_RETENTION_DAYS")
@click.option("--failed-days", type=click.IntRange(0), default=None, help="override LEXYJOBS_RETENTION_FAILED_DAYS")
def prune_command(dry_run: bool, days: int | None, failed_days: int | None) -> None:
    """Delete finished runs (with their events and logs) older than the retention settings."""
    lj = _reader() if dry_run else _lexy()
    settings = lj.settings
    policy = retention.Policy(settings.retention_days if days is None else days,
                              settings.retention_failed_days if failed_days is None else failed_days,
                              settings.audit_retention_days)
    report = retention.prune(lj.db, policy, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    rows = []
    for status in sorted(s.value for s in retention.TERMINAL):
        days_kept = policy.failed_days if status == "failed" else policy.days
        rows.append((status, f"{days_kept}d" if days_kept else "forever", report.runs.get(status, 0)))
    _table(("STATUS", "KEPT FOR", "RUNS " + verb.upper()), rows)
    oldest = f"; the oldest finished {_when(report.oldest)} UTC" if report.oldest else ""
    click.echo(f"{verb} {report.total} runs, {report.alerts} alerts and {report.audit} audit entries{oldest}")


@click.group("alerts")
def alerts_group() -> None:
    """Failure alerts: what was sent, and a test of the targets."""


@alerts_group.command("list")
@click.option("--job", default=None, help="only this job's alerts")
@click.option("--limit", type=click.IntRange(1, 1000), default=20)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@with_appcontext
@_handle_errors
def alerts_list(job: str | None, limit: int, as_json: bool) -> None:
    """Recent alerts, newest first, with what each target answered."""
    found = history.search(_reader().db, job=job, limit=limit).alerts
    if as_json:
        click.echo(json.dumps([history.alert_dict(a) for a in found], indent=2))
        return
    _table(("ID", "CREATED", "JOB", "EVENT", "STATUS", "DELIVERIES"),
           [(a.id, _when(a.created_at), a.job_name, a.event, a.status,
             ", ".join(f"{t}: {p}" for t, p in (a.deliveries or {}).items())[:100]) for a in found])


@alerts_group.command("test")
@click.option("--job", default=None, help="use this job's alert rule and the panel targets that cover it "
              "(default: the LEXYJOBS_ALERT_* targets and every panel target that is on)")
@with_appcontext
@_handle_errors
def alerts_test(job: str | None) -> None:
    """Send a test alert to every target and show what each answered (nothing is recorded)."""
    lj = _reader()
    rule = AlertRule.from_settings(lj.settings)
    title = "lexyjobs"
    targets = panel_targets(lj.db, lj.settings, enabled_only=True)
    if job is not None:
        with lj.db.read() as session:
            row = get_job(session, job)
        if row is None:
            raise JobNotFound(job)
        alerts = definition_from_job(row).alerts
        rule, title = rule.for_job(alerts), row.title or row.name
        targets = [] if alerts is False else [t for t in targets if t.covers(row.name, row.category)]
    if not rule.has_targets and not targets:
        _fail("no alert targets: set LEXYJOBS_ALERT_WEBHOOK, LEXYJOBS_ALERT_SLACK or LEXYJOBS_ALERT_EMAIL, "
              "add one in Settings (or set the job's `alerts`)", 1)
    notice = Notice(event="failed", job=job or "lexyjobs-test", title=title, at=utcnow(),
                    text=f"{title}: this is a test alert sent by `lexyjobs alerts test`; nothing failed.",
                    details={"test": True})
    results = deliver_to(notice, Audience(rule, tuple(targets)), lj.settings)
    for target, outcome in results.items():
        click.echo(f"{target}: {outcome}")
    if any(outcome != "ok" for outcome in results.values()):
        raise SystemExit(1)
