"""Typed SQLAlchemy models. The schema itself is created by the Alembic migrations in
``lexyjobs/migrations``; keep both in step."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")
OrderedJSON = JSON()  # Postgres ``json`` keeps the keys in the order written; ``jsonb`` reorders them
RunId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only autoincrements INTEGER keys


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; naive UTC in SQLite (sorts as text), timestamptz in Postgres."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use lexyjobs.db.utcnow()")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class span(FunctionElement[Any]):  # noqa: N801 (an SQL function, named like one)
    """``span(start, end)``: the time from ``start`` to ``end`` — seconds as a float on SQLite,
    an interval on Postgres (both sort the same way; NULL if either is). The runs list sorts by it
    through the expression indexes ix_runs_duration and ix_runs_queue_time, which only serve a
    query whose expression is the indexed one: build both with this."""

    name = "span"
    inherit_cache = True


@compiles(span, "sqlite")
def _span_sqlite(element: span, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(span, "postgresql")
def _span_postgres(element: span, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({end} - {start})"


class Base(DeclarativeBase):
    pass


class Job(Base):
    """A named definition. ``spec`` holds the normalized definition (the jobs.toml fields);
    the other columns are copies used for filtering, plus runtime state (``enabled``)."""

    __tablename__ = "jobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(10))  # code | file | db
    spec: Mapped[dict[str, Any]] = mapped_column(OrderedJSON)  # params in the order the author wrote them
    schedule: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # False = paused
    max_concurrency: Mapped[int] = mapped_column(Integer, default=1)  # 0 = unlimited
    archived: Mapped[bool] = mapped_column(Boolean, default=False)  # gone from its code/file source
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Run(Base):
    """One execution request of a job and its life (see lexyjobs.states)."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_queue", text("priority DESC"), "scheduled_for", "id",
              sqlite_where=text("status = 'queued'"), postgresql_where=text("status = 'queued'")),
        Index("ix_runs_running", "job_name", "heartbeat_at",
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'")),
        Index("ix_runs_job_created", "job_name", "created_at"),
        Index("ix_runs_backfill", "backfill_id", sqlite_where=text("backfill_id IS NOT NULL"),
              postgresql_where=text("backfill_id IS NOT NULL")),
        Index("ix_runs_created", "created_at"),
        Index("ix_runs_pipeline", "pipeline_id", "job_name"),
        Index("ix_runs_retry_of", "retry_of"),
        Index("ix_runs_parent", "parent_run_id"),  # deleting a run (retention) nulls its children's pointer
        # the panel's reads at millions of runs (migrations 0005 and 0006 say which query each one serves)
        Index("ix_runs_status_id", "status", "id"),
        Index("ix_runs_status_finished_times", "status", "finished_at", "started_at", "scheduled_for"),
        Index("ix_runs_job_outcome", "job_name", "status", "finished_at", "id"),
        Index("ix_runs_job_id", "job_name", "id"),
        # flow control (migration 0017): running runs by key, active runs by uniqueness, enqueues by key
        # (only the runs that have a key: a claim or finish of a run without one writes no entry)
        Index("ix_runs_concurrency_key", "concurrency_key",
              sqlite_where=text("status = 'running' AND concurrency_key IS NOT NULL"),
              postgresql_where=text("status = 'running' AND concurrency_key IS NOT NULL")),
        Index("ix_runs_unique_key", "unique_key",
              sqlite_where=text("status IN ('queued', 'running') AND unique_key IS NOT NULL"),
              postgresql_where=text("status IN ('queued', 'running') AND unique_key IS NOT NULL")),
        Index("ix_runs_idempotency", "job_name", "idempotency_key", "created_at",
              sqlite_where=text("idempotency_key IS NOT NULL"), postgresql_where=text("idempotency_key IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(RunId, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(ForeignKey("jobs.name", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    trigger: Mapped[str] = mapped_column(String(20))  # schedule | manual | api | dependency | retry
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # start of the latest attempt
    # when the latest attempt's body began; NULL while a claimed-ahead run waits for a thread (a
    # rescue then gives it back without counting the attempt)
    begun_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # attempts started so far
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every claim; fences writes
    progress: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # kind facts: exit code, HTTP status…
    worker: Mapped[str | None] = mapped_column(String(200))
    # the latest attempt's process group and host (shell kind): a rescue on that host kills it first
    process_group: Mapped[int | None] = mapped_column(Integer)
    process_host: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the first request (cancels.py)
    trace_parent: Mapped[str | None] = mapped_column(String(60))  # W3C traceparent (lexyjobs.tracing)
    backfill_id: Mapped[int | None] = mapped_column(Integer)  # the backfill it belongs to (lexyjobs.backfill)
    pipeline_id: Mapped[str | None] = mapped_column(String(36))
    parent_run_id: Mapped[int | None] = mapped_column(RunId, ForeignKey("runs.id", ondelete="SET NULL"))
    retry_of: Mapped[int | None] = mapped_column(RunId, ForeignKey("runs.id", ondelete="SET NULL"))
    fire_key: Mapped[str | None] = mapped_column(String(200), unique=True)  # job@fire-time for schedules
    # flow control (lexyjobs.flow), fixed at enqueue so the claim needs no job definitions
    queue: Mapped[str] = mapped_column(String(100), default="default", server_default="default")
    concurrency_key: Mapped[str | None] = mapped_column(String(300))  # rendered, e.g. "brand:42"
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)   # runs with that key at once
    rate_limits: Mapped[list[Any] | None] = mapped_column(JSONType)   # buckets: [{bucket, rate, per}]
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # over a rate limit: its next slot
    held_by: Mapped[str | None] = mapped_column(String(300))          # the bucket it waits for
    idempotency_key: Mapped[str | None] = mapped_column(String(300))  # Idempotency-Key of its enqueue
    unique_key: Mapped[str | None] = mapped_column(String(500))       # job + unique params, while active


# The runs list's sorts by duration and by queue time (migration 0019); NULL spans (not started,
# not finished) are listed after the others, by id, in a query of their own.
RUN_DURATION = span(Run.started_at, Run.finished_at)
RUN_QUEUE_TIME = span(Run.scheduled_for, Run.started_at)
Index("ix_runs_duration", RUN_DURATION, Run.id)
Index("ix_runs_queue_time", RUN_QUEUE_TIME, Run.id)


class RunEvent(Base):
    """One row per status transition, written in the same transaction as the change."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run", "run_id", "id"), Index("ix_run_events_at", "at"))

    id: Mapped[int] = mapped_column(RunId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(RunId, ForeignKey("runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)


class RunLog(Base):
    """The tail of a run's captured output; ``size`` counts every character ever appended, so
    ``size - len(content)`` is the offset where ``content`` starts (for tailing after trims)."""

    __tablename__ = "run_logs"

    run_id: Mapped[int] = mapped_column(RunId, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    content: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)


class RunItem(Base):
    """One item of a batch run (``openai`` jobs over ``items``): its outcome, written as it
    finishes, so a failed item never loses the others' results and a retry sends only the items
    that did not succeed (``item_hash`` tells an item from another at the same place)."""

    __tablename__ = "run_items"

    run_id: Mapped[int] = mapped_column(RunId, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(10))  # ok | failed
    result: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LlmUsageDay(Base):
    """Requests, tokens and cost of ``openai`` jobs per UTC day, job, provider (a ``[limits.<name>]``
    the job names, '' for none) and model: the daily budgets, the charts and ``/metrics`` read it
    (lexyjobs.llm.spend)."""

    __tablename__ = "llm_usage_days"
    __table_args__ = (Index("ix_llm_usage_days_provider", "provider", "day"),)

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    job_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    cached: Mapped[int] = mapped_column(BigInteger, default=0)  # answered from the cache (no tokens, no cost)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str] = mapped_column(String(10), default="")  # '' while no price is known


class LlmRequest(Base):
    """One request to a provider with a requests- or tokens-per-minute limit, kept for a minute:
    the sliding window every process counts before sending (lexyjobs.llm.spend)."""

    __tablename__ = "llm_requests"
    __table_args__ = (Index("ix_llm_requests_provider_at", "provider", "at"),)

    id: Mapped[int] = mapped_column(RunId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    tokens: Mapped[int] = mapped_column(BigInteger)  # estimated when sent, the answer's count once known


class LlmCacheEntry(Base):
    """A stored answer for ``cache_for``: by the hash of what was asked (and of the job, unless
    shared), reused until ``expires_at`` (lexyjobs.llm.cache)."""

    __tablename__ = "llm_cache"
    __table_args__ = (Index("ix_llm_cache_expires", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answer: Mapped[Any] = mapped_column(JSONType)


class User(Base):
    """A panel login. ``session_epoch`` is copied into every session cookie; bumping it (logout,
    password change) invalidates the user's existing sessions."""

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_subject", "subject", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))  # viewer | operator | admin
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(20), default="local", server_default="local")  # local | oidc
    subject: Mapped[str | None] = mapped_column(String(400))  # oidc: "<issuer> <sub>"


class Backfill(Base):
    """A group of runs of one job over a past range, one per fire time (or day): lexyjobs.backfill."""

    __tablename__ = "backfills"
    __table_args__ = (Index("ix_backfills_job", "job_name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(ForeignKey("jobs.name", ondelete="CASCADE"))
    range_start: Mapped[datetime] = mapped_column(UTCDateTime)
    range_end: Mapped[datetime] = mapped_column(UTCDateTime)
    per: Mapped[str] = mapped_column(String(10))  # fire | day
    concurrency: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)  # runs enqueued
    skipped: Mapped[int] = mapped_column(Integer)  # times that already had a succeeded run
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    canceled_by: Mapped[str | None] = mapped_column(String(200))


class ApiToken(Base):
    """A bearer token for the API. Only the SHA-256 of the token is stored (tokens are 256 random
    bits, so a fast hash is safe); ``prefix`` identifies it in lists."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One manual action: who (user, token or CLI), what, on which target, from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_actor_at", "actor", "at"))

    id: Mapped[int] = mapped_column(RunId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str | None] = mapped_column(String(200))
    client: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class WorkerProcess(Base):
    """A live worker process (lexyjobs.workers): registered at start, heartbeat by its monitor
    thread, deleted on a clean stop or, once its heartbeat is stale, by another live worker. Its
    current runs are the running runs whose ``worker`` is its ``name``."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid, as in runs.worker
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(50))  # lexyjobs.__version__
    threads: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str] | None] = mapped_column(JSONType)  # the queues it serves ("ai:2"); None: all
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopping_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # shutting down: claims no more


