"""Many panel tabs in one browser share one /events stream (real Debian chromium): the visible tab
holding the Web Lock streams and passes what it hears to the others over a BroadcastChannel;
hidden tabs hold no connection, so a browser's 6 connections per host are never used up.

Playwright keeps every page "visible" by design (microsoft/playwright#2286, #3570: neither a
background tab, a minimized window nor a CDP lifecycle state changes ``document.visibilityState``
in headless chromium), so a tab is hidden here the way the page itself sees it: ``visibilityState``
and ``hidden`` report it, and ``visibilitychange`` fires, exactly as when a user switches tabs.

Open streams are counted on the server: its established TCP connections (/proc/net/tcp). The
server closes a connection idle for a second (``LEXYJOBS_HTTP_IDLE_TIMEOUT=1``) but never one
serving a request, and with a live stream the pages used here send nothing else (their timers
stand down; hidden tabs neither stream nor poll), so once idle keep-alive sockets are swept the
connections left are the streams. (Playwright's request events are no count: it reports no end
for an EventSource closed soon after it opened, while the socket is gone.)"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import ROOT, wait_for
from liveserver import Server, running_server
from test_browser import ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, TOKEN, _browser_or_skip

try:
    from playwright.sync_api import BrowserContext, Page, sync_playwright
except ImportError:  # _browser_or_skip says so
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow

# The page's view of visibility, switchable per page: window.__hidden decides, and
# window.__setHidden(flag) changes it and fires visibilitychange as a tab switch does.
VISIBILITY = """
Object.defineProperty(document, "visibilityState", {configurable: true,
                      get: function () { return window.__hidden ? "hidden" : "visible"; }});
Object.defineProperty(document, "hidden", {configurable: true, get: function () { return !!window.__hidden; }});
window.__setHidden = function (flag) { window.__hidden = flag; document.dispatchEvent(new Event("visibilitychange")); };
"""
OPENED_IN_BACKGROUND = "window.__hidden = true;"
NO_WEB_LOCKS = "Object.defineProperty(Navigator.prototype, 'locks', {configurable: true, get: function () {}});"
# Pages whose every fragment follows the stream (the Queues and Workers pages poll on their own).
VISIBLE_TABS = ("/runs", "/", "/jobs", "/pipelines", "/jobs/tick")  # after the first tab, the dashboard
HIDDEN_TABS = ("/", "/runs", "/workers", "/queues")                 # opened in the background
TOTAL_CARD = "#dashboard-live .cards a.card strong"
SHOT = ROOT / "test-artifacts" / "live-tabs-dashboard.png"


def _connections(srv: Server) -> int:
    """Established TCP connections the server holds (its side of each loopback connection)."""
    port = int(srv.url.rsplit(":", 1)[1])
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if (fields := row.split()) and int(fields[1].split(":")[1], 16) == port
               and fields[3] == "01")


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """16 HTTP threads, so the server itself takes 8 streams: more than a browser's 6 connections;
    idle connections closed after 1 s, so the connections left open are the streams."""
    _browser_or_skip()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.tick]\nkind = "python"\nfunc = "jobfuncs:noop"\nmax_concurrency = 0\n')
    with running_server(db_url, jobs_file, LEXYJOBS_API_TOKEN=TOKEN, LEXYJOBS_ADMIN_PASSWORD=ADMIN_PASSWORD,
                        LEXYJOBS_HTTP_THREADS="16", LEXYJOBS_HTTP_IDLE_TIMEOUT="1") as srv:
        yield srv


def _log_in(page: Page, srv: Server) -> None:
    page.goto(f"{srv.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{srv.url}/"


def _open(context: BrowserContext, srv: Server, path: str, *, hidden: bool = False) -> Page:
    page = context.new_page()
    if hidden:
        page.add_init_script(OPENED_IN_BACKGROUND)
    page.goto(srv.url + path, wait_until="commit")
    return page


def _state(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => ({visibility: document.visibilityState, streaming: lexyjobsStream !== null,
        leading: window.lexyjobsLead != null, queued: window.lexyjobsQueued != null, live: lexyjobsLive})""")


def _leaders(pages: list[Page]) -> list[Page]:
    return [page for page in pages if _state(page)["streaming"]]


def _settled(pages: list[Page], srv: Server) -> Page:
    """The one leader once it streams live, every visible page knows (its timers stand down) and
    the server holds one connection: the stream."""
    def ready() -> Page | None:
        states = [_state(page) for page in pages]
        leaders = [page for page, state in zip(pages, states) if state["streaming"]]
        visible_live = all(s["live"] for s in states if s["visibility"] == "visible")
        return leaders[0] if len(leaders) == 1 and visible_live and _connections(srv) == 1 else None
    return wait_for(ready, timeout=10)


