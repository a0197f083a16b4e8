"""What ``openai`` jobs spent (``llm_usage_days``), read and shown: the reads (every day of a
window, zeros included; currencies never added; one job's rows), the chart (bars proportional,
tooltips, escaping), the job page's and the dashboard's sections, ``/metrics``' counters and
``GET /api/llm/usage``. SQLite and Postgres."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any, Callable

import pytest
from conftest import ApiClient, PanelSession
from test_metrics import Samples, scraper, series, value  # noqa: F401  (the scraper fixture)

from lexyjobs.db import Database, utcnow
from lexyjobs.llm import usage_reads
from lexyjobs.llm.spend import add_usage, day_of
from lexyjobs.llm.usage_reads import Usage
from lexyjobs.panel.llm_charts import (STRIP_BAR, TOKENS_HEIGHT, TOKENS_TOP, day_tooltip, short_amount, short_count,
                                       usage_chart)

MakeJob = Callable[..., str]
PanelAs = Callable[[str], PanelSession]
OPENAI = {"kind": "openai", "model": "gpt-test", "prompt": "Say hello."}
NOW = datetime(2026, 12, 5, 15, 30, tzinfo=timezone.utc)


def ago(days: int, now: datetime | None = None) -> str:
    """The UTC day ``days`` before ``now`` (default: the real now, as the pages use)."""
    return day_of((now or utcnow()) - timedelta(days=days))


def use(db: Database, day: str, job: str, *, provider: str = "openai", model: str = "gpt-test", requests: int = 1,
        cached: int = 0, prompt: int = 0, completion: int = 0, cost: float = 0.0, currency: str = "") -> None:
    with db.write() as session:
        add_usage(session, day, job, provider, model, requests=requests, cached=cached, prompt=prompt,
                  completion=completion, cost=cost, currency=currency)


def read_window(db: Database, **kwargs: Any) -> usage_reads.Window:
    with db.read() as session:
        return usage_reads.window(session, **kwargs)


class Chart(HTMLParser):
    """The LLM usage figures of a page: each one's caption, tooltips, rects and svg attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.figures: list[dict[str, Any]] = []
        self._figure: dict[str, Any] | None = None
        self._text: str | None = None  # the element whose text is being read: title or figcaption
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "figure" and "llm-usage" in (found.get("class") or "").split():
            self._figure = {"titles": [], "rects": [], "svg": {}, "caption": ""}
            self.figures.append(self._figure)
        elif self._figure is not None and tag == "svg":
            self._figure["svg"] = found
        elif self._figure is not None and tag == "rect":
            self._figure["rects"].append(found)
        elif self._figure is not None and tag in ("title", "figcaption"):
            self._text = tag
            if tag == "title":
                self._figure["titles"].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._text:
            self._text = None
        elif tag == "figure":
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._figure is None or self._text is None:
            return
        if self._text == "title":
            self._figure["titles"][-1] += data
        else:
            self._figure["caption"] += data

    def only(self) -> dict[str, Any]:
        assert len(self.figures) == 1, f"{len(self.figures)} LLM usage charts on the page"
        return self.figures[0]


def rects(figure: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in figure["rects"] if r.get("class") == kind]


# ---------------------------------------------------------------- the reads


def test_a_window_has_every_day_oldest_first_with_zeros_for_days_without_usage(db: Database) -> None:
    use(db, ago(0, NOW), "digest", requests=3, cached=1, prompt=100, completion=20, cost=0.25, currency="USD")
    use(db, ago(2, NOW), "digest", requests=2, prompt=40, completion=10, cost=0.5, currency="USD")
    use(db, ago(2, NOW), "digest", model="gpt-other", requests=1, prompt=5, completion=5, cost=0.25, currency="USD")
    use(db, ago(5, NOW), "digest", requests=9, prompt=900)  # before the window
    found = read_window(db, now=NOW, days=5)
    assert list(found.days) == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"]
    assert (found.first_day, found.last_day) == ("2026-12-01", "2026-12-05")
    assert found.days["2026-12-03"] == Usage(3, 0, 45, 15, {"USD": 0.75})   # two models of one day together
    assert found.days["2026-12-01"] == found.days["2026-12-02"] == found.days["2026-12-04"] == Usage()
    assert found.today == Usage(3, 1, 100, 20, {"USD": 0.25})
    assert found.total == Usage(6, 1, 145, 35, {"USD": 1.0})
    assert read_window(db, now=NOW + timedelta(days=30)).empty


