"""Live updates in a real browser (Debian chromium): pushed over /events (SSE) while the page is
visible, with htmx polling taking over when the stream is unavailable."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
from liveserver import Server, running_server
from test_browser import ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, TOKEN, _browser_or_skip

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, Route, sync_playwright
except ImportError:  # _browser_or_skip says so
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    _browser_or_skip()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.tick]\nkind = "python"\nfunc = "jobfuncs:noop"\nmax_concurrency = 0\n'
                         '[jobs.slow]\nkind = "shell"\nargv = ["sleep", "60"]\nexpected_duration = "..2s"\n')
    with running_server(db_url, jobs_file, LEXYJOBS_API_TOKEN=TOKEN, LEXYJOBS_ADMIN_PASSWORD=ADMIN_PASSWORD) as srv:
        yield srv


def _dashboard(page: Page, srv: Server) -> None:
    page.goto(f"{srv.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{srv.url}/"


def _seconds_until_total_shows(page: Page, srv: Server, total: int) -> float:
    """Start a run through the API, then time until the dashboard's total card shows ``total``."""
    status, _ = srv.call("POST", "/api/jobs/tick/run", TOKEN, {})
    assert status == 202
    started = time.monotonic()
    while time.monotonic() - started < 10:
        if page.locator("#dashboard-live .cards a.card strong").first.inner_text() == str(total):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"the dashboard never showed {total} runs")


def test_the_dashboard_is_pushed_changes_over_sse(live_server: Server) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            polls: list[str] = []
            page.on("request", lambda request: polls.append(request.url) if "stamp=" in request.url else None)
            _dashboard(page, live_server)
            deadline = time.monotonic() + 5
            while not page.evaluate("() => lexyjobsLive") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert page.evaluate("() => lexyjobsLive"), "the event stream did not connect"
            assert _seconds_until_total_shows(page, live_server, 1) < 1.5  # pushed within the feed interval
            quiet = len(polls)
            time.sleep(4.5)  # two timer periods with nothing happening
            assert len(polls) == quiet, f"the timers kept polling while the stream was live: {polls[quiet:]}"
        finally:
            browser.close()


def test_polling_takes_over_when_the_stream_is_refused(live_server: Server) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()

            def refuse_events(route: Route) -> None:
                route.fulfill(status=204)
            context.route("**/events", refuse_events)
            page = context.new_page()
            _dashboard(page, live_server)
            assert page.evaluate("() => lexyjobsLive") is False
            assert _seconds_until_total_shows(page, live_server, 1) < 4.0  # the 2 s timer picks it up
        finally:
            browser.close()


def test_a_change_pushed_while_a_poll_is_in_flight_is_not_lost(live_server: Server) -> None:
    """The stream says "changed" while the fragment's poll is still on its way back with the older
    state: htmx queues that refresh on the element its answer then replaces, and drops it with the
    element. The page must still fetch the change (it used to show the older state until the next
    change, and under load that was the runs list's whole retry)."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            _dashboard(page, live_server)
            deadline = time.monotonic() + 5
            while not page.evaluate("() => lexyjobsLive") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert page.evaluate("() => lexyjobsLive"), "the event stream did not connect"
            held: list[str] = []

            def hold_the_first_poll(route: Route) -> None:
                if held:
                    route.continue_()
                    return
                held.append(route.request.url)
                older = route.fetch()  # rendered now: one run
                status, _ = live_server.call("POST", "/api/jobs/tick/run", TOKEN, {})
                assert status == 202   # a second run while that answer is on its way
                time.sleep(2.5)        # the stream tells the page about it meanwhile
                route.fulfill(response=older)
            page.route("**/?stamp=*", hold_the_first_poll)
            status, _ = live_server.call("POST", "/api/jobs/tick/run", TOKEN, {})
            assert status == 202
            total = page.locator("#dashboard-live .cards a.card strong").first
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline and total.inner_text() != "2":
                page.wait_for_timeout(50)
            assert held, "no poll was held"
            assert total.inner_text() == "2", "the change told while the poll was in flight was lost"
        finally:
            browser.close()


def test_a_run_turning_too_long_shows_though_nothing_is_written(live_server: Server) -> None:
    """A running run crossing its bound (expected_duration = "..2s") writes nothing, so the stream has
    nothing to tell; the dashboard's poll names that moment and polls then, stream or not."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            _dashboard(page, live_server)
            _wait_for(page, lambda: page.evaluate("() => lexyjobsLive"), "the event stream to connect")
            status, _ = live_server.call("POST", "/api/jobs/slow/run", TOKEN, {})
            assert status == 202
            running = page.locator("#dashboard-live .cards a.card:has(.badge.running) strong")
            _wait_for(page, lambda: running.inner_text() == "1", "the run to start")
            too_long = page.locator("#dashboard-live .signal.too_long")
            _wait_for(page, lambda: too_long.count() == 1, "the run to show as too long")
            assert page.evaluate("() => lexyjobsLive"), "the stream went away: the timers did the work"
        finally:
            browser.close()


