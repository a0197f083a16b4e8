"""The alerts page in a real browser, end to end: a real ``python app.py`` whose global alert
targets are a local webhook that answers 200 and a "Slack" webhook that answers 503. A job fails;
the server's own alerter (lexyjobs.maintenance) sends one alert, and the page shows it with each
target's answer — the broken target's error in the panel, not only in the log. SQLite and
Postgres; with ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes docs/screenshots/alerts-*.png."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_browser_panel import SHOTS, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

ROWS = "table.alerts tbody tr[id^='alert-']"


@pytest.fixture
def hook_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook server: POST /ok answers 200 and records the JSON, anything else 503."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/ok":
                received.append(json.loads(body))
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()
            self.wfile.write(b"ok" if self.path == "/ok" else b"slack is down for maintenance")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def panel(db_url: str, tmp_path: Path, hook_url: tuple[str, list[dict[str, Any]]]) -> Iterator[Panel]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    url, _ = hook_url
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"),
                    LEXYJOBS_ALERT_WEBHOOK=f"{url}/ok", LEXYJOBS_ALERT_SLACK=f"{url}/slack",
                    LEXYJOBS_BASE_URL="http://jobs.example.internal/") as panel:
        yield panel


def test_a_failure_alerts_once_and_the_page_shows_what_each_target_answered(
        panel: Panel, hook_url: tuple[str, list[dict[str, Any]]]) -> None:
    _, received = hook_url
    panel.create_job("nightly-export", title="Nightly export", kind="shell", argv=["sh", "-c", "exit 3"])
    panel.create_job("sync-crm", title="Sync CRM", kind="shell", argv=["true"])
    panel.wait_status(panel.run_job("sync-crm"), "succeeded")
    failed = [panel.run_job("nightly-export") for _ in range(2)]
    for run_id in failed:
        panel.wait_status(run_id, "failed")

    wait_for(lambda: received, timeout=30)  # the server's alerter looks every few seconds
    [notice] = received  # two failures in a row: one alert
    assert (notice["event"], notice["job"]) == ("failed", "nightly-export")

    panel.visit("/alerts")
    page = panel.page
    expect(page.locator(ROWS)).to_have_count(1)
    row = page.locator(ROWS).first
    expect(row).to_contain_text("nightly-export")
    expect(row.locator(".badge.alert-failed")).to_have_text("failed")
    expect(row.locator(".badge.delivery-failed")).to_have_text("1 of 2 failed")
    expect(row.locator("ul.deliveries")).to_contain_text("webhook: ok")
    expect(row.locator("ul.deliveries")).to_contain_text("slack: HTTP 503")
    expect(page.locator("header nav a[href='/alerts']")).to_be_visible()
    if panel.shoot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        panel.screenshot("alerts")

    page.select_option("select[name=status]", "sent")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/alerts?*status=sent*")
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.locator("table.alerts tbody")).to_contain_text("No alerts for this filter.")

    row_link = f"a[href='/runs/{failed[-1]}']"
    panel.visit("/alerts")
    page.click(row_link)  # the alert links the run that failed
    page.wait_for_url(f"{panel.base}/runs/{failed[-1]}")
    panel.assert_clean()
