"""LLM work beyond one chat completion (``lexyjobs.llm``), through a real worker on both databases
against the OpenAI-compatible test server on 127.0.0.1: replies streamed into the live log (and
stopped by cancel and timeout), embeddings one text at a time or in batches, runs over items with
bounded parallelism, each item's outcome kept so a retry sends only the failed ones, and the
``items`` and ``save`` hooks."""
from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any

import llm_hooks
import pytest
from click.testing import CliRunner
from conftest import LLM_KEY, wait_for
from openai_server import EMBEDDINGS_PATH, Reply, vector
from sqlalchemy import select
from test_kind_openai import event_notes, finished, log_text, rejected

from lexyjobs import runs
from lexyjobs.cli import main
from lexyjobs.llm.items import ITEMS

CHAT = {"kind": "openai", "model": "gpt-test", "prompt": "Say hello."}
EMBED = {"kind": "openai", "mode": "embeddings", "model": "embed-test"}
README = Path(__file__).resolve().parent.parent / "README.md"
STORY = "Once upon a time a scheduler streamed every token it was given"


def stored_items(db: Any, run_id: int) -> dict[int, tuple[str, Any, str | None]]:
    """The run's ``run_items``: index → (status, result, error)."""
    with db.read() as session:
        rows = session.execute(select(ITEMS.c.idx, ITEMS.c.status, ITEMS.c.result, ITEMS.c.error)
                               .where(ITEMS.c.run_id == run_id)).all()
    return {idx: (status, result, error) for idx, status, result, error in rows}


def fail_once(*marks: str, status: int = 500) -> Any:
    """A server rule: the first request whose messages or input holds one of ``marks`` fails
    (each mark once), later ones are answered."""
    left = set(marks)

    def choose(body: dict[str, Any]) -> Reply | None:
        text = str(body.get("messages") or body.get("input"))
        hit = next((mark for mark in sorted(left) if mark in text), None)
        if hit is None:
            return None
        left.discard(hit)
        return Reply(status=status, message=f"cannot do {hit} now")
    return choose


# ---------------------------------------------------------------- definitions


AS_EMBED = {**EMBED, "prompt": None}  # rejected() starts from a chat job: leave its prompt out


@pytest.mark.parametrize("fields, field, says", [
    pytest.param({"mode": "images"}, "mode", "'images' is not one of chat, embeddings", id="mode"),
    pytest.param({**EMBED, "prompt": "Hi"}, "prompt", 'does not apply to mode = "embeddings"', id="prompt-in-embeddings"),
    pytest.param({"input": "{{ item }}"}, "input", 'does not apply to mode = "chat"', id="input-in-chat"),
    pytest.param({**AS_EMBED, "input": "{{ item "}, "input", "template syntax error on line 1", id="input-syntax"),
    pytest.param({**AS_EMBED, "batch_size": 5000}, "batch_size", "must be a whole number from 1 to 2048", id="batch"),
    pytest.param({**AS_EMBED, "dimensions": 0}, "dimensions", "must be a whole number from 1 to", id="dimensions"),
    pytest.param({"parallel": 65}, "parallel", "must be a whole number from 1 to 64", id="parallel"),
    pytest.param({"items": "not a reference"}, "items", "must be 'module:function'", id="items"),
    pytest.param({"save": 3}, "save", "must be 'module:function'", id="save"),
    pytest.param({"stream": "yes"}, "stream", "must be true or false", id="stream"),
])
def test_an_invalid_llm_definition_names_the_field_and_the_problem(fields: dict[str, Any], field: str,
                                                                   says: str) -> None:
    error = rejected(fields)
    assert error.field == field
    assert says in error.problem, error.problem


# ---------------------------------------------------------------- streaming


def test_a_streamed_reply_grows_in_the_live_log_while_the_run_runs(db, make_job, start_worker, llm, api_client):
    llm.script(Reply(content=STORY, token_delay=0.25, usage=(9, 12)))
    make_job("story", **CHAT)
    start_worker()
    run_id = runs.enqueue(db, "story")

    def partly_streamed() -> Any:
        run = runs.get_run(db, run_id)
        text = api_client.get(f"/api/runs/{run_id}/log").get_json()["text"]
        return run.status == "running" and "Once upon" in text and "given" not in text and (run, text)

    run, _ = wait_for(partly_streamed, timeout=5)
    assert run.progress_message is not None and run.progress_message.startswith("streaming: ")
    assert int(run.progress_message.split()[1]) >= 2
    done = finished(db, run_id)
    assert done.status == "succeeded", done.error
    assert done.result == STORY  # the same as a whole answer
    assert done.progress_message is None
    assert done.details is not None and (done.details["prompt_tokens"], done.details["completion_tokens"]) == (9, 12)
    assert STORY + "\n" in log_text(db, run_id)


