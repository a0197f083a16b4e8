"""A small Flask app that embeds lexyjobs: its own users and session login, an ``/admin`` area
with the lexyjobs panel mounted at ``/admin/jobs`` (admins only), and ``POST /api/crawls`` that
records a crawl request and enqueues its run in one transaction, answering ``202 {jobId,
statusUrl}`` (seed 004's queue service). See README.md beside this file for how to run it."""
from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Request, Response, current_app, jsonify, redirect, render_template_string, request, \
    session, url_for
from sqlalchemy import DateTime, Engine, Integer, String, create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

import lexyjobs
from lexyjobs import HostUser, Lexyjobs, RunContext, job

# The host's own users (a real app keeps them in its database): one admin, one ordinary user.
USERS = {"alice": {"password": generate_password_hash("alice-password"), "admin": True},
         "bob": {"password": generate_password_hash("bob-password"), "admin": False}}


class Base(DeclarativeBase):
    pass


class CrawlRequest(Base):
    """The host's own model, written in the same transaction as the run that crawls."""
    __tablename__ = "crawl_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    max_pages: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(Integer)


@job(category="Crawls", timeout="5m", params={
    "url": {"type": "string", "required": True, "help": "first page (http or https)"},
    "max_pages": {"type": "integer", "default": 10, "min": 1, "max": 100}})
def crawl(ctx: RunContext) -> dict[str, int]:
    """Fetch up to ``max_pages`` pages of one site, following its links, and count them."""
    start, limit = ctx.params["url"], ctx.params["max_pages"]
    site, seen, todo, links = urllib.parse.urlsplit(start).netloc, set(), [start], 0
    while todo and len(seen) < limit:
        url = todo.pop(0)
        if url in seen:
            continue
        ctx.check_cancelled()
        seen.add(url)
        with urllib.request.urlopen(url, timeout=10) as page:  # noqa: S310 (http(s) checked on enqueue)
            html = page.read(1_000_000).decode("utf-8", "replace")
        found = [urllib.parse.urljoin(url, href).split("#")[0] for href in re.findall(r'href="([^"]+)"', html)]
        links += len(found)
        todo += [link for link in found if urllib.parse.urlsplit(link).netloc == site and link not in seen]
        ctx.log.info("%s: %d links", url, len(found))
        ctx.progress(100 * len(seen) / limit, f"{len(seen)} pages")
    ctx.progress(100, f"{len(seen)} pages")  # the site may have fewer pages than max_pages
    return {"pagesCrawled": len(seen), "linksFound": links}


def _current_user() -> str | None:
    name = session.get("user")
    return name if name in USERS else None


def authorize(req: Request) -> HostUser | Response | None:
    """Who may use the mounted panel and API: the host's admins; anonymous visitors are sent to
    the host's login; other users get None, which lexyjobs answers with 403."""
    name = _current_user()
    if name is None:
        return redirect(url_for("login", next=req.full_path.rstrip("?")))
    return HostUser(name, "admin") if USERS[name]["admin"] else None


def _flag(name: str) -> bool:
    return os.environ.get(name, "true").strip().lower() not in ("false", "0", "no", "off")


def _create_tables(engine: Engine) -> None:
    """The host's tables (a real app would migrate with Alembic). Processes starting together may
    race to create them: the loser finds them made on its second look."""
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError:
        Base.metadata.create_all(engine)


