"""The LLM usage charts in a real browser (Debian's chromium via playwright, as
test_browser_panel.py), SQLite and Postgres: ten days of usage of two ``openai`` jobs, charted on
the job page and on the dashboard (whose top jobs link to their pages); every day has its tooltip;
the amounts above the cost bars and the legend never overlap; labels take the theme's text colour
in light and dark mode. No script or console errors, CSP violations or requests off the loopback
server. With ``LEXYJOBS_SCREENSHOTS=1`` the SQLite run writes docs/screenshots/llm-usage-job.png
and llm-usage-dashboard.png."""
from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_browser_panel import SHOTS, TAKE_SHOTS, Panel, open_panel

from lexyjobs.db import Database, utcnow
from lexyjobs.llm.spend import add_usage, day_of

try:
    from playwright.sync_api import expect
except ImportError:  # open_panel skips, saying so
    pass

pytestmark = pytest.mark.slow

JOBS = {"daily-digest": ("Daily digest of the support inbox", "gpt-4o-mini", 0.15, 0.60),
        "generate-embeddings": ("Generate embeddings", "text-embedding-3-large", 0.13, 0.0)}
SEEDED_DAYS = 10
LIGHT_TEXT, DARK_TEXT = "rgb(29, 35, 48)", "rgb(227, 231, 239)"   # --fg in app.css
# Each element's box, in page pixels, for the overlap check.
BOXES = "els => els.map(e => { const b = e.getBoundingClientRect(); return [b.left, b.right, b.top, b.bottom]; })"


@pytest.fixture
def panel(db_url: str, tmp_path: Path) -> Iterator[Panel]:
    """The server without workers, two openai jobs and ten days of their usage (today included)."""
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("# jobs come from the API in the test\n")
    with open_panel(db_url, jobs_file, shoot=TAKE_SHOTS and db_url.startswith("sqlite"),
                    LEXYJOBS_WORKERS="0") as panel:
        for name, (title, model, _, _) in JOBS.items():
            panel.create_job(name, title=title, category="AI", kind="openai", model=model, prompt="{{ item }}")
        seed_usage(db_url)
        if panel.shoot:
            SHOTS.mkdir(parents=True, exist_ok=True)
        yield panel


def seed_usage(db_url: str) -> None:
    """Ten days of each job's requests, priced in USD, at varied volumes (a quiet weekend)."""
    rng, now, db = random.Random(5), utcnow(), Database(db_url)
    try:
        with db.write() as session:
            for back in range(SEEDED_DAYS):
                day = day_of(now - timedelta(days=back))
                quiet = back in (3, 4)
                for name, (_, model, price_in, price_out) in JOBS.items():
                    requests = rng.randint(2, 6) if quiet else rng.randint(20, 60)
                    prompt = requests * rng.randint(600, 1400)
                    completion = requests * rng.randint(80, 300) if price_out else 0
                    add_usage(session, day, name, "openai", model, requests=requests, cached=rng.randint(0, 3),
                              prompt=prompt, completion=completion,
                              cost=(prompt * price_in + completion * price_out) / 1_000_000 * 40, currency="USD")
    finally:
        db.dispose()


def _check_chart(panel: Panel) -> None:
    """The chart is drawn: 14 days with a tooltip each (the seeded ten with figures), its bars
    have a size, and no label overlaps another."""
    page = panel.page
    chart = page.locator("figure.llm-usage")
    expect(chart).to_be_visible()
    titles = chart.locator("g.bar > title")
    expect(titles).to_have_count(14)
    texts = titles.all_text_contents()
    today = day_of(utcnow())
    assert texts[-1].startswith(f"{today}: ") and " USD, " in texts[-1] and "requests" in texts[-1], texts[-1]
    assert sum(1 for t in texts if t.endswith(": 0 tokens (0 prompt + 0 completion), 0 requests")) == 14 - SEEDED_DAYS
    assert chart.locator("rect.prompt").count() == SEEDED_DAYS
    assert chart.locator("rect.cost").count() == SEEDED_DAYS
    box = chart.locator("rect.prompt").last.bounding_box()
    assert box is not None and box["width"] > 10 and box["height"] > 5
    for selector in ("text.amount", "g.legend-keys text", "text.tick"):
        _assert_apart(chart.locator(selector).evaluate_all(BOXES), selector)
    for scheme, colour in (("light", LIGHT_TEXT), ("dark", DARK_TEXT)):
        page.emulate_media(color_scheme=scheme)
        fill = chart.locator("text.amount").first.evaluate("el => getComputedStyle(el).fill")
        assert fill == colour, (scheme, fill)
    page.emulate_media(color_scheme="light")


def _assert_apart(boxes: list[list[float]], what: str) -> None:
    assert boxes, f"no {what}"
    for index, (left, right, top, bottom) in enumerate(boxes):
        for other in boxes[index + 1:]:
            apart = right <= other[0] or other[1] <= left or bottom <= other[2] or other[3] <= top
            assert apart, f"{what} overlap: {[left, right, top, bottom]} and {other}"


def _shoot(panel: Panel, name: str, section: Any) -> None:
    if panel.shoot:
        section.evaluate("el => { el.scrollIntoView({block: 'start'}); window.scrollBy(0, -24); }")
        panel.page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_the_job_page_charts_the_jobs_usage_day_by_day(panel: Panel) -> None:
    page = panel.page
    panel.visit("/jobs/daily-digest")
    section = page.locator("section:has(> h2#h-llm)")
    expect(section.locator("figcaption")).to_contain_text("Today:")
    expect(section.locator("figcaption")).to_contain_text("14 days:")
    _check_chart(panel)
    api = panel.api("GET", "/api/llm/usage?job=daily-digest")
    today = api["rows"][-1]
    expect(section.locator("g.bar > title").last).to_have_text(
        f"{today['day']}: {today['tokens']:,} tokens ({today['prompt_tokens']:,} prompt + "
        f"{today['completion_tokens']:,} completion), {today['cost']['USD']:,.2f} USD, {today['requests']} requests"
        + (f" ({today['cached']} cached)" if today["cached"] else ""))
    _shoot(panel, "llm-usage-job", section)
    panel.assert_clean()


def test_the_dashboard_charts_every_job_and_links_the_top_ones(panel: Panel) -> None:
    page = panel.page
    panel.visit("/")
    card = page.locator("section.llm-usage-card")
    _check_chart(panel)
    links = card.locator("table.llm-top-jobs tbody a")
    expect(links).to_have_count(2)
    _shoot(panel, "llm-usage-dashboard", card)
    links.filter(has_text="Generate embeddings").click()
    page.wait_for_url(f"{panel.base}/jobs/generate-embeddings")
    expect(page.locator("figure.llm-usage")).to_be_visible()
    panel.assert_clean()
