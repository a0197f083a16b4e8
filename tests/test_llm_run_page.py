"""The run page of ``openai`` runs (both databases): the exact prompt, each message under its role,
escaped, then the answer (text as text, JSON pretty) and "Re-run with changes…" for operators
only; the Details table without the prompt, with the cost and the cache in words; a batch run's
Items section (counts, at most 100 failed items and "and N more", the first 20 results
collapsed); and ``GET /api/runs/<id>/items`` (paging by index, status filter, 404 and 400)."""
from __future__ import annotations

import html
import re
from typing import Any, Callable

import pytest
from conftest import LLM_KEY, ApiClient, drive_run
from openai_server import Reply
from sqlalchemy import insert
from test_kind_openai import finished
from test_panel_run_detail import enqueue, finish, text_of

from lexyjobs import runs
from lexyjobs.db import Database, utcnow
from lexyjobs.llm.item_reads import ITEMS
from lexyjobs.states import RunStatus

XSS = "<script>alert(1)</script>"
CHAT = {"kind": "openai", "model": "gpt-test", "prompt": "Say hello."}
PROMPT = [{"role": "system", "content": f"You are terse. {XSS}"},
          {"role": "user", "content": "Summarise week 9:\n" + "keyword " * 400}]


@pytest.fixture
def job(make_job: Callable[..., str]) -> str:
    return make_job("summarise", **CHAT, params={"week": ""})


def chat_run(db: Database, job: str, *, details: dict[str, Any], result: Any = None,
             status: RunStatus = RunStatus.SUCCEEDED) -> int:
    run_id = enqueue(db, job, {"week": "9"})
    finish(db, run_id, status, details=details, result=result, error="it failed" if status == "failed" else None)
    return run_id


def add_items(db: Database, run_id: int, outcomes: dict[int, Any]) -> None:
    """``run_items`` rows as lexyjobs.llm.items records them: index → ("ok", result) or ("failed", error)."""
    rows = [{"run_id": run_id, "idx": idx, "item_hash": f"{idx:064x}", "status": status,
             "result": value if status == "ok" else None, "error": value if status == "failed" else None,
             "attempt": 1 + idx % 2, "finished_at": utcnow()} for idx, (status, value) in outcomes.items()]
    with db.write() as session:
        session.execute(insert(ITEMS), rows)


def section(page: str, css_class: str) -> str:
    found = re.search(rf'<section class="{css_class}".*?</section>', page, re.DOTALL)
    assert found, f"no section.{css_class} on the page"
    return found.group(0)


def pre_text(block: str, css_class: str) -> str:
    found = re.search(rf'<pre class="{css_class}"[^>]*>(.*?)</pre>', block, re.DOTALL)
    assert found, f"no pre.{css_class}"
    return html.unescape(found.group(1))


# ---------------------------------------------------------------- prompt and answer


def test_each_prompt_message_shows_under_its_role_escaped_and_whole(db, job, panel_as):
    run_id = chat_run(db, job, details={"prompt": PROMPT, "model": "gpt-test-0613"}, result=f"Hi {XSS}")
    page = text_of(panel_as("viewer").get(f"/runs/{run_id}"))
    assert "<script>alert" not in page
    prompt = section(page, "run-prompt")
    messages = re.findall(r'<span class="badge">(\w+)</span>\s*<pre class="prompt-text"[^>]*>(.*?)</pre>', prompt,
                          re.DOTALL)
    assert [(role, html.unescape(text)) for role, text in messages] == [(m["role"], m["content"]) for m in PROMPT]
    assert "You are terse. &lt;script&gt;alert(1)&lt;/script&gt;" in prompt
    assert pre_text(prompt, "answer-text") == f"Hi {XSS}"  # a text answer as text, not a JSON string
    assert "<h2>Result</h2>" not in page  # the answer is the result: not shown twice


def test_a_json_answer_is_pretty_printed(db, job, panel_as):
    answer = {"trend": "up", "keywords": ["llm", "rag"]}
    run_id = chat_run(db, job, details={"prompt": PROMPT[1:]}, result=answer)
    prompt = section(text_of(panel_as("viewer").get(f"/runs/{run_id}")), "run-prompt")
    assert pre_text(prompt, "json answer-json") == ('{\n  "keywords": [\n    "llm",\n    "rag"\n  ],\n'
                                                    '  "trend": "up"\n}')


def test_a_failed_run_with_its_prompt_says_there_is_no_answer(db, job, panel_as):
    run_id = chat_run(db, job, details={"prompt": PROMPT}, status=RunStatus.FAILED)
    prompt = section(text_of(panel_as("viewer").get(f"/runs/{run_id}")), "run-prompt")
    assert "No answer: the run failed" in prompt and "<pre class=\"answer" not in prompt


def test_operators_get_re_run_with_changes_under_the_answer_and_viewers_do_not(db, job, panel_as):
    run_id = chat_run(db, job, details={"prompt": PROMPT}, result="Hello.")
    link = f'<a class="button" href="/jobs/{job}/run?from_run={run_id}">Re-run with changes…</a>'
    operator = panel_as("operator")
    assert link in section(text_of(operator.get(f"/runs/{run_id}")), "run-prompt")
    form = text_of(response := operator.get(f"/jobs/{job}/run?from_run={run_id}"))
    assert response.status_code == 200 and 'value="9"' in form  # the link opens the form with this run's params
    assert "Re-run with changes…" not in text_of(panel_as("viewer").get(f"/runs/{run_id}"))


