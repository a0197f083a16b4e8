"""The workers page in a real browser (Debian's chromium via playwright, as test_browser_panel.py):
a real ``python app.py`` and a second process, ``lexyjobs worker``, on one database, SQLite and
Postgres. The page lists the server's worker, then the second one appears without a reload once
it registers, each with links to its current runs; no script or console errors, CSP violations
or requests off the loopback server. With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes
docs/screenshots/workers-light.png and -dark.png."""
from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, wait_for
from test_browser_panel import SHOTS, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

ROWS = "#workers-live table.workers tbody tr"


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    """The server (2 worker threads, no jobs file) and a chromium page logged in as admin."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite")) as panel:
        yield panel


@pytest.fixture
def start_second_worker(panel: Panel, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts ``lexyjobs worker`` (3 threads) on the server's database; SIGTERM afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {**panel.srv.env, "LEXYJOBS_WORKERS": "3"}
        with open(tmp_path / "worker.log", "wb") as out:
            started.append(subprocess.Popen([PYTHON, "-m", "lexyjobs", "worker"], cwd=ROOT, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT))
        return started[-1]
    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_workers_page_lists_every_worker_process_live(
        panel: Panel, start_second_worker: Callable[[], subprocess.Popen[bytes]]) -> None:
    page = panel.page
    panel.create_job("long-import", title="Long import", category="Imports", kind="shell", max_concurrency=0,
                     argv=["sh", "-c", "echo importing; sleep 30"])
    panel.create_job("refresh-metrics", title="Refresh metrics", category="Metrics", kind="shell",
                     argv=["sh", "-c", "sleep 30"])
    panel.visit("/workers")
    page.evaluate("window.__noReload = true")  # gone if the page reloads
    expect(page.locator(ROWS)).to_have_count(1)  # the server's own worker
    expect(page.locator(ROWS).first).to_contain_text("(this process)")

    second = f"{socket.gethostname()}:{start_second_worker().pid}"
    expect(page.locator(f"{ROWS}:has-text('{second}')")).to_have_count(1, timeout=20_000)  # brought by the poll
    run_ids = [panel.run_job("long-import") for _ in range(4)] + [panel.run_job("refresh-metrics")]
    for run_id in run_ids:
        panel.wait_status(run_id, "running")
    links = page.locator(f"{ROWS} td.current-runs a[href^='/runs/']")
    expect(links).to_have_count(len(run_ids), timeout=10_000)
    shown = sorted(int(href.rsplit("/", 1)[1]) for href in links.evaluate_all("els => els.map(e => e.getAttribute('href'))"))
    assert shown == sorted(run_ids)
    expect(page.locator(f"{ROWS} .worker-state.busy").first).to_be_visible()
    assert page.evaluate("window.__noReload") is True
    panel.assert_clean()
    if panel.shoot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        panel.screenshot("workers")

    links.first.click()  # a current run opens its page
    page.wait_for_url(f"{panel.base}/runs/*")
    panel.assert_clean()
    for run_id in run_ids:
        panel.api("POST", f"/api/runs/{run_id}/cancel")
    wait_for(lambda: all(panel.api("GET", f"/api/runs/{run_id}")["status"] == "canceled" for run_id in run_ids),
             timeout=20)
