"""Batch runs: a run over a list of items (the ``items`` param, or what the job's ``items``
function returns) sends one request per item (per ``batch_size`` items for embeddings), at most
``parallel`` at once, and records each item's outcome in ``run_items`` as its request finishes.

So one failed item never loses the others' results, and a retry sends only what did not succeed:
the next attempt of the run, and a manual Retry (a new run that ``retry_of`` points back from),
reuse the stored results of the items that succeeded — an item is the same when it is at the same
place with the same value (``item_hash``)."""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Sequence, cast

from sqlalchemy import Table, delete, insert, select

from lexyjobs.context import JobFailed, RunContext, RunDeferred
from lexyjobs.db import utcnow
from lexyjobs.models import RunItem
from lexyjobs.states import RUNS

ITEMS = cast(Table, RunItem.__table__)
MAX_ITEMS = 100_000
MAX_RETRY_CHAIN = 50  # manual retries followed back for reusable results
MAX_ITEM_ERROR_CHARS = 500


@dataclass(frozen=True)
class Item:
    index: int
    value: Any
    hash: str


@dataclass
class ItemOutcome:
    item: Item
    ok: bool
    result: Any = None
    error: str | None = None
    retry_after: float | None = None


# a batch's handler: the items' results in order (a JobFailed in place of an item's result fails
# that item alone: its prompt would not render, its reply is not JSON)
Handler = Callable[[Sequence[Item]], Awaitable[list[Any]]]


def items_of(ctx: RunContext, config: dict[str, Any]) -> list[Item] | None:
    """The run's items (None: not a batch run): the job's ``items`` function's, else the
    ``items`` param when it is a list."""
    if "items" in config:
        from lexyjobs.kinds.python import call

        produced = call(ctx, config["items"])
        if isinstance(produced, (str, bytes, dict)) or not isinstance(produced, Iterable):
            raise JobFailed(f"items: {config['items']} returned {type(produced).__name__}, not a list of items",
                            retryable=False)
        values = _at_most(produced, config["items"])
    elif isinstance(ctx.params.get("items"), list):
        values = _at_most(ctx.params["items"], "the items param")
    else:
        return None
    return [Item(index, value, item_hash(value)) for index, value in enumerate(values)]


def _at_most(values: Iterable[Any], source: str) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if len(out) == MAX_ITEMS:
            raise JobFailed(f"items: {source} has more than {MAX_ITEMS:,} items; split the work into several runs",
                            retryable=False)
        out.append(value)
    return out


def item_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ItemStore:
    """The ``run_items`` rows of one run (nothing is kept without a database)."""

    def __init__(self, ctx: RunContext) -> None:
        self.db, self.run_id, self.attempt = ctx.db, ctx.run_id, ctx.attempt

    def succeeded(self, items: Sequence[Item]) -> dict[int, Any]:
        """Index → stored result of the items that already succeeded, in this run (an earlier
        attempt) or in the runs it retries, the nearest first."""
        if self.db is None:
            return {}
        with self.db.read() as session:
            chain = [self.run_id]
            while len(chain) < MAX_RETRY_CHAIN:
                before = session.scalar(select(RUNS.c.retry_of).where(RUNS.c.id == chain[-1]))
                if before is None or before in chain:
                    break
                chain.append(before)
            rows = session.execute(select(ITEMS.c.run_id, ITEMS.c.idx, ITEMS.c.item_hash, ITEMS.c.result)
                                   .where(ITEMS.c.run_id.in_(chain), ITEMS.c.status == "ok")).all()
        hashes = {item.index: item.hash for item in items}
        found: dict[int, tuple[int, Any]] = {}
        for run_id, index, hashed, result in rows:
            rank = chain.index(run_id)
            if hashes.get(index) == hashed and (index not in found or rank < found[index][0]):
                found[index] = (rank, result)
        return {index: result for index, (_, result) in found.items()}

    def record(self, outcomes: Sequence[ItemOutcome], *, keep_results: bool, now: datetime | None = None) -> None:
        if self.db is None or not outcomes:
            return
        at = now or utcnow()
        rows = [{"run_id": self.run_id, "idx": o.item.index, "item_hash": o.item.hash,
                 "status": "ok" if o.ok else "failed", "result": o.result if o.ok and keep_results else None,
                 "error": o.error, "attempt": self.attempt, "finished_at": at} for o in outcomes]
        with self.db.write() as session:
            session.execute(delete(ITEMS).where(ITEMS.c.run_id == self.run_id,
                                                ITEMS.c.idx.in_([o.item.index for o in outcomes])))
            session.execute(insert(ITEMS), rows)


