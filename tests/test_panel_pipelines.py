"""The pipelines page and one pipeline run's page, on SQLite and Postgres: the seed-000 chain drawn
as SVG with links and health, a failed first step blocking the rest, the polled partial and its
204, the empty state, unknown ids and escaping inside the SVG."""
from __future__ import annotations

import re
from typing import Any, Callable

import pytest
from conftest import PanelSession, drive_run, wait_for
from flask import Flask

from lexyjobs import runs
from lexyjobs.db import Database
from lexyjobs.models import Run
from lexyjobs.states import TERMINAL, RunStatus

MakeJob = Callable[..., str]
PanelAs = Callable[[str], PanelSession]
SEED_000 = {  # name: (title, category, depends_on), as in jobs.toml
    "collect-keywords": ("Collect keywords", "Data Collection", []),
    "keyword-metrics": ("Keyword metrics collection", "Metrics", ["collect-keywords"]),
    "social-metrics": ("Social metrics", "Metrics", ["collect-keywords"]),
    "ingest-corpus-metrics": ("Ingest metrics to corpus", "AI Corpus", ["keyword-metrics", "social-metrics"]),
}


@pytest.fixture
def seed_chain(make_job: MakeJob) -> Callable[..., None]:
    """The seed-000 pipeline; ``seed_chain(**{"collect-keywords": "jobfuncs:boom"})`` swaps a function."""
    def build(**funcs: str) -> None:
        for name, (title, category, upstreams) in SEED_000.items():
            make_job(name, title=title, category=category, depends_on=upstreams, max_attempts=1,
                     func=funcs.get(name, "jobfuncs:noop"))
    return build


def _text(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.get_data(as_text=True))


def _svg(page: str) -> str:
    found = re.search(r"<svg class=\"pipeline-graph\".*?</svg>", page, re.S)
    assert found, "no graph on the page"
    return found.group(0)


def _nodes(svg: str) -> dict[str, dict[str, str]]:
    """Each drawn node: its classes, link, rect position, and the texts shown."""
    found = {}
    for match in re.finditer(r'<a class="node ([^"]+)" href="([^"]+)" data-job="([^"]+)">(.*?)</a>', svg, re.S):
        css, href, job, body = match.groups()
        rect = re.search(r'<rect x="([\d.]+)" y="([\d.]+)"', body)
        texts = re.findall(r"<text [^>]*>([^<]*)</text>", body)
        assert rect and len(texts) == 2
        found[job] = {"css": css, "href": href, "x": rect.group(1), "y": rect.group(2), "title": texts[0],
                      "caption": texts[1], "tooltip": re.search(r"<title>(.*?)</title>", body, re.S).group(1)}  # type: ignore[union-attr]
    return found


def _job_href(app: Flask, name: str) -> str:
    return f"/jobs/{name}" if "lexyjobs.panel.job_detail" in app.view_functions else f"/jobs?q={name}"


def _edge_ends(svg: str) -> list[tuple[float, float]]:
    """(start x, end x) of every edge path."""
    ends = []
    for path in re.findall(r'<path class="edge[^"]*" d="([^"]+)"', svg):
        numbers = [float(n) for n in re.findall(r"-?[\d.]+", path)]
        ends.append((numbers[0], numbers[-2]))
    return ends