def test_costs_in_different_currencies_are_kept_apart_and_unpriced_usage_has_none(db: Database) -> None:
    day = ago(0, NOW)
    use(db, day, "us-job", requests=2, prompt=10, completion=10, cost=0.5, currency="USD")
    use(db, day, "eu-job", provider="mistral", requests=1, prompt=30, cost=0.25, currency="EUR")
    use(db, day, "free-job", provider="local", requests=4, prompt=400, completion=100)  # no price: ''
    found = read_window(db, now=NOW, days=1)
    assert found.today == Usage(7, 0, 440, 110, {"USD": 0.5, "EUR": 0.25})
    assert found.jobs["free-job"].cost == {} and found.jobs["eu-job"].cost == {"EUR": 0.25}
    assert found.today.as_dict()["cost"] == {"EUR": 0.25, "USD": 0.5}


def test_the_window_of_one_job_leaves_the_others_out(db: Database) -> None:
    use(db, ago(1, NOW), "mine", requests=2, prompt=20, completion=2, cost=0.5, currency="USD")
    use(db, ago(1, NOW), "theirs", requests=7, prompt=700, completion=70, cost=2.0, currency="USD")
    found = read_window(db, now=NOW, days=3, job="mine")
    assert set(found.jobs) == {"mine"}
    assert found.total == Usage(2, 0, 20, 2, {"USD": 0.5})
    assert read_window(db, now=NOW, days=3, job="nobody").empty


def test_top_jobs_rank_by_cost_in_the_main_currency_then_by_tokens(db: Database) -> None:
    day = ago(0, NOW)
    use(db, day, "cheap", prompt=10, cost=0.25, currency="USD")
    use(db, day, "dear", prompt=5, cost=2.0, currency="USD")
    use(db, day, "euro", prompt=10_000, cost=1.0, currency="EUR")  # not compared with USD amounts
    use(db, day, "free-big", provider="local", prompt=5_000)
    use(db, day, "free-small", provider="local", prompt=50)
    use(db, day, "usd-2", prompt=1, cost=1.0, currency="USD")
    use(db, day, "usd-3", prompt=1, cost=1.5, currency="USD")
    top = read_window(db, now=NOW, days=1).top_jobs()
    assert [name for name, _ in top] == ["dear", "usd-3", "usd-2", "cheap", "euro"]


def test_totals_per_job_provider_model_and_currency_cover_every_day(db: Database) -> None:
    use(db, ago(200, NOW), "digest", requests=1, prompt=10, completion=1, cost=0.25, currency="USD")
    use(db, ago(0), "digest", requests=2, cached=1, prompt=20, completion=2, cost=0.5, currency="USD")
    use(db, ago(0), "digest", model="gpt-other", requests=1, prompt=3)
    with db.read() as session:
        found = usage_reads.totals(session)
        assert usage_reads.has_usage(session, "digest") and not usage_reads.has_usage(session, "other")
    assert found == [usage_reads.Total("digest", "openai", "gpt-other", "", 1, 0, 3, 0, 0.0),
                     usage_reads.Total("digest", "openai", "gpt-test", "USD", 3, 1, 30, 3, 0.75)]


# ---------------------------------------------------------------- the chart (pure)


