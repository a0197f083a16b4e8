"""``mode = "embeddings"``: vectors for texts. Without items, the ``input`` template rendered with
the params is one text and its vector is the result; over items, each item's rendered ``input``
is one text, ``batch_size`` texts go in one request, and the vectors are the items' results."""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.kinds import expand_env
from lexyjobs.llm import templates
from lexyjobs.llm.asking import Asker
from lexyjobs.llm.calls import run_on_loop
from lexyjobs.llm.items import BatchRun, Item


def run_one(ctx: RunContext, asker: Asker, config: Mapping[str, Any]) -> list[float]:
    text = templates.render("input", config["input"], templates.values(ctx))
    started = time.monotonic()
    ctx.progress(None, f"waiting for {expand_env(config['model'])}")
    try:
        vectors, usage, model = run_on_loop(ctx, asker.endpoint, lambda: asker.embed(config, [text]))
    finally:
        ctx.progress(None, None)
    ctx.details.update(model=model, inputs=1, dimensions=len(vectors[0]),
                       generation_ms=round((time.monotonic() - started) * 1000))
    if usage is not None:
        ctx.details["prompt_tokens"] = usage[0]
    ctx.log.info("%s embedded 1 input (%d dimensions) at %s", model, len(vectors[0]), asker.endpoint.address)
    return vectors[0]


def run_items(ctx: RunContext, asker: Asker, config: Mapping[str, Any], batch: BatchRun) -> Any:
    seen: dict[str, int] = {}  # the vectors' length (with ``save`` the results are not kept here)

    async def handle(items: Sequence[Item]) -> list[Any]:
        texts: list[str] = []
        rendered: list[Any] = []  # the text's place, or the item's render failure
        for item in items:
            try:
                texts.append(templates.render("input", config["input"],
                                              templates.values(ctx, item=item.value, index=item.index)))
                rendered.append(len(texts) - 1)
            except JobFailed as exc:
                rendered.append(exc)
        vectors = (await asker.embed(config, texts))[0] if texts else []
        if vectors:
            seen["dimensions"] = len(vectors[0])
        return [vectors[r] if isinstance(r, int) else r for r in rendered]

    started = time.monotonic()
    run_on_loop(ctx, asker.endpoint, lambda: batch.run(handle))
    ctx.details.update(generation_ms=round((time.monotonic() - started) * 1000), **seen)
    return batch.outcome()
