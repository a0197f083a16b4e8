"""The example host app (examples/host_app) as real processes: ``python -m examples.host_app``
(waitress), gunicorn with its config, ``flask --app examples.host_app lexyjobs worker``; and a
small cookie-keeping HTTP client that logs in through the host's own /login."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import importlib
import sys
from types import ModuleType

import pytest
from conftest import FAST, PYTHON, ROOT, subprocess_env, wait_for

HOST_SECRET_KEY = "host-app-test-secret-key-0123456789abcdef"
ADMIN, ADMIN_PASSWORD = "alice", "alice-password"
USER, USER_PASSWORD = "bob", "bob-password"
GUNICORN = str(Path(PYTHON).parent / "gunicorn")
GUNICORN_CONF = str(ROOT / "examples" / "host_app" / "gunicorn.conf.py")
ENV_NAMES = {"poll_interval": "POLL_INTERVAL", "heartbeat_interval": "HEARTBEAT_INTERVAL",
             "stale_after": "STALE_AFTER", "shutdown_grace": "SHUTDOWN_GRACE", "kill_grace": "KILL_GRACE"}


def host_env(db_url: str, jobs_file: Path, **extra: str) -> dict[str, str]:
    """Environment of a host-app process: the shared database, the host's SECRET_KEY, fast
    lexyjobs intervals, no proxy for loopback (the crawl job fetches the app's own pages)."""
    fast = {f"LEXYJOBS_{ENV_NAMES[k]}": str(v) for k, v in FAST.items()}
    return subprocess_env(db_url, SECRET_KEY=HOST_SECRET_KEY, LEXYJOBS_JOBS_FILE=str(jobs_file),
                          LEXYJOBS_WORKERS="2", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                          **{**fast, **extra})


@dataclass
class Proc:
    """A child process (its own process group) whose stdout+stderr go to a file."""
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = 40.0) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            return re.search(pattern, self.output())
        return wait_for(seen, timeout, interval=0.05)

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def spawn_host(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``spawn_host(argv, db_url, **env)`` starts a host-app process in the repository's root; every
    process group still alive after the test is killed."""
    jobs_file = tmp_path / "no-jobs.toml"
    jobs_file.write_text("# the host app's jobs come from its code (@job)\n", encoding="utf-8")
    started: list[Proc] = []

    def spawn(argv: list[str], db_url: str, name: str = "host", **env: str) -> Proc:
        path = tmp_path / f"{name}-{len(started)}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=host_env(db_url, jobs_file, **env), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(Proc(name, proc, path))
        return started[-1]
    yield spawn
    for child in started:
        if child.proc.poll() is None:
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(timeout=10)


def start_waitress(spawn: Callable[..., Proc], db_url: str, **env: str) -> tuple[Proc, str]:
    """``python -m examples.host_app --port 0``; returns the process and its base URL."""
    proc = spawn([PYTHON, "-m", "examples.host_app", "--port", "0"], db_url, name="waitress", **env)
    return proc, proc.wait_for_line(r"host app serving on (http://127\.0\.0\.1:\d+)").group(1)


class HostClient:
    """A browser-like HTTP client: keeps cookies, follows no redirects, never uses a proxy."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), self._NoRedirect(),
                                                  urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, method: str, path: str, *, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=15) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def login(self, username: str, password: str) -> None:
        form = urllib.parse.urlencode({"username": username, "password": password}).encode()
        status, headers, body = self.request("POST", "/login", data=form,
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, (status, body)

    def post_json(self, path: str, body: Any, **headers: str) -> tuple[int, Any]:
        status, _, text = self.request("POST", path, data=json.dumps(body).encode(),
                                       headers={"Content-Type": "application/json", **headers})
        return status, json.loads(text) if text else None

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, text = self.request("GET", path, headers={"Accept": "application/json"})
        return status, json.loads(text) if text.strip().startswith(("{", "[")) else text


def example_module() -> ModuleType:
    """``examples.host_app``, with its ``@job`` declared (again: conftest forgets declarations
    after each test, and a second import would not run the decorator)."""
    from lexyjobs import code_jobs

    if "examples.host_app" in sys.modules and "crawl" not in code_jobs.code_jobs():
        return importlib.reload(sys.modules["examples.host_app"])
    return importlib.import_module("examples.host_app")
