"""Live updates pushed over Server-Sent Events: ``GET /events`` sends ``activity`` whenever the
activity stamp (``queries.activity_stamp``) moves; the page's script then refreshes its polled
fragments at once (each still answers 204 when its own part did not change).

One feed thread per process reads the stamp twice a second, and only while someone listens, so a
hundred open tabs cost two cheap queries a second. Each stream holds a waitress thread, so streams
are capped (half the HTTP threads) and end after ``STREAM_SECONDS``; the browser reconnects by
itself. Refused or broken streams leave the page on plain htmx polling every 2 s. A browser's
panel tabs share one stream (static/app.js: the visible tab holding a Web Lock streams and relays
to the others), so tabs never use up its connections to the host."""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from flask import Flask, Response, current_app, request, stream_with_context

from lexyjobs import queries
from lexyjobs.db import Database
from lexyjobs.panel import bp

FEED_INTERVAL = 0.5     # seconds between stamp reads while someone listens
KEEPALIVE = 15.0        # a comment line this often, so proxies keep the stream open
STREAM_SECONDS = 300.0  # a stream ends after this; EventSource reconnects (after RETRY_MS)
RETRY_MS = 1000


class ChangeFeed:
    """Watches a stamp function and wakes every waiting stream when the stamp changes."""

    def __init__(self, stamp: Callable[[], str], interval: float = FEED_INTERVAL, max_streams: int = 8) -> None:
        self._stamp, self.interval, self.max_streams = stamp, interval, max_streams
        self._changed = threading.Condition()
        self._current = ""
        self._streams = 0
        self._thread: threading.Thread | None = None

    def open(self) -> bool:
        """Take a stream slot (False when all are taken)."""
        with self._changed:
            if self._streams >= self.max_streams:
                return False
            self._streams += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="lexyjobs-events", daemon=True)
                self._thread.start()
            return True

    def close(self) -> None:
        with self._changed:
            self._streams -= 1

    @property
    def streams(self) -> int:
        return self._streams

    def wait(self, seen: str, timeout: float) -> str:
        """The stamp once it differs from ``seen``, or ``seen`` after ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: self._current != seen, timeout=timeout)
            return self._current

    def _watch(self) -> None:
        """Read the stamp while streams are open; the thread ends when the last one closes."""
        while self._streams > 0:
            try:
                stamp = self._stamp()
            except Exception:  # the database is away: keep the last stamp, try again
                stamp = self._current
            with self._changed:
                if stamp != self._current:
                    self._current = stamp
                    self._changed.notify_all()
            time.sleep(self.interval)


def _activity(db: Database) -> str:
    with db.read() as session:
        return queries.activity_stamp(session)


@bp.get("/events")
def events() -> Response:
    feed: ChangeFeed = current_app.extensions["lexyjobs_events"]
    if not feed.open():
        return Response(status=204)  # EventSource stops trying; the page keeps polling
    gone = request.environ.get("waitress.client_disconnected", lambda: False)
    return Response(stream_with_context(_stream(feed, gone)), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _stream(feed: ChangeFeed, gone: Callable[[], bool], duration: float = STREAM_SECONDS) -> Iterator[str]:
    """Events until the client goes (waitress tells at once: it reads ahead on the connection)
    or ``duration`` passes. Waits in 1 s slices so a closed tab frees its thread quickly."""
    try:
        seen = feed.wait("", timeout=2 * FEED_INTERVAL + 1)  # the state the client is told about from now on
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        last_write = time.monotonic()
        ends = last_write + duration
        while not gone() and (now := time.monotonic()) < ends:
            stamp = feed.wait(seen, timeout=min(1.0, ends - now))
            if stamp != seen:
                seen, last_write = stamp, time.monotonic()
                yield f"event: activity\ndata: {stamp}\n\n"
            elif time.monotonic() - last_write >= KEEPALIVE:
                last_write = time.monotonic()
                yield ": keepalive\n\n"
    finally:
        feed.close()


def init_app(app: Flask) -> None:
    lexy = app.extensions["lexyjobs"]
    app.extensions["lexyjobs_events"] = ChangeFeed(lambda: _activity(lexy.db),
                                                   max_streams=max(1, lexy.settings.http_threads // 2))
