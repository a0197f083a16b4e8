"""Cancel and timeout of an ``http`` run close its connection: a real slow HTTP server on
127.0.0.1 that notices when the client hangs up sees it within moments, the request's thread
ends, and the run ends canceled / failed (timed out). Before, the request went on until the
server answered or the 60 s read timeout, with a thread blocked on it."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from conftest import wait_for
from openai_server import _hung_up

from lexyjobs import runs
from lexyjobs.kinds.hangup import Hangup
from lexyjobs.models import Run

HOLD_SECONDS = 30.0  # how long the server would take to answer: far past every wait below


@dataclass
class SlowServer:
    """Holds each request HOLD_SECONDS, watching the connection; records when the client hung up
    (monotonic time) and how many requests it answered in full."""

    base: str = ""
    arrived: list[float] = field(default_factory=list)
    hung_up: list[float] = field(default_factory=list)
    answered: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def hold(self, connection: socket.socket, trickle: bool) -> bool:
        """Wait, watching for a hang-up; with ``trickle``, send a header byte every 0.2 s
        meanwhile (so a client's read timeout never fires: only the run's timeout can stop it)."""
        self.arrived.append(time.monotonic())
        if trickle:
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline and not self.stopping.wait(0.2 if trickle else 0.02):
            try:
                if trickle:
                    connection.sendall(b".")
                gone = _hung_up(connection)
            except OSError:
                gone = True
            if gone:
                self.hung_up.append(time.monotonic())
                return False
        return not self.stopping.is_set()


@pytest.fixture
def slow_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = SlowServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            trickle = self.path == "/trickle"
            if server.hold(self.connection, trickle) and not trickle:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                server.answered += 1

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, name="test-slow-server", daemon=True).start()
    yield server
    server.stopping.set()
    httpd.shutdown()
    httpd.server_close()


def finished(db: Any, run_id: int, timeout: float = 15.0) -> Run:
    return wait_for(lambda: (r := runs.get_run(db, run_id)).status in ("succeeded", "failed", "canceled") and r,
                    timeout)


def request_threads(run_id: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"lexyjobs-http-{run_id}"]


def test_a_cancel_hangs_up_the_request_and_frees_its_thread(db, make_job, start_worker, slow_server):
    make_job("hang", kind="http", url=slow_server.base + "/slow")
    start_worker()
    run_id = runs.enqueue(db, "hang")
    wait_for(lambda: slow_server.arrived)
    assert request_threads(run_id)
    asked = time.monotonic()
    assert runs.cancel(db, run_id, by="test") == "cancel requested"
    run = finished(db, run_id)
    assert run.status == "canceled"
    wait_for(lambda: slow_server.hung_up, timeout=5)  # the server saw the client leave…
    wait_for(lambda: not request_threads(run_id), timeout=5)  # …and no thread stays blocked on it
    print(f"cancel -> server saw the hang-up after {slow_server.hung_up[0] - asked:.2f} s")
    assert slow_server.answered == 0


def test_a_timeout_hangs_up_the_request_and_fails_the_run(db, make_job, start_worker, slow_server):
    make_job("too-slow", kind="http", url=slow_server.base + "/trickle", timeout="1s", max_attempts=1)
    start_worker()
    run_id = runs.enqueue(db, "too-slow")
    wait_for(lambda: slow_server.arrived)
    run = finished(db, run_id)
    assert run.status == "failed"
    assert run.error == "timed out after 1s"
    wait_for(lambda: slow_server.hung_up, timeout=5)
    wait_for(lambda: not request_threads(run_id), timeout=5)
    print(f"timeout of 1s -> server saw the hang-up {slow_server.hung_up[0] - slow_server.arrived[0]:.2f} s "
          "after the request arrived")
    assert slow_server.answered == 0


def test_a_hang_up_before_the_request_connects_sends_nothing(slow_server):
    hangup = Hangup()
    hangup.hang_up()
    with hangup.session() as session, pytest.raises(Exception, match="stopped before the request was sent"):
        session.get(slow_server.base + "/never", timeout=5)
    time.sleep(0.2)
    assert slow_server.arrived == []
