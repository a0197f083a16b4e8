"""The peers' side of ``bench/peers.py``: one module per peer with its job bodies, its worker and
a ``Peer`` class that the harness drives (fresh store, enqueue, pending count, clean-up).

Worker processes run ``python -m bench.peer_jobs PEER STORE`` (see ``__main__``) and set up
logging as the peer's own worker command does by default (INFO, to the process's output, which
the harness sends to a temp file). The workers and the ``stamp`` job bodies report to the
harness in UDP datagrams to 127.0.0.1, on the port named by ``REPORT_PORT_ENV``:
``ready-<pid> <perf_counter>`` once imported and connected, just before the peer's worker loop starts
(so a processing figure leaves out interpreter start-up and imports), and ``<key> <perf_counter>``
when a stamp body starts. On Linux ``time.perf_counter`` is CLOCK_MONOTONIC, one clock for every
process of the machine, so the harness can subtract its own times from these."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

REPORT_PORT_ENV = "BENCH_PEERS_REPORT_PORT"
_sock: socket.socket | None = None


def _report(key: str, at: float) -> None:
    global _sock
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _sock.sendto(f"{key} {at!r}".encode(), ("127.0.0.1", int(os.environ[REPORT_PORT_ENV])))


def report_start(key: str) -> None:
    """Job body of the latency figure: tell the harness when this body started."""
    _report(key, time.perf_counter())


def announce_ready() -> None:
    """Tell the harness that this worker process's worker loop starts now."""
    _report(f"ready-{os.getpid()}", time.perf_counter())


class Peer(Protocol):
    """What the harness needs of a peer, set up on a fresh store that ``close`` removes."""

    name: str
    deployment: str  # how its worker runs here, with the defaults that matter, for the report
    store: str  # what ``python -m bench.peer_jobs NAME STORE`` needs to reach that store
    has_batch: bool  # whether ``enqueue_many`` exists

    def enqueue_one(self) -> None:
        """Enqueue one no-op job with one call (committed when it returns)."""

    def enqueue_many(self, count: int) -> None:
        """Enqueue ``count`` no-op jobs with one call of the peer's batch API."""

    def enqueue_stamp(self, key: str) -> None:
        """Enqueue one job whose body calls ``report_start(key)``."""

    def pending(self) -> int:
        """Jobs that the peer has not yet recorded as done."""

    def start_worker_here(self) -> Callable[[], None]:
        """Start a worker inside this process once it is ready; return the function that stops it."""

    def close(self) -> None:
        """Stop using the store and delete it."""


class PostgresSchema:
    """A new schema in the database of ``pg_url``, dropped by ``drop``; its URLs put it first on
    the search path, so a peer's unqualified tables, types and functions land there."""

    def __init__(self, pg_url: str) -> None:
        import psycopg

        self.base = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.name = f"bench_peers_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.name}")
        sep = "&" if "?" in self.base else "?"
        self.psycopg_url = f"{self.base}{sep}options=-csearch_path%3D{self.name}"
        self.asyncpg_url = f"{self.base}{sep}search_path={self.name}"  # asyncpg: a server setting

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.name} CASCADE")


def start_in_thread(serve: Callable[[Callable[[], None]], Awaitable[None]]) -> Callable[[], None]:
    """Run ``serve(ready)`` in the event loop of a new thread and wait until it calls ``ready``;
    return the function that cancels it and waits for the thread (for async peers' in-process
    workers: the way an asyncio web app would host them)."""
    ready = threading.Event()
    handle: dict[str, Any] = {}

    async def main() -> None:
        handle["loop"], handle["task"] = asyncio.get_running_loop(), asyncio.current_task()
        await serve(ready.set)

    def target() -> None:
        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported to the caller, who is waiting for ``ready``
            handle["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, name="peer-worker", daemon=True)
    thread.start()
    if not ready.wait(60):
        raise RuntimeError("the in-process worker did not start within 60 s")
    if "error" in handle:
        raise RuntimeError("the in-process worker failed to start") from handle["error"]

    def stop() -> None:
        handle["loop"].call_soon_threadsafe(handle["task"].cancel)
        thread.join(30)

    return stop
