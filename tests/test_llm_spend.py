"""What openai runs spend and the limits on it (``lexyjobs.llm.spend``, ``lexyjobs.llm.cache``),
through a real worker on both databases against the OpenAI-compatible test server: cost from the
price table, daily usage rows, a run's ``max_tokens_total`` and ``max_cost``, daily budgets of a
job (fail) and of a provider (the run waits for the next UTC day, its attempt not counted), a
provider's requests and tokens per minute shared by two jobs on two workers, and the cache."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from openai_server import Reply
from sqlalchemy import select
from test_kind_openai import event_notes, finished, log_text, rejected

from lexyjobs import registry, runs
from lexyjobs.db import utcnow
from lexyjobs.flow.named import InvalidLimit, parse_table
from lexyjobs.flow.waiting import waiting_for
from lexyjobs.llm import spend
from lexyjobs.llm.spend import USAGE, day_of, next_day

CHAT = {"kind": "openai", "model": "gpt-test", "prompt": "Say hello."}
PRICES = {"gpt-test": {"input": 1.0, "output": 2.0}}  # per 1M tokens


def usage_rows(db: Any) -> list[dict[str, Any]]:
    with db.read() as session:
        return [dict(row._mapping) for row in session.execute(select(USAGE).order_by(USAGE.c.job_name))]


def load(db: Any, tmp_path: Path, text: str) -> None:
    """Load a jobs.toml with ``text`` the way the server does."""
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    report = registry.sync_jobs(db, jobs_file=str(path), archive_missing=True)
    assert not report.errors, report.errors


# ---------------------------------------------------------------- definitions


@pytest.mark.parametrize("fields, field, says", [
    pytest.param({"max_cost": "lots"}, "max_cost", 'must be an amount with its currency, e.g. "20 USD"', id="cost"),
    pytest.param({"max_tokens_total": 0}, "max_tokens_total", "must be a whole number from 1", id="tokens"),
    pytest.param({"budget_per_day": "-3 USD"}, "budget_per_day", "must be an amount with its currency", id="budget"),
    pytest.param({"on_budget": "skip"}, "on_budget", "must be \"wait\" (until the next UTC day) or \"fail\"",
                 id="on-budget"),
    pytest.param({"prices": {"gpt": {"input": "cheap"}}}, "prices", "input and output are amounts per 1M tokens",
                 id="price-text"),
    pytest.param({"prices": {"gpt": 3}}, "prices", "'gpt' must be { input = <per 1M tokens>", id="price-number"),
    pytest.param({"cache_for": "forever"}, "cache_for", "must be a duration from 1s to 365d", id="cache-for"),
    pytest.param({"cache_shared": True}, "cache_shared", "needs cache_for", id="cache-shared"),
])
def test_an_invalid_spending_field_names_the_field_and_the_problem(fields: dict[str, Any], field: str,
                                                                   says: str) -> None:
    error = rejected(fields)
    assert error.field == field
    assert says in error.problem, error.problem


@pytest.mark.parametrize("table, field, says", [
    ({"requests_per_minute": 0}, "requests_per_minute", "must be a whole number from 1 to 100,000,000"),
    ({"tokens_per_minute": "many"}, "tokens_per_minute", "must be a whole number"),
    ({"budget_per_day": "twenty"}, "budget_per_day", "must be an amount with its currency"),
    ({"speed": 3}, "speed", "unknown field; a limit has rate, requests_per_minute"),
    ({}, "rate", "is required (or an LLM limit such as requests_per_minute)"),
])
def test_a_provider_table_with_a_mistake_names_it(table: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(InvalidLimit) as caught:
        parse_table("openai", table)
    assert caught.value.field == field and says in caught.value.problem


def test_a_provider_table_needs_no_rate_and_a_job_naming_it_loads(db, tmp_path) -> None:
    load(db, tmp_path, '[limits.openai]\nrequests_per_minute = 500\nbudget_per_day = "20 USD"\n\n'
                       '[jobs.summarise]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "Hi"\nlimits = ["openai"]\n')
    run_id = runs.enqueue(db, "summarise")
    assert runs.get_run(db, run_id).rate_limits is None  # no start slots: the table limits requests only


# ---------------------------------------------------------------- cost and usage


def test_the_cost_comes_from_the_price_table_and_is_counted_per_day(db, make_job, start_worker, llm):
    llm.script(Reply(usage=(1000, 500)), Reply(usage=(3000, 0)))
    make_job("priced", **CHAT, prices=PRICES)
    start_worker()
    first = finished(db, runs.enqueue(db, "priced"))
    second = finished(db, runs.enqueue(db, "priced"))
    assert first.details is not None and second.details is not None
    assert (first.details["cost"], first.details["currency"]) == (0.002, "USD")  # priced by prefix: gpt-test-0613
    assert second.details["cost"] == 0.003
    (row,) = usage_rows(db)
    assert row == {"day": day_of(utcnow()), "job_name": "priced", "provider": "", "model": "gpt-test-0613",
                   "requests": 2, "cached": 0, "prompt_tokens": 4000, "completion_tokens": 500,
                   "cost": pytest.approx(0.005), "currency": "USD"}


def test_without_prices_tokens_are_counted_and_no_cost_is_claimed(db, make_job, start_worker, llm):
    make_job("unpriced", **CHAT)
    start_worker()
    run = finished(db, runs.enqueue(db, "unpriced"))
    assert run.details is not None and "cost" not in run.details
    (row,) = usage_rows(db)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost"], row["currency"]) == (12, 5, 0.0, "")


def test_max_tokens_total_stops_sending_and_fails_the_items_left(db, make_job, start_worker, llm):
    make_job("capped", **{**CHAT, "prompt": "Summarise {{ item }}"}, max_tokens_total=40, parallel=1,
             max_attempts=1, params={"items": {"type": "json"}})
    start_worker()
    run_id = runs.enqueue(db, "capped", {"items": [f"doc {n}" for n in range(5)]})
    run = finished(db, run_id)
    assert run.status == "failed"
    assert len(llm.received) == 3  # 17 tokens each: 34 used + about 4 fits in 40, 51 + 4 does not
    assert run.error is not None and run.error.startswith(
        "2 of 5 items failed (item 3: max_tokens_total 40 would be passed: 51 tokens used, the next request needs "
        "about 4)")


def test_max_cost_refuses_a_request_that_would_pass_it_before_sending(db, make_job, start_worker, llm):
    make_job("dear", **{**CHAT, "prompt": "x" * 4000}, prices=PRICES, max_cost="0.0005 USD", max_attempts=3)
    start_worker()
    run = finished(db, runs.enqueue(db, "dear"))
    assert run.status == "failed" and run.attempt == 1  # not retried: another attempt would cost the same
    assert run.error == ("max_cost 0.0005 USD would be passed: 0.00 USD spent, the next request costs about 0.001")
    assert llm.received == []


def test_a_jobs_spent_daily_budget_fails_its_next_run_when_on_budget_is_fail(db, make_job, start_worker, llm):
    llm.script(Reply(usage=(1000, 500)))
    make_job("daily", **CHAT, prices=PRICES, budget_per_day="0.001 USD", on_budget="fail", max_attempts=3)
    start_worker()
    assert finished(db, runs.enqueue(db, "daily")).status == "succeeded"  # 0 spent before it: it may go
    run = finished(db, runs.enqueue(db, "daily"))
    assert run.status == "failed" and run.attempt == 1
    assert run.error == ("the daily budget of job daily is spent: 0.002 of 0.001 USD today (UTC), and the next "
                         "request costs about 0.000003")
    assert len(llm.received) == 1


def test_a_providers_spent_budget_makes_the_run_wait_for_the_next_day_without_counting_the_attempt(
        db, tmp_path, start_worker, llm):
    llm.script(Reply(usage=(1000, 500)))
    load(db, tmp_path, '[limits.openai]\nbudget_per_day = "0.001 USD"\n'
                       'prices = { "gpt-test" = { input = 1.0, output = 2.0 } }\n\n'
                       '[jobs.first]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "Hi"\nlimits = ["openai"]\n\n'
                       '[jobs.second]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "Hi"\nlimits = ["openai"]\n')
    start_worker()
    assert finished(db, runs.enqueue(db, "first")).status == "succeeded"
    run_id = runs.enqueue(db, "second")
    waiting = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "queued" and r.error and r, timeout=5)
    assert waiting.attempt == 0
    assert (waiting.held_until, waiting.held_by) == (next_day(utcnow()), "budget:provider openai")
    with db.read() as session:
        why = waiting_for(session, [waiting], now=utcnow(), stale_after=30)[run_id]
    assert (why.reason, why.message) == (
        "budget", f"The daily budget of provider openai is spent: it waits until {next_day(utcnow()):%Y-%m-%d} "
        "00:00:00 UTC, when a new day's budget begins.")
    message = ("the daily budget of provider openai is spent: 0.002 of 0.001 USD today (UTC), and the next request "
               "costs about 0.000001; waiting until " + f"{next_day(utcnow()):%Y-%m-%d} 00:00 UTC")
    assert waiting.error == message
    assert event_notes(db, run_id)[-1] == f"attempt 1 deferred, not counted: {message}"
    assert len(llm.received) == 1
    assert [(r["job_name"], r["provider"]) for r in usage_rows(db)] == [("first", "openai")]
    assert runs.cancel(db, run_id) == "canceled"  # a waiting run is an ordinary queued one


# ---------------------------------------------------------------- provider rate limits


@pytest.fixture
def one_second_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-minute windows of one second, so the tests wait seconds, not minutes."""
    monkeypatch.setattr(spend, "WINDOW", 1.0)