@dataclass
class BatchRun:
    """One attempt of a batch run: sends the items not done yet, ``parallel`` requests at once."""

    ctx: RunContext
    items: list[Item]
    size: int  # items per request
    parallel: int
    save: str | None
    describe_failure: Callable[[BaseException], BaseException]
    store: ItemStore = field(init=False)
    results: dict[int, Any] = field(default_factory=dict)
    failed: list[ItemOutcome] = field(default_factory=list)
    reused: int = 0
    deferred: RunDeferred | None = None  # a request said the run must wait (a daily budget): nothing more is sent

    def __post_init__(self) -> None:
        self.store = ItemStore(self.ctx)

    async def run(self, handle: Handler) -> None:
        self.results = await asyncio.to_thread(self.store.succeeded, self.items)
        self.reused = len(self.results)
        todo = [item for item in self.items if item.index not in self.results]
        if self.reused:
            self.ctx.log.info("%s of %s items already succeeded (kept from before); sending the other %s",
                              f"{self.reused:,}", f"{len(self.items):,}", f"{len(todo):,}")
        self._progress()
        gate = asyncio.Semaphore(self.parallel)

        async def one(batch: list[Item]) -> None:
            async with gate:
                if self.deferred is not None:
                    return
                try:
                    outcomes = await self._send(handle, batch)
                except RunDeferred as exc:
                    self.deferred = self.deferred or exc
                    return
            await asyncio.to_thread(self._finish, outcomes)

        await asyncio.gather(*(one(todo[i:i + self.size]) for i in range(0, len(todo), self.size)))
        if self.deferred is not None:  # what finished is kept: the run resumes with the rest
            raise self.deferred

    async def _send(self, handle: Handler, batch: list[Item]) -> list[ItemOutcome]:
        try:
            results = await handle(batch)
        except RunDeferred:
            raise
        except Exception as exc:  # one request's failure is its items' outcome, not the run's
            failure = self.describe_failure(exc)
            retry_after = failure.retry_after if isinstance(failure, JobFailed) else None
            error = str(failure) if isinstance(failure, JobFailed) else f"{type(failure).__name__}: {failure}"
            return [ItemOutcome(item, False, error=error[:MAX_ITEM_ERROR_CHARS], retry_after=retry_after)
                    for item in batch]
        return [ItemOutcome(item, False, error=str(result)[:MAX_ITEM_ERROR_CHARS]) if isinstance(result, JobFailed)
                else ItemOutcome(item, True, result) for item, result in zip(batch, results)]

    def _finish(self, outcomes: list[ItemOutcome]) -> None:
        """Hand the successes to the ``save`` hook, record every outcome, show the progress (in a thread:
        the hook and the database may block)."""
        ok = [o for o in outcomes if o.ok]
        if ok and self.save is not None:
            try:
                self._save(ok)
            except Exception as exc:
                for outcome in ok:
                    outcome.ok, outcome.error = False, f"save: {type(exc).__name__}: {exc}"[:MAX_ITEM_ERROR_CHARS]
        self.store.record(outcomes, keep_results=self.save is None)
        for outcome in outcomes:
            if outcome.ok:
                self.results[outcome.item.index] = outcome.result if self.save is None else None
            else:
                self.failed.append(outcome)
                self.ctx.log.warning("item %d failed: %s", outcome.item.index, outcome.error)
        self._progress()

    def _save(self, ok: list[ItemOutcome]) -> None:
        from lexyjobs.kinds.python import resolve

        resolve(self.save or "")(self.ctx, [{"item": o.item.value, "result": o.result} for o in ok])

    def _progress(self) -> None:
        done, total = len(self.results) + len(self.failed), len(self.items)
        failed = f", {len(self.failed):,} failed" if self.failed else ""
        self.ctx.progress(100.0 * done / total if total else 100.0, f"{done:,} of {total:,} items{failed}")

    def details(self) -> dict[str, Any]:
        return {"items": len(self.items), "items_ok": len(self.results), "items_failed": len(self.failed),
                "items_reused": self.reused}

    def outcome(self) -> Any:
        """The run's result: each item's in order (with ``save``: the counts); JobFailed when any item failed."""
        self.ctx.details.update(self.details())
        if self.failed:
            first = min(self.failed, key=lambda o: o.item.index)
            waits = [o.retry_after for o in self.failed if o.retry_after is not None]
            raise JobFailed(f"{len(self.failed):,} of {len(self.items):,} items failed (item {first.item.index}: "
                            f"{first.error}); the others' results are kept and a retry sends only the failed ones",
                            retry_after=max(waits) if waits else None)
        if self.save is not None:
            return {"items": len(self.items), "saved": len(self.items) - self.reused, "reused": self.reused}
        return [self.results[item.index] for item in self.items]