def test_a_message_stays_through_the_refreshes_that_follow_it(live_server: Server) -> None:
    """What an action says ("Retried 1 run …") is shown inside the live runs list; the refreshes the
    change itself causes used to replace it within a second, before anyone could read it."""
    with _runs_page(live_server) as page:
        position = page.locator(".pager-position")
        _wait_for(page, lambda: "1 run" in position.inner_text() and "succeeded" in page.locator(
            "table.runs tbody td.status").first.inner_text(), "the run to finish")
        page.locator("table.runs tbody input[name=run_id]").first.check()
        page.click("#runs-selected button:has-text('Retry selected')")
        flash = page.locator("#runs-table .flash")
        _wait_for(page, lambda: flash.count() == 1, "the message")
        status, _ = live_server.call("POST", "/api/jobs/tick/run", TOKEN, {})
        assert status == 202
        _wait_for(page, lambda: "3 runs" in position.inner_text(), "the list to show the third run")
        _wait_for(page, lambda: page.locator("table.runs tbody td.status .badge:has-text('succeeded')").count() == 3,
                  "the runs to finish")
        assert flash.count() == 1 and "Retried 1 run" in flash.inner_text(), "a refresh took the message away"

        page.check(".runs-filters input[name=status][value=succeeded]")  # the reader moves on: it goes
        _wait_for(page, lambda: "status=succeeded" in page.url, "the filter")
        _wait_for(page, lambda: flash.count() == 0, "a filter to replace the message")


def test_an_action_answered_after_a_poll_still_lands(live_server: Server) -> None:
    """A poll of the runs list is on its way when "Retry selected" is sent, and is answered first.
    htmx fixes a request's target when it sends it: the poll's answer replaced the list, and the
    action's answer then found nowhere to land ("Retried 1 run" never shown; a filter answered
    that way was silently not applied). The poll now gives way to the action."""
    with _runs_page(live_server) as page:
        _wait_for(page, lambda: page.locator("table.runs tbody td.status .badge:has-text('succeeded')").count() == 1,
                  "the run to finish")
        _wait_for(page, lambda: page.evaluate("() => lexyjobsLive"), "the event stream to connect")
        held: dict[str, Route] = {}

        def hold(route: Route) -> None:  # the first poll and the action wait; later polls go on
            if route.request.method in held:
                route.continue_()
            else:
                held[route.request.method] = route
        page.route("**/runs?stamp=*", hold)
        page.route("**/runs/bulk*", hold)
        page.locator("table.runs tbody input[name=run_id]").first.check()
        status, _ = live_server.call("POST", "/api/jobs/tick/run", TOKEN, {})  # the stream: refresh
        assert status == 202
        _wait_for(page, lambda: "GET" in held, "a poll on its way")
        page.click("#runs-selected button:has-text('Retry selected')")
        _wait_for(page, lambda: "POST" in held, "the retry on its way")
        try:
            held["GET"].fulfill(response=held["GET"].fetch())  # the poll's answer comes first
        except PlaywrightError:
            pass  # the browser gave up that poll
        held["POST"].continue_()
        flash = page.locator("#runs-table .flash")
        _wait_for(page, lambda: flash.count() == 1, "the retry's message")
        assert flash.inner_text() == "Retried 1 run as a new queued run."
        _wait_for(page, lambda: "3 runs" in page.locator(".pager-position").inner_text(), "the list to catch up")


@contextmanager
def _runs_page(srv: Server) -> Iterator[Page]:
    """Chromium on the runs list, logged in, with one run of ``tick`` queued."""
    status, _ = srv.call("POST", "/api/jobs/tick/run", TOKEN, {})
    assert status == 202
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            _dashboard(page, srv)
            page.goto(f"{srv.url}/runs")
            yield page
        finally:
            browser.close()


def _wait_for(page: Page, condition: Callable[[], bool], what: str, seconds: float = 12) -> None:
    """Poll ``condition``; the page's own waits let Playwright take in what the browser did."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        page.wait_for_timeout(50)
