"""procrastinate on Postgres through psycopg 3 and its pool (``PsycopgConnector``), its schema
applied in a fresh schema.

Its normal deployment is the ``procrastinate worker`` process; ``work`` does what that command
does with its defaults: ``App.run_worker_async()`` with ``concurrency=1``, ``listen_notify=True``
(an enqueue wakes it at once) and ``fetch_job_polling_interval=5 s`` as the fallback. Finished
jobs stay in ``procrastinate_jobs`` as ``succeeded`` (``delete_jobs="never"``)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import procrastinate
import psycopg
from procrastinate.cli import configure_logging

from bench.peer_jobs import PostgresSchema, announce_ready, report_start, start_in_thread

PENDING = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"


def build(url: str) -> procrastinate.App:
    """An app on ``url`` with the two tasks of the benchmark."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="stamp")
    async def stamp(key: str) -> None:
        report_start(key)

    return app


async def _opened(app: procrastinate.App) -> None:
    await app.open_async()


async def serve(url: str, ready: Callable[[], None], *, signals: bool = False) -> None:
    """Run a worker with procrastinate's defaults until cancelled (or, with ``signals``, SIGINT)."""
    app = build(url)
    async with app.open_async():
        ready()
        await app.run_worker_async(install_signal_handlers=signals)


def work(url: str) -> None:
    """Worker process, until SIGINT (procrastinate's own handler stops it gracefully), logging as
    ``procrastinate worker`` does by default (INFO: two lines per job)."""
    configure_logging()
    asyncio.run(serve(url, announce_ready, signals=True))


class Peer:
    name = "procrastinate"
    deployment = ("psycopg 3 + pool; one `procrastinate worker`-style process, procrastinate's defaults "
                  "(concurrency 1, LISTEN/NOTIFY wake-up, fetch polling every 5 s, jobs kept, INFO logs)")
    has_batch = True

    def __init__(self, pg_url: str | None) -> None:
        if not pg_url:
            raise ValueError("procrastinate needs a Postgres URL")
        self._schema = PostgresSchema(pg_url)
        self.store = self._schema.psycopg_url
        self._runner = asyncio.Runner()
        self._app = build(self.store)
        self._runner.run(_opened(self._app))
        self._runner.run(self._app.schema_manager.apply_schema_async())
        self._noop, self._stamp = self._app.tasks["noop"], self._app.tasks["stamp"]
        self._reader = psycopg.connect(self.store, autocommit=True)

    def enqueue_one(self) -> None:
        self._runner.run(self._noop.defer_async())

    def enqueue_many(self, count: int) -> None:
        self._runner.run(self._noop.batch_defer_async(*[{} for _ in range(count)]))

    def enqueue_stamp(self, key: str) -> None:
        self._runner.run(self._stamp.defer_async(key=key))

    def pending(self) -> int:
        row = self._reader.execute(PENDING).fetchone()
        return int(row[0]) if row else 0

    def start_worker_here(self) -> Callable[[], None]:
        return start_in_thread(lambda ready: serve(self.store, ready))

    def close(self) -> None:
        self._reader.close()
        self._runner.run(self._app.close_async())
        self._runner.close()
        self._schema.drop()
