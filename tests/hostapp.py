"""A host Flask app for the extension tests: its own ``api`` / ``login`` / ``panel`` blueprints, its
own ``static`` folder and its own ``base.html`` / ``login.html`` / ``error.html``, which must neither
shadow lexyjobs' nor be touched by it."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from flask import Blueprint, Flask, render_template, session
from flask.testing import FlaskClient

from conftest import FAST
from lexyjobs import Lexyjobs, registry, runs
from lexyjobs.db import Database

HOST_TEMPLATES = {"base.html": "HOST-BASE {% block body %}{% endblock %}",
                  "login.html": "HOST-LOGIN", "error.html": "HOST-ERROR"}
URL_ATTR = re.compile(r'(?:href|action|src|hx-get|hx-post|hx-delete|hx-put|data-url|content)="(/[^"]*)"')


def make_host(root: Path, db_url: str, **options: Any) -> tuple[Flask, Lexyjobs]:
    """A host app at ``root`` with lexyjobs mounted by ``Lexyjobs(app, **options)``."""
    (root / "templates").mkdir(parents=True, exist_ok=True)
    (root / "static").mkdir(exist_ok=True)
    for name, text in HOST_TEMPLATES.items():
        (root / "templates" / name).write_text(text)
    (root / "static" / "app.css").write_text("/* host css */")
    app = Flask("host", root_path=str(root))
    app.config.update(SECRET_KEY="host-secret", LEXYJOBS_DATABASE_URL=db_url)
    api, login, panel = Blueprint("api", "host_api"), Blueprint("login", "host_login"), Blueprint("panel", "host_panel")
    api.add_url_rule("/host-api/ping", "ping", lambda: {"pong": True})
    login.add_url_rule("/account/login", "login", lambda: render_template("login.html"))
    panel.add_url_rule("/", "home", lambda: render_template("base.html"))

    @panel.get("/remember/<value>")
    def remember(value: str) -> str:
        session["host_user"] = value
        return "ok"

    @panel.get("/recall")
    def recall() -> str:
        return str(session.get("host_user"))

    for blueprint in (api, login, panel):
        app.register_blueprint(blueprint)
    options.setdefault("config", {})
    options["config"] = {"jobs_file": None, "data_dir": str(root), **FAST, **options["config"]}
    jobs = Lexyjobs(app, **options)
    return app, jobs


def seed(db: Database) -> tuple[str, int]:
    """One job with one run (for the routes that take a name or a run id)."""
    registry.create_job(db, "ext-job", {"kind": "python", "func": "jobfuncs:noop"})
    return "ext-job", runs.enqueue(db, "ext-job")


ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def our_get_urls(app: Flask, job: str, run_id: int) -> Iterator[tuple[str, str]]:
    """(endpoint, url) of every GET route of lexyjobs (not static files or the endless stream)."""
    values = {"name": job, "run_id": str(run_id), "filename": "app.css", "username": "admin", "token_id": "1",
              "user_id": "1", "pipeline": job, "target_id": "1", "kind": "webhook"}
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if not endpoint.startswith("lexyjobs.") or "GET" not in (rule.methods or ()):
            continue
        if endpoint in ("lexyjobs.panel.events",):
            continue
        yield endpoint, ARG.sub(lambda m: values.get(m.group(2), "1"), rule.rule)


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def log_in(client: FlaskClient, base: str, username: str, password: str) -> str:
    """Log in through lexyjobs' form under ``base``; returns the CSRF token."""
    token = csrf_of(client.get(f"{base}/login").get_data(as_text=True))
    response = client.post(f"{base}/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_of(client.get(f"{base}/runs").get_data(as_text=True))
