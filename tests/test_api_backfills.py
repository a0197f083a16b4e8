"""The backfill API, on SQLite and Postgres: ``POST /api/jobs/<name>/backfill`` queues one run per
past fire time and answers 202 with the group's status URL; ``GET /api/backfills/<id>`` reports
its progress; ``POST /api/backfills/<id>/cancel`` cancels what has not finished; both writes are
audited; bad bodies are 422 naming the field; every answer matches the OpenAPI document."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from conftest import ApiClient

from lexyjobs import audit

ROUTES = {("POST", "/api/jobs/{name}/backfill"), ("GET", "/api/backfills/{backfill_id}"),
          ("POST", "/api/backfills/{backfill_id}/cancel")}
WEEK = {"start": "2026-11-24T00:00:00Z", "end": "2026-11-30T23:59:00Z"}


@pytest.fixture
def daily(make_job: Callable[..., str]) -> str:
    return make_job("keyword-metrics", schedule="0 2 * * *", max_concurrency=0)  # nothing runs: it stays queued


def test_a_backfill_is_started_followed_and_cancelled(api_client: ApiClient, lj: Any, daily: str) -> None:
    answer = api_client.post(f"/api/jobs/{daily}/backfill", json={**WEEK, "concurrency": 2})
    started = api_client.ok(answer, 202)
    assert answer.headers["Location"] == started["status_url"] == f"/api/backfills/{started['backfill_id']}"
    assert len(started["run_ids"]) == 7 and started["skipped"] == []
    shown = api_client.ok(api_client.get(started["status_url"], role="viewer"))
    assert (shown["job"], shown["total"], shown["concurrency"], shown["counts"], shown["progress"]) == (
        daily, 7, 2, {"queued": 7}, "0 of 7 fire times done")
    assert shown["created_by"] == "token:ci-admin" and shown["finished"] is False
    canceled = api_client.ok(api_client.post(f"{started['status_url']}/cancel"))
    assert canceled == {"backfill_id": started["backfill_id"], "canceled": 7, "cancel_requested": 0}
    shown = api_client.ok(api_client.get(started["status_url"]))
    assert shown["counts"] == {"canceled": 7} and shown["finished"] and shown["canceled_at"]
    actions = [entry.action for entry in audit.search(lj.db).entries]
    assert actions[:2] == ["backfill.cancel", "backfill.start"]


@pytest.mark.parametrize("body, field", [
    ({"end": WEEK["end"]}, "start"),
    ({**WEEK, "start": "last monday"}, "start"),
    ({**WEEK, "end": "2999-01-01T00:00:00Z"}, "end"),
    ({**WEEK, "per": "hour"}, "per"),
    ({**WEEK, "per": 3}, "per"),
    ({**WEEK, "concurrency": True}, "concurrency"),
    ({**WEEK, "concurrency": 500}, "concurrency"),
    ({**WEEK, "include_succeeded": "yes"}, "include_succeeded"),
    ({**WEEK, "extra": 1}, "extra"),
    ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "per": "day"}, "end"),
])
def test_bad_bodies_are_refused_naming_the_field(api_client: ApiClient, daily: str, body: dict[str, Any],
                                                 field: str) -> None:
    api_client.error(api_client.post(f"/api/jobs/{daily}/backfill", json=body), 422, field=field)


def test_unknown_jobs_and_backfills_are_404(api_client: ApiClient, daily: str) -> None:
    api_client.error(api_client.post("/api/jobs/nope/backfill", json=WEEK), 404)
    api_client.error(api_client.get("/api/backfills/99"), 404)
    api_client.error(api_client.post("/api/backfills/99/cancel"), 404)
