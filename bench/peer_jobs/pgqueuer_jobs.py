"""pgqueuer on Postgres through asyncpg (its default driver), installed with its defaults
(``durability=durable``: every table logged) in a fresh schema.

Its normal deployment is the ``pgq run module:factory`` process; ``work`` does what that
command does with its defaults: ``PgQueuer.run()`` with ``batch_size=10``, no concurrency limit,
``dequeue_timeout=30 s``. An idle worker waits on LISTEN/NOTIFY (an enqueue notifies it at
once) and re-polls after ``dequeue_timeout``. Finished jobs leave the queue table in batches of
``batch_size`` or every 0.1 s (its status log buffer)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.core import logconfig
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from bench.peer_jobs import PostgresSchema, announce_ready, report_start, start_in_thread


def build(connection: asyncpg.Connection) -> PgQueuer:
    """A PgQueuer on ``connection`` with the two entrypoints of the benchmark."""
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        report_start((job.payload or b"").decode())

    return pgq


async def serve(url: str, ready: Callable[[], None]) -> None:
    """Run a worker with pgqueuer's defaults until cancelled."""
    connection = await asyncpg.connect(url)
    try:
        pgq = build(connection)
        ready()
        await pgq.run()
    finally:
        await connection.close()


def work(url: str) -> None:
    """Worker process, until SIGINT, logging as ``pgq run`` does by default (INFO; pgqueuer logs
    nothing per successful job at that level)."""
    logconfig.setup_fancy_logger(logconfig.LogLevel.INFO)
    try:
        asyncio.run(serve(url, announce_ready))
    except KeyboardInterrupt:
        pass


class Peer:
    name = "pgqueuer"
    deployment = ("asyncpg, tables installed with durability=durable; one `pgq run`-style worker "
                  "process, pgqueuer's defaults (batch_size 10, unlimited concurrency, LISTEN/NOTIFY "
                  "wake-up, re-poll every 30 s, INFO logs)")
    has_batch = True

    def __init__(self, pg_url: str | None) -> None:
        if not pg_url:
            raise ValueError("pgqueuer needs a Postgres URL")
        self._schema = PostgresSchema(pg_url)
        self.store = self._schema.asyncpg_url
        self._runner = asyncio.Runner()
        self._connection = self._runner.run(asyncpg.connect(self.store))
        self._queries = Queries(AsyncpgDriver(self._connection))
        self._runner.run(self._queries.install())

    def enqueue_one(self) -> None:
        self._runner.run(self._queries.enqueue("noop", None))

    def enqueue_many(self, count: int) -> None:
        self._runner.run(self._queries.enqueue(["noop"] * count, [None] * count, [0] * count))

    def enqueue_stamp(self, key: str) -> None:
        self._runner.run(self._queries.enqueue("stamp", key.encode()))

    def pending(self) -> int:
        return int(self._runner.run(self._connection.fetchval("SELECT count(*) FROM pgqueuer")))

    def start_worker_here(self) -> Callable[[], None]:
        return start_in_thread(lambda ready: serve(self.store, ready))

    def close(self) -> None:
        self._runner.run(self._connection.close())
        self._runner.close()
        self._schema.drop()