def test_requests_per_minute_are_shared_by_the_jobs_and_workers_naming_the_provider(db, tmp_path, start_worker,
                                                                                    llm, one_second_minutes):
    load(db, tmp_path, '[limits.openai]\nrequests_per_minute = 2\n\n'
                       '[jobs.a]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "{{ item }}"\nlimits = ["openai"]\n'
                       'params = { items = { type = "json" } }\n\n'
                       '[jobs.b]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "{{ item }}"\nlimits = ["openai"]\n'
                       'params = { items = { type = "json" } }\n')
    start_worker("one")
    start_worker("two")
    ids = [runs.enqueue(db, "a", {"items": ["a1", "a2"]}), runs.enqueue(db, "b", {"items": ["b1", "b2"]})]
    assert all(finished(db, run_id, timeout=15).status == "succeeded" for run_id in ids)
    times = sorted(r.at for r in llm.received)
    assert len(times) == 4
    assert times[2] - times[0] >= 0.9  # never more than 2 in any second
    assert any("waiting" in log_text(db, run_id) and "provider openai's 2 requests a minute" in log_text(db, run_id)
               for run_id in ids)


def test_tokens_per_minute_hold_a_request_until_the_window_has_room_for_it(db, tmp_path, start_worker, llm,
                                                                           one_second_minutes):
    load(db, tmp_path, '[limits.openai]\ntokens_per_minute = 30\n\n'
                       '[jobs.a]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "{{ item }}"\nlimits = ["openai"]\n'
                       'parallel = 1\nparams = { items = { type = "json" } }\n')
    start_worker()
    run = finished(db, runs.enqueue(db, "a", {"items": ["one", "two", "three"]}), timeout=15)
    assert run.status == "succeeded", run.error
    first, second, third = (r.at for r in llm.received)
    assert second - first < 0.5  # 17 counted + about 1 fits in 30
    assert third - first >= 0.9  # 34 + 2 does not: it waits for the first to leave the window


