"""lexyjobs mounted into a host Flask app with ``Lexyjobs(app, url_prefix=...)``: every URL we emit
carries the prefix (and the host's SCRIPT_NAME, and a proxy's X-Forwarded-Prefix when standalone),
the host's blueprints, templates, static files, session, error pages and headers are untouched,
settings come from ``app.config``, and ``workers=0`` runs no jobs."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hostapp import URL_ATTR, log_in, make_host, our_get_urls, seed
from lexyjobs import Lexyjobs, accounts, create_app
from lexyjobs.extension import normalize_prefix
from conftest import FAST

PASSWORD = "correct horse battery"


def _admin(app) -> None:  # type: ignore[no-untyped-def]
    lexy = app.extensions["lexyjobs"]
    lexy.prepare()
    accounts.add_user(lexy.db, "admin", PASSWORD, "admin")


def _urls_in(html: str) -> list[str]:
    return [url for url in URL_ATTR.findall(html) if not url.startswith("//")]


@pytest.mark.parametrize("prefix", ["/admin/jobs", "/deep/er/admin/jobs/"])
def test_every_page_link_form_htmx_url_and_redirect_carries_the_prefix(tmp_path: Path, db_url: str, prefix: str) -> None:
    app, jobs = make_host(tmp_path, db_url, url_prefix=prefix)
    base = normalize_prefix(prefix)
    _admin(app)
    job, run_id = seed(jobs.runtime.db)
    client = app.test_client()
    first = client.get(f"{base}/")
    assert first.status_code == 302 and first.headers["Location"].startswith(f"{base}/login?next={base}/")
    log_in(client, base, "admin", PASSWORD)
    crawled, checked = 0, 0
    for endpoint, url in our_get_urls(app, job, run_id):
        assert url.startswith(base + "/"), (endpoint, url)
        response = client.get(url)
        assert response.status_code < 500, (url, response.status_code)
        if response.status_code in (301, 302, 303):
            assert urlsplit(response.headers["Location"]).path.startswith(base + "/"), (url, response.headers["Location"])
        if response.mimetype == "text/html":
            crawled += 1
            for found in _urls_in(response.get_data(as_text=True)):
                assert found.startswith(base + "/"), f"{url}: {found}"
                checked += 1
    assert crawled >= 10 and checked >= 100, (crawled, checked)
    page = client.get(f"{base}/").get_data(as_text=True)
    assert f'<meta name="lexyjobs-events" content="{base}/events">' in page
    assert client.get(f"{base}/static/app.js").status_code == 200
    assert client.get(f"{base}/vendor/htmx/htmx.min.js").status_code == 200
    assert client.get(f"{base}/api/me").status_code == 401  # bearer only, JSON
    assert client.get(f"{base}/api/me").json["error"]["code"] == "unauthorized"
    logout = client.post(f"{base}/logout", data={"csrf_token": log_in(client, base, "admin", PASSWORD)})
    assert logout.status_code == 302 and logout.headers["Location"] == f"{base}/login"
    # the login form's "next" only goes where it should, and where it goes carries the prefix
    token = log_in(client, base, "admin", PASSWORD)
    client.post(f"{base}/logout", data={"csrf_token": token})
    login_page = client.get(f"{base}/login").get_data(as_text=True)
    from hostapp import csrf_of
    response = client.post(f"{base}/login?next={base}/runs", data={"username": "admin", "password": PASSWORD,
                                                                     "csrf_token": csrf_of(login_page)})
    assert response.headers["Location"] == f"{base}/runs"


def test_host_blueprints_templates_static_errors_and_headers_are_untouched(tmp_path: Path, db_url: str) -> None:
    app, jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs")
    _admin(app)
    client = app.test_client()
    home = client.get("/")
    assert home.get_data(as_text=True) == "HOST-BASE "  # the host's base.html, not ours
    assert "Content-Security-Policy" not in home.headers and "Cache-Control" not in home.headers
    assert client.get("/account/login").get_data(as_text=True) == "HOST-LOGIN"
    assert client.get("/host-api/ping").json == {"pong": True}
    assert client.get("/static/app.css").get_data(as_text=True) == "/* host css */"
    ours = client.get("/admin/jobs/static/app.css").get_data(as_text=True)
    assert "host css" not in ours and len(ours) > 100
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "lexyjobs" not in missing.get_data(as_text=True)
    assert "Content-Security-Policy" not in missing.headers
    post = client.post("/", data={"x": "y"})
    assert post.status_code == 405 and "Content-Security-Policy" not in post.headers  # our guard is not the host's
    # our pages: our templates (the host's base.html does not shadow ours), our headers
    login = client.get("/admin/jobs/login")
    assert "HOST" not in login.get_data(as_text=True) and 'name="password"' in login.get_data(as_text=True)
    assert login.headers["X-Frame-Options"] == "DENY"
    # a host route may take big bodies; ours stop at LEXYJOBS_MAX_BODY
    assert client.post("/admin/jobs/login", data={"username": "x" * 2_000_000}).status_code == 413
    assert set(app.blueprints) >= {"api", "login", "panel", "lexyjobs", "lexyjobs.panel", "lexyjobs.api"}
    assert app.extensions["lexyjobs"] is jobs.runtime


def test_a_host_template_may_override_one_of_our_pages(tmp_path: Path, db_url: str) -> None:
    app, _jobs = make_host(tmp_path, db_url, url_prefix="/jobs")
    (tmp_path / "templates" / "lexyjobs").mkdir()
    (tmp_path / "templates" / "lexyjobs" / "login.html").write_text("HOST'S OWN JOBS LOGIN")
    _admin(app)
    assert app.test_client().get("/jobs/login").get_data(as_text=True) == "HOST'S OWN JOBS LOGIN"


def test_host_session_keys_survive_our_login_and_logout(tmp_path: Path, db_url: str) -> None:
    app, _jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs")
    _admin(app)
    client = app.test_client()
    client.get("/remember/bob")
    token = log_in(client, "/admin/jobs", "admin", PASSWORD)
    assert client.get("/recall").get_data(as_text=True) == "bob"
    with client.session_transaction() as session:
        assert {"lexyjobs_uid", "lexyjobs_epoch", "lexyjobs_csrf"} <= set(session)
    client.post("/admin/jobs/logout", data={"csrf_token": token})
    assert client.get("/recall").get_data(as_text=True) == "bob"
    with client.session_transaction() as session:
        assert not {"lexyjobs_uid", "lexyjobs_epoch"} & set(session)


def test_mounted_at_the_root_of_a_host_app(tmp_path: Path, db_url: str) -> None:
    app, _jobs = make_host(tmp_path, db_url, url_prefix="")
    _admin(app)
    client = app.test_client()
    assert client.get("/").get_data(as_text=True) == "HOST-BASE "  # the host's "/" wins: it was there first
    token = log_in(client, "", "admin", PASSWORD)
    assert token and client.get("/jobs").status_code == 200


def test_the_host_script_name_is_in_every_url(tmp_path: Path, db_url: str) -> None:
    app, jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs")
    _admin(app)
    client = app.test_client()
    response = client.get("/admin/jobs/runs", base_url="http://localhost/mount")
    assert response.headers["Location"].startswith("/mount/admin/jobs/login?next=")
    page = client.get("/admin/jobs/login", base_url="http://localhost/mount").get_data(as_text=True)
    assert all(url.startswith("/mount/admin/jobs/") for url in _urls_in(page)), _urls_in(page)


def test_standalone_behind_a_proxy_that_strips_a_path_prefix(tmp_path: Path, db_url: str) -> None:
    app = create_app({"database_url": db_url, "jobs_file": None, "data_dir": str(tmp_path), "trusted_proxies": 1,
                      **FAST})
    _admin(app)
    client = app.test_client()
    headers = {"X-Forwarded-Prefix": "/jobs", "X-Forwarded-For": "10.1.1.1", "X-Forwarded-Proto": "https"}
    response = client.get("/runs", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.headers["Location"].startswith("/jobs/login?next=/jobs/runs")
    page = client.get("/login", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    assert all(url.startswith("/jobs/") for url in _urls_in(page)), _urls_in(page)
    # from an untrusted peer the header is dropped
    direct = client.get("/runs", headers=headers, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert direct.headers["Location"].startswith("/login?next=/runs")


def test_settings_come_from_app_config_below_the_config_argument(tmp_path: Path, db_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXYJOBS_RETENTION_DAYS", "5")
    monkeypatch.setenv("LEXYJOBS_PREFETCH", "3")
    from flask import Flask
    app = Flask("host2", root_path=str(tmp_path))
    app.config.update(SECRET_KEY="x", LEXYJOBS_DATABASE_URL=db_url, LEXYJOBS_JOBS_FILE="", LEXYJOBS_PREFETCH=7,
                      LEXYJOBS_HTTP_THREADS=9, LEXYJOBS_URL_PREFIX="/ops/jobs/")
    jobs = Lexyjobs(config={"http_threads": 5})
    jobs.init_app(app)
    settings = jobs.runtime.settings
    assert (settings.prefetch, settings.http_threads, settings.retention_days) == (7, 5, 5)
    assert jobs.url_prefix == "/ops/jobs" and app.url_map.bind("x").match("/ops/jobs/runs")[0] == "lexyjobs.panel.runs"
    bad = Flask("host3", root_path=str(tmp_path))
    bad.config.update(SECRET_KEY="x", LEXYJOBS_DATABASE_URL=db_url, LEXYJOBS_PREFETCH="lots")
    with pytest.raises(SystemExit, match="LEXYJOBS_PREFETCH"):
        Lexyjobs(bad)


def test_bad_options_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="workers"):
        Lexyjobs(workers=-1)
    with pytest.raises(TypeError, match="authorize"):
        Lexyjobs(authorize="admin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url_prefix"):
        Lexyjobs(url_prefix="/a b")
    with pytest.raises(RuntimeError, match="init_app"):
        Lexyjobs().runtime


def test_workers_zero_serves_the_panel_and_runs_no_jobs(tmp_path: Path, db_url: str) -> None:
    app, jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs", workers=0, scheduler=False)
    _admin(app)
    try:
        assert jobs.start() is True and jobs.start() is False
        assert jobs.runtime.worker is None and jobs.runtime.scheduler is None
        client = app.test_client()
        log_in(client, "/admin/jobs", "admin", PASSWORD)
        assert client.get("/admin/jobs/healthz").json["checks"] == {"database": True, "worker": None, "scheduler": None}
    finally:
        jobs.stop(grace=0)


def test_cli_commands_form_a_group_on_a_host_app(tmp_path: Path, db_url: str) -> None:
    app, _jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs")
    result = app.test_cli_runner().invoke(args=["lexyjobs", "--help"])
    assert result.exit_code == 0 and "worker" in result.output and "jobs" in result.output


def test_flask_cli_of_a_host_app_has_the_lexyjobs_group(tmp_path: Path) -> None:
    """A real ``flask --app host:app lexyjobs …`` process: the group's commands use the host's settings."""
    import subprocess
    import sys
    database = tmp_path / "host.db"
    (tmp_path / "host_cli.py").write_text(
        "from flask import Flask\nfrom lexyjobs import Lexyjobs\n"
        "app = Flask(__name__)\n"
        f"app.config.update(SECRET_KEY='x', LEXYJOBS_DATABASE_URL='sqlite:///{database}', LEXYJOBS_JOBS_FILE='')\n"
        "jobs = Lexyjobs(app, url_prefix='/admin/jobs', workers=0)\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("LEXYJOBS_")}
    flask = [sys.executable, "-m", "flask", "--app", "host_cli:app"]
    upgraded = subprocess.run([*flask, "lexyjobs", "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
    assert upgraded.returncode == 0, upgraded.stderr
    created = subprocess.run([*flask, "lexyjobs", "tokens", "create", "--name", "ci", "--role", "viewer"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    listed = subprocess.run([*flask, "lexyjobs", "tokens", "list"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and "ci" in listed.stdout, listed.stderr
    assert database.is_file()
    missing = subprocess.run([*flask, "worker"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0  # only under the group: the host's own command names stay free


def test_a_run_enqueued_from_code_has_a_status_url_under_the_prefix(tmp_path: Path, db_url: str) -> None:
    import lexyjobs

    app, jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs/", workers=0, scheduler=False,
                          config={"api_token": "t" * 32})
    try:
        jobs.runtime.prepare()
        job, _ = seed(jobs.runtime.db)
        with app.app_context():
            run = lexyjobs.enqueue(job)
        assert run.status_url == f"/admin/jobs/api/runs/{run.id}"
        answer = app.test_client().get(run.status_url, headers={"Authorization": "Bearer " + "t" * 32})
        assert answer.status_code == 200 and answer.json["id"] == run.id
    finally:
        jobs.stop(grace=0)


def test_workers_zero_from_app_config_or_the_environment_runs_no_jobs(tmp_path: Path, db_url: str) -> None:
    """LEXYJOBS_WORKERS=0 (app.config here; the environment and ``serve --workers 0`` alike) is a
    web-and-timers process, as ``Lexyjobs(app, workers=0)``."""
    from flask import Flask

    app = Flask("host", root_path=str(tmp_path))
    app.config.update(SECRET_KEY="host-secret", LEXYJOBS_DATABASE_URL=db_url, LEXYJOBS_WORKERS="0")
    jobs = Lexyjobs(app, config={"jobs_file": None, "data_dir": str(tmp_path), **FAST})
    try:
        assert jobs.start() is True
        assert jobs.runtime.settings.workers == 0
        assert jobs.runtime.worker is None and jobs.runtime.scheduler is not None
    finally:
        jobs.stop(grace=0)


def test_a_worker_process_with_no_threads_is_refused_in_one_line(tmp_path: Path) -> None:
    import subprocess

    from conftest import PYTHON, subprocess_env

    env = subprocess_env(f"sqlite:///{tmp_path / 'jobs.db'}", LEXYJOBS_JOBS_FILE="", LEXYJOBS_WORKERS="0")
    done = subprocess.run([PYTHON, "-m", "lexyjobs", "worker"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: a worker needs at least 1 thread: LEXYJOBS_WORKERS is 0 (use --threads N)"], done.stderr
