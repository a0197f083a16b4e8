"""The load-problems banner in real Chromium: a jobs.toml edited with a typo'd field while the
server runs, loaded by a restart (as lexyjobs loads it today), shows a banner on the Jobs page and
on the job's page, in light and dark mode (screenshots in test-artifacts/load-problems/); the
fixed file, loaded by the next restart, clears it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from liveserver import keep_on_loopback, running_server
from test_browser import ADMIN_PASSWORD, ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _browser_or_skip, _log_in, sync_playwright
from test_load_problems import GOOD, TYPO

pytestmark = pytest.mark.slow
SHOTS = ARTIFACTS / "load-problems"


def _banner_colours(page) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector(".load-problems", "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")


def test_an_edited_jobs_file_with_a_typo_shows_a_banner_until_it_is_fixed(db_url: str, tmp_path: Path) -> None:
    _browser_or_skip()
    shots = SHOTS / ("postgres" if db_url.startswith("postgresql") else "sqlite")
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(GOOD)
    env = {"LEXYJOBS_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with running_server(db_url, jobs_file, **env):
        jobs_file.write_text(TYPO)  # edited while the server runs
    blocked: list[str] = []
    assert sync_playwright is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with running_server(db_url, jobs_file, **env) as srv:  # the restart loads the edited file
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                keep_on_loopback(context, srv.url, blocked)
                page = context.new_page()
                page.goto(f"{srv.url}/login")
                _log_in(page, "admin", ADMIN_PASSWORD)
                page.goto(f"{srv.url}/jobs")
                banner = page.locator(".load-problems[role=alert]")
                assert banner.is_visible()
                text = banner.inner_text()
                assert "1 job definition problem at the last load" in text
                assert f"{jobs_file}: job nightly, field schedul: unknown field for a shell job" in text
                colours = {}
                for scheme in ("light", "dark"):
                    page.emulate_media(color_scheme=scheme)
                    colours[scheme] = _banner_colours(page)
                    page.screenshot(path=str(shots / f"jobs-{scheme}.png"))
                assert colours["light"] != colours["dark"]  # the dark theme styles it too
                page.emulate_media(color_scheme="light")
                page.goto(f"{srv.url}/jobs/nightly")
                assert "This job's latest definition was rejected" in banner.inner_text()
                assert "field schedul: unknown field" in banner.inner_text()
                assert "every day" in page.inner_text("body").lower() or "@daily" in page.inner_text("body")
                for scheme in ("light", "dark"):
                    page.emulate_media(color_scheme=scheme)
                    page.screenshot(path=str(shots / f"job-{scheme}.png"))
                context.close()
            jobs_file.write_text(GOOD)  # fixed
            with running_server(db_url, jobs_file, **env) as srv:
                context = browser.new_context()
                keep_on_loopback(context, srv.url, blocked)
                page = context.new_page()
                page.goto(f"{srv.url}/login")
                _log_in(page, "admin", ADMIN_PASSWORD)
                for path in ("/jobs", "/jobs/nightly"):
                    page.goto(f"{srv.url}{path}")
                    assert page.locator(".load-problems").count() == 0, path
                context.close()
        finally:
            browser.close()
    assert blocked == []