# ---------------------------------------------------------------- cache


def test_an_identical_request_within_cache_for_reuses_the_answer_for_free(db, make_job, start_worker, llm):
    llm.script(Reply(content="cached words", usage=(1000, 500)))
    make_job("cached", **CHAT, cache_for="1h", prices=PRICES)
    start_worker()
    first = finished(db, runs.enqueue(db, "cached"))
    second_id = runs.enqueue(db, "cached")
    second = finished(db, second_id)
    assert len(llm.received) == 1
    assert first.result == second.result == "cached words"
    assert second.details is not None and first.details is not None
    assert (second.details["cached"], second.details["prompt_tokens"], second.details["cost"]) == (True, 0, 0.0)
    assert "cached" not in first.details
    assert "answered from the cache (cache_for): nothing sent" in log_text(db, second_id)
    assert "cached words" in log_text(db, second_id)
    (row,) = usage_rows(db)
    assert (row["requests"], row["cached"], row["prompt_tokens"]) == (2, 1, 1000)


def test_the_cache_is_the_jobs_own_unless_shared_and_other_params_ask_again(db, make_job, start_worker, llm):
    for name in ("mine", "yours"):
        make_job(name, **{**CHAT, "prompt": "Say {{ word }}"}, cache_for="1h", params={"word": "hi"})
    for name in ("ours-1", "ours-2"):
        make_job(name, **{**CHAT, "prompt": "Say {{ word }}"}, cache_for="1h", cache_shared=True, params={"word": "hi"})
    start_worker()
    for job, params in (("mine", {}), ("yours", {}), ("mine", {"word": "bye"}), ("ours-1", {}), ("ours-2", {})):
        assert finished(db, runs.enqueue(db, job, params)).status == "succeeded"
    assert [r.messages[-1]["content"] for r in llm.received] == ["Say hi", "Say hi", "Say bye", "Say hi"]