class RunCount(Base):
    """How many runs a job has in one status (lexyjobs.run_counts): the sum over ``slot`` (on
    Postgres, concurrent transactions add to different slots). Kept by the transitions, so the
    panel never counts the whole history."""

    __tablename__ = "run_counts"

    job_name: Mapped[str] = mapped_column(ForeignKey("jobs.name", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class Alert(Base):
    """One notification about a job's state change (lexyjobs.alerts). ``key`` names the change
    (``failed:<job>:<episode>``, ``missed:<run id>``…) and is unique: of several processes that
    see the same change, the one whose insert wins sends it, once. ``deliveries`` holds, per
    target, ``"ok"`` or the error that target gave."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_created", "created_at"), Index("ix_alerts_job", "job_name", "id"))

    id: Mapped[int] = mapped_column(RunId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    job_name: Mapped[str] = mapped_column(String(100))  # no foreign key: the alert outlives a deleted job
    event: Mapped[str] = mapped_column(String(20))      # failed | recovered | stale | missed
    run_id: Mapped[int | None] = mapped_column(RunId)   # no foreign key: the run may be pruned first
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))     # sending | sent | failed (some target failed)
    deliveries: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoadProblem(Base):
    """A job definition the last load rejected (lexyjobs.load_problems): kept in the database so
    that every process — the panel's server, the CLI, the API — shows it, not only the log of the
    process that loaded it."""

    __tablename__ = "load_problems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    origin: Mapped[str] = mapped_column(String(500))  # the jobs file's path, or "code" (@job functions, imports)
    job: Mapped[str | None] = mapped_column(String(200))  # None: about the whole file or an imported module
    field: Mapped[str | None] = mapped_column(String(100))
    problem: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)  # "job 'x', field 'y': problem", as logged
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QueueState(Base):
    """A queue's pause (lexyjobs.flow.queue_state). A queue without a row runs; every process reads
    this in its claim, so a pause holds everywhere within a claim cycle."""

    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_by: Mapped[str | None] = mapped_column(String(200))


class RateSlot(Base):
    """One start counted against a rate limit (or one key value of it), ``bucket``: a run may
    start when fewer than ``rate`` slots of each of its buckets are younger than ``per``
    (lexyjobs.flow.limits). Older slots are deleted as they are passed."""

    __tablename__ = "rate_slots"
    __table_args__ = (Index("ix_rate_slots_bucket_at", "bucket", "at"),)

    id: Mapped[int] = mapped_column(RunId, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class NamedLimit(Base):
    """A ``[limits.<name>]`` table of jobs.toml (e.g. ``rate = "500/m"``), shared by the jobs
    that name it in ``limits``."""

    __tablename__ = "named_limits"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertTargetRow(Base):
    """An alert target added in the panel (lexyjobs.alerts.targets), beside those of the
    environment. ``destination`` is what the panel shows: the e-mail addresses, or a webhook's
    or Slack URL's scheme and host only; the URL itself and a webhook's signing secret are in
    ``secret``, sealed (lexyjobs.sealing). ``jobs`` and ``categories`` narrow it to those jobs
    (both empty: every job)."""

    __tablename__ = "alert_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))        # webhook | slack | email
    name: Mapped[str] = mapped_column(String(100), unique=True)
    destination: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType)
    after_failures: Mapped[int] = mapped_column(Integer, default=1)
    jobs: Mapped[list[str]] = mapped_column(JSONType)
    categories: Mapped[list[str]] = mapped_column(JSONType)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200))