def _total_shows(page: Page, total: int, within: float) -> float:
    """Seconds until the dashboard's total card on ``page`` shows ``total`` (fails after ``within``)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if page.locator(TOTAL_CARD).first.inner_text() == str(total):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"the dashboard did not show {total} runs within {within} s")


def _api_run(srv: Server) -> None:
    status, _ = srv.call("POST", "/api/jobs/tick/run", TOKEN, {})
    assert status == 202


def test_ten_tabs_share_one_stream_and_the_browser_keeps_answering(live_server: Server) -> None:
    srv = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_init_script(VISIBILITY)
            problems: list[str] = []  # script errors and CSP violations, in any tab
            context.on("weberror", lambda error: problems.append(str(error.error)))
            context.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
            first = context.new_page()
            _log_in(first, srv)
            hidden = [_open(context, srv, path, hidden=True) for path in HIDDEN_TABS]
            tabs = [first] + [_open(context, srv, path) for path in VISIBLE_TABS] + hidden
            background_requests: list[str] = []
            for page in hidden:
                page.wait_for_load_state()
                page.on("request", lambda request: background_requests.append(request.url))
            for page in tabs:
                page.wait_for_load_state()
            leader = _settled(tabs, srv)
            for page in hidden:
                state = _state(page)
                assert state["visibility"] == "hidden" and page.evaluate("document.hidden") is True
                assert not (state["streaming"] or state["leading"] or state["queued"]), state
            assert _state(leader)["leading"] and _state(leader)["visibility"] == "visible"
            time.sleep(1.5)  # idle timeout and sweep: a second stream would show by now
            assert _connections(srv) == 1, f"the server holds {_connections(srv)} connections for 10 tabs"

            # The 11th page, and a Run click on it, answer at once.
            started = time.monotonic()
            eleventh = _open(context, srv, "/jobs/tick/run")
            eleventh.wait_for_load_state()
            assert time.monotonic() - started < 1.0, "the 11th page waited for a free connection"
            started = time.monotonic()
            eleventh.click("button:has-text('Run now')")
            eleventh.wait_for_url(re.compile(r".*/runs/\d+$"))
            assert time.monotonic() - started < 1.0, "the Run click waited for a free connection"

            # A run started elsewhere reaches a visible dashboard that is not the leader, pushed:
            # its own timers stand down while the leader's stream is live.
            follower = next(page for page in tabs[:6] if page is not leader and page.url == f"{srv.url}/")
            _total_shows(follower, 1, within=3)  # the Run click's run
            assert _state(follower)["live"] and not _state(follower)["streaming"]
            _api_run(srv)
            assert _total_shows(follower, 2, within=1.5) < 1.5
            SHOT.parent.mkdir(exist_ok=True)
            follower.screenshot(path=str(SHOT), full_page=True)
            assert background_requests == [], f"hidden tabs made requests: {background_requests}"
            assert problems == []
        finally:
            browser.close()


def test_a_visible_tab_takes_over_when_the_leader_is_hidden_or_closed(live_server: Server) -> None:
    srv = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_init_script(VISIBILITY)
            first = context.new_page()
            _log_in(first, srv)
            tabs = [first, _open(context, srv, "/"), _open(context, srv, "/")]
            background = _open(context, srv, "/", hidden=True)
            for page in tabs + [background]:
                page.wait_for_load_state()
            leader = _settled(tabs, srv)

            leader.evaluate("__setHidden(true)")  # the user switched away from the leading tab
            second = _settled([page for page in tabs if page is not leader], srv)
            assert not _state(leader)["streaming"] and not _state(leader)["leading"]
            assert not _state(background)["streaming"]

            second.close()  # closing the leader hands over too
            rest = [page for page in tabs if page not in (leader, second)]
            assert _settled(rest, srv) is rest[0]
            _api_run(srv)
            assert _total_shows(rest[0], 1, within=1.5) < 1.5

            rest[0].evaluate("__setHidden(true)")  # no tab visible: no stream
            wait_for(lambda: _connections(srv) == 0)
            assert not any(_state(page)["streaming"] or _state(page)["leading"] for page in (leader, rest[0], background))
            _api_run(srv)
            time.sleep(1)
            background.evaluate("__setHidden(false)")  # it comes into view, streams and catches up
            assert _settled([leader, rest[0], background], srv) is background
            _total_shows(background, 2, within=2)
        finally:
            browser.close()


def test_without_web_locks_each_visible_tab_streams_and_hidden_ones_do_not(live_server: Server) -> None:
    srv = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_init_script(VISIBILITY + NO_WEB_LOCKS)
            first = context.new_page()
            _log_in(first, srv)
            visible = [first, _open(context, srv, "/runs")]
            hidden = [_open(context, srv, "/", hidden=True) for _ in range(3)]
            for page in visible + hidden:
                page.wait_for_load_state()
            assert first.evaluate("navigator.locks") is None
            wait_for(lambda: all(_state(page)["live"] for page in visible) and _connections(srv) == 2)
            time.sleep(1.5)
            assert _connections(srv) == 2 and not any(_state(page)["streaming"] for page in hidden)
            _api_run(srv)
            assert _total_shows(first, 1, within=1.5) < 1.5
        finally:
            browser.close()
