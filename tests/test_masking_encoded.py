"""Secrets in the forms they travel in: real ``http`` jobs against a real server on 127.0.0.1
whose URL, query, headers, JSON body and basic auth carry ``${SECRET}`` values with characters
``requests`` percent-encodes (`` /?&=+%#"\\é``). Whatever comes back — an echoed URL, headers or
body, a connection error naming the encoded URL, an HTML error page, a base64 ``Authorization``,
an alert target refusing with its URL — no encoded form of a secret may reach the run's error,
result, log, details or events, the alerts table or payload, the API, the panel or the CLI."""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import quote, quote_plus, unquote

import pytest
from click.testing import CliRunner
from conftest import wait_for
from requests.utils import requote_uri
from sqlalchemy import text

from lexyjobs import runs
from lexyjobs.alerts.alerter import Alerter
from lexyjobs.cli import main
from lexyjobs.masking import MASK, Redactor

# Headers and JSON bodies carry a value whole; in a URL, "/?&=#" would split it, so the URL's
# secret has the other characters requests must encode. A URL's user:password must be written
# percent-encoded: requests decodes it for basic auth, so that secret is sent decoded, in base64.
SECRETS = {"LJ_SECRET": 'Zq7Secret /?&=+%#"\\é-42', "LJ_URL_SECRET": 'Xv9 pa"t\\h<é>%{x}|^-42',
           "LJ_USERINFO": "Wk5s3cr%C3%A9t%20pa%22ss!"}
MARKERS = ("Zq7Secret", "Xv9", "Wk5")  # each secret's letters: in no encoding are they escaped
TERMINAL = ("succeeded", "failed", "canceled")
HEX_ESCAPE = re.compile("%[0-9A-F]{2}")


def encoded_forms(secret: str) -> set[str]:
    """Every form of ``secret`` this test looks for, computed with the encoders themselves."""
    forms: set[str] = set()
    for value in {secret, unquote(secret)}:
        percent = {quote(value), quote(value, safe=""), quote_plus(value), requote_uri(value)}
        forms |= percent | {HEX_ESCAPE.sub(lambda m: m.group().lower(), p) for p in percent}
        forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
                  json.dumps(value).replace("/", "\\/")[1:-1], html.escape(value), html.escape(value, quote=False)}
        for user in ("", "alice:"):
            for encoding in ("utf-8", "latin-1"):
                data = (user + value).encode(encoding, errors="ignore")
                forms |= {base64.b64encode(data).decode().rstrip("="), base64.urlsafe_b64encode(data).decode().rstrip("=")}
    return forms | {value for value in (secret, unquote(secret))}


def leaks(found: str) -> list[str]:
    """The encoded secrets and secret markers in ``found``."""
    forms = {form for secret in SECRETS.values() for form in encoded_forms(secret)} | set(MARKERS)
    return sorted(form for form in forms if form in found)


