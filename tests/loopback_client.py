"""A minimal HTTP client for tests against a real server: each ``Browser`` connects from its own
loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all of 127/8 to lo), keeps the session
cookie and logs in through the real login form."""
from __future__ import annotations

import http.client
import re
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Browser:
    """A client on its own loopback address, with the session cookie it was given."""

    target: tuple[str, int]
    address: str
    headers: dict[str, str] = field(default_factory=dict)
    cookie: str | None = None
    set_cookies: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection(*self.target, timeout=30, source_address=(self.address, 0))
        headers = dict(self.headers)
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read().decode()
        finally:
            connection.close()
        for value in answer.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(value)
            self.cookie = value.split(";", 1)[0]
        return answer.status, text

    def log_in(self, username: str, password: str) -> int:
        _, page = self.request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page
        status, _ = self.request("POST", "/login", {"username": username, "password": password,
                                                    "csrf_token": token.group(1), "next": "/"})
        return status
