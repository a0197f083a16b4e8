"""``Lexyjobs``: the Flask extension. It mounts the panel, the JSON API, ``/events``, ``/healthz``,
``/metrics``, the login pages and the static files under one parent blueprint named ``lexyjobs``
(at ``url_prefix``), so nothing collides with the host app's blueprints, templates or static
files. The standalone app (``lexyjobs.create_app``) is a Flask app with this extension in it.

    jobs = Lexyjobs(app, url_prefix="/admin/jobs", authorize=lambda request: "admin")

Settings: ``config`` (by Settings field name) > ``app.config["LEXYJOBS_<FIELD>"]`` > the
environment (``LEXYJOBS_*``) > defaults."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from flask import Blueprint, Flask
from jinja2 import BaseLoader, FileSystemLoader, PrefixLoader

from lexyjobs.hostauth import Authorize
from lexyjobs.resources import STATIC, TEMPLATES

if TYPE_CHECKING:
    from lexyjobs.runtime import Runtime

TEMPLATE_PREFIX = "lexyjobs"  # our templates are "lexyjobs/<name>.html"; a host may override one in its own folder


class _ParentBlueprint(Blueprint):
    """The ``lexyjobs`` blueprint: serves our templates only under the ``lexyjobs/`` name prefix, so
    a host's own ``base.html`` or ``error.html`` neither shadows ours nor is shadowed by it."""

    @property  # type: ignore[override]
    def jinja_loader(self) -> BaseLoader:
        return PrefixLoader({TEMPLATE_PREFIX: FileSystemLoader(str(TEMPLATES))})


def normalize_prefix(prefix: str | None) -> str:
    """``"/admin/jobs/"`` → ``"/admin/jobs"``; ``None``, ``""`` and ``"/"`` → ``""``."""
    text = (prefix or "").strip().strip("/")
    if any(char.isspace() or char in "?#<>" for char in text):
        raise ValueError(f"url_prefix {prefix!r}: expected a path such as '/admin/jobs'")
    return "/" + text if text else ""


def settings_for(app: Flask, config: Mapping[str, Any] | None) -> Any:
    """Settings for ``app``: ``config`` > ``app.config["LEXYJOBS_*"]`` > environment > defaults.
    Text values of ``app.config`` are read exactly like environment variables (same errors)."""
    from lexyjobs.config import ENV_VARS, load_settings

    environ: dict[str, str] = dict(os.environ)
    overrides: dict[str, Any] = {}
    for field, (env_name, *_rest) in ENV_VARS.items():
        value = app.config.get(env_name)
        if isinstance(value, str):
            environ[env_name] = value
        elif value is not None:
            overrides[field] = value
    overrides.update(config or {})
    return load_settings(overrides, environ)


class Lexyjobs:
    """The Flask extension. ``workers``: worker threads in this process (0: this process runs no
    jobs: web only, with ``lexyjobs worker`` processes beside it); ``scheduler``: whether this
    process fires timers (exactly once across processes either way, the database guarantees it);
    ``authorize``: the host's login (see ``lexyjobs.hostauth``); ``config``: settings by field name."""

    def __init__(self, app: Flask | None = None, *, url_prefix: str | None = None, authorize: Authorize | None = None,
                 workers: int | None = None, scheduler: bool = True, config: Mapping[str, Any] | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ValueError(f"workers={workers!r}: expected a whole number, 0 or more (0: this process runs no jobs)")
        if authorize is not None and not callable(authorize):
            raise TypeError("authorize must be a callable taking the request")
        self._url_prefix = url_prefix
        self.url_prefix = normalize_prefix(url_prefix)
        self.authorize = authorize
        self.workers = workers
        self.scheduler = scheduler
        self.config = dict(config or {})
        self._runtime: Runtime | None = None
        if app is not None:
            self.init_app(app)

    @property
    def runtime(self) -> Runtime:
        """The engine (settings, database, catalog, worker, scheduler) once ``init_app`` ran."""
        if self._runtime is None:
            raise RuntimeError("Lexyjobs.init_app(app) has not been called yet")
        return self._runtime

    def init_app(self, app: Flask) -> None:
        from lexyjobs import api, cli, guard, login, panel, routing, runtime, tracing, web
        from lexyjobs.panel import formatting
        from lexyjobs.runtime import Runtime

        if self._url_prefix is None:
            self.url_prefix = normalize_prefix(app.config.get("LEXYJOBS_URL_PREFIX"))
        config = dict(self.config)
        if self.workers is not None:
            config["workers"] = self.workers
        settings = settings_for(app, config)
        lexy = Runtime(settings)
        lexy.own_users = self.authorize is None
        lexy.url_prefix = self.url_prefix
        self._runtime = lexy
        app.extensions["lexyjobs"] = lexy
        app.extensions["lexyjobs_extension"] = self
        runtime.set_default(lexy)
        routing.init_app(app)
        parent = _ParentBlueprint("lexyjobs", __name__, url_prefix=self.url_prefix or None,
                                  static_folder=str(STATIC), static_url_path="/static")
        tracing.init_blueprint(parent)  # before the guard: refused requests are traced too
        guard.init_blueprint(parent, settings)
        guard.init_templates(app)
        web.init_app(app, parent)
        login.init_app(app, parent)
        panel.init_app(app, parent)
        api.init_app(parent)
        app.register_blueprint(parent)
        formatting.init_app(app)
        _exempt_from_flask_wtf(app)
        if not app.extensions.get("lexyjobs_standalone"):
            cli.init_host_app(app)  # (create_app adds the commands to app.cli itself)
        runtime.init_app(app, scheduler=self.scheduler)

    def start(self) -> bool:
        """Start this process's worker threads (none with ``workers=0``) and/or scheduler now (e.g.
        in gunicorn's ``post_fork``) instead of at the first request. True when this call started them."""
        return self.runtime.start(scheduler=self.scheduler)

    def stop(self, grace: float | None = None) -> None:
        self.runtime.stop(grace)


def _exempt_from_flask_wtf(app: Flask) -> None:
    """Flask-WTF's CSRFProtect must leave our routes alone (they have their own CSRF check). It
    looks up ``request.blueprint`` (the nested one, e.g. ``lexyjobs.panel``), so each of our
    blueprints is exempted: now if CSRFProtect is set up, else at the first request in case the
    host sets it up after us (a before_request registered now runs before CSRFProtect's)."""
    done: list[bool] = []

    def exempt() -> None:
        protect = app.extensions.get("csrf")
        if done or protect is None or not hasattr(protect, "exempt"):
            return
        for name, blueprint in list(app.blueprints.items()):
            if name == "lexyjobs" or name.startswith("lexyjobs."):
                protect.exempt(blueprint)
        done.append(True)

    exempt()
    app.before_request(exempt)
