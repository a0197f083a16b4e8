"""huey on SQLite (``SqliteHuey``, a temp file) with its defaults: WAL, SQLite's default
``synchronous=FULL`` (every enqueue commit is durable), results stored unless None.

Its normal deployment is the ``huey_consumer`` process; ``work`` does what that command does
(``huey.create_consumer(**defaults).run()``): one worker thread (``-w 1``, the default) plus the
scheduler thread. An idle worker polls the queue: 0.1 s after its last job, then each wait ×1.15
up to 10 s (``--delay 0.1 --backoff 1.15 --max-delay 10``), so its pickup latency grows with the
time it has been idle."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from typing import Any

from huey import SqliteHuey
from huey.consumer_options import ConsumerConfig

from bench.peer_jobs import announce_ready, report_start


def noop() -> None:
    """The processed job: does nothing."""


def stamp(key: str) -> None:
    """The latency job: reports when its body started."""
    report_start(key)


def build(filename: str) -> tuple[SqliteHuey, Any, Any]:
    """The huey instance on ``filename`` and its two tasks (same names in every process)."""
    huey = SqliteHuey("bench", filename=filename)
    return huey, huey.task()(noop), huey.task()(stamp)


def work(filename: str) -> None:
    """Worker process, until SIGINT: what ``huey_consumer`` does with its default options
    (which log two INFO lines per task to stderr)."""
    huey, _, _ = build(filename)
    config = ConsumerConfig()
    config.setup_logger(logging.getLogger("huey"))
    consumer = huey.create_consumer(**config.values)
    announce_ready()
    consumer.run()


class Peer:
    name = "huey"
    deployment = ("SqliteHuey (temp file, WAL, synchronous=FULL); one `huey_consumer`-style process with its "
                  "defaults: 1 worker thread (-w 1 -k thread), idle polling 0.1 s ×1.15 up to 10 s, INFO logs")
    has_batch = False

    def __init__(self, pg_url: str | None = None) -> None:
        self._folder = tempfile.mkdtemp(prefix="bench-peers-huey-")
        self.store = os.path.join(self._folder, "huey.db")
        self.huey, self._noop, self._stamp = build(self.store)

    def enqueue_one(self) -> None:
        self._noop()

    def enqueue_many(self, count: int) -> None:
        raise NotImplementedError("huey has no batch enqueue")

    def enqueue_stamp(self, key: str) -> None:
        self._stamp(key)

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def start_worker_here(self) -> Callable[[], None]:
        # Consumer.start() runs the worker and scheduler threads and installs signal handlers,
        # which only the main thread may do: put ours back when it stops.
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        consumer = self.huey.create_consumer()
        consumer.start()

        def stop() -> None:
            consumer.stop(graceful=True)
            for sig, handler in saved.items():
                signal.signal(sig, handler)

        return stop

    def close(self) -> None:
        self.huey.storage.close()
        shutil.rmtree(self._folder, ignore_errors=True)