def test_the_details_table_leaves_the_prompt_out_and_words_cost_and_cache(db, job, panel_as):
    details = {"prompt": PROMPT, "model": "gpt-test-0613", "prompt_tokens": 42, "cost": 0.0021, "currency": "USD",
               "cached": 1}
    page = text_of(panel_as("viewer").get(f"/runs/{chat_run(db, job, details=details, result='ok')}"))
    rows = dict(re.findall(r'<tr><th scope="row">([^<]+)</th><td>(.*?)</td></tr>', page, re.DOTALL))
    assert rows == {"cached": "yes — answered from the cache", "cost": "0.0021 USD", "model": "gpt-test-0613",
                    "prompt_tokens": "42"}


def test_a_prompt_detail_of_another_shape_stays_an_ordinary_detail(db, job, panel_as):
    for odd in ("just text", [{"role": "user"}], [{"role": 1, "content": "x"}], []):
        run_id = chat_run(db, job, details={"prompt": odd}, result={"rows": 3})
        page = text_of(response := panel_as("viewer").get(f"/runs/{run_id}"))
        assert response.status_code == 200
        assert 'class="run-prompt"' not in page and '<th scope="row">prompt</th>' in page
        assert "<h2>Result</h2>" in page


def test_a_real_chat_run_shows_the_prompt_it_rendered_and_the_answer_it_got(db, make_job, start_worker, llm,
                                                                          panel_as):
    llm.script(Reply(content="Week <9> was calm.", usage=(30, 6)))
    make_job("weekly", **{**CHAT, "system": "Key {{ api_token }}", "prompt": "Summarise week {{ week }}"},
             params={"week": {"type": "string"}, "api_token": {"type": "string"}})
    start_worker()
    run = finished(db, runs.enqueue(db, "weekly", {"week": XSS, "api_token": LLM_KEY}))
    assert run.status == "succeeded", run.error
    page = text_of(panel_as("operator").get(f"/runs/{run.id}"))
    prompt = section(page, "run-prompt")
    assert [html.unescape(t) for t in re.findall(r'<pre class="prompt-text"[^>]*>(.*?)</pre>', prompt, re.DOTALL)] \
        == ["Key ****", f"Summarise week {XSS}"]  # the key masked as it was recorded
    assert pre_text(prompt, "answer-text") == "Week <9> was calm."
    assert "<script>alert" not in page and LLM_KEY not in page
    assert '<th scope="row">prompt</th>' not in page and '<th scope="row">prompt_tokens</th><td>30</td>' in page


# ---------------------------------------------------------------- items on the page


def batch_run(db: Database, job: str, items: int, *, failed: Callable[[int], bool],
              status: RunStatus = RunStatus.FAILED, details: dict[str, Any] | None = None) -> int:
    """A finished batch run over ``items`` items, those ``failed`` says having failed."""
    run_id = enqueue(db, job, {"week": "9"})
    if status == RunStatus.RUNNING:
        drive_run(db, run_id, RunStatus.RUNNING)
    else:
        finish(db, run_id, status, details={"items": items, **(details or {})}, result=None)
    add_items(db, run_id, {idx: ("failed", f"HTTP 500 on item {idx} <b>") if failed(idx) else ("ok", {"n": idx})
                           for idx in range(items)})
    return run_id


def test_the_items_section_counts_and_lists_at_most_100_failed_items_then_how_many_more(db, job, panel_as):
    run_id = batch_run(db, job, 250, failed=lambda idx: idx % 2 == 0 and idx < 240)  # 120 failed, 130 ok
    items = section(text_of(panel_as("viewer").get(f"/runs/{run_id}")), "run-items")
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", items))
    assert facts == {"Succeeded": "130", "Failed": "120", "Items": "250"}
    failed_rows = re.findall(r'<tr><td>(\d+)</td><td class="error-text">([^<]*)</td><td>(\d)</td></tr>', items)
    assert [int(idx) for idx, _, _ in failed_rows] == list(range(0, 200, 2))  # the first 100, in index order
    assert failed_rows[0] == ("0", "HTTP 500 on item 0 &lt;b&gt;", "1")
    assert "and 20 more" in items and f"/api/runs/{run_id}/items?status=failed" in items
    ok = re.search(r'<details class="effective run-items-ok">(.*?)</details>', items, re.DOTALL)
    assert ok  # collapsed: no "open" attribute
    shown = re.findall(r'<th scope="row">item (\d+)</th><td><pre>(.*?)</pre>', ok.group(1), re.DOTALL)
    assert [int(idx) for idx, _ in shown] == list(range(1, 40, 2))  # the first 20 that succeeded
    assert html.unescape(shown[0][1]) == '{\n  "n": 1\n}'


