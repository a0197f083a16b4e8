"""Watching jobs for the state changes that alert, and sending each alert once.

Every ``CHECK_SECONDS`` the scheduling process (``lexyjobs.maintenance``) reads each job's run
summary and health (``lexyjobs.health.jobs_overview``: a few index seeks per job, whatever the
history's length) and the skipped fires since its last look, and derives:

* ``failed``: the job's failure streak (failed runs since its last success; a run is failed
  only once its retries are exhausted) reached the rule's ``after_failures``;
* ``recovered``: the job succeeded after a ``failed`` alert;
* ``stale``: health turned orange because there was no success within the stale window;
* ``missed``: a fire was recorded as skipped (missed while down, or by the overlap policy);
* ``too_long``, ``too_short``, ``too_often``, ``late_start``: a health signal holds
  (``lexyjobs.health_signals``).

Each change has a key naming its *episode* — ``failed:<job>:<time of the last success>``,
``missed:<run id>`` — that is unique in the ``alerts`` table. So a change alerts once however
many retries, checks and processes see it: the process whose insert wins sends it; the others,
and later checks, find the key taken. A streak that continues does not alert again; the next
alert of the job is ``recovered`` (or a new episode after a success).

A signal's episode is the run it is about: ``too_long:<job>:<run id>``; for ``too_short`` and
``late_start`` the first run of the streak of short successes or late starts, so a streak alerts
once and the next one after a normal run alerts again (a streak reaching back past the runs
read is the one already told, if any was). ``too_often`` has no run: its episode is named after
the job's previous ``too_often`` alert (``too_often:<job>:after-<alert id>``, ``after-0`` for the
first), and a new one starts only once the count of runs in the trailing hour was back within
the limit at some moment since that alert (looked at over at most ``OFTEN_LOOKBACK``: an
episode longer than that alerts again once a day).

Who hears about a job (its ``Audience``): the environment's targets as the job's own ``alerts``
field changes them, and the panel's targets that cover the job (lexyjobs.alerts.targets, read
from the database on every check). Targets with another ``after_failures`` than the job's rule
get their own ``failed`` alert when the streak reaches their threshold: its key is
``failed/<n>:<job>:<episode>``. ``recovered`` goes to those told of the failure who want it."""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from lexyjobs.alerts.notifiers import Notice, deliver
from lexyjobs.alerts.rules import AlertRule
from lexyjobs.alerts.targets import Target, panel_targets
from lexyjobs.config import Settings
from lexyjobs.db import Database, utcnow
from lexyjobs.health import JobOverview, jobs_overview
from lexyjobs.health_reads import creation_times
from lexyjobs.health_signals import Signal
from lexyjobs.models import Alert
from lexyjobs.states import RUNS, RunStatus

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
LOOKBACK = timedelta(minutes=10)  # skipped fires recorded this long before the first check still alert
OVERLAP = timedelta(seconds=60)   # each look for skipped fires starts this much before the last one
ALERTS = cast(Table, Alert.__table__)
OFTEN_LOOKBACK = timedelta(days=1)
HOUR = timedelta(hours=1)


NOBODY = AlertRule(events=())


@dataclass(frozen=True)
class Audience:
    """Who hears about one job: ``rule`` (the environment's targets, as the job's ``alerts``
    changes them) and the panel's ``targets`` that cover the job."""

    rule: AlertRule
    targets: tuple[Target, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rule.has_targets and self.rule.events) or bool(self.targets)

    def only(self, event: str, after: int | None = None, told: set[int] | None = None) -> Audience:
        """Those who want ``event`` (with threshold ``after``; or whose threshold is in ``told``)."""
        def fits(events: tuple[str, ...], threshold: int) -> bool:
            return (event in events and (after is None or threshold == after)
                    and (told is None or threshold in told))
        rule = self.rule if self.rule.has_targets and fits(self.rule.events, self.rule.after_failures) else NOBODY
        return Audience(rule, tuple(t for t in self.targets if fits(t.events, t.after_failures)))

    def thresholds(self) -> list[int]:
        """The failure streaks at which someone wants a ``failed`` alert."""
        found = {t.after_failures for t in self.targets if "failed" in t.events}
        if self.rule.wants("failed"):
            found.add(self.rule.after_failures)
        return sorted(found)


@dataclass
class OpenFailure:
    """A job's ``failed`` alerts not yet followed by ``recovered``: their episode and thresholds
    (None: the key without one, i.e. the job rule's threshold)."""

    episode: str
    thresholds: set[int | None] = field(default_factory=set)


@dataclass(frozen=True)
class Change:
    """One state change worth an alert, before it is sent."""

    key: str
    notice: Notice
    audience: Audience


