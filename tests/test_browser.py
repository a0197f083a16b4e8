"""The panel in a real browser (Debian's /usr/bin/chromium driven by playwright) against a real
``python app.py``, on SQLite and on Postgres: jobs and runs carrying XSS payloads (titles,
descriptions, categories, params, errors, log lines, a login name, query arguments) are shown as
text on every page and never run. Screenshots go to test-artifacts/ (git-ignored).

Without chromium or playwright the test skips, except in CI (``CI=true``) where it fails. The
browser only ever reaches the loopback server: every other request is aborted and reported."""
from __future__ import annotations

import os
import shutil
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import PYTHON, ROOT, wait_for
from liveserver import Server, keep_on_loopback, running_server

try:
    from playwright.sync_api import ConsoleMessage, Dialog, Page, sync_playwright
except ImportError:  # the skip below says so
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "browser-token-0123456789abcdef"
ADMIN_PASSWORD = "browser-admin-password-42"
PAYLOADS = ("<script>window.__xss=1</script>", '"><img src=x onerror="window.__xss=1">',
            '<svg onload="window.__xss=1">')
# Markup that would exist only if a payload had been parsed as HTML instead of shown as text.
INJECTED_MARKUP = """() => [...document.querySelectorAll('*')].filter(el =>
    (el.tagName === 'SCRIPT' && el.textContent.includes('__xss')) || (el.tagName === 'IMG' && el.getAttribute('src') === 'x')
    || [...el.attributes].some(a => a.name.startsWith('on'))).map(el => el.outerHTML)"""
# Console messages of CSP violations an injected payload would cause (they prove the CSP works);
# any other CSP violation comes from our own markup and fails the test.
INJECTION_CSP = ("inline script", "inline event handler")


def _browser_or_skip() -> None:
    missing = [what for what, ok in (("playwright", sync_playwright is not None),
                                     (CHROMIUM, os.access(CHROMIUM, os.X_OK))) if not ok]
    if missing:
        reason = f"browser tests need {' and '.join(missing)} (apt-get install chromium; pip install -r requirements-dev.txt)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: missing in CI")
        pytest.skip(reason)


@dataclass
class Watch:
    """What the page did that it should not: dialogs, JS errors, CSP violations, requests that
    left the loopback server."""
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp.append(message.text)

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def own_csp_violations(self) -> list[str]:
        return [text for text in self.csp if not any(kind in text for kind in INJECTION_CSP)]


def _create_job(srv: Server, name: str, definition: dict[str, Any]) -> None:
    status, body = srv.call("POST", "/api/jobs", TOKEN, {"name": name, "max_attempts": 1, **definition})
    assert status == 201, body


def _failed_run(srv: Server, name: str, params: dict[str, Any]) -> dict[str, Any]:
    status, accepted = srv.call("POST", f"/api/jobs/{name}/run", TOKEN, {"params": params})
    assert status == 202, accepted
    return wait_for(lambda: (run := srv.call("GET", f"/api/runs/{accepted['run_id']}", TOKEN)[1])["status"] == "failed"
                    and run)


@pytest.fixture
def panel_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """The server with, per payload, a python job whose title, description and category are the
    payload and whose failed run has it in its params and error, and a shell job whose failed
    run logged every payload."""
    _browser_or_skip()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("")
    with running_server(db_url, jobs_file, LEXYJOBS_API_TOKEN=TOKEN, LEXYJOBS_ADMIN_PASSWORD=ADMIN_PASSWORD) as srv:
        for i, payload in enumerate(PAYLOADS):
            _create_job(srv, f"xss-{i}", {"kind": "python", "func": "jobfuncs:sleepy", "title": payload,
                                          "description": payload, "category": payload,
                                          "params": {"seconds": {"type": "string", "required": True}}})
            run = _failed_run(srv, f"xss-{i}", {"seconds": payload})  # float(payload) fails, naming it
            assert payload in run["error"] and run["params"] == {"seconds": payload}, run
        script = "import sys; print(*sys.argv[1:], sep='\\n'); sys.exit(3)"
        _create_job(srv, "xss-log", {"kind": "shell", "argv": [PYTHON, "-c", script, *PAYLOADS], "title": PAYLOADS[0],
                                     "params": {"note": {"type": "string"}}})
        run = _failed_run(srv, "xss-log", {"note": PAYLOADS[1]})
        log = srv.call("GET", f"/api/runs/{run['id']}/log", TOKEN)[1]["text"]
        assert all(payload in log for payload in PAYLOADS), log
        yield srv