def test_a_secret_cut_between_streamed_tokens_is_still_masked(db, make_job, start_worker, llm):
    llm.script(Reply(content=f"the key is {LLM_KEY} as asked"))  # the key arrives as one word among others
    make_job("leaky", **CHAT)
    start_worker()
    run_id = runs.enqueue(db, "leaky")
    run = finished(db, run_id)
    log = log_text(db, run_id)
    assert LLM_KEY not in log and "the key is **** as asked" in log
    assert run.status == "succeeded"


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_stop_a_stream_and_close_its_connection(db, make_job, start_worker, llm, how: str):
    llm.script(Reply(content=STORY, token_delay=1.0))
    make_job("endless", **CHAT, max_attempts=1, **({"timeout": "2s"} if how == "timeout" else {}))
    start_worker()
    run_id = runs.enqueue(db, "endless")
    wait_for(lambda: "Once" in log_text(db, run_id), timeout=5)
    started = time.monotonic()
    if how == "cancel":
        runs.cancel(db, run_id)
    run = finished(db, run_id, timeout=5)
    assert time.monotonic() - started < 3
    assert run.status == ("canceled" if how == "cancel" else "failed")
    if how == "timeout":
        assert run.error == "timed out after 2s"
    wait_for(lambda: llm.aborted == 1, timeout=3)  # the server saw the client hang up mid-stream
    assert llm.answered == 0


# ---------------------------------------------------------------- embeddings


def test_an_embeddings_run_returns_the_vector_of_its_rendered_input(db, make_job, start_worker, llm):
    make_job("embed-title", **EMBED, input="{{ title }}: {{ body }}", dimensions=16,
             params={"title": {"type": "string"}, "body": {"type": "string"}})
    start_worker()
    run = finished(db, runs.enqueue(db, "embed-title", {"title": "Weekly", "body": "keywords up"}))
    assert run.status == "succeeded", run.error
    assert run.result == vector("Weekly: keywords up", 16)
    (request,) = llm.received
    assert request.path == EMBEDDINGS_PATH
    assert request.body == {"model": "embed-test", "input": ["Weekly: keywords up"], "encoding_format": "float",
                            "dimensions": 16}
    assert run.details is not None
    assert {k: run.details[k] for k in ("model", "inputs", "dimensions", "prompt_tokens")} == {
        "model": "embed-test", "inputs": 1, "dimensions": 16, "prompt_tokens": 3}


def test_embeddings_over_items_go_batch_size_at_a_time_and_come_back_in_order(db, make_job, start_worker, llm):
    texts = [f"text {n}" for n in range(7)]
    make_job("embed-many", **EMBED, batch_size=3, params={"items": {"type": "json"}})
    start_worker()
    run_id = runs.enqueue(db, "embed-many", {"items": texts})
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.result == [vector(text, 8) for text in texts]
    assert sorted(len(r.body["input"]) for r in llm.received) == [1, 3, 3]
    assert run.details is not None
    assert {k: run.details[k] for k in ("items", "items_ok", "items_failed", "requests", "dimensions")} == {
        "items": 7, "items_ok": 7, "items_failed": 0, "requests": 3, "dimensions": 8}
    assert (run.progress, run.progress_message) == (100.0, "7 of 7 items")
    assert {status for status, _, _ in stored_items(db, run_id).values()} == {"ok"}


def test_seed_000s_embedding_job_reads_items_from_a_function_and_saves_vectors_with_a_hook(db, make_job,
                                                                                           start_worker, llm):
    llm_hooks.SAVED.clear()
    make_job("generate-embeddings", **EMBED, items="llm_hooks:corpus", input="{{ item.text }}", batch_size=2,
             save="llm_hooks:save", params={"count": 5})
    start_worker()
    run_id = runs.enqueue(db, "generate-embeddings")
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.result == {"items": 5, "saved": 5, "reused": 0}
    assert sorted((r["item"]["id"], r["result"]) for r in llm_hooks.SAVED) == [
        (n, vector(f"corpus entry {n}", 8)) for n in range(1, 6)]
    assert {result for _, result, _ in stored_items(db, run_id).values()} == {None}  # the hook has them
    assert run.details is not None and run.details["dimensions"] == 8