def create_app(database_url: str | None = None, secret_key: str | None = None) -> Flask:
    """The host app. Settings come from the environment: SECRET_KEY (the host's own),
    LEXYJOBS_DATABASE_URL (shared by the host's tables and lexyjobs), and where lexyjobs work
    happens: WEB_RUNS_JOBS=false (runs execute only in `lexyjobs worker` processes),
    WEB_FIRES_TIMERS=false (this process fires no schedules)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret_key or os.environ.get("SECRET_KEY")
    if not app.config["SECRET_KEY"]:
        raise SystemExit("host_app: set SECRET_KEY (the host app's session key)")
    url = database_url or os.environ.get("LEXYJOBS_DATABASE_URL", "sqlite:///host_app.db")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    _create_tables(engine)
    engine.dispose()  # no connection crosses a fork (gunicorn --preload)
    app.extensions["host_app.db"] = sessionmaker(engine)
    app.extensions["host_app.jobs"] = Lexyjobs(
        app, url_prefix="/admin/jobs", authorize=authorize, config={"database_url": url},
        workers=None if _flag("WEB_RUNS_JOBS") else 0, scheduler=_flag("WEB_FIRES_TIMERS"))
    _routes(app)
    return app


PAGE = """<!doctype html><title>Acme</title><nav><a href="/">Home</a> <a href="/about">About</a>
{% if user %}<a href="/admin">Admin</a> <form method="post" action="/logout" style="display:inline">
<button>Log out {{ user }}</button></form>{% else %}<a href="/login">Log in</a>{% endif %}</nav>
<h1>{{ title }}</h1>{% if error %}<p role="alert">{{ error }}</p>{% endif %}{{ body | safe }}"""
LOGIN_FORM = """<form method="post"><label>User <input name="username"></label>
<label>Password <input name="password" type="password"></label><button>Log in</button></form>"""


def _page(title: str, body: str = "", error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template_string(PAGE, title=title, body=body, error=error, user=_current_user()), status


def _routes(app: Flask) -> None:  # noqa: C901 (a flat list of short routes)
    @app.get("/")
    def home() -> tuple[str, int]:
        return _page("Acme", '<p>See <a href="/about">about us</a>.</p>')

    @app.get("/about")
    def about() -> tuple[str, int]:
        return _page("About Acme", '<p>Back <a href="/">home</a>.</p>')

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "GET":
            return _page("Log in", LOGIN_FORM)
        name, password = request.form.get("username", ""), request.form.get("password", "")
        if name not in USERS or not check_password_hash(USERS[name]["password"], password):
            return _page("Log in", LOGIN_FORM, "Unknown user or wrong password.", 401)
        session.clear()
        session["user"] = name
        target = request.args.get("next", "")
        return redirect(target if target.startswith("/") and not target.startswith("//") else "/admin")

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect("/")

    @app.get("/admin")
    def admin() -> Any:
        name = _current_user()
        if name is None:
            return redirect(url_for("login", next="/admin"))
        if not USERS[name]["admin"]:
            return _page("Admin", error="Admins only.", status=403)
        return _page("Admin", '<p><a href="/admin/jobs/">Background jobs</a></p>')

    @app.post("/api/crawls")
    def create_crawl() -> tuple[Response, int]:
        """Seed 004's enqueueCrawl: 202 {jobId, statusUrl}; the request row and its run commit together."""
        name = _current_user()
        if name is None:
            return jsonify(error="log in first"), 401
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="send a JSON object {url, maxPages}"), 400
        url, max_pages = body.get("url"), body.get("maxPages", 10)
        if not isinstance(url, str) or len(url) > 500 or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            return jsonify(error="url must be an http(s) address of at most 500 characters"), 400
        if not isinstance(max_pages, int) or isinstance(max_pages, bool) or not 1 <= max_pages <= 100:
            return jsonify(error="maxPages must be a whole number from 1 to 100"), 400
        with current_app.extensions["host_app.db"].begin() as db:
            crawl_request = CrawlRequest(url=url, max_pages=max_pages, requested_by=name,
                                         requested_at=datetime.now(timezone.utc))
            db.add(crawl_request)
            run = lexyjobs.enqueue(crawl, {"url": url, "max_pages": max_pages}, session=db, by=name)
            crawl_request.run_id = run.id
        return jsonify(jobId=run.id, statusUrl=url_for("crawl_status", job_id=run.id)), 202

    @app.get("/api/crawls/<int:job_id>")
    def crawl_status(job_id: int) -> tuple[Response, int]:
        """Seed 004's getJobStatus, for the user who asked for the crawl (or an admin)."""
        name = _current_user()
        if name is None:
            return jsonify(error="log in first"), 401
        db: Session
        with current_app.extensions["host_app.db"]() as db:
            crawl_request = db.scalar(select(CrawlRequest).where(CrawlRequest.run_id == job_id))
        if crawl_request is None or (crawl_request.requested_by != name and not USERS[name]["admin"]):
            return jsonify(error="no such crawl"), 404
        run = lexyjobs.get_run(job_id)
        return jsonify(jobId=run.id, status=run.status, result=run.result, error=run.error,
                       url=crawl_request.url, requestedBy=crawl_request.requested_by), 200
