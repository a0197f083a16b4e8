"""A small OpenAI-compatible server for the tests: ``POST /v1/chat/completions`` (whole or
streamed as server-sent events, token by token) and ``POST /v1/embeddings`` on 127.0.0.1 (port 0),
answering from a script of replies (plain text, JSON content, error statuses, 429 with
``Retry-After``, slow answers), or from rules that pick a reply by what was asked (``rule``: fail
the items that say so), and recording every request it received (headers, body, time), so tests
can check what the client really sent."""
from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

COMPLETIONS_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
DEFAULT_DIMENSIONS = 8


@dataclass
class Reply:
    """One scripted answer. An error ``status`` answers OpenAI's error body with ``message``."""

    content: str | None = "Hello from the test model."
    status: int = 200
    message: str = "something went wrong"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                       # seconds before answering (cut short when the server stops)
    model: str | None = None                 # model named in the answer; default: the requested one + "-0613"
    usage: tuple[int, int] | None = (12, 5)  # (prompt_tokens, completion_tokens); None leaves usage out
    finish_reason: str = "stop"
    token_delay: float = 0.0                 # seconds between streamed tokens


@dataclass
class Received:
    """One request as the server saw it: ``at`` is ``time.monotonic()`` on arrival, header names
    are lower case (as HTTP/2-minded clients send them)."""

    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


class OpenAIServer:
    """``script(Reply(...), ...)`` queues the next answers (once the script is used up, each
    request gets a default ``Reply()``); ``received`` lists the requests; ``answered`` counts
    the answers actually written (a cut-short slow one is not); ``aborted`` counts the slow
    answers whose client closed the connection before they were due."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answered = 0
        self.aborted = 0
        self.at_once = 0       # requests being answered now
        self.most_at_once = 0  # the most there ever were
        self._script: list[Reply] = []
        self._rules: list[Callable[[dict[str, Any]], Reply | None]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),  # stop() in 50 ms, not 500
                                        name="test-openai-server", daemon=True)

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # slow replies give up at once
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def rule(self, choose: Callable[[dict[str, Any]], Reply | None]) -> None:
        """``choose(body)`` answers each request it returns a Reply for, before the script."""
        with self._lock:
            self._rules.append(choose)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            for choose in self._rules:
                chosen = choose(received.body)
                if chosen is not None:
                    return chosen
            return self._script.pop(0) if self._script else Reply()

    def _wait(self, seconds: float, connection: socket.socket) -> bool:
        """Wait ``seconds``; False when the server stopped or the client hung up meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping.wait(min(0.02, max(0.0, deadline - time.monotonic()))):
                return False
            if _hung_up(connection):
                with self._lock:
                    self.aborted += 1
                return False
        return True

    def _entered(self, delta: int) -> None:
        with self._lock:
            self.at_once += delta
            self.most_at_once = max(self.most_at_once, self.at_once)

    def _count_answer(self) -> None:
        with self._lock:
            self.answered += 1


def _hung_up(connection: socket.socket) -> bool:
    """True when the peer closed the connection (readable, and a peek reads end of stream)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def completion_body(reply: Reply, requested_model: str) -> dict[str, Any]:
    """A chat completion as OpenAI's API returns it."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
        "model": reply.model or f"{requested_model}-0613",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                     "finish_reason": reply.finish_reason}],
    }
    if reply.usage is not None:
        prompt, completion = reply.usage
        body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return body


def stream_events(reply: Reply, requested_model: str, include_usage: bool) -> list[dict[str, Any]]:
    """The chunks of a streamed chat completion: the role, one chunk per word (with its leading
    space), the finish reason, and the usage (when asked for) in a last chunk without choices."""
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": reply.model or f"{requested_model}-0613"}
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": token}) for token in tokens(reply.content or "")]
    events.append(chunk({}, reply.finish_reason))
    if include_usage and reply.usage is not None:
        prompt, completion = reply.usage
        events.append({**base, "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                                       "total_tokens": prompt + completion}})
    return events


def tokens(text: str) -> list[str]:
    """``text`` cut into words, each with the spaces before it (joined, they are ``text``)."""
    return re.findall(r"\s*\S+|\s+$", text)


def vector(text: str, dimensions: int) -> list[float]:
    """A deterministic embedding of ``text``: values in [-1, 1) from its SHA-256."""
    digest = b""
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest + text.encode()).digest()
    return [round(b / 128 - 1, 6) for b in digest[:dimensions]]


def embeddings_body(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dimensions = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
    data = [{"object": "embedding", "index": i, "embedding": vector(str(text), dimensions)}
            for i, text in enumerate(inputs)]
    used = sum(len(str(text).split()) for text in inputs)
    return {"object": "list", "data": data, "model": reply.model or str(body.get("model")),
            "usage": {"prompt_tokens": used, "total_tokens": used}}


def _handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            server._entered(1)
            try:
                self._answer()
            finally:
                server._entered(-1)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = server._next(Received(time.monotonic(), self.path, headers, body))
            if self.path not in (COMPLETIONS_PATH, EMBEDDINGS_PATH):
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}}, {})
                return
            if not server._wait(reply.delay, self.connection):
                return  # stopping, or the client is gone: never answer
            model = str(body.get("model"))
            if reply.status == 200 and self.path == EMBEDDINGS_PATH:
                self._send(200, embeddings_body(body, reply), reply.headers)
            elif reply.status == 200 and body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(stream_events(reply, model, include_usage), reply)
            elif reply.status == 200:
                self._send(200, completion_body(reply, model), reply.headers)
            else:
                kind = "server_error" if reply.status >= 500 else "invalid_request_error"
                error = {"message": reply.message, "type": kind, "code": None}
                self._send(reply.status, {"error": error}, reply.headers)

        def _stream(self, events: list[dict[str, Any]], reply: Reply) -> None:
            """Server-sent events, one chunked-encoding chunk each, ``token_delay`` apart."""
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for index, event in enumerate([*map(json.dumps, events), "[DONE]"]):
                    if index > 1 and not server._wait(reply.token_delay, self.connection):
                        return  # the client hung up mid-stream
                    data = f"data: {event}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                return
            server._count_answer()

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (canceled run): nothing to answer
                return
            server._count_answer()

    return Handler
