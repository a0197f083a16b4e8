"""A real ``python app.py --port 0`` server process on 127.0.0.1, shared by the end-to-end,
schemathesis and browser tests."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from conftest import PYTHON, ROOT, subprocess_env, wait_for

E2E_TOKEN = "e2e-token-0123456789abcdef"
LOOPBACK = "http://127.0.0.1:"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


@dataclass
class Server:
    process: subprocess.Popen[str]
    env: dict[str, str]
    stderr: list[str] = field(default_factory=list)
    url: str = ""

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with _DIRECT.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        """An API request with a JSON body (when given); returns the status and the decoded JSON."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with _DIRECT.open(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw else None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m lexyjobs ARGS`` as its own process against the server's database."""
        return subprocess.run([PYTHON, "-m", "lexyjobs", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@contextlib.contextmanager
def running_server(db_url: str, jobs_file: Path, *, port: int = 0, **env_extra: str) -> Iterator[Server]:
    """``python app.py --port PORT`` (any free one by default) on ``db_url`` loading ``jobs_file``, bound to 127.0.0.1, with
    ``LEXYJOBS_API_TOKEN=E2E_TOKEN`` unless ``env_extra`` says otherwise; stopped with SIGTERM
    afterwards, which must end it with exit code 0."""
    settings = {"LEXYJOBS_JOBS_FILE": str(jobs_file), "LEXYJOBS_HOST": "127.0.0.1", "LEXYJOBS_WORKERS": "2",
                "LEXYJOBS_POLL_INTERVAL": "0.05", "LEXYJOBS_HEARTBEAT_INTERVAL": "0.2",
                "LEXYJOBS_SHUTDOWN_GRACE": "5", "LEXYJOBS_HTTP_THREADS": "4", "LEXYJOBS_API_TOKEN": E2E_TOKEN}
    env = subprocess_env(db_url, **{**settings, **env_extra})
    process = subprocess.Popen([PYTHON, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    srv = Server(process, env)

    def drain() -> None:  # keep reading so the server never blocks on a full pipe
        assert process.stderr is not None
        for line in process.stderr:
            srv.stderr.append(line)
    threading.Thread(target=drain, daemon=True).start()
    try:
        def serving() -> str | None:
            assert process.poll() is None, "server exited early:\n" + "".join(srv.stderr)
            found = [m for line in list(srv.stderr) if (m := re.search(r"lexyjobs serving on (http://\S+)", line))]
            return found[0].group(1) if found else None
        srv.url = wait_for(serving, timeout=30)
        assert srv.url.startswith(LOOPBACK), f"the server must listen on loopback only, not {srv.url}"
        yield srv
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("server still running 20 s after SIGTERM; its log:\n" + "".join(srv.stderr)) from None
    assert code == 0, "server did not stop cleanly:\n" + "".join(srv.stderr)


def keep_on_loopback(context: Any, base: str, blocked: list[str]) -> None:
    """Let a browser context reach only the server at ``base``: any other request is aborted
    and recorded in ``blocked`` (the panel must work offline: no CDN, nothing outside)."""
    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url == base or url.startswith(base + "/"):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()
    context.route("**/*", route)