def test_the_seed_chain_is_drawn_with_links_health_and_edges_left_to_right(
        panel_as: PanelAs, app: Flask, seed_chain: Callable[..., None], make_job: MakeJob, db: Database) -> None:
    seed_chain()
    make_job("standalone", title="Standalone report")
    drive_run(db, runs.enqueue(db, "keyword-metrics"), RunStatus.SUCCEEDED)
    drive_run(db, runs.enqueue(db, "social-metrics"), RunStatus.FAILED, error="rate limited")
    page = _text(panel_as("viewer").get("/pipelines"))
    svg = _svg(page)
    nodes = _nodes(svg)
    assert set(nodes) == set(SEED_000)
    for name, (title, _, _) in SEED_000.items():
        assert nodes[name]["title"] == title
        assert nodes[name]["href"] == _job_href(app, name)
        assert title in nodes[name]["tooltip"]
    assert nodes["keyword-metrics"]["css"] == "health-ok" and "succeeded" in nodes["keyword-metrics"]["caption"]
    assert nodes["social-metrics"]["css"] == "health-error" and "rate limited" in nodes["social-metrics"]["tooltip"]
    assert nodes["collect-keywords"]["css"] == "health-unknown" and "never ran" in nodes["collect-keywords"]["caption"]
    x = {name: float(node["x"]) for name, node in nodes.items()}
    assert x["collect-keywords"] < x["keyword-metrics"] == x["social-metrics"] < x["ingest-corpus-metrics"]
    ends = _edge_ends(svg)
    assert len(ends) == 4 and all(start < end for start, end in ends)
    assert sorted({round(end) for _, end in ends}) == [round(x["keyword-metrics"]), round(x["ingest-corpus-metrics"])]
    assert "style=" not in page and "<script>" not in page
    isolated = page[page.index("no dependencies"):]
    assert "Standalone report" in isolated.split("</p>")[0]


def test_a_failed_first_step_shows_the_rest_of_the_pipeline_blocked(
        panel_as: PanelAs, app: Flask, seed_chain: Callable[..., None], db: Database,
        start_worker: Callable[..., Any]) -> None:
    seed_chain(**{"collect-keywords": "jobfuncs:boom"})
    start_worker()
    root = runs.enqueue(db, "collect-keywords")
    pipeline_id = runs.get_run(db, root).pipeline_id
    assert pipeline_id

    def settled() -> bool:
        with db.read() as session:
            rows = session.query(Run).filter(Run.pipeline_id == pipeline_id).all()
        return len(rows) == 4 and all(r.status in TERMINAL for r in rows)
    wait_for(settled, timeout=15)
    panel = panel_as("viewer")
    overview = _text(panel.get("/pipelines"))
    assert f'href="/pipelines/{pipeline_id}"' in overview
    row = overview[overview.index(f"/pipelines/{pipeline_id}"):].split("</tr>")[0]
    assert '<span class="badge failed">failed</span>' in row
    assert "1 failed" in row and "3 blocked" in row
    page = _text(panel.get(f"/pipelines/{pipeline_id}"))
    nodes = _nodes(_svg(page))
    assert nodes["collect-keywords"]["css"] == "step-failed"
    assert {nodes[n]["css"] for n in ("keyword-metrics", "social-metrics", "ingest-corpus-metrics")} == {"step-blocked"}
    assert "upstream collect-keywords failed" in nodes["keyword-metrics"]["tooltip"]
    if "lexyjobs.panel.run_detail" in app.view_functions:
        assert nodes["collect-keywords"]["href"] == f"/runs/{root}"
    assert page.count('<span class="badge blocked">blocked</span>') >= 3


def test_a_pipeline_run_polls_with_a_stamp_and_answers_204_until_a_step_moves(
        panel_as: PanelAs, seed_chain: Callable[..., None], db: Database) -> None:
    seed_chain()
    root = runs.enqueue(db, "collect-keywords")
    pipeline_id = runs.get_run(db, root).pipeline_id
    panel = panel_as("viewer")
    page = _text(panel.get(f"/pipelines/{pipeline_id}"))
    nodes = _nodes(_svg(page))
    assert nodes["collect-keywords"]["css"] == "step-queued"
    assert nodes["ingest-corpus-metrics"]["css"] == "step-not-reached"
    fragment = _text(panel.get(f"/pipelines/{pipeline_id}", hx=True))
    assert "<html" not in fragment and 'id="pipeline-live"' in fragment
    poll = re.search(r'hx-get="([^"]+)"', fragment).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert poll.startswith(f"/pipelines/{pipeline_id}?stamp=")
    assert panel.get(poll, hx=True).status_code == 204
    assert panel.get(poll).status_code == 200  # a plain GET always gets the whole page
    drive_run(db, root, RunStatus.RUNNING)
    moved = panel.get(poll, hx=True)
    assert _nodes(_svg(_text(moved)))["collect-keywords"]["css"] == "step-running"
    next_poll = re.search(r'hx-get="([^"]+)"', _text(moved)).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert next_poll != poll and panel.get(next_poll, hx=True).status_code == 204


