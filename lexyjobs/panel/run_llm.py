"""What the run page shows of an ``openai`` run beyond the common facts: the exact prompt it sent
with its answer, the items of a batch run (counts, the failed ones, the first results), and the
rows of the generic Details table — without the prompt (it has its own section), with the cost
and the cache in words.

Everything here reads what the run recorded (``details``, ``result``, ``run_items``), which any
job could have filled with anything: a ``prompt`` that is not a list of role/content messages
stays an ordinary detail, and nothing a job recorded can break the page."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy.orm import Session

from lexyjobs.llm.item_reads import ItemCounts, ItemRow, item_counts, item_page
from lexyjobs.llm.providers import format_amount
from lexyjobs.models import Run
from lexyjobs.panel.formatting import pretty_json

FAILED_SHOWN = 100  # failed items listed on the page ("and N more" after them; the API pages through all)
OK_SHOWN = 20  # results of the first items that succeeded, collapsed
PREVIEW_CHARS = 2_000  # of each result shown (an embedding is thousands of numbers)
CACHED_WORDS = "yes — answered from the cache"


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Answer:
    """The run's result as the page shows it: ``text`` (a text reply) or ``json`` (pretty-printed)."""

    text: str | None = None
    json: str | None = None


@dataclass(frozen=True)
class ItemsView:
    counts: ItemCounts
    total: int | None  # details["items"] (None while the run goes on: the total is recorded at its end)
    reused: int  # kept from an earlier attempt or the run it retries, so not recorded for this one
    failed: list[ItemRow]
    failed_more: int  # failed items beyond those listed
    ok: list[tuple[int, str | None]]  # (index, result preview; None: the save hook took it) of the first successes


def llm_context(session: Session, run: Run) -> dict[str, Any]:
    """``prompt``, ``answer``, ``batch`` (the items) and ``detail_rows`` for the run's live block."""
    details: Mapping[str, Any] = run.details if isinstance(run.details, dict) else {}
    prompt = prompt_messages(details)
    return {"prompt": prompt, "answer": answer_of(run.result) if prompt else None,
            "batch": items_view(session, run.id, details), "detail_rows": detail_rows(details, prompt is not None)}


def prompt_messages(details: Mapping[str, Any]) -> list[Message] | None:
    """The recorded prompt (``details["prompt"]``), or None when there is none in that shape."""
    raw = details.get("prompt")
    if not isinstance(raw, list) or not raw:
        return None
    messages = []
    for message in raw:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            return None
        messages.append(Message(message["role"], message["content"]))
    return messages


def answer_of(result: Any) -> Answer | None:
    """A text reply as text, anything else (``response_format = "json"``) as pretty JSON; None: no answer."""
    if result is None:
        return None
    if isinstance(result, str):
        return Answer(text=result)
    return Answer(json=pretty_json(result))


def detail_rows(details: Mapping[str, Any], prompt_shown: bool) -> list[tuple[str, Any]]:
    """(key, value) rows of the Details table, by key: the prompt left out when it has its own
    section, ``cost`` with its currency ("0.0021 USD"), ``cached`` in words."""
    rows = dict(details)
    if prompt_shown:
        rows.pop("prompt", None)
    cost, currency = rows.get("cost"), rows.get("currency")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and isinstance(currency, str):
        rows["cost"] = f"{format_amount(cost)} {currency}"
        del rows["currency"]
    cached = rows.get("cached")
    if cached is True or (type(cached) is int and cached > 0):
        batch = isinstance(rows.get("items"), int)  # a batch run counts its cached answers
        rows["cached"] = f"{cached:,} of its answers came from the cache" if batch else CACHED_WORDS
    return sorted(rows.items(), key=lambda row: str(row[0]).lower())  # as Jinja's dictsort did


def items_view(session: Session, run_id: int, details: Mapping[str, Any]) -> ItemsView | None:
    """The run's items as the page shows them (None: it has no ``run_items`` rows). Each list is
    one LIMITed read of the primary key, after one count."""
    counts = item_counts(session, run_id)
    if not counts.stored:
        return None
    failed = item_page(session, run_id, status="failed", limit=FAILED_SHOWN).items if counts.failed else []
    ok = item_page(session, run_id, status="ok", limit=OK_SHOWN).items if counts.ok else []
    return ItemsView(counts, _count(details.get("items")), _count(details.get("items_reused")) or 0, failed,
                     counts.failed - len(failed), [(item.idx, _preview(item.result)) for item in ok])


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _preview(result: Any) -> str | None:
    """A result as text (JSON but for a plain text), cut to PREVIEW_CHARS saying how much is left
    out; None when no result was kept (a ``save`` hook took it)."""
    if result is None:
        return None
    text = result if isinstance(result, str) else pretty_json(result)
    if len(text) <= PREVIEW_CHARS:
        return text
    return f"{text[:PREVIEW_CHARS]}\n[… {len(text) - PREVIEW_CHARS:,} more characters]"
