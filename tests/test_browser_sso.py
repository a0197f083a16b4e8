"""Single sign-on in a real browser (Debian's chromium via playwright) against a real ``python
app.py`` and a real OpenID Connect provider process (tests/oidc_provider.py), SQLite and Postgres:
"Sign in with Mock ID" on the login page leads to the provider's page; signing in there as a
member of ``lexyjobs-admins`` lands on the dashboard as that user with role admin, and logging
out ends the session. Someone in no mapped group (default role ``none``) and a forged return
each end on the login page with the reason in one sentence, and the audit log shows both.
The browser may reach only the two loopback servers; no script or console errors, no CSP
violations. With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes docs/screenshots/sso-*.png."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from liveserver import Server, running_server
from oidc_provider import OidcProvider, free_port
from test_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip
from test_browser_panel import DESKTOP, SHOTS, TAKE_SHOTS, TOKEN, Watch

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # _browser_or_skip says so
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow


@dataclass
class Browser:
    srv: Server
    page: Page
    watch: Watch
    shoot: bool

    def assert_clean(self) -> None:
        where, watch = self.page.url, self.watch
        assert watch.page_errors == [], f"script errors on {where}: {watch.page_errors}"
        assert watch.console_errors == [], f"console errors (or CSP violations) on {where}: {watch.console_errors}"
        assert watch.blocked == [], f"requests left the loopback servers on {where}: {watch.blocked}"

    def forget_refused_returns(self) -> None:
        """The browser logs the 403 of a refused sign-in's return as a console error: that one is expected."""
        self.watch.console_errors = [error for error in self.watch.console_errors
                                     if not ("status of 403" in error and "/login/sso/callback?" in error)]

    def shot(self, name: str) -> None:
        if self.shoot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SHOTS / f"sso-{name}.png"))

    def audit(self) -> list[dict[str, Any]]:
        status, answer = self.srv.call("GET", "/api/audit?limit=50", TOKEN)
        assert status == 200, answer
        return answer["entries"]  # type: ignore[no-any-return]


@pytest.fixture
def browser(db_url: str, tmp_path: Path, oidc_provider: OidcProvider) -> Iterator[Browser]:
    _browser_or_skip()
    port = free_port()
    client_id, secret = oidc_provider.register(f"http://127.0.0.1:{port}/login/sso/callback")
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# no jobs\n")
    with running_server(db_url, jobs_file, port=port, LEXYJOBS_API_TOKEN=TOKEN, LEXYJOBS_OIDC_ISSUER=oidc_provider.url,
                        LEXYJOBS_OIDC_CLIENT_ID=client_id, LEXYJOBS_OIDC_CLIENT_SECRET=secret,
                        LEXYJOBS_OIDC_NAME="Mock ID", LEXYJOBS_OIDC_ROLES="lexyjobs-admins=admin,lexyjobs-ops=operator",
                        LEXYJOBS_OIDC_DEFAULT_ROLE="none", LEXYJOBS_PASSWORD_LOGIN="false") as srv:
        assert sync_playwright is not None
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                watch = Watch()
                context = chromium.new_context(viewport=DESKTOP)
                allowed = (srv.url, oidc_provider.url)

                def route(request_route: Any) -> None:
                    url = request_route.request.url
                    if any(url == base or url.startswith(base + "/") for base in allowed):
                        request_route.continue_()
                        return
                    if not request_route.request.frame.url.startswith(oidc_provider.url):
                        watch.blocked.append(url)  # the provider's own page loads a stylesheet off-site; ours never
                    request_route.abort()
                context.route("**/*", route)
                page = context.new_page()
                page.set_default_timeout(15_000)
                page.on("console", lambda message: watch.on_console(message) if page.url.startswith(srv.url) else None)
                page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
                yield Browser(srv, page, watch, shoot=TAKE_SHOTS and db_url.startswith("sqlite"))
            finally:
                chromium.close()


def sign_in_at_the_provider(browser: Browser, provider: OidcProvider, sub: str) -> None:
    page = browser.page
    page.goto(f"{browser.srv.url}/runs")
    assert page.url.startswith(f"{browser.srv.url}/login?next=")
    expect(page.locator("input[name=password]")).to_have_count(0)  # LEXYJOBS_PASSWORD_LOGIN=false
    browser.shot("login")
    page.click("text=Sign in with Mock ID")
    page.wait_for_url(f"{provider.url}/oauth2/authorize?**")
    page.fill("input[name=sub]", sub)
    page.click("button:has-text('Authorize')")


def test_signing_in_through_the_provider_lands_on_the_panel_with_the_mapped_role(browser, oidc_provider):
    oidc_provider.set_user("ada", email="ada@example.com", email_verified=True, groups=["lexyjobs-admins", "staff"])
    sign_in_at_the_provider(browser, oidc_provider, "ada")
    page = browser.page
    page.wait_for_url(f"{browser.srv.url}/runs")  # where the browser was going before the login
    expect(page.locator("header .who span")).to_have_text("ada@example.com · admin")
    browser.assert_clean()
    page.goto(f"{browser.srv.url}/settings#users")
    row = page.locator("table.users tr", has_text="ada@example.com")
    expect(row.locator("td[data-label='Signs in with']")).to_have_text("single sign-on")
    browser.shot("settings-users")
    browser.assert_clean()
    page.click("header .who button:has-text('Log out')")
    page.wait_for_url(f"{browser.srv.url}/login")
    page.goto(f"{browser.srv.url}/")
    assert page.url.startswith(f"{browser.srv.url}/login")
    actions = [(entry["action"], entry["actor"]) for entry in browser.audit()]
    assert ("login.sso", "ada@example.com") in actions and ("logout", "ada@example.com") in actions


def test_refusals_show_the_reason_on_the_login_page(browser, oidc_provider):
    oidc_provider.set_user("ned", email="ned@example.com", email_verified=True, groups=["marketing"])
    sign_in_at_the_provider(browser, oidc_provider, "ned")
    page = browser.page
    page.wait_for_url(f"{browser.srv.url}/login/sso/callback?**")
    expect(page.locator(".form-error")).to_contain_text("ned@example.com has no lexyjobs role")
    browser.shot("refused")
    browser.forget_refused_returns()
    browser.assert_clean()
    page.goto(f"{browser.srv.url}/login/sso/callback?state=forged&code=forged")
    expect(page.locator(".form-error")).to_contain_text("the state does not match")
    page.goto(f"{browser.srv.url}/")
    assert page.url.startswith(f"{browser.srv.url}/login")
    reasons = {entry["details"].get("reason") for entry in browser.audit() if entry["action"] == "login.sso_refused"}
    assert reasons == {"no_role", "state"}
    browser.forget_refused_returns()
    browser.assert_clean()
