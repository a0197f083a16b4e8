"""A real OpenID Connect provider for the single sign-on tests, on loopback only.

``OidcProvider`` runs the ``oidc-provider-mock`` package (an Authlib-based provider with a login
page where you type who you are) as a separate process, requiring client registration, so the
client secret is checked at its token endpoint. ``TamperingFront`` sits in front of it as a
reverse proxy, the way an attacker in the middle or a broken provider would, and changes one
thing: the nonce of the authorization request, or the ID token's signature. The provider sees
the front's Host header, so its issuer, endpoints and tokens all name the front."""
from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class OidcProvider:
    """``python -m oidc_provider_mock`` on 127.0.0.1; ``token_max_age`` may be negative (expired tokens)."""

    def __init__(self, *, token_max_age: int = 3600) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = tempfile.TemporaryFile()  # not a pipe: its access log would fill one and stall it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--host", HOST, "--port", str(self.port),
             f"--token-max-age={token_max_age}", "--require-registration", "--require-nonce"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the OIDC provider exited: {self.log.read().decode()[-2000:]}")
            try:
                requests.get(f"{self.url}/.well-known/openid-configuration", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError("the OIDC provider did not start within 20 s")

    def register(self, redirect_uri: str, *, via: str | None = None) -> tuple[str, str]:
        """A new client (id, secret) allowed to redirect to ``redirect_uri``."""
        answer = requests.post(f"{via or self.url}/oauth2/clients", json={"redirect_uris": [redirect_uri]}, timeout=5)
        answer.raise_for_status()
        body = answer.json()
        return body["client_id"], body["client_secret"]

    def set_user(self, sub: str, **claims: Any) -> None:
        requests.put(f"{self.url}/users/{sub}", json=claims, timeout=5).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def authorize(authorize_url: str, sub: str) -> str:
    """Submit the provider's login form as ``sub``; returns where it sends the browser back."""
    answer = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]


class TamperingFront:
    """A reverse proxy to ``provider`` on its own port that changes ``mode``'s part:
    ``nonce`` (the authorization request asks for another nonce, so the ID token carries it),
    ``signature`` (the ID token is re-signed with a key the provider never published) or
    ``issuer`` (the provider is told its own address, so it names another issuer than the front)."""

    def __init__(self, provider: OidcProvider, mode: str) -> None:
        assert mode in ("nonce", "signature", "issuer")
        self.provider, self.mode = provider, mode
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                front.forward(self)

            def do_POST(self) -> None:
                front.forward(self)

            def do_PUT(self) -> None:
                front.forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        if self.mode == "nonce" and path.startswith("/oauth2/authorize"):
            path = _with_query(path, nonce="a-nonce-this-sign-in-never-sent")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {key: value for key, value in handler.headers.items() if key.lower() not in ("content-length",)}
        if self.mode == "issuer":
            headers["Host"] = urlsplit(self.provider.url).netloc
        answer = requests.request(handler.command, self.provider.url + path, data=body, headers=headers,
                                  allow_redirects=False, timeout=10)
        content = answer.content
        if self.mode == "signature" and path.startswith("/oauth2/token") and answer.ok:
            token = answer.json()
            token["id_token"] = _resigned(token["id_token"])
            content = json.dumps(token).encode()
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _with_query(path: str, **changes: str) -> str:
    parts = urlsplit(path)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


def _resigned(id_token: str) -> str:
    """The same header (kid included) and claims, signed with a freshly made RSA key."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    header_part, claims_part, _ = id_token.split(".")
    header = json.loads(_unpad(header_part))
    claims = json.loads(_unpad(claims_part))
    return jwt.encode(header, claims, RSAKey.generate_key(2048))


def _unpad(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
