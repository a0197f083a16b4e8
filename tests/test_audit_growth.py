"""Refused logins cannot grow the audit log without bound (lexyjobs.audit.record_refused), and
retention deletes audit entries older than LEXYJOBS_AUDIT_RETENTION_DAYS. Both databases."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from lexyjobs import accounts, audit, retention
from lexyjobs.audit import OVERFLOW_ACTOR, REFUSED_ACTIONS, REFUSED_ROWS_PER_WINDOW, REFUSED_WINDOW
from lexyjobs.config import load_settings
from lexyjobs.db import Database, utcnow
from lexyjobs.models import AuditEntry
from lexyjobs.ratelimit import LoginThrottle

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
DAY = timedelta(days=1)


def rows(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def refused_counts(db: Database) -> int:
    return sum(int((e.details or {}).get("count", 1)) for e in rows(db) if e.action in REFUSED_ACTIONS)


def client_from(app: Flask, address: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    found = CSRF_FIELD.search(client.get("/login").get_data(as_text=True))
    assert found
    return client, found.group(1)


class StillClock:
    def __call__(self) -> float:
        return 1000.0


def test_a_burst_of_1000_refused_logins_adds_a_bounded_number_of_rows_with_their_counts(app, db: Database) -> None:
    accounts.add_user(db, ADMIN, ADMIN_PASSWORD, "admin")
    app.extensions["lexyjobs_login_throttle"] = LoginThrottle(1, clock=StillClock())  # few slow password checks
    statuses = []
    for address in range(10):  # ten addresses, 100 usernames each: 10 checked and refused, 990 throttled
        client, token = client_from(app, f"10.0.0.{address}")
        for i in range(100):
            response = client.post("/login", data={"username": f"user{address}-{i}", "password": "guess-1",
                                                   "csrf_token": token})
            statuses.append(response.status_code)
    assert statuses.count(401) == 10 and statuses.count(429) == 990
    added = rows(db)
    print(f"\naudit rows after 1,000 refused logins: {len(added)}")
    assert len(added) <= REFUSED_ROWS_PER_WINDOW + len(REFUSED_ACTIONS)
    assert refused_counts(db) == 1000  # every attempt is counted somewhere
    overflow = [e for e in added if e.actor == OVERFLOW_ACTOR]
    assert overflow and all(e.client is None and e.target is None for e in overflow)

    owner, token = client_from(app, "10.9.0.1")  # the panel's audit page shows the counts
    owner.post("/login", data={"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": token})
    page = owner.get(f"/audit?actor={OVERFLOW_ACTOR}").get_data(as_text=True)
    counts = [int(n) for n in re.findall(r"×(\d+)</strong>", page)]
    assert counts and sum(counts) == sum(e.details["count"] for e in overflow)


def test_refusals_of_one_address_and_name_add_to_one_row_until_the_window_ends(db: Database) -> None:
    start = utcnow()
    for second in range(50):
        audit.record_refused(db, "login.failure", "admin", client="10.0.0.5", now=start + timedelta(seconds=second))
    audit.record_refused(db, "login.failure", "admin", client="10.0.0.6", now=start)
    audit.record_refused(db, "login.rate_limited", "admin", client="10.0.0.5", now=start)
    later = start + REFUSED_WINDOW + timedelta(seconds=1)
    audit.record_refused(db, "login.failure", "admin", client="10.0.0.5", now=later)
    found = [(e.action, e.client, e.details["count"]) for e in rows(db)]
    assert found == [("login.failure", "10.0.0.5", 50), ("login.failure", "10.0.0.6", 1),
                     ("login.rate_limited", "10.0.0.5", 1), ("login.failure", "10.0.0.5", 1)]
    first = rows(db)[0]
    assert first.at == start and first.details["last"] == (start + timedelta(seconds=49)).isoformat()
    assert first.actor == first.target == "admin"


def test_beyond_the_cap_new_refusals_share_one_overflow_row_per_action(db: Database) -> None:
    now = utcnow()
    for i in range(REFUSED_ROWS_PER_WINDOW + 300):
        audit.record_refused(db, REFUSED_ACTIONS[i % 2], f"name{i}", client=f"10.{i // 250}.{i % 250}.1", now=now)
    assert len(rows(db)) == REFUSED_ROWS_PER_WINDOW + 2
    assert refused_counts(db) == REFUSED_ROWS_PER_WINDOW + 300
    audit.record_refused(db, "login.failure", "name0", client="10.0.0.1", now=now)  # a known key keeps its row
    assert rows(db)[0].details["count"] == 2


# ------------------------------------------------------------------ retention

def add_entry(db: Database, age: timedelta, action: str = "job.run") -> int:
    with db.write() as session:
        entry = AuditEntry(at=utcnow() - age, actor="alice", action=action, target="etl", client="127.0.0.1")
        session.add(entry)
        session.flush()
        return entry.id


def existing_ids(db: Database) -> set[int]:
    return {e.id for e in rows(db)}


def test_prune_deletes_audit_entries_older_than_the_audit_retention(db: Database) -> None:
    old = [add_entry(db, 400 * DAY + i * DAY) for i in range(5)]
    kept = [add_entry(db, 364 * DAY), add_entry(db, DAY), add_entry(db, timedelta(0), "login.failure")]

    dry = retention.prune(db, retention.Policy(audit_days=365), dry_run=True)
    assert dry.audit == 5 and existing_ids(db) == set(old + kept)

    report = retention.prune(db, retention.Policy(audit_days=365), batch=2)  # three batches
    assert report.audit == 5
    assert existing_ids(db) == set(kept)


def test_an_audit_retention_of_0_keeps_every_entry(db: Database) -> None:
    ids = [add_entry(db, 5000 * DAY), add_entry(db, DAY)]
    assert retention.prune(db, retention.Policy(audit_days=0)).audit == 0
    assert existing_ids(db) == set(ids)


def test_the_audit_retention_setting_defaults_to_a_year_and_is_validated() -> None:
    assert load_settings(environ={}).audit_retention_days == 365
    assert load_settings(environ={"LEXYJOBS_AUDIT_RETENTION_DAYS": "30"}).audit_retention_days == 30
    with pytest.raises(SystemExit) as error:
        load_settings(environ={"LEXYJOBS_AUDIT_RETENTION_DAYS": "-1"})
    assert "LEXYJOBS_AUDIT_RETENTION_DAYS" in str(error.value)


def test_the_prune_command_counts_audit_entries(db_url: str, db: Database, tmp_path: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from lexyjobs.cli import main
    monkeypatch.chdir(tmp_path)
    add_entry(db, 40 * DAY)
    add_entry(db, DAY)
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": "", "LEXYJOBS_AUDIT_RETENTION_DAYS": "30"}
    result = CliRunner().invoke(main, ["prune"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 audit entries" in result.output
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 1