class Alerter:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.rule = AlertRule.from_settings(settings)
        self._skipped_since: datetime | None = None

    def check(self, now: datetime | None = None) -> list[int]:
        """Find the changes at ``now``, send those no process has sent yet; the new alerts' ids."""
        now = now or utcnow()
        changes = self.changes(now)
        sent = []
        for change in changes:
            alert_id = self._claim(change, now)
            if alert_id is not None:
                self._send(alert_id, change, now)
                sent.append(alert_id)
        return sent

    def changes(self, now: datetime) -> list[Change]:
        overviews = {o.job.name: o for o in jobs_overview(self.db, now, stale_after=self.settings.stale_after)
                     if o.definition is not None}
        targets = panel_targets(self.db, self.settings, enabled_only=True)
        audiences = {name: self._audience(o, targets) for name, o in overviews.items()}
        watched = {name: audience for name, audience in audiences.items() if audience}
        if not watched:
            self._skipped_since = now - OVERLAP
            return []
        open_failures = self._open_failures(list(watched))
        changes: list[Change] = []
        for name, rule in watched.items():
            changes.extend(self._job_changes(overviews[name], rule, open_failures.get(name), now))
        changes.extend(self._missed(watched, overviews, now))
        return changes

    def _audience(self, overview: JobOverview, targets: list[Target]) -> Audience:
        job_alerts = overview.definition.alerts if overview.definition else None
        if job_alerts is False:
            return Audience(NOBODY)
        job = overview.job
        return Audience(self.rule.for_job(job_alerts), tuple(t for t in targets if t.covers(job.name, job.category)))

    # ------------------------------------------------------------ what changed

    def _job_changes(self, overview: JobOverview, audience: Audience, open_failure: OpenFailure | None,
                     now: datetime) -> list[Change]:
        name, last = overview.job.name, overview.last
        episode = last.last_success_at.isoformat() if last.last_success_at else "never"
        plain = audience.rule.after_failures  # the threshold of the key without one
        out = []
        if open_failure is not None and open_failure.episode != episode:
            told = {plain if n is None else n for n in open_failure.thresholds}
            hearers = audience.only("recovered", told=told)
            if hearers:
                out.append(self._change(f"recovered:{name}:{open_failure.episode}", "recovered", overview, hearers,
                                        now, "succeeded again after failing.",
                                        details={"failed_since": open_failure.episode}))
        reached = [n for n in audience.thresholds() if last.failure_streak >= n]
        if reached:
            run_id, error = self._latest_failure(name)
            times = f" {last.failure_streak} times in a row" if last.failure_streak > 1 else ""
        for n in reached:
            prefix = "failed" if n == plain else f"failed/{n}"
            out.append(self._change(f"{prefix}:{name}:{episode}", "failed", overview, audience.only("failed", n), now,
                                    f"failed{times}: {error or 'no error message'}", run_id=run_id,
                                    details={"failure_streak": last.failure_streak, "error": error}))
        stale = audience.only("stale")
        if overview.stale and stale:
            out.append(self._change(f"stale:{name}:{episode}", "stale", overview, stale, now,
                                    f"is stale: {overview.health.reason}.",
                                    details={"last_success_at": None if episode == "never" else episode}))
        return out + self._signal_changes(overview, audience, now)

    def _signal_changes(self, overview: JobOverview, audience: Audience, now: datetime) -> list[Change]:
        """An alert for each health signal whose episode was not told yet (see the module)."""
        out = []
        for signal in overview.health.signals:
            hearers = audience.only(signal.kind)
            episode = self._episode(overview, signal, now) if hearers else None
            if episode is not None:
                out.append(self._change(f"{signal.kind}:{overview.job.name}:{episode}", signal.kind, overview,
                                        hearers, now, signal.message.rstrip(".") + ".", run_id=signal.run_id,
                                        details=signal.details))
        return out

    def _episode(self, overview: JobOverview, signal: Signal, now: datetime) -> str | None:
        """The episode ``signal`` belongs to, or None when it is one already told."""
        if signal.kind != "too_often" and not signal.continues:
            return signal.episode
        name = overview.job.name
        with self.db.read() as session:
            previous = session.execute(select(ALERTS.c.id, ALERTS.c.created_at)
                                       .where(ALERTS.c.job_name == name, ALERTS.c.event == signal.kind)
                                       .order_by(ALERTS.c.id.desc()).limit(1)).first()
            if previous is None:
                return signal.episode or "after-0"
            if signal.kind != "too_often":
                return None  # a streak longer than what was read: the one told before
            if previous.created_at < now - OFTEN_LOOKBACK:
                return f"after-{previous.id}"
            times = creation_times(session, name, since=previous.created_at - HOUR, until=now)
        cleared = _within_limit_since(times, previous.created_at, now, signal.details["allowed"])
        return f"after-{previous.id}" if cleared else None

    def _missed(self, watched: dict[str, Audience], overviews: dict[str, JobOverview], now: datetime) -> list[Change]:
        since = (self._skipped_since or now - LOOKBACK)
        self._skipped_since = now - OVERLAP
        wanted = [name for name, audience in watched.items() if audience.only("missed")]
        if not wanted:
            return []
        with self.db.read() as session:
            rows = session.execute(
                select(RUNS.c.id, RUNS.c.job_name, RUNS.c.error)
                .where(RUNS.c.status == RunStatus.SKIPPED.value, RUNS.c.finished_at > since,
                       RUNS.c.job_name.in_(wanted))
                .order_by(RUNS.c.id)).all()
        return [self._change(f"missed:{row.id}", "missed", overviews[row.job_name],
                             watched[row.job_name].only("missed"), now, f"{row.error or 'a fire did not run'}.",
                             run_id=row.id) for row in rows]

    def _change(self, key: str, event: str, overview: JobOverview, audience: Audience, now: datetime, text: str, *,
                run_id: int | None = None, details: dict[str, Any] | None = None) -> Change:
        job = overview.job
        path = f"/runs/{run_id}" if run_id is not None else f"/jobs/{job.name}"
        url = self.settings.base_url.rstrip("/") + path if self.settings.base_url else None
        notice = Notice(event=event, job=job.name, title=job.title or job.name, text=f"{job.title or job.name} {text}",
                        at=now, run_id=run_id, url=url, details=details or {})
        return Change(key, notice, audience)

    # ------------------------------------------------------------ reads and writes

    def _open_failures(self, names: list[str]) -> dict[str, OpenFailure]:
        """Per job, its ``failed`` alerts since its latest ``recovered`` (of their latest episode)."""
        with self.db.read() as session:
            rows = session.execute(
                select(ALERTS.c.job_name, ALERTS.c.event, ALERTS.c.key)
                .where(ALERTS.c.job_name.in_(names), ALERTS.c.event.in_(("failed", "recovered")))
                .order_by(ALERTS.c.id)).all()
        found: dict[str, OpenFailure] = {}
        for row in rows:
            if row.event == "recovered":
                found.pop(row.job_name, None)
                continue
            prefix, _, episode = row.key.split(":", 2)
            threshold = int(prefix.split("/", 1)[1]) if "/" in prefix else None
            if row.job_name not in found or found[row.job_name].episode != episode:
                found[row.job_name] = OpenFailure(episode)
            found[row.job_name].thresholds.add(threshold)
        return found

    def _latest_failure(self, name: str) -> tuple[int | None, str | None]:
        with self.db.read() as session:
            row = session.execute(
                select(RUNS.c.id, RUNS.c.error)
                .where(RUNS.c.job_name == name, RUNS.c.status == RunStatus.FAILED.value)
                .order_by(RUNS.c.finished_at.desc(), RUNS.c.id.desc()).limit(1)).first()
        return (row.id, row.error) if row else (None, None)

    def _claim(self, change: Change, now: datetime) -> int | None:
        """Insert the alert unless its key is taken; its id when this process is to send it."""
        notice = change.notice
        insert = pg_insert(ALERTS) if self.db.is_postgres else sqlite_insert(ALERTS)
        statement = (insert.values(key=change.key, job_name=notice.job, event=notice.event, run_id=notice.run_id,
                                   message=notice.text, status="sending", created_at=now)
                     .on_conflict_do_nothing(index_elements=["key"]).returning(ALERTS.c.id))
        with self.db.write() as session:
            return session.execute(statement).scalar()

    def _send(self, alert_id: int, change: Change, now: datetime) -> None:
        results = deliver_to(change.notice, change.audience, self.settings)
        failed = {target: problem for target, problem in results.items() if problem != "ok"}
        status = "failed" if failed else "sent"
        with self.db.write() as session:
            session.execute(update(ALERTS).where(ALERTS.c.id == alert_id)
                            .values(status=status, deliveries=results, sent_at=utcnow()))
        extra = {"alert_id": alert_id, "job": change.notice.job, "event": change.notice.event}
        if failed:
            log.warning("alert %s (%s of %s) not delivered: %s", alert_id, change.notice.event, change.notice.job,
                        "; ".join(f"{t}: {p}" for t, p in failed.items()), extra=extra)
        else:
            log.info("alert %s (%s of %s) sent to %s", alert_id, change.notice.event, change.notice.job,
                     ", ".join(results), extra=extra)


def _within_limit_since(times: list[datetime], start: datetime, now: datetime, allowed: int) -> bool:
    """Whether the runs created at ``times`` (sorted) were at most ``allowed`` in the hour before
    some moment of ``[start, now]``. The count only drops when a run leaves the hour, so it is
    enough to look at ``start`` and at each such moment."""
    moments = [start, *(t + HOUR for t in times if start <= t + HOUR <= now)]
    return any(bisect.bisect_right(times, m) - bisect.bisect_right(times, m - HOUR) <= allowed for m in moments)


def deliver_to(notice: Notice, audience: Audience, settings: Settings) -> dict[str, str]:
    """Send ``notice`` to everyone in ``audience``; per target name, "ok" or what went wrong."""
    results = deliver(notice, audience.rule, settings) if audience.rule.has_targets else {}
    for target in audience.targets:
        if target.problem:
            results[target.name] = target.problem
        else:
            results.update({target.name: result for result in deliver(notice, target.as_rule(), settings).values()})
    return results
