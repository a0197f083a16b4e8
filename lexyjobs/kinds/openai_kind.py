"""``openai`` kind: LLM work against any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, LM
Studio) through the official client — a chat completion streamed into the run's log, embeddings,
or either over a list of items, within budgets and provider rate limits, optionally cached
(``lexyjobs.llm``). Prompts are Jinja2 templates rendered in a sandbox with the run's params; the
reply text is the result, or with ``response_format = "json"`` its parsed value.

The module is not called ``openai.py`` so that it never shadows the client package, which is
imported only when a run starts (it costs 0.4 s and 25 MB, and most processes never need it)."""
from __future__ import annotations

from typing import Any, Mapping

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.kinds import expand_env
from lexyjobs.llm import chat, embeddings, templates
from lexyjobs.llm.asking import Asker
from lexyjobs.llm.cache import Cache
from lexyjobs.llm.calls import Endpoint, run_on_loop
from lexyjobs.llm.definition import DEFAULT_PARALLEL, FIELDS, validate
from lexyjobs.llm.items import BatchRun, Item, items_of
from lexyjobs.llm.spend import spend_for

__all__ = ["FIELDS", "validate", "run"]
PROMPT_CHARS = 20_000  # of each message kept in the run's details


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    items = items_of(ctx, dict(config))
    embedding = config["mode"] == "embeddings"
    body = chat.request(config, templates.values(ctx)) if items is None and not embedding else None
    endpoint = Endpoint(ctx, config)
    asker = Asker(ctx, endpoint, spend_for(ctx, dict(config)), Cache(ctx, config, endpoint.address))
    try:
        if items is not None:
            per_request = config["batch_size"] if embedding else 1
            batch = BatchRun(ctx, items, per_request, config.get("parallel", DEFAULT_PARALLEL), config.get("save"),
                             endpoint.failures.translate)
            try:
                if embedding:
                    return embeddings.run_items(ctx, asker, config, batch)
                return _chat_items(ctx, asker, config, batch)
            finally:
                ctx.details.update(asker.spend.totals())
        if embedding:
            return embeddings.run_one(ctx, asker, config)
        assert body is not None
        return _chat(ctx, asker, config, body)
    finally:
        asker.spend.flush()
        ctx.details.update(asker.spend.details())


def _chat(ctx: RunContext, asker: Asker, config: Mapping[str, Any], body: dict[str, Any]) -> Any:
    # the exact prompt, for the run's page (the answer is the result, or the log when it is not JSON)
    ctx.details["prompt"] = [{"role": m["role"], "content": asker.endpoint.mask.text(m["content"])[:PROMPT_CHARS]}
                             for m in body["messages"]]
    ctx.progress(None, f"waiting for {body['model']}")  # what the panel shows while the model works
    try:
        answer = run_on_loop(ctx, asker.endpoint, lambda: asker.chat(body, stream=config["stream"]))
    finally:
        ctx.progress(None, None)
    ctx.details.update(answer.details)
    if answer.cached:
        ctx.log.info("%s answered from the cache (cache_for): nothing sent", answer.model)
    else:
        tokens = f"{answer.usage[0]} + {answer.usage[1]} tokens" if answer.usage is not None else "no token counts"
        ctx.log.info("%s answered from %s in %d ms: %s, finish reason %s", answer.model, asker.endpoint.address,
                     answer.generation_ms, tokens, answer.finish_reason)
    return chat.result(ctx, answer, json_wanted=config["response_format"] == "json")


def _chat_items(ctx: RunContext, asker: Asker, config: Mapping[str, Any], batch: BatchRun) -> Any:
    """One chat completion per item (not streamed: the replies of parallel requests would
    interleave in the log); an item whose prompt does not render or whose reply is not the JSON
    asked for fails alone."""
    json_wanted = config["response_format"] == "json"

    async def handle(items: Any) -> list[Any]:
        item: Item = items[0]
        try:
            body = chat.request(config, templates.values(ctx, item=item.value, index=item.index))
        except JobFailed as exc:
            return [exc]
        answer = await asker.chat(body, stream=False)
        try:
            return [chat.result(ctx, answer, json_wanted=json_wanted)]
        except JobFailed as exc:
            return [exc]

    ctx.log.info("%s items for %s at %s, %d requests at once", f"{len(batch.items):,}",
                 expand_env(config["model"]), asker.endpoint.address, batch.parallel)
    run_on_loop(ctx, asker.endpoint, lambda: batch.run(handle))
    return batch.outcome()