def _visit(page: Page, url: str) -> int:
    response = page.goto(url)
    assert response is not None, url
    return response.status


def _assert_harmless(page: Page, watch: Watch, *shown: str) -> None:
    """No payload ran or became markup on this page, and the ``shown`` texts are on it as text."""
    where = page.url
    assert page.evaluate("typeof window.__xss") == "undefined", f"a payload ran on {where}"
    assert page.evaluate(INJECTED_MARKUP) == [], f"a payload became markup on {where}"
    text = page.inner_text("body")
    for expected in shown:
        assert expected in text, f"{expected!r} is not shown as text on {where}"
    assert watch.dialogs == [] and watch.page_errors == [], (where, watch)
    assert watch.own_csp_violations() == [], f"our own markup breaks the CSP on {where}: {watch.csp}"


def _log_in(page: Page, username: str, password: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def test_the_panel_shows_xss_payloads_as_text_and_never_runs_them(panel_server: Server, db_url: str) -> None:
    base = panel_server.url
    shots = ARTIFACTS / ("postgres" if db_url.startswith("postgresql") else "sqlite")
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    watch = Watch()
    assert sync_playwright is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()

            keep_on_loopback(context, base, watch.blocked)
            page = context.new_page()
            page.on("dialog", watch.on_dialog)
            page.on("console", watch.on_console)
            page.on("pageerror", lambda error: watch.page_errors.append(str(error)))

            # Locked: the panel sends us to the login form, whose "next" comes back in an attribute.
            assert _visit(page, f"{base}/") == 200 and page.url.startswith(f"{base}/login")
            _assert_harmless(page, watch, "Log in")
            page.screenshot(path=str(shots / "login.png"), full_page=True)
            odd_next = '/"><svg/onload="window.__xss=1">'  # a same-site path (no spaces), so it is kept
            assert _visit(page, f"{base}/login?next={urllib.parse.quote(odd_next)}") == 200
            assert page.input_value("input[name=next]") == odd_next
            _assert_harmless(page, watch)

            # A wrong password shows the error; a payload as user name stays text in the form.
            assert _visit(page, f"{base}/login") == 200
            _log_in(page, "admin", "not-the-password")
            _assert_harmless(page, watch, "Wrong username or password.")
            assert page.locator("p.form-error[role=alert]").inner_text() == "Wrong username or password."
            assert page.input_value("input[name=username]") == "admin"
            _log_in(page, PAYLOADS[2], "not-the-password")
            _assert_harmless(page, watch, "Wrong username or password.")
            assert page.input_value("input[name=username]") == PAYLOADS[2]

            # The real login form, then every page.
            _log_in(page, "admin", ADMIN_PASSWORD)
            assert page.url == f"{base}/", page.url
            _assert_harmless(page, watch, "admin · admin", *PAYLOADS,
                             *(f"could not convert string to float: '{p}'" for p in PAYLOADS))
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            # htmx (served from the pip package) runs under the CSP, and every htmx request
            # carries the CSRF token from the page's meta tag.
            assert page.evaluate("typeof htmx === 'object' && htmx.version.startsWith('2.')")
            sent = page.evaluate("""() => new Promise(resolve => {
                document.addEventListener('htmx:configRequest', e => resolve(e.detail.headers['X-CSRF-Token']),
                                          {once: true});
                htmx.ajax('GET', '/', {target: 'body', swap: 'none'});
            })""")
            assert sent and sent == page.get_attribute('meta[name="csrf-token"]', "content")

            assert _visit(page, f"{base}/audit") == 200
            _assert_harmless(page, watch, "login.failure", PAYLOADS[2], "xss-log")
            assert _visit(page, f"{base}/audit?actor={urllib.parse.quote(PAYLOADS[1])}") == 200
            assert page.input_value("input[name=actor]") == PAYLOADS[1]
            _assert_harmless(page, watch)

            # Error pages: one whose message quotes the bad argument, and a plain 404.
            assert _visit(page, f"{base}/audit?page={urllib.parse.quote(PAYLOADS[0])}") == 400
            _assert_harmless(page, watch, PAYLOADS[0])
            assert _visit(page, f"{base}/no-such-page") == 404
            _assert_harmless(page, watch, "404")
        finally:
            browser.close()
    assert watch.blocked == [], f"the browser tried to leave the loopback server: {watch.blocked}"
    print(f"screenshots: {shots / 'login.png'} {shots / 'overview.png'}; CSP reports: {len(watch.csp)}")
