"""Idle connections cannot starve the server (issue 14, B10). A real ``python app.py`` server; real
sockets that connect and send nothing, or only part of a request's headers. They are closed
after LEXYJOBS_HTTP_IDLE_TIMEOUT, and /healthz answers; with the defaults, 150 idle connections
(more than waitress's own default limit of 100) do not keep /healthz from answering. An
/events stream, silent for longer than the idle timeout, is not cut."""
from __future__ import annotations

import contextlib
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from conftest import wait_for
from liveserver import E2E_TOKEN, Server, running_server
from loopback_client import Browser

ADMIN_PASSWORD = "admin-password-1"
PARTIAL_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # headers never finished


def address(server: Server) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(server.url)
    return parsed.hostname or "", parsed.port or 0


@contextlib.contextmanager
def idle_connections(target: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``target``: half send nothing, half send part of a request's headers."""
    sockets: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection(target, timeout=10)
            if i % 2:
                sock.sendall(PARTIAL_REQUEST)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); False while it is open and silent."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def healthz(target: tuple[str, int], timeout: float) -> int:
    """The status of GET /healthz on a fresh connection (raises socket.timeout when unanswered)."""
    with socket.create_connection(target, timeout=timeout) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = sock.recv(64)
    return int(head.split()[1])


def empty_jobs(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[jobs.tick]\nkind = "shell"\nargv = ["true"]\n')
    return jobs


def test_idle_connections_are_closed_after_the_idle_timeout_and_healthz_answers(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = {"LEXYJOBS_HTTP_CONNECTION_LIMIT": "20", "LEXYJOBS_HTTP_IDLE_TIMEOUT": "2s"}
    with running_server(db_url, empty_jobs(tmp_path), **settings) as server:
        target = address(server)
        with idle_connections(target, 20) as idle:  # every connection the server allows
            opened = time.monotonic()
            wait_for(lambda: all(closed_by_server(sock) for sock in idle), timeout=30, interval=0.1)
            closed_after = time.monotonic() - opened
            assert closed_after >= 1.5  # not before the idle timeout (2 s, checked every second)
            assert healthz(target, timeout=10) == 200
        assert "total open connections reached the connection limit" in "".join(server.stderr)


def test_with_the_defaults_150_idle_connections_leave_healthz_answering(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with running_server(db_url, empty_jobs(tmp_path)) as server:
        target = address(server)
        with idle_connections(target, 150) as idle:
            assert healthz(target, timeout=8) == 200  # the idle timeout (10 s) has not freed anything yet
            assert not any(closed_by_server(sock) for sock in idle)


def test_an_events_stream_silent_for_longer_than_the_idle_timeout_stays_open(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = {"LEXYJOBS_HTTP_IDLE_TIMEOUT": "1s", "LEXYJOBS_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with running_server(db_url, empty_jobs(tmp_path), **settings) as server:
        target = address(server)
        browser = Browser(target, "127.0.0.1")
        assert browser.log_in("admin", ADMIN_PASSWORD) == 302
        with socket.create_connection(target, timeout=20) as stream:
            stream.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                           f"Cookie: {browser.cookie}\r\n\r\n".encode())
            received = b""
            while b": connected" not in received:
                chunk = stream.recv(4096)
                assert chunk, received
                received += chunk
            assert b" 200 " in received.split(b"\r\n", 1)[0]
            time.sleep(4)  # silent (the keep-alive comment comes every 15 s) for 4× the idle timeout
            status, _ = server.call("POST", "/api/jobs/tick/run", E2E_TOKEN, {})
            assert status == 202
            while b"event: activity" not in received:
                chunk = stream.recv(4096)
                assert chunk, received  # b"": the server closed the stream
                received += chunk
