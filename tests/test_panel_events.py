"""Server-Sent Events for live updates: the change feed and the /events stream."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from conftest import wait_for
from lexyjobs import runs
from lexyjobs.db import Database
from lexyjobs.panel.events import ChangeFeed, _stream

MakeJob = Callable[..., str]


class Stamps:
    """A stamp source the test moves by hand, counting reads."""

    def __init__(self) -> None:
        self.value, self.reads = "a", 0

    def __call__(self) -> str:
        self.reads += 1
        return self.value


def test_the_feed_wakes_waiters_when_the_stamp_changes() -> None:
    stamps = Stamps()
    feed = ChangeFeed(stamps, interval=0.01)
    assert feed.open()
    try:
        assert feed.wait("", timeout=2) == "a"
        got: list[str] = []
        waiter = threading.Thread(target=lambda: got.append(feed.wait("a", timeout=5)))
        waiter.start()
        stamps.value = "b"
        waiter.join(5)
        assert got == ["b"]
        assert feed.wait("b", timeout=0.05) == "b"  # no change: the same stamp after the timeout
    finally:
        feed.close()


def test_the_feed_reads_only_while_someone_listens() -> None:
    stamps = Stamps()
    feed = ChangeFeed(stamps, interval=0.01)
    assert feed.open()
    wait_for(lambda: stamps.reads > 2)
    feed.close()
    time.sleep(0.1)
    reads = stamps.reads
    time.sleep(0.1)
    assert stamps.reads == reads  # the thread ended with the last stream


def test_streams_are_capped() -> None:
    feed = ChangeFeed(Stamps(), interval=0.01, max_streams=2)
    assert feed.open() and feed.open() and not feed.open()
    feed.close()
    assert feed.open()
    feed.close()
    feed.close()
    assert feed.streams == 0


def test_the_stream_sends_an_event_per_change_and_ends_when_the_client_goes() -> None:
    stamps = Stamps()
    feed = ChangeFeed(stamps, interval=0.01)
    assert feed.open()
    gone = threading.Event()
    stream = _stream(feed, gone.is_set, duration=30)
    assert next(stream).startswith("retry: ")
    stamps.value = "b"
    assert next(stream) == "event: activity\ndata: b\n\n"
    stamps.value = "c"
    assert next(stream) == "event: activity\ndata: c\n\n"
    gone.set()
    assert list(stream) == []  # it ends within a second of the client going
    assert feed.streams == 0


def test_events_needs_a_login_and_streams_activity(app: Any, panel_as: Any, make_job: MakeJob, db: Database) -> None:
    assert app.test_client().get("/events").status_code == 302  # to the login form
    make_job("pushed")
    response = panel_as("viewer").client.get("/events", buffered=False)
    try:
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-store"
        chunks = iter(response.response)
        assert b"retry:" in next(chunks)
        runs.enqueue(db, "pushed")
        assert next(chunks).startswith(b"event: activity\ndata: ")
    finally:
        response.close()
    assert app.extensions["lexyjobs_events"].streams == 0


def test_when_every_stream_slot_is_taken_events_is_a_204(app: Any, panel_as: Any) -> None:
    feed = app.extensions["lexyjobs_events"]
    taken = 0
    while feed.open():
        taken += 1
    try:
        assert panel_as("viewer").client.get("/events").status_code == 204  # the page keeps polling
    finally:
        for _ in range(taken):
            feed.close()
