"""``openai`` runs in a real browser (Debian's chromium via playwright, as test_browser_panel.py)
against a real ``python app.py`` on SQLite and Postgres, its LLM the OpenAI-compatible test server
(tests/openai_server.py) in this process: a streamed chat reply grows in the run page's log while
the run runs, the progress saying "streaming: N tokens", and once it has finished the page shows
the prompt it sent and the answer, without a reload; a batch run over 40 items shows "N of 40
items" climbing and, at the end, the table of its failed items. No script or console errors, CSP
violations or requests off the loopback server. With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run
writes docs/screenshots/llm-streaming.png, llm-prompt.png and llm-items.png."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LLM_KEY, wait_for
from openai_server import OpenAIServer, Reply
from test_browser_panel import SHOTS, STATUS_BADGE, TAKE_SHOTS, Panel, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

STORY = ("Every night at six the scheduler woke, counted its queues, sent the weekly reports, retried the "
         "flaky crawl twice and then slept again.")  # 25 words: 25 streamed tokens, 0.3 s apart
FAILING = (5, 17, 31)
PROGRESS = "#run-live .run-progress > span:not(.progress)"  # the message beside the bar
NO_RELOAD = "() => { window.__noReload = true; }"


@pytest.fixture
def llm() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def panel(db_url: str, tmp_path: Path, llm: OpenAIServer) -> Iterator[Panel]:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": LLM_KEY, "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"), **env) as panel:
        yield panel


def shoot(panel: Panel, name: str, focus: str) -> None:
    """docs/screenshots/<name>.png at 1280×800, light, with ``focus`` near the top of the view."""
    if not panel.shoot:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    panel.page.locator(focus).first.evaluate("el => { el.scrollIntoView({block: 'start'}); window.scrollBy(0, -16); }")
    panel.page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_a_streamed_reply_grows_on_the_run_page_then_shows_its_prompt_and_answer(panel: Panel,
                                                                                 llm: OpenAIServer) -> None:
    llm.script(Reply(content=STORY, token_delay=0.3, usage=(31, 25)))
    panel.create_job("bedtime-story", title="Bedtime story", category="AI", kind="openai", model="gpt-test",
                     system="You are a storyteller. Write one sentence.", prompt="Tell a story about {{ topic }}.",
                     params={"topic": {"type": "string", "default": "a scheduler"}})
    run_id = panel.run_job("bedtime-story")
    panel.visit(f"/runs/{run_id}")
    page = panel.page
    page.evaluate(NO_RELOAD)
    log = page.locator("#log")
    expect(log).to_contain_text("Every night", timeout=15_000)
    first = log.inner_text()
    assert "slept again" not in first, "the whole reply was there at once: nothing streamed"
    wait_for(lambda: len(log.inner_text()) > len(first), timeout=5)  # it grows, read again in the browser
    assert page.locator(STATUS_BADGE).inner_text() == "running"  # ...while the run still runs
    expect(page.locator(PROGRESS)).to_have_text(re.compile(r"^streaming: \d+ tokens$"))
    streamed = int(page.locator(PROGRESS).inner_text().split()[1])
    assert 1 <= streamed < 25
    if panel.shoot:  # a few more words first, so that the picture shows a log mid-sentence
        expect(log).to_contain_text("the weekly")
    shoot(panel, "llm-streaming", "#run-live")

    expect(page.locator(STATUS_BADGE)).to_have_text("succeeded", timeout=20_000)
    prompt = page.locator("#run-live .run-prompt")
    expect(prompt).to_be_visible()
    messages = prompt.locator(".prompt-message")
    expect(messages).to_have_count(2)
    expect(messages.nth(0).locator(".badge")).to_have_text("system")
    expect(messages.nth(0).locator("pre")).to_have_text("You are a storyteller. Write one sentence.")
    expect(messages.nth(1).locator(".badge")).to_have_text("user")
    expect(messages.nth(1).locator("pre")).to_have_text("Tell a story about a scheduler.")
    expect(prompt.locator("pre.answer-text")).to_have_text(STORY)
    expect(prompt.get_by_role("link", name="Re-run with changes…")).to_have_attribute(
        "href", f"/jobs/bedtime-story/run?from_run={run_id}")
    expect(log).to_contain_text("slept again")
    assert page.evaluate("window.__noReload") is True, "the page reloaded instead of swapping its live block"
    panel.assert_clean()
    shoot(panel, "llm-prompt", "#run-live")


def test_a_batch_runs_items_count_up_live_and_its_failed_items_are_listed(panel: Panel, llm: OpenAIServer) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        asked = str(body.get("messages"))
        ticket = int(re.search(r"ticket (\d+)", asked).group(1))  # type: ignore[union-attr]
        if ticket in FAILING:
            return Reply(status=500, message=f"the model choked on ticket {ticket}", delay=0.2)
        return Reply(content=f"Ticket {ticket}: a one-line summary.", delay=0.2)
    llm.rule(answer)
    panel.create_job("summarise-tickets", title="Summarise tickets", category="AI", kind="openai", model="gpt-test",
                     prompt="Summarise ticket {{ item.id }} in one line: {{ item.text }}", parallel=2,
                     params={"items": {"type": "json", "required": True}})
    items = [{"id": n, "text": f"Customer {n} cannot export the weekly report"} for n in range(40)]
    run_id = panel.run_job("summarise-tickets", {"items": items})
    panel.visit(f"/runs/{run_id}")
    page = panel.page
    page.evaluate(NO_RELOAD)

    seen: list[int] = []  # each "N of 40 items" the page showed, as it showed them
    deadline = time.monotonic() + 30
    while page.locator(STATUS_BADGE).inner_text() != "failed" and time.monotonic() < deadline:
        found = re.match(r"(\d+) of 40 items", page.locator(PROGRESS).inner_text()) \
            if page.locator(PROGRESS).count() else None
        if found and (not seen or seen[-1] != int(found.group(1))):
            seen.append(int(found.group(1)))
        time.sleep(0.1)
    assert page.locator(STATUS_BADGE).inner_text() == "failed"
    running = [n for n in seen if n < 40]
    assert len(running) >= 3 and running == sorted(running), f"the progress did not climb live: {seen}"
    expect(page.locator(PROGRESS)).to_have_text("40 of 40 items, 3 failed")

    section = page.locator("#run-live .run-items")
    for label, count in (("Succeeded", "37"), ("Failed", "3"), ("Items", "40")):
        expect(section.locator("dl.facts > div", has=page.locator(f"dt:text-is('{label}')")).locator("dd")) \
            .to_have_text(count)
    rows = section.locator("table.run-items-failed tbody tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(3)] == [str(n) for n in FAILING]
    expect(rows.nth(0).locator("td.error-text")).to_contain_text("the model choked on ticket 5")
    shoot(panel, "llm-items", "#run-live .run-progress")
    expect(section.locator("details.run-items-ok pre").first).not_to_be_visible()  # collapsed
    section.locator("details.run-items-ok summary").click()
    expect(section.locator("details.run-items-ok pre").first).to_have_text("Ticket 0: a one-line summary.")
    assert page.evaluate("window.__noReload") is True, "the page reloaded instead of swapping its live block"
    panel.assert_clean()
