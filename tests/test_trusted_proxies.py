"""LEXYJOBS_TRUSTED_PROXIES end to end under waitress (issue 14, B8): a real ``python app.py``
server behind a real reverse proxy (a small HTTP server in this test on 127.0.0.1 that forwards
every request and adds X-Forwarded-For/-Proto/-Host like nginx). Clients come from distinct
loopback addresses (127.0.0.2, 127.0.0.3, ...): the audit log records each client's own address,
the login budget is per client address, cookies are Secure for X-Forwarded-Proto https, and
X-Forwarded-* sent by a peer that is not the proxy count for nothing."""
from __future__ import annotations

import contextlib
import http.client
import http.server
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from liveserver import E2E_TOKEN, Server, running_server
from loopback_client import Browser

from lexyjobs import accounts
from lexyjobs.proxies import TrustedProxies

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
ADMIN_PASSWORD = "admin-password-1"
BOB_PASSWORD = "bob-password-1"
PROXY_ADDRESS = "127.0.0.1"  # the proxy connects to lexyjobs from here; clients use 127.0.0.2 and up


class ReverseProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to ``upstream`` from ``PROXY_ADDRESS``, appending the client's
    address to X-Forwarded-For and setting X-Forwarded-Proto (``https``, as if it ended TLS) and
    X-Forwarded-Host."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: ReverseProxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        earlier = self.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{earlier}, {self.client_address[0]}" if earlier else self.client_address[0]
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30, source_address=(PROXY_ADDRESS, 0))
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass


@dataclass
class Site:
    server: Server
    proxy: tuple[str, int]
    direct: tuple[str, int]

    def via_proxy(self, address: str) -> Browser:
        return Browser(self.proxy, address)

    def straight(self, address: str, **headers: str) -> Browser:
        return Browser(self.direct, address, headers=dict(headers))

    def audit_clients(self, action: str) -> list[str]:
        status, found = self.server.call("GET", f"/api/audit?action={action}&limit=200", E2E_TOKEN)
        assert status == 200, found
        # refused logins of one (username, address) are aggregated on one entry with a count
        return [entry["client"] for entry in found["entries"]
                for _ in range((entry.get("details") or {}).get("count", 1))]


@contextlib.contextmanager
def behind_proxy(db_url: str, tmp_path: Path, **env: str) -> Iterator[Site]:
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("")
    settings = {"LEXYJOBS_ADMIN_PASSWORD": ADMIN_PASSWORD, "LEXYJOBS_LOGIN_ATTEMPTS_PER_MINUTE": "3", **env}
    with running_server(db_url, jobs, **settings) as server:
        parsed = urllib.parse.urlsplit(server.url)
        direct = (parsed.hostname or "", parsed.port or 0)
        proxy = ReverseProxy(direct)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            yield Site(server, proxy.server_address[:2], direct)  # type: ignore[arg-type]
        finally:
            proxy.shutdown()
            proxy.server_close()


def secure(cookies: list[str]) -> bool:
    session_cookies = [c for c in cookies if c.startswith("lexyjobs_session=")]
    assert session_cookies, cookies
    return all(re.search(r";\s*Secure(;|$)", c, re.I) for c in session_cookies)


@pytest.fixture
def bob(db: Any) -> str:
    accounts.add_user(db, "bob", BOB_PASSWORD, "viewer")
    return "bob"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_behind_a_trusted_proxy_each_client_has_its_own_address(db_url: str, bob: str, tmp_path: Path) -> None:
    with behind_proxy(db_url, tmp_path, LEXYJOBS_TRUSTED_PROXIES="1",
                      LEXYJOBS_TRUSTED_PROXY_ADDRESSES=PROXY_ADDRESS) as site:
        attacker, owner = site.via_proxy("127.0.0.2"), site.via_proxy("127.0.0.3")
        answers = [attacker.log_in("admin", f"wrong-{i}") for i in range(5)]
        assert answers[:3] == [401] * 3 and set(answers[3:]) == {429}  # the budget of 3 is the attacker's

        assert owner.log_in(bob, BOB_PASSWORD) == 302  # another client: not throttled by the attacker's failures
        assert secure(owner.set_cookies)  # X-Forwarded-Proto https from the proxy: Secure cookie
        assert owner.request("GET", "/")[0] == 200

        assert site.audit_clients("login.failure") == ["127.0.0.2"] * 3
        assert set(site.audit_clients("login.rate_limited")) == {"127.0.0.2"}
        assert site.audit_clients("login.success") == ["127.0.0.3"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_forwarded_headers_from_a_peer_that_is_not_the_proxy_count_for_nothing(db_url: str, bob: str,
                                                                               tmp_path: Path) -> None:
    with behind_proxy(db_url, tmp_path, LEXYJOBS_TRUSTED_PROXIES="1",
                      LEXYJOBS_TRUSTED_PROXY_ADDRESSES=PROXY_ADDRESS) as site:
        spoofer = site.straight("127.0.0.5", **{"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https",
                                                "X-Forwarded-Host": "evil.example"})
        assert spoofer.log_in("admin", "wrong-1") == 401
        assert spoofer.log_in(bob, BOB_PASSWORD) == 302
        assert not secure(spoofer.set_cookies)  # plain http to lexyjobs: no claim of https believed
        assert site.audit_clients("login.failure") == ["127.0.0.5"]
        assert site.audit_clients("login.success") == ["127.0.0.5"]
        # the client's own X-Forwarded-For through the proxy: only the proxy's entry (its peer) counts
        forged = site.via_proxy("127.0.0.6")
        forged.headers["X-Forwarded-For"] = "10.9.9.9"
        assert forged.log_in("admin", "wrong-2") == 401
        assert site.audit_clients("login.failure") == ["127.0.0.6", "127.0.0.5"]
    assert any("X-Forwarded-For from 127.0.0.5 ignored" in line for line in site.server.stderr), site.server.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_without_trusted_proxies_the_proxy_is_the_client(db_url: str, bob: str, tmp_path: Path) -> None:
    with behind_proxy(db_url, tmp_path) as site:
        browser = site.via_proxy("127.0.0.2")
        assert browser.log_in(bob, BOB_PASSWORD) == 302
        assert not secure(browser.set_cookies)
        assert site.audit_clients("login.success") == [PROXY_ADDRESS]


def test_a_peer_is_trusted_by_address_or_network_and_only_with_proxies_counted() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []
    listed = TrustedProxies(app, 1, ("127.0.0.1", "172.16.0.0/12", "fd00::/8"))
    assert [listed.trusts(peer) for peer in ("127.0.0.1", "172.18.0.5", "::ffff:172.18.0.5", "fd00::7")] == [True] * 4
    assert [listed.trusts(peer) for peer in ("127.0.0.2", "172.32.0.1", "::1", "", "unix")] == [False] * 5
    assert TrustedProxies(app, 1, ("*",)).trusts("203.0.113.9")
    assert not TrustedProxies(app, 0, ("*",)).trusts("127.0.0.1")  # LEXYJOBS_TRUSTED_PROXIES=0: nobody
