"""``cache_for``: an answer is stored under the hash of what was asked — the endpoint, the whole
request (model, messages, parameters; one text for embeddings) and the job, unless
``cache_shared`` — and an identical request within the window gets it back without being sent
(no tokens, no cost; the run's details say ``cached``). Expired entries are deleted as new ones
are stored."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Mapping, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from lexyjobs.context import RunContext
from lexyjobs.db import utcnow
from lexyjobs.durations import parse_duration
from lexyjobs.models import LlmCacheEntry

CACHE = cast(Table, LlmCacheEntry.__table__)


class Cache:
    """The cache as one run sees it (off when the job has no ``cache_for`` or there is no database)."""

    def __init__(self, ctx: RunContext, config: Mapping[str, Any], address: str) -> None:
        self.db, self.job = ctx.db, ctx.job_name
        self.seconds = parse_duration(config["cache_for"]) if "cache_for" in config else None
        self.scope = "*" if config.get("cache_shared") else ctx.job_name
        self.address = address

    @property
    def on(self) -> bool:
        return self.seconds is not None and self.db is not None

    def key(self, request: Mapping[str, Any]) -> str:
        text = json.dumps({"scope": self.scope, "url": self.address, "request": request}, sort_keys=True,
                          separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, keys: list[str], now: datetime | None = None) -> dict[str, Any]:
        """The stored answers of those ``keys`` that have one, by key."""
        if not self.on or not keys:
            return {}
        with self.db.read() as session:
            rows = session.execute(select(CACHE.c.key, CACHE.c.answer).where(
                CACHE.c.key.in_(keys), CACHE.c.expires_at > (now or utcnow()))).all()
        return {key: answer for key, answer in rows}

    def put(self, answers: Mapping[str, Any], now: datetime | None = None) -> None:
        """Store ``answers`` (by key) for ``cache_for`` from now."""
        if not self.on or not answers:
            return
        at = now or utcnow()
        rows = [{"key": key, "job_name": self.job, "created_at": at, "answer": answer,
                 "expires_at": at + timedelta(seconds=self.seconds or 0)} for key, answer in answers.items()]
        with self.db.write() as session:
            session.execute(delete(CACHE).where(CACHE.c.expires_at <= at))
            dialect = session.get_bind().dialect.name
            statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(CACHE)
            # two identical requests of parallel items may both store: the later answer wins
            session.execute(statement.on_conflict_do_update(
                index_elements=["key"], set_={name: statement.excluded[name] for name in
                                              ("job_name", "created_at", "answer", "expires_at")}), rows)
