"""The mounted panel on a real WSGI server (waitress, in this process) and in real Chromium: a host
app with its own login mounts lexyjobs at /admin/jobs; the runtime starts at the first request the
server serves; the run form starts a job and the run page shows it finish live, with every request
the page makes under the prefix. A screenshot goes to test-artifacts/extension/."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import redirect, session
from waitress.server import create_server

from hostapp import make_host, seed
from lexyjobs import HostUser
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _browser_or_skip, sync_playwright

BASE = "/admin/jobs"


def _authorize(request: Any) -> Any:
    user = session.get("host_user")
    if user is None:
        return redirect("/account/login")
    return HostUser(user, "admin") if user == "ada" else None


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[str, Any]]:
    app, jobs = make_host(tmp_path, db_url, url_prefix=BASE, authorize=_authorize, workers=2)
    jobs.runtime.prepare()
    seed(jobs.runtime.db)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", jobs
    finally:
        server.close()
        jobs.stop(grace=0)


def test_the_first_served_request_starts_the_runtime_and_runs_execute(served: tuple[str, Any]) -> None:
    base, jobs = served
    assert not jobs.runtime.started
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(f"{base}/remember/ada") as response:
        assert response.read() == b"ok"
    deadline = time.monotonic() + 10
    while not jobs.runtime.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert jobs.runtime.worker is not None and jobs.runtime.scheduler is not None
    with opener.open(f"{base}{BASE}/api/me") as response:
        assert b'"ada"' in response.read()
    with opener.open(f"{base}{BASE}/healthz") as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}{BASE}/api/runs")
    assert refused.value.code == 401


@pytest.mark.slow
def test_chromium_runs_a_job_in_the_mounted_panel_and_sees_it_finish(served: tuple[str, Any], db_url: str) -> None:
    _browser_or_skip()
    base, _jobs = served
    shots = ARTIFACTS / "extension"
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    errors: list[str] = []
    assert sync_playwright is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(base + BASE + "/")
                    and not req.url.startswith(base + "/remember") else None)
            page.goto(f"{base}/remember/ada")
            page.goto(f"{base}{BASE}/jobs/ext-job/run")
            page.click("form[method=post] button[type=submit]")
            page.wait_for_url(f"{base}{BASE}/runs/*")
            page.wait_for_selector("text=succeeded", timeout=15000)
            events = page.evaluate("document.querySelector('meta[name=\"lexyjobs-events\"]').content")
            assert events == f"{BASE}/events"
            page.goto(f"{base}{BASE}/")
            page.wait_for_function("() => lexyjobsLive")  # the tabs' shared stream, under the prefix
            assert page.evaluate("lexyjobsShare.name") == f"lexyjobs-events {base}{BASE}/events"
            page.wait_for_timeout(1500)  # the live blocks load
            page.screenshot(path=str(shots / f"dashboard-{'pg' if db_url.startswith('postgresql') else 'sqlite'}.png"),
                            full_page=True)
            assert "ada · admin" in page.content()
        finally:
            browser.close()
    assert not errors, errors
    assert not outside, outside