def test_an_expired_answer_is_asked_again(db, make_job, start_worker, llm, monkeypatch: pytest.MonkeyPatch):
    make_job("brief", **CHAT, cache_for="1s")
    start_worker()
    finished(db, runs.enqueue(db, "brief"))
    later = utcnow() + timedelta(seconds=2)
    monkeypatch.setattr("lexyjobs.llm.cache.utcnow", lambda: later)
    finished(db, runs.enqueue(db, "brief"))
    assert len(llm.received) == 2


def test_embeddings_are_cached_text_by_text(db, make_job, start_worker, llm):
    make_job("vectors", kind="openai", mode="embeddings", model="embed-test", cache_for="1h",
             params={"items": {"type": "json"}})
    start_worker()
    first = finished(db, runs.enqueue(db, "vectors", {"items": ["a", "b"]}))
    second = finished(db, runs.enqueue(db, "vectors", {"items": ["b", "c"]}))
    assert [r.body["input"] for r in llm.received] == [["a", "b"], ["c"]]
    assert first.result is not None and second.result is not None and second.result[0] == first.result[1]


def test_the_readmes_provider_example_loads_and_its_job_is_priced_by_it(db, tmp_path, start_worker, llm):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"```toml\n(\[limits\.openai\]\nrequests_per_minute.*?)```", readme, re.DOTALL)
    assert block, "the README's provider example is gone"
    load(db, tmp_path, block.group(1))
    llm.script(Reply(usage=(100_000, 10_000)))
    start_worker()
    run = finished(db, runs.enqueue(db, "weekly-report", {"rows": [1, 2]}))
    assert run.status == "succeeded", run.error
    assert run.details is not None and (run.details["cost"], run.details["currency"]) == (0.021, "USD")
    assert usage_rows(db)[0]["provider"] == "openai"


def test_the_readmes_seed_003_report_job_answers_json_with_seed_003s_facts(db, tmp_path, start_worker, llm):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    provider = re.search(r"```toml\n(\[limits\.openai\]\nrequests_per_minute.*?)\[jobs\.", readme, re.DOTALL)
    report = re.search(r"```toml\n(\[jobs\.exec-report\].*?)```", readme, re.DOTALL)
    assert provider and report, "the README's examples are gone"
    load(db, tmp_path, provider.group(1) + report.group(1))
    answer = '{"summary": "up", "highlights": ["sessions"], "risks": []}'
    llm.script(Reply(content=answer, usage=(900, 120)))
    start_worker()
    params = {"scope_type": "network", "scope_key": "all", "iso_week": "2025-W43",
              "rows": [{"metric": "sessions", "value": 48210, "change": "+4%"}]}
    run = finished(db, runs.enqueue(db, "exec-report", params))
    assert run.status == "succeeded", run.error
    assert run.result == {"summary": "up", "highlights": ["sessions"], "risks": []}
    assert llm.received[0].messages[-1]["content"] == ("Scope: network all, week 2025-W43 (1 rows).\n"
                                                       "- sessions: 48210 (+4%)\n")
    assert run.details is not None
    assert (run.details["model"], run.details["output_bytes"]) == ("gpt-4o-mini-0613", len(answer))
    assert run.details["cost"] == pytest.approx((900 * 0.15 + 120 * 0.60) / 1e6)
    again = finished(db, runs.enqueue(db, "exec-report", params))  # the same rows within 6 hours
    assert again.result == run.result and again.details is not None and again.details["cached"] is True
    assert len(llm.received) == 1