def test_an_items_function_that_returns_no_list_fails_the_run_saying_so(db, make_job, start_worker, llm):
    make_job("bad-items", **EMBED, items="llm_hooks:not_a_list")
    start_worker()
    run = finished(db, runs.enqueue(db, "bad-items"))
    assert run.status == "failed" and run.attempt == 1
    assert run.error == "items: llm_hooks:not_a_list returned dict, not a list of items"


# ---------------------------------------------------------------- chat over items


def test_chat_over_items_sends_one_request_per_item_at_most_parallel_at_once(db, make_job, start_worker, llm):
    llm.rule(lambda body: Reply(content=f"re: {body['messages'][-1]['content']}", delay=0.2))
    make_job("summaries", **{**CHAT, "prompt": "Summarise {{ item.title }} (#{{ index }})"}, parallel=2,
             params={"items": {"type": "json"}})
    start_worker()
    items = [{"title": f"doc {n}"} for n in range(6)]
    run = finished(db, runs.enqueue(db, "summaries", {"items": items}))
    assert run.status == "succeeded", run.error
    assert run.result == [f"re: Summarise doc {n} (#{n})" for n in range(6)]
    assert len(llm.received) == 6 and llm.most_at_once == 2
    assert all("stream" not in r.body for r in llm.received)  # parallel replies are not streamed into the log
    assert run.details is not None and (run.details["prompt_tokens"], run.details["requests"]) == (72, 6)