def test_token_bars_are_proportional_and_stack_completion_on_prompt() -> None:
    chart = usage_chart({"2026-12-03": Usage(2, 0, 300, 100, {"USD": 1.0}), "2026-12-04": Usage(),
                         "2026-12-05": Usage(1, 0, 150, 50, {"USD": 0.25})})
    busy, idle, half = chart.columns
    base = TOKENS_TOP + TOKENS_HEIGHT
    assert chart.peak_tokens == 400
    assert (busy.prompt_height, busy.completion_height) == (TOKENS_HEIGHT * 0.75, TOKENS_HEIGHT * 0.25)
    assert (half.prompt_height, half.completion_height) == (TOKENS_HEIGHT * 0.375, TOKENS_HEIGHT * 0.125)
    assert busy.prompt_y == base - busy.prompt_height
    assert busy.completion_y == pytest.approx(busy.prompt_y - busy.completion_height)
    assert (idle.prompt_height, idle.completion_height, idle.costs[0].height) == (0, 0, 0)
    assert [s.currency for s in chart.strips] == ["USD"]
    assert (busy.costs[0].height, half.costs[0].height) == (STRIP_BAR, STRIP_BAR / 4)
    assert [c.costs[0].label for c in chart.columns] == ["1.00", "", "0.25"]
    assert chart.columns[0].x < chart.columns[1].x < chart.columns[2].x
    assert (chart.first_label, chart.last_label) == ("Dec 03", "Dec 05")


def test_each_currency_gets_its_own_strip_and_no_strip_without_prices() -> None:
    chart = usage_chart({"2026-12-05": Usage(2, 0, 10, 10, {"USD": 0.5, "EUR": 2.0})})
    assert [s.currency for s in chart.strips] == ["EUR", "USD"]
    assert [c.height for c in chart.columns[0].costs] == [STRIP_BAR, STRIP_BAR]  # each on its own scale
    assert chart.strips[0].baseline < chart.strips[1].top
    unpriced = usage_chart({"2026-12-05": Usage(2, 0, 10, 10)})
    assert unpriced.strips == [] and unpriced.columns[0].costs == ()
    assert unpriced.height < chart.height


def test_the_tooltip_names_every_figure_of_the_day() -> None:
    day = Usage(31, 3, 10_000, 2_345, {"USD": 0.42})
    assert day_tooltip("2026-12-05", day) == \
        "2026-12-05: 12,345 tokens (10,000 prompt + 2,345 completion), 0.42 USD, 31 requests (3 cached)"
    assert day_tooltip("2026-12-04", Usage()) == "2026-12-04: 0 tokens (0 prompt + 0 completion), 0 requests"
    assert day_tooltip("2026-12-03", Usage(1, 0, 5, 0, {"USD": 0.5, "EUR": 1.25})) == \
        "2026-12-03: 5 tokens (5 prompt + 0 completion), 1.25 EUR + 0.50 USD, 1 request"


@pytest.mark.parametrize(("amount", "label"), [
    (0, ""), (0.00042, "<0.01"), (0.42, "0.42"), (42.1, "42.10"), (99.996, "100"), (421.4, "421"),
    (999.7, "1.0k"), (12_345, "12.3k"), (99_960, "100k"), (2_500_000, "2.5M")])
def test_amounts_above_the_bars_stay_short(amount: float, label: str) -> None:
    assert short_amount(amount) == label and len(label) <= 5


@pytest.mark.parametrize(("tokens", "label"), [
    (0, "0"), (999, "999"), (1000, "1k"), (9949, "9.9k"), (12_345, "12k"), (112_200, "112k"), (999_500, "1M"),
    (1_250_000, "1.2M")])
def test_the_token_scale_label_stays_short(tokens: int, label: str) -> None:
    assert short_count(tokens) == label and len(label) <= 4


# ---------------------------------------------------------------- the job page


