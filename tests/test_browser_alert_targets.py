"""Alert targets in Settings, in a real browser: a real ``python app.py`` whose environment sets a
webhook target, and a local server standing in for Slack. An admin adds a Slack target for one
category (the form shows only Slack's fields), sends it a test alert and sees what it answered
in place (no reload), points it at a URL that answers 503 and sees that error, lets a real
failure alert through the server's own alerter, and removes the target. The Slack URL never
appears in the page. SQLite and Postgres; with ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes
docs/screenshots/settings-alerts-{light,dark,phone}.png."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_browser_panel import DESKTOP, PHONE, SCHEMES, SHOTS, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

SLACK_PATH = "/services/T0AB/B0CD/slack-token-xyz"
Received = dict[str, list[dict[str, Any]]]


@pytest.fixture
def hook() -> Iterator[tuple[str, Received]]:
    """A local server: POST /down answers 503, anything else 200 ``ok``; bodies kept by path."""
    received: Received = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.setdefault(self.path, []).append(json.loads(body))
            down = self.path == "/down"
            self.send_response(503 if down else 200)
            self.end_headers()
            self.wfile.write(b"slack is down for maintenance" if down else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def panel(db_url: str, tmp_path: Path, hook: tuple[str, Received]) -> Iterator[Panel]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    url, _ = hook
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"),
                    LEXYJOBS_ALERT_WEBHOOK=f"{url}/env", LEXYJOBS_ALERT_EVENTS="failed,recovered") as panel:
        yield panel


def shoot(panel: Panel) -> None:
    """The Notifications section, light and dark at 1280 px and light at phone width."""
    page = panel.page
    SHOTS.mkdir(parents=True, exist_ok=True)
    scroll = "document.getElementById('notifications').scrollIntoView()"
    page.evaluate(scroll)
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(SHOTS / f"settings-alerts-{scheme}.png"))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    page.evaluate(scroll)
    page.screenshot(path=str(SHOTS / "settings-alerts-phone.png"))
    page.set_viewport_size(DESKTOP)


def test_an_admin_adds_tests_edits_and_removes_an_alert_target(panel: Panel, hook: tuple[str, Received]) -> None:
    url, received = hook
    page = panel.page
    panel.create_job("nightly-export", title="Nightly export", category="Exports", kind="shell", argv=["sh", "-c", "exit 3"])
    panel.create_job("sync-crm", title="Sync CRM", category="CRM", kind="shell", argv=["true"])
    panel.visit("/settings#notifications")
    rows = page.locator("table.alert-targets tbody tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#target-env-webhook")).to_contain_text("LEXYJOBS_ALERT_WEBHOOK")
    expect(page.locator("#target-env-webhook")).to_contain_text(f"{url}/…")

    form = page.locator("#target-form")
    form.locator("select[name=kind]").select_option("slack")
    expect(form.locator("input[name=signing_secret]")).to_be_hidden()  # Slack's fields only
    expect(form.locator("input[name=email]")).to_be_hidden()
    form.locator("input[name=name]").fill("ops-slack")
    form.locator("input[name=url]").fill(url + SLACK_PATH)
    form.locator("input[name=events][value=stale]").uncheck()
    form.locator("input[name=events][value=missed]").uncheck()
    form.locator("input[name=categories]").fill("Exports")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/settings#notifications")
    expect(page.locator(".flash")).to_contain_text("Added the alert target ops-slack")
    expect(rows).to_have_count(2)
    row = page.locator("table.alert-targets tbody tr[data-source=panel]")
    expect(row).to_contain_text("ops-slack")
    expect(row).to_contain_text("category Exports")
    expect(row).to_contain_text(f"{url}/…")
    assert "slack-token" not in page.content()

    page.evaluate("window.__noReload = true")  # gone if the page reloads
    row.locator("button:has-text('Send a test alert')").click()
    expect(row.locator(".target-answer.ok")).to_have_text("Test alert delivered. The target answered: HTTP 200 OK: ok")
    assert received[SLACK_PATH][0]["text"].startswith("[lexyjobs] lexyjobs failed")
    page.locator("#target-env-webhook button:has-text('Send a test alert')").click()
    expect(page.locator("#target-env-webhook .target-answer.ok")).to_contain_text("HTTP 200 OK: ok")
    assert page.evaluate("window.__noReload") is True
    if panel.shoot:
        shoot(panel)

    row.locator("a:has-text('Edit')").click()
    page.wait_for_url("**/settings?edit=*")
    expect(form.locator("h3")).to_have_text("Edit the alert target ops-slack (Slack)")
    expect(form.locator("input[name=url]")).to_have_value("")  # never sent back
    expect(form.locator("input[name=url]")).to_have_attribute("placeholder", f"empty: keep {url}/…")
    expect(form.locator("input[name=categories]")).to_have_value("Exports")
    form.locator("input[name=url]").fill(url + "/down")
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_contain_text("Saved the alert target ops-slack")
    row.locator("button:has-text('Send a test alert')").click()
    expect(row.locator(".target-answer.failed")).to_have_text(
        "Test alert not delivered: HTTP 503 Service Unavailable: slack is down for maintenance")

    row.locator("a:has-text('Edit')").click()
    form.locator("input[name=url]").fill(url + SLACK_PATH)
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_contain_text("Saved the alert target ops-slack")
    panel.wait_status(panel.run_job("nightly-export"), "failed")
    panel.wait_status(panel.run_job("sync-crm"), "succeeded")
    wait_for(lambda: len(received.get(SLACK_PATH, [])) == 2, timeout=30)  # the server's alerter, every few seconds
    assert "Nightly export failed: exit code 3" in received[SLACK_PATH][1]["text"]
    panel.visit("/alerts")
    expect(page.locator("table.alerts ul.deliveries")).to_contain_text("ops-slack: ok")
    expect(page.locator("table.alerts ul.deliveries")).to_contain_text("webhook: ok")

    panel.visit("/settings#notifications")
    row.locator("a:has-text('Remove')").click()
    page.locator(".confirm-box button:has-text('Remove ops-slack')").click()
    expect(page.locator(".flash")).to_contain_text("Removed the alert target ops-slack")
    expect(rows).to_have_count(1)
    panel.assert_clean()