def test_failed_items_fail_the_run_keep_the_others_and_the_next_attempt_sends_only_them(db, make_job,
                                                                                        start_worker, llm):
    llm.rule(fail_once("doc 1", "doc 4"))
    make_job("summaries", **{**CHAT, "prompt": "Summarise {{ item }}"}, max_attempts=2, backoff="0s",
             params={"items": {"type": "json"}})
    start_worker()
    items = [f"doc {n}" for n in range(6)]
    run_id = runs.enqueue(db, "summaries", {"items": items})
    run = finished(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2
    assert run.result == ["Hello from the test model."] * 6
    assert len(llm.received) == 8  # 6, then only the 2 that failed
    assert sorted(r.messages[-1]["content"] for r in llm.received[6:]) == ["Summarise doc 1", "Summarise doc 4"]
    first_failure = [n for n in event_notes(db, run_id) if "retrying" in n][0]
    assert first_failure.startswith(f"attempt 1 of 2 failed: 2 of 6 items failed (item 1: HTTP 500 Internal Server "
                                    f"Error from {llm.base_url}: cannot do doc 1 now); the others' results are kept")
    assert run.details is not None and (run.details["items_reused"], run.details["items_ok"]) == (4, 6)
    assert "4 of 6 items already succeeded (kept from before); sending the other 2" in log_text(db, run_id)


def test_a_manual_retry_of_a_failed_batch_sends_only_the_failed_items(db, make_job, start_worker, llm):
    llm.rule(fail_once("doc 2"))
    make_job("summaries", **{**CHAT, "prompt": "Summarise {{ item }}", "response_format": "json"}, max_attempts=1,
             params={"items": {"type": "json"}})
    llm.rule(lambda body: Reply(content='{"ok": true}'))
    start_worker()
    items = [f"doc {n}" for n in range(4)]
    first = finished(db, runs.enqueue(db, "summaries", {"items": items}))
    assert first.status == "failed"
    assert first.progress_message == "4 of 4 items, 1 failed"
    assert stored_items(db, first.id)[2][0] == "failed"
    assert stored_items(db, first.id)[0] == ("ok", {"ok": True}, None)
    retried = finished(db, runs.retry(db, first.id))
    assert retried.status == "succeeded", retried.error
    assert retried.result == [{"ok": True}] * 4
    assert [r.messages[-1]["content"] for r in llm.received[4:]] == ["Summarise doc 2"]


def test_an_item_whose_reply_is_not_json_or_whose_prompt_fails_to_render_fails_alone(db, make_job, start_worker,
                                                                                     llm):
    llm.rule(lambda body: Reply(content="not json") if "b" in str(body["messages"]) else Reply(content="[1]"))
    make_job("rows", **{**CHAT, "prompt": "Rows of {{ item.name }}"}, response_format="json", max_attempts=1,
             params={"items": {"type": "json"}})
    start_worker()
    run_id = runs.enqueue(db, "rows", {"items": [{"name": "a"}, {"name": "b"}, {"other": 1}, {"name": "c"}]})
    run = finished(db, run_id)
    assert run.status == "failed"
    items = stored_items(db, run_id)
    assert [items[i][0] for i in range(4)] == ["ok", "failed", "failed", "ok"]
    assert items[1][2] is not None and items[1][2].startswith("the reply is not valid JSON")
    assert items[2][2] == "prompt: 'dict object' has no attribute 'name'"
    assert len(llm.received) == 3  # the item that did not render was never sent


def test_a_save_hook_that_fails_fails_its_items_only(db, make_job, start_worker, llm):
    llm_hooks.SAVED.clear()
    llm_hooks.FAIL_SAVING.add("corpus entry 3")
    try:
        make_job("generate-embeddings", **EMBED, items="llm_hooks:corpus", input="{{ item.text }}", batch_size=2,
                 save="llm_hooks:save", max_attempts=1, params={"count": 4})
        start_worker()
        run_id = runs.enqueue(db, "generate-embeddings")
        run = finished(db, run_id)
    finally:
        llm_hooks.FAIL_SAVING.clear()
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith(
        "2 of 4 items failed (item 2: save: RuntimeError: the vector table is locked)")
    assert sorted(r["item"]["id"] for r in llm_hooks.SAVED) == [1, 2]


def readme_job(name: str) -> dict[str, Any]:
    """The job ``name`` of the README's TOML examples."""
    block = re.search(r"```toml\n(\[jobs\." + re.escape(name) + r"\].*?)```", README.read_text(), re.DOTALL)
    assert block, f"the README's {name} example is gone"
    return dict(tomllib.loads(block.group(1))["jobs"][name])


def test_the_readmes_seed_000_embedding_job_runs_as_documented(db, make_job, start_worker, llm):
    llm_hooks.SAVED.clear()
    job = readme_job("generate-embeddings")
    assert (job["items"], job["save"]) == ("corpus.embeddings:pending", "corpus.embeddings:store")
    job.update(items="llm_hooks:corpus", save="llm_hooks:save", params={"count": 3})  # the README's own modules
    make_job("generate-embeddings", **job)
    start_worker()
    run = finished(db, runs.enqueue(db, "generate-embeddings"))
    assert run.status == "succeeded", run.error
    assert run.result == {"items": 3, "saved": 3, "reused": 0}
    assert [r.body["model"] for r in llm.received] == ["text-embedding-3-large"]


def test_the_readmes_ticket_summaries_run_over_the_items_given_on_the_command_line(db, db_url, make_job, llm,
                                                                                  start_worker, tmp_path, monkeypatch):
    make_job("summarise-tickets", **readme_job("summarise-tickets"))
    start_worker()
    command = re.search(r"lexyjobs run summarise-tickets -p '(.*?)'\n", README.read_text())
    assert command, "the README's command is gone"
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["run", "summarise-tickets", "-p", command.group(1), "--wait"],
                             env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""}, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    contents = sorted(r.messages[-1]["content"] for r in llm.received)
    assert contents == ["Summarise ticket 7 in one line: Login fails on Safari",
                        "Summarise ticket 8 in one line: Export is slow"]


def test_a_key_the_model_repeats_is_masked_in_the_result_and_the_details(db, make_job, start_worker, llm):
    literal = f"sk-literal-{LLM_KEY[8:]}"  # written in the job itself: only the kind knows it is a key
    llm.script(Reply(content=f"your key: {literal}"))
    make_job("echo", **{**CHAT, "prompt": "Repeat {{ text }}"}, stream=False, api_key=literal, params={"text": "x"})
    start_worker()
    run = finished(db, runs.enqueue(db, "echo", {"text": literal}))
    assert run.result == "your key: ****"
    assert run.details is not None and run.details["prompt"] == [{"role": "user", "content": "Repeat ****"}]