def test_an_openai_jobs_page_charts_its_last_14_days(panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    make_job("digest", title="Daily digest", **OPENAI)
    use(db, ago(0), "digest", requests=31, cached=3, prompt=10_000, completion=2_345, cost=0.42, currency="USD")
    use(db, ago(3), "digest", requests=9, prompt=5_000, completion=500, cost=0.08, currency="USD")
    use(db, ago(20), "digest", requests=100, prompt=99_000)  # older: not in the chart
    use(db, ago(0), "other", requests=50, prompt=50_000)
    page = panel_as("viewer").get("/jobs/digest").get_data(as_text=True)
    assert '<h2 id="h-llm">LLM usage</h2>' in page
    figure = Chart(page).only()
    assert " ".join(figure["caption"].split()) == ("Today: 31 requests (3 cached), 12,345 tokens, 0.42 USD · "
                                                   "14 days: 40 requests (3 cached), 17,845 tokens, 0.50 USD")
    assert len(figure["titles"]) == 14
    assert figure["titles"][-1] == \
        f"{ago(0)}: 12,345 tokens (10,000 prompt + 2,345 completion), 0.42 USD, 31 requests (3 cached)"
    assert figure["titles"][-4] == f"{ago(3)}: 5,500 tokens (5,000 prompt + 500 completion), 0.08 USD, 9 requests"
    assert figure["titles"][0] == f"{ago(13)}: 0 tokens (0 prompt + 0 completion), 0 requests"
    prompts = rects(figure, "prompt")
    assert [float(r["height"]) for r in prompts] == [pytest.approx(TOKENS_HEIGHT * 5_000 / 12_345, abs=0.01),
                                                    pytest.approx(TOKENS_HEIGHT * 10_000 / 12_345, abs=0.01)]
    assert len(rects(figure, "cost")) == 2 and "of Daily digest" in figure["svg"]["aria-label"]


def test_an_openai_job_without_usage_says_it_made_no_request_yet(panel_as: PanelAs, make_job: MakeJob,
                                                                  db: Database) -> None:
    make_job("quiet", **OPENAI)
    make_job("dormant", **OPENAI)
    use(db, ago(30), "dormant", requests=4, prompt=40)
    panel = panel_as("viewer")
    quiet = panel.get("/jobs/quiet").get_data(as_text=True)
    assert '<h2 id="h-llm">LLM usage</h2>' in quiet and Chart(quiet).figures == []
    assert '<p class="sub llm-none">No LLM requests yet' in quiet
    dormant = panel.get("/jobs/dormant").get_data(as_text=True)
    assert '<p class="sub llm-none">No LLM requests in the last 14 days.</p>' in dormant
    assert Chart(dormant).figures == []


def test_other_jobs_show_the_section_only_when_they_have_usage(panel_as: PanelAs, make_job: MakeJob,
                                                               db: Database) -> None:
    make_job("plain")
    make_job("calls-llm")
    use(db, ago(1), "calls-llm", requests=2, prompt=20, completion=4)
    panel = panel_as("viewer")
    plain = panel.get("/jobs/plain").get_data(as_text=True)
    assert "LLM usage" not in plain and "llm-none" not in plain
    calls = panel.get("/jobs/calls-llm").get_data(as_text=True)
    caption = " ".join(Chart(calls).only()["caption"].split())
    assert caption == "Today: 0 requests, 0 tokens · 14 days: 2 requests, 24 tokens"


def test_the_job_pages_poll_leaves_the_usage_out(panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    make_job("digest", **OPENAI)
    use(db, ago(0), "digest", requests=1, prompt=10)
    fragment = panel_as("viewer").get("/jobs/digest", hx=True)
    assert fragment.status_code == 200 and "llm-usage" not in fragment.get_data(as_text=True)


def test_a_title_with_markup_is_escaped_in_the_chart(panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    make_job("evil", title="<script>alert(1)</script>", **OPENAI)
    use(db, ago(0), "evil", requests=1, prompt=10, cost=0.25, currency="<b>X")
    page = panel_as("viewer").get("/jobs/evil").get_data(as_text=True)
    figure = page[page.index('<figure class="chart llm-usage">'):page.index("</figure>", page.index("llm-usage"))]
    assert "<script>" not in figure and "<b>X" not in figure
    assert "of &lt;script&gt;alert(1)&lt;/script&gt;" in figure and "0.25 &lt;b&gt;X" in figure


# ---------------------------------------------------------------- the dashboard


def test_the_dashboard_charts_every_jobs_usage_and_the_top_five(panel_as: PanelAs, make_job: MakeJob,
                                                                db: Database) -> None:
    for index in range(6):
        make_job(f"job-{index}", title=f"Job number {index}", **OPENAI)
        use(db, ago(index), f"job-{index}", requests=index + 1, prompt=1000 * (index + 1), cost=0.25 * (index + 1),
            currency="USD")
    use(db, ago(1), "<script>alert(1)</script>", requests=1, prompt=1, cost=1.0, currency="USD")  # a deleted job
    page = panel_as("viewer").get("/").get_data(as_text=True)
    figure = Chart(page).only()
    assert len(figure["titles"]) == 14
    assert figure["titles"][-2] == f"{ago(1)}: 2,001 tokens (2,001 prompt + 0 completion), 1.50 USD, 3 requests"
    assert "14 days: 22 requests, 21,001 tokens, 6.25 USD" in " ".join(figure["caption"].split())
    table = page[page.index('<table class="llm-top-jobs">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 6  # the header and five jobs
    order = [table.index(f'<a href="/jobs/job-{index}">Job number {index}</a>') for index in (5, 4, 3)] + [
        table.index("<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"),  # 1.00 USD, fewer tokens than job-3
        table.index('<a href="/jobs/job-2">Job number 2</a>')]
    assert order == sorted(order) and "job-1" not in table and "job-0" not in table
    assert "<td>6</td><td>6,000</td><td>1.50 USD</td>" in table
    assert "<script>alert" not in page


def test_the_dashboard_has_no_llm_card_without_recent_usage(panel_as: PanelAs, make_job: MakeJob,
                                                            db: Database) -> None:
    make_job("digest", **OPENAI)
    panel = panel_as("viewer")
    assert "LLM usage" not in panel.get("/").get_data(as_text=True)
    use(db, ago(14), "digest", requests=5, prompt=50)  # just before the 14 days
    assert "LLM usage" not in panel.get("/").get_data(as_text=True)
    use(db, ago(13), "digest", requests=5, prompt=50)
    page = panel.get("/").get_data(as_text=True)
    assert "LLM usage" in page and len(Chart(page).only()["titles"]) == 14
    assert "llm-usage" not in panel.get("/", hx=True).get_data(as_text=True)  # the poll leaves it out


# ---------------------------------------------------------------- /metrics


def test_metrics_count_requests_tokens_and_cost_per_job_provider_and_model(
        scraper: Callable[..., Samples], db: Database) -> None:  # noqa: F811
    use(db, ago(40), "digest", requests=2, cached=1, prompt=100, completion=10, cost=0.25, currency="USD")
    use(db, ago(0), "digest", requests=3, prompt=200, completion=20, cost=0.5, currency="USD")
    use(db, ago(0), "digest", provider="", model="local-model", requests=4, prompt=7)
    use(db, ago(0), "euro", provider="mistral", model="small", requests=1, prompt=1, cost=0.125, currency="EUR")
    samples = scraper()
    digest = {"job": "digest", "provider": "openai", "model": "gpt-test"}
    local = {"job": "digest", "provider": "", "model": "local-model"}
    euro = {"job": "euro", "provider": "mistral", "model": "small"}
    assert series(samples, "lexyjobs_llm_requests_total") == {
        tuple(sorted(digest.items())): 5, tuple(sorted(local.items())): 4, tuple(sorted(euro.items())): 1}
    assert value(samples, "lexyjobs_llm_cached_requests_total", **digest) == 1
    assert value(samples, "lexyjobs_llm_tokens_total", **digest, type="prompt") == 300
    assert value(samples, "lexyjobs_llm_tokens_total", **digest, type="completion") == 30
    assert value(samples, "lexyjobs_llm_tokens_total", **local, type="prompt") == 7
    assert series(samples, "lexyjobs_llm_cost_total") == {
        tuple(sorted({**digest, "currency": "USD"}.items())): 0.75,
        tuple(sorted({**euro, "currency": "EUR"}.items())): 0.125}  # no price, no cost series
    assert not [name for name, _ in samples if name.endswith("_total_total")]


def test_metrics_are_counters_named_once_with_total(make_api_app: Callable[..., Any], db: Database) -> None:
    from test_metrics import TOKEN
    client = make_api_app(metrics_token=TOKEN).test_client()

    def scrape(accept: str = "text/plain") -> str:
        return client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Accept": accept}).get_data(
            as_text=True)
    empty = scrape()
    assert "# TYPE lexyjobs_llm_requests_total counter" in empty and "lexyjobs_llm_requests_total{" not in empty
    use(db, ago(0), "digest", requests=1, prompt=5)
    text = scrape()
    assert 'lexyjobs_llm_requests_total{job="digest",model="gpt-test",provider="openai"} 1.0' in text
    assert 'lexyjobs_llm_tokens_total{job="digest",model="gpt-test",provider="openai",type="prompt"} 5.0' in text
    openmetrics = scrape("application/openmetrics-text")
    assert "# TYPE lexyjobs_llm_tokens counter" in openmetrics
    assert 'lexyjobs_llm_tokens_total{job="digest",model="gpt-test",provider="openai",type="prompt"} 5.0' in openmetrics
    assert "_total_total" not in text + openmetrics


# ---------------------------------------------------------------- GET /api/llm/usage


def test_the_api_gives_each_day_and_the_totals(api_client: ApiClient, make_job: MakeJob, db: Database) -> None:
    make_job("digest", **OPENAI)
    use(db, ago(0), "digest", requests=31, cached=3, prompt=10_000, completion=2_345, cost=0.42, currency="USD")
    use(db, ago(2), "digest", requests=1, prompt=10, cost=0.5, currency="EUR")
    use(db, ago(1), "other", requests=5, prompt=50)
    body = api_client.ok(api_client.get("/api/llm/usage?days=3&job=digest", role="viewer"))
    assert (body["days"], body["job"], body["first_day"], body["last_day"]) == (3, "digest", ago(2), ago(0))
    assert body["rows"] == [
        {"day": ago(2), "requests": 1, "cached": 0, "prompt_tokens": 10, "completion_tokens": 0, "tokens": 10,
         "cost": {"EUR": 0.5}},
        {"day": ago(1), "requests": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0,
         "cost": {}},
        {"day": ago(0), "requests": 31, "cached": 3, "prompt_tokens": 10_000, "completion_tokens": 2_345,
         "tokens": 12_345, "cost": {"USD": 0.42}}]
    assert body["totals"] == {"requests": 32, "cached": 3, "prompt_tokens": 10_010, "completion_tokens": 2_345,
                              "tokens": 12_355, "cost": {"EUR": 0.5, "USD": 0.42}}
    every = api_client.ok(api_client.get("/api/llm/usage", role="viewer"))
    assert every["days"] == 14 and every["job"] is None and len(every["rows"]) == 14
    assert every["totals"]["requests"] == 37


def test_the_api_refuses_an_unknown_job_and_bad_days(api_client: ApiClient, make_job: MakeJob) -> None:
    make_job("digest", **OPENAI)
    error = api_client.error(api_client.get("/api/llm/usage?job=no-such-job", role="viewer"), 404, "not_found")
    assert error["details"] == {"job": "no-such-job"}
    for days in ("0", "91", "-1", "abc", "1.5", "", "9" * 50):
        api_client.error(api_client.get(f"/api/llm/usage?days={days}", role="viewer"), 400, "bad_request",
                         field="days")
    api_client.error(api_client.get("/api/llm/usage?job=", role="viewer"), 400, "bad_request", field="job")
    assert api_client.ok(api_client.get("/api/llm/usage?days=90", role="viewer"))["days"] == 90
    assert api_client.ok(api_client.get("/api/llm/usage?days=1&job=digest", role="viewer"))["rows"][0]["tokens"] == 0


def test_the_api_needs_a_token(api_client: ApiClient) -> None:
    response = api_client.get("/api/llm/usage", role=None)
    api_client.error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="lexyjobs"'