def test_a_batch_with_few_failures_says_no_more_and_a_long_result_is_cut(db, job, panel_as):
    run_id = enqueue(db, job, {"week": "9"})
    finish(db, run_id, RunStatus.SUCCEEDED, details={"items": 3, "items_reused": 1}, result=None)
    add_items(db, run_id, {0: ("ok", [0.125] * 3000), 2: ("ok", None)})  # item 1 was kept from the retried run
    items = section(text_of(panel_as("viewer").get(f"/runs/{run_id}")), "run-items")
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", items))
    assert facts == {"Succeeded": "2", "Failed": "0", "Items": "3", "Kept from before": "1"}
    assert "run-items-failed" not in items and "more (all of them" not in items
    assert re.search(r"\[… [\d,]+ more characters\]</pre>", items)  # 3,000 numbers: a preview, not all
    assert '<th scope="row">item 2</th><td><span class="muted">not kept (the job\'s save hook took it)</span>' in items


def test_a_running_batch_shows_its_items_so_far_in_the_live_block(db, job, panel_as):
    run_id = batch_run(db, job, 5, failed=lambda idx: idx == 3, status=RunStatus.RUNNING)
    block = text_of(panel_as("viewer").get(f"/runs/{run_id}", hx=True))  # the polled partial
    items = section(block, "run-items")
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", items))
    assert (facts["Succeeded"], facts["Failed"]) == ("4", "1") and "known at the end" in facts["Items"]


def test_a_run_without_items_has_no_items_section(db, job, panel_as):
    run_id = chat_run(db, job, details={"model": "m"}, result="x")
    assert 'class="run-items"' not in text_of(panel_as("viewer").get(f"/runs/{run_id}"))


# ---------------------------------------------------------------- GET /api/runs/<id>/items


def api_items(api_client: ApiClient, run_id: int, query: str = "") -> dict[str, Any]:
    return api_client.ok(api_client.get(f"/api/runs/{run_id}/items{query}", role="viewer"))


def test_the_api_pages_through_the_items_by_index(db, job, api_client):
    run_id = batch_run(db, job, 250, failed=lambda idx: idx % 10 == 7)
    first = api_items(api_client, run_id)
    assert [i["idx"] for i in first["items"]] == list(range(100)) and first["next_after"] == 99
    assert first["items"][7] | {"finished_at": None} == {"idx": 7, "status": "failed", "result": None,
                                                         "error": "HTTP 500 on item 7 <b>", "attempt": 2,
                                                         "finished_at": None}
    assert first["items"][0]["result"] == {"n": 0} and first["items"][0]["finished_at"].startswith("20")
    second = api_items(api_client, run_id, "?after=99")
    third = api_items(api_client, run_id, f"?after={second['next_after']}")
    assert [i["idx"] for i in second["items"] + third["items"]] == list(range(100, 250))
    assert third["next_after"] is None
    whole = api_items(api_client, run_id, "?limit=1000")
    assert len(whole["items"]) == 250 and whole["next_after"] is None
    exact = api_items(api_client, run_id, "?after=149&limit=100")  # the page ends exactly at the last item
    assert [i["idx"] for i in exact["items"]] == list(range(150, 250)) and exact["next_after"] is None


def test_the_api_filters_items_by_status(db, job, api_client):
    run_id = batch_run(db, job, 250, failed=lambda idx: idx % 10 == 7)
    failed = api_items(api_client, run_id, "?status=failed&limit=10")
    assert [i["idx"] for i in failed["items"]] == list(range(7, 100, 10)) and failed["next_after"] == 97
    rest = api_items(api_client, run_id, "?status=failed&after=97&limit=1000")
    assert [i["idx"] for i in rest["items"]] == list(range(107, 250, 10)) and rest["next_after"] is None
    ok = api_items(api_client, run_id, "?status=ok&after=5&limit=3")
    assert [(i["idx"], i["status"], i["result"]) for i in ok["items"]] == [(6, "ok", {"n": 6}), (8, "ok", {"n": 8}),
                                                                           (9, "ok", {"n": 9})]


def test_the_api_answers_404_for_an_unknown_run_and_nothing_for_a_run_without_items(db, job, api_client):
    api_client.error(api_client.get("/api/runs/987654/items", role="viewer"), 404, "not_found")
    run_id = chat_run(db, job, details={}, result="x")
    assert api_items(api_client, run_id) == {"run_id": run_id, "items": [], "next_after": None}
    api_client.error(api_client.get(f"/api/runs/{run_id}/items", role=None), 401)


@pytest.mark.parametrize("query, field", [
    ("status=skipped", "status"), ("status=", "status"), ("status=ok,failed", "status"),
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("limit=1.5", "limit"),
    ("after=-1", "after"), (f"after={2**31}", "after"), ("after=" + "9" * 5000, "after"),
])
def test_the_api_refuses_a_bad_argument_with_400_naming_it(db, job, api_client, query: str, field: str):
    run_id = batch_run(db, job, 3, failed=lambda idx: False, status=RunStatus.SUCCEEDED)
    api_client.error(api_client.get(f"/api/runs/{run_id}/items?{query}", role="viewer"), 400, "bad_request",
                     field=field)