def test_the_pipelines_page_polls_and_answers_204_while_nothing_changes(
        panel_as: PanelAs, seed_chain: Callable[..., None], db: Database) -> None:
    seed_chain()
    panel = panel_as("viewer")
    fragment = _text(panel.get("/pipelines", hx=True))
    assert "<html" not in fragment and 'id="pipeline-live"' in fragment
    poll = re.search(r'hx-get="([^"]+)"', fragment).group(1)  # type: ignore[union-attr]
    assert panel.get(poll, hx=True).status_code == 204
    runs.enqueue(db, "collect-keywords")
    changed = _text(panel.get(poll, hx=True))
    assert "/pipelines/" in changed.split("Recent pipeline runs")[1]


def test_without_dependencies_the_page_explains_depends_on(panel_as: PanelAs, make_job: MakeJob) -> None:
    make_job("lonely", title="Lonely job")
    page = _text(panel_as("viewer").get("/pipelines"))
    assert "pipeline-graph" not in page
    assert "No pipelines yet." in page and 'depends_on = ["collect-keywords"]' in page
    assert "No pipeline has run yet." in page and "Lonely job" in page


@pytest.mark.parametrize("pipeline_id", ["not-a-uuid", "0" * 31, "Z" * 32, "0" * 32,
                                         "12345678-1234-1234-1234-123456789abc"])
def test_an_unknown_or_malformed_pipeline_id_is_404(panel_as: PanelAs, pipeline_id: str) -> None:
    response = panel_as("viewer").get(f"/pipelines/{pipeline_id}")
    assert response.status_code == 404
    assert "pipeline" in response.get_data(as_text=True)


def test_titles_are_escaped_inside_the_svg(panel_as: PanelAs, make_job: MakeJob, db: Database) -> None:
    evil = '<script>alert(1)</script>&"x'
    make_job("evil-root", title=evil)
    make_job("evil-child", title="</text><a href='javascript:alert(2)'>", depends_on=["evil-root"])
    pipeline_id = runs.get_run(db, runs.enqueue(db, "evil-root")).pipeline_id
    panel = panel_as("viewer")
    for path in ("/pipelines", f"/pipelines/{pipeline_id}"):
        page = _text(panel.get(path))
        svg = _svg(page)
        assert "<script>" not in page and "<a href='javascript" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#34;x" in svg  # in the tooltip, whole
        assert "&lt;/text&gt;&lt;a href=&#39;javascript" in svg
        assert set(_nodes(svg)) == {"evil-root", "evil-child"}


def test_a_finished_pipeline_keeps_its_steps_when_a_job_is_added_downstream_later(
        panel_as: PanelAs, seed_chain: Callable[..., None], make_job: MakeJob, db: Database,
        start_worker: Callable[..., Any]) -> None:
    seed_chain()
    start_worker()
    pipeline_id = runs.get_run(db, runs.enqueue(db, "collect-keywords")).pipeline_id

    def settled() -> bool:
        with db.read() as session:
            rows = session.query(Run).filter(Run.pipeline_id == pipeline_id).all()
        return len(rows) == 4 and all(r.status == RunStatus.SUCCEEDED for r in rows)
    wait_for(settled, timeout=15)
    make_job("corpus-report", title="Corpus report", depends_on=["ingest-corpus-metrics"])
    panel = panel_as("viewer")
    overview = _text(panel.get("/pipelines"))
    row = overview[overview.index(f"/pipelines/{pipeline_id}"):].split("</tr>")[0]
    assert '<span class="badge succeeded">succeeded</span>' in row and "not reached" not in row
    page = _text(panel.get(f"/pipelines/{pipeline_id}"))
    nodes = _nodes(_svg(page))
    assert nodes["corpus-report"]["css"] == "step-not-in-this-pipeline"
    assert "incomplete" not in page and "not reached" not in page.split("<svg")[0]