class Target:
    """A local HTTP server: ``/echo…`` answers 200 with the request's path, headers and body as
    JSON; ``/html…`` refuses (400) with an HTML page quoting them; ``/hook…`` records the body
    and refuses (403) naming its path, as Slack does for a bad token."""

    def __init__(self) -> None:
        self.hooked: list[bytes] = []
        self.url = ""

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str, bytes]:
        path, headers = handler.path, dict(handler.headers.items())
        if path.startswith("/hook"):
            self.hooked.append(body)
            return 403, "text/plain", f"invalid hook {path}".encode()
        if path.startswith("/html"):
            page = f"<p>bad request {html.escape(unquote(path))} with {html.escape(json.dumps(headers))}</p>"
            return 400, "text/html", page.encode()
        echoed = {"path": path, "headers": headers, "body": body.decode("utf-8", "replace")}
        return 200, "application/json", json.dumps(echoed).encode()


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    state = Target()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def respond(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, content_type, answer = state.answer(self, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = respond

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def everything_recorded(db: Any) -> str:
    with db.engine.connect() as conn:
        rows = [row for table in ("runs", "run_logs", "run_events", "alerts")
                for row in conn.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                     for row in rows for v in row)


def test_the_test_forms_are_what_the_encoders_make():
    forms = encoded_forms(SECRETS["LJ_URL_SECRET"])
    assert "Xv9%20pa%22t%5Ch%3C%C3%A9%3E%25%7Bx%7D%7C%5E-42" in forms
    assert "Xv9%20pa%22t%5ch%3c%c3%a9%3e%25%7bx%7d%7c%5e-42" in forms
    assert 'Xv9 pa\\"t\\\\h<\\u00e9>%{x}|^-42' in forms
    assert "Xv9 pa&quot;t\\h&lt;é&gt;%{x}|^-42" in forms
    basic = base64.b64encode(b"alice:Wk5s3cr\xe9t pa\"ss!").decode().rstrip("=")
    assert basic in encoded_forms(SECRETS["LJ_USERINFO"])
    assert leaks(f"x {MASK} y") == [] and basic in leaks(f"a {basic}")


def test_no_encoded_form_of_a_secret_is_recorded_or_shown(db, db_url, lj, make_job, start_worker, target, secrets,
                                                          api_client, panel_as, monkeypatch: pytest.MonkeyPatch):
    host = target.url.removeprefix("http://")
    make_job("echo", kind="http", method="POST", url=f"{target.url}/echo/${{LJ_URL_SECRET}}?q=${{LJ_URL_SECRET}}",
             headers={"X-Secret": "${LJ_SECRET}", "Authorization": "Bearer ${LJ_SECRET}"},
             body={"password": "${LJ_SECRET}", "user": "alice"})
    make_job("basic", kind="http", url=f"http://alice:${{LJ_USERINFO}}@{host}/echo")
    make_job("refused", kind="http", url=f"http://127.0.0.1:{dead_port()}/x/${{LJ_URL_SECRET}}", max_attempts=1)
    make_job("html", kind="http", url=f"{target.url}/html/${{LJ_URL_SECRET}}", headers={"X-Secret": "${LJ_SECRET}"},
             max_attempts=1)
    start_worker()
    ids = {name: runs.enqueue(db, name) for name in ("echo", "basic", "refused", "html")}
    done = {name: wait_for(lambda i=i: (r := runs.get_run(db, i)).status in TERMINAL and r, 20) for name, i in ids.items()}

    echo, basic = done["echo"].result, done["basic"].result
    assert done["echo"].status == "succeeded", done["echo"].error
    assert echo["path"] == f"/echo/{MASK}?q={MASK}"
    assert echo["headers"]["X-Secret"] == MASK and echo["headers"]["Authorization"] == f"Bearer {MASK}"
    assert json.loads(echo["body"]) == {"password": MASK, "user": "alice"}
    assert done["basic"].status == "succeeded", done["basic"].error
    assert basic["headers"]["Authorization"] == f"Basic {MASK}"
    assert done["refused"].status == "failed" and MASK in (done["refused"].error or "")
    assert done["html"].status == "failed" and done["html"].error.startswith("HTTP 400 Bad Request: <p>bad request /html/")
    assert MASK in done["html"].error

    rule = dataclasses.replace(lj.settings, alert_webhook=f"{target.url}/hook/${{LJ_URL_SECRET}}",
                               alert_events=("failed",))
    assert len(Alerter(db, rule).check()) == 2  # "refused" and "html" failed
    hooked = b"\n".join(target.hooked).decode()
    assert MASK in hooked and leaks(hooked) == []

    shown = [everything_recorded(db)]
    for run_id in ids.values():
        for path in (f"/api/runs/{run_id}", f"/api/runs/{run_id}/log"):
            shown.append(api_client.get(path).get_data(as_text=True))
    shown += [api_client.get(path).get_data(as_text=True) for path in ("/api/runs", "/api/alerts", "/api/jobs")]
    panel = panel_as("viewer")
    shown += [panel.get(f"/runs/{run_id}").get_data(as_text=True) for run_id in ids.values()]
    shown += [panel.get(path).get_data(as_text=True) for path in ("/runs", "/alerts")]
    env = {"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": ""}
    for args in [["show", str(i)] for i in ids.values()] + [["show", str(ids["echo"]), "--json"],
                                                                   ["alerts", "list", "--json"], ["runs", "--json"]]:
        result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        shown.append(result.output)
    everything = "\n".join(shown)
    assert "invalid hook" in everything and everything.count(MASK) > 20  # the answers really are in there
    assert leaks(everything) == []


def test_the_redactor_masks_each_form_the_test_looks_for():
    redactor = Redactor(SECRETS.values())
    for secret in SECRETS.values():
        for form in encoded_forms(secret):
            assert leaks(redactor.text(f"before {form} after")) == [], form


def test_text_that_only_resembles_a_secret_is_left_alone():
    redactor = Redactor(SECRETS.values())
    ordinary = ("Zq7 Secret; Xv9 pa t h; %20%22%5C; \\u00e9 &quot; " + base64.b64encode(b"alice:other-password").decode()
                + " " + quote("Zq7Secret /?&=+%#-42"))  # almost the secret: one character missing
    assert redactor.text(ordinary) == ordinary
