"""Unique runs and idempotent enqueue: an enqueue that repeats an earlier one answers with the
run that is already there instead of adding another.

- An **idempotency key** (``Idempotency-Key`` header, ``key=`` in Python, ``--key`` in the CLI)
  names one request: the same key for the same job within ``LEXYJOBS_IDEMPOTENCY_WINDOW`` returns
  the first run, whatever its status now. The same key with other params is refused (422,
  ``idempotency_key_reused``), as the IETF draft on the header asks: it is a client's bug.
- A job with ``unique = ["site_id"]`` (``[]``: the whole job) has at most one run per value of
  those params that is queued (``unique_while = "queued"``) or queued or running (``"active"``);
  an enqueue of a duplicate returns that run.

Both checks run in the enqueue's transaction after a lock per key, so concurrent enqueues (threads,
processes, a host application's transaction) serialize and exactly one of them inserts: on Postgres
a transaction-level advisory lock per key (released at commit, after the new run is visible); on
SQLite the write lock, taken by our ``BEGIN IMMEDIATE`` or, in a host's transaction, by a write
that changes nothing before the lookup. An enqueue that uses neither pays nothing: the caller only
comes here when a row has a key (``runs.insert_requests``)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence, cast

from sqlalchemy import Table, func, literal_column, select, text
from sqlalchemy.orm import Session

from lexyjobs import store
from lexyjobs.errors import LexyjobsError
from lexyjobs.models import Run

RUNS = cast(Table, Run.__table__)
DEFAULT_WINDOW = 24 * 3600.0  # seconds an idempotency key is remembered (LEXYJOBS_IDEMPOTENCY_WINDOW)
KEY_PATTERN = re.compile(r"[!-~](?:[ -~]{0,198}[!-~])?")  # 1–200 printable ASCII, no space at either end
KEY_RULE = "must be 1–200 printable ASCII characters (letters, digits, punctuation; spaces only inside), e.g. a UUID"
EXISTING = "existing"  # in a row ``insert_once`` returns: the Existing that answered instead of an insert
_LOCK_NAMESPACE = "lexyjobs-unique:"
# literals, not bound values: only then does SQLite's planner match the partial index's own terms
_ACTIVE: tuple[Any, ...] = literal_column("'queued'"), literal_column("'running'")


class InvalidIdempotencyKey(LexyjobsError):
    """The idempotency key is not 1–200 printable ASCII characters."""

    status_code = 422
    code = "invalid_field"

    def __init__(self, field: str, problem: str = KEY_RULE) -> None:
        super().__init__(f"{field}: {problem}", details={"field": field, "problem": problem})


class IdempotencyKeyReused(LexyjobsError):
    """The idempotency key was used for a run with other params."""

    status_code = 422
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class IdempotencyKey:
    """A validated key and how long (seconds) it names its first run."""

    text: str
    window: float = DEFAULT_WINDOW


def idempotency_key(value: Any, window: float = DEFAULT_WINDOW, *, field: str = "key") -> IdempotencyKey:
    """``value`` as a key; InvalidIdempotencyKey (422, naming ``field``) unless it is 1–200
    printable ASCII characters."""
    if not isinstance(value, str) or not KEY_PATTERN.fullmatch(value):
        raise InvalidIdempotencyKey(field)
    return IdempotencyKey(value, window)


@dataclass(frozen=True)
class Existing:
    """An enqueue answered with a run that was already there, and why."""

    run_id: int
    job: str
    status: str
    reason: str  # e.g. "run 12 of job crawl is already queued with the same site_id=4"

    @property
    def message(self) -> str:
        return f"{self.reason}; not enqueued again"


def insert_once(session: Session, rows: Sequence[dict[str, Any]], keys: Sequence[IdempotencyKey | None],
                unique: Mapping[str, tuple[tuple[str, ...], str]], *, now: datetime) -> list[dict[str, Any]]:
    """Insert each of ``rows`` (queued run rows, with ``unique_key`` set by ``flow_columns``)
    unless an earlier run answers for it; returns, in order, the inserted rows with their ``id``,
    or the earlier run's row with ``existing`` (an Existing). ``keys``: each row's idempotency
    key; ``unique``: per job, its ``unique`` params and ``unique_while``.

    Locks every key first, in sorted order (two batches never wait on each other crosswise), then
    checks and inserts row by row, so a batch repeating itself inserts once too."""
    _lock(session, sorted({name for row, key in zip(rows, keys) for name in _lock_names(row, key)}))
    out: list[dict[str, Any]] = []
    for row, key in zip(rows, keys):
        found = (_by_key(session, row, key, now) if key else None) or _by_unique(session, row, unique)
        if found is not None:
            out.append(found)
            continue
        new = {**row, "idempotency_key": key.text if key else None}
        [run_id] = store.insert_runs(session, [new])
        out.append({**new, "id": run_id})
    return out


def _lock_names(row: Mapping[str, Any], key: IdempotencyKey | None) -> list[str]:
    names = [f"key:{row['job_name']}:{key.text}"] if key else []
    return names + ([f"unique:{row['unique_key']}"] if row.get("unique_key") else [])


def _lock(session: Session, names: Sequence[str]) -> None:
    """Serialize the enqueues of ``names`` until this transaction ends."""
    if not names:
        return
    if session.get_bind().dialect.name == "postgresql":
        for name in names:
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(_LOCK_NAMESPACE + name))))
    else:
        # SQLite has one write lock. Our own transactions hold it already (BEGIN IMMEDIATE); a host's
        # may not have written yet, and its lookup must not run before it holds the lock.
        take_sqlite_write_lock(session)


def take_sqlite_write_lock(session: Session) -> None:
    """Take SQLite's write lock in ``session``'s transaction now, with a write that changes
    nothing (waiting up to the busy timeout). ``lexyjobs.enqueue`` does this first in a host's
    transaction: a deferred transaction that has read cannot wait for the lock later (SQLite
    refuses the upgrade at once, "database is locked", while another writer holds it)."""
    session.execute(text("UPDATE runs SET id = id WHERE 0"))


def _by_key(session: Session, row: Mapping[str, Any], key: IdempotencyKey, now: datetime) -> dict[str, Any] | None:
    """The first run of the job enqueued with ``key`` within its window; IdempotencyKeyReused
    when that run's params differ from ``row``'s."""
    since = now - timedelta(seconds=key.window)
    first = session.execute(
        select(RUNS).where(RUNS.c.job_name == row["job_name"], RUNS.c.idempotency_key == key.text,
                           RUNS.c.created_at >= since).order_by(RUNS.c.created_at, RUNS.c.id).limit(1)
    ).mappings().first()
    if first is None:
        return None
    if (first["params"] or {}) != (row["params"] or {}):
        raise IdempotencyKeyReused(
            f"idempotency key {key.text!r} was used for run {first['id']} of job {first['job_name']} with other "
            f"params; send a new key for a different request", details={
                "run_id": first["id"], "params": first["params"]})
    reason = f"run {first['id']} of job {first['job_name']} was enqueued with the same idempotency key " \
             f"{key.text!r} (it is {first['status']})"
    return _answer(first, reason)


def _by_unique(session: Session, row: Mapping[str, Any],
               unique: Mapping[str, tuple[tuple[str, ...], str]]) -> dict[str, Any] | None:
    """The oldest run holding ``row``'s unique key: queued, or also running when the job's
    ``unique_while`` is ``active``."""
    if not row.get("unique_key"):
        return None
    fields, while_ = unique[row["job_name"]]
    wanted = ("queued",) if while_ == "queued" else ("queued", "running")
    holders = session.execute(
        select(RUNS).where(RUNS.c.unique_key == row["unique_key"], RUNS.c.status.in_(_ACTIVE)).order_by(RUNS.c.id)
    ).mappings().all()
    first = next((holder for holder in holders if holder["status"] in wanted), None)
    if first is None:
        return None
    same = f" with the same {describe(fields, row['params'])}" if fields else ""
    return _answer(first, f"run {first['id']} of job {first['job_name']} is already {first['status']}{same}")


def _answer(found: Any, reason: str) -> dict[str, Any]:
    return {**dict(found), EXISTING: Existing(found["id"], found["job_name"], found["status"], reason)}


def describe(fields: Sequence[str], params: Mapping[str, Any] | None) -> str:
    """``site_id=4, region=eu``: the values that make two runs duplicates."""
    values = params or {}
    return ", ".join(f"{name}={_shown(values.get(name))}" for name in fields)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
