"""Functions the openai batch tests name in ``items`` and ``save`` (``llm_hooks:...``)."""
from __future__ import annotations

from typing import Any, Iterator

SAVED: list[dict[str, Any]] = []  # what ``save`` received, in order; tests clear it
FAIL_SAVING: set[str] = set()     # item texts ``save`` refuses (raises on the batch holding one)


def corpus(ctx: Any) -> Iterator[dict[str, Any]]:
    """Seed 000's pending corpus entries: ``count`` of them (a param, default 5)."""
    for number in range(int(ctx.params.get("count", 5))):
        yield {"id": number + 1, "text": f"corpus entry {number + 1}"}


def save(ctx: Any, results: list[dict[str, Any]]) -> None:
    if any(r["item"]["text"] in FAIL_SAVING for r in results):
        raise RuntimeError("the vector table is locked")
    SAVED.extend(results)


def not_a_list(ctx: Any) -> dict[str, Any]:
    return {"a": 1}
