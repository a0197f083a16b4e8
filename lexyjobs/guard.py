"""The door: every request is authenticated before its view runs, locked by default.

- ``/api/…`` takes ``Authorization: Bearer <token>`` only (a session cookie never authorizes it).
- Panel pages take the login session; state-changing panel requests also need the CSRF token
  (form field ``csrf_token`` or header ``X-CSRF-Token``, which htmx sends from a meta tag).
- Only views marked ``@public`` (login, ``/healthz``) and static files skip the check.
- Every response carries the security headers (CSP without inline script, no framing…)."""
from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any, Callable, TypeVar

from flask import (Blueprint, Flask, Response, current_app, g, jsonify, make_response, redirect, render_template, request, session,
                   url_for)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import accounts
from lexyjobs.accounts import Identity
from lexyjobs.actions import Actor
from lexyjobs.config import Settings
from lexyjobs.hostauth import host_identity
from lexyjobs.proxies import TrustedProxies
from lexyjobs.runtime import current

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"lexyjobs.static", "lexyjobs.htmx.static"})
API_BLUEPRINT = "lexyjobs.api"
LOGIN_BLUEPRINTS = frozenset({"lexyjobs.login", "lexyjobs.sso"})
SESSION_KEYS = ("lexyjobs_uid", "lexyjobs_epoch", "lexyjobs_csrf")
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(hours=12)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def public(view: F) -> F:
    """Mark a view as reachable without logging in."""
    view._lexyjobs_public = True  # type: ignore[attr-defined]
    return view


def identity() -> Identity:
    """Who is making the current request (set by the guard)."""
    return g.identity  # type: ignore[no-any-return]


def actor() -> Actor:
    return Actor(g.identity, client=request.remote_addr)


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    if "lexyjobs_csrf" not in session:
        session["lexyjobs_csrf"] = secrets.token_urlsafe(32)
    return str(session["lexyjobs_csrf"])


def start_session(who: Identity) -> None:
    """Log ``who`` in: fresh lexyjobs keys (new CSRF token), so nothing of ours from before login
    survives; a host app's own session keys are left alone."""
    end_session()
    session.permanent = True
    session.update(lexyjobs_uid=who.user_id, lexyjobs_epoch=who.session_epoch, lexyjobs_csrf=secrets.token_urlsafe(32))


def end_session() -> None:
    """Forget lexyjobs' keys of the session (only ours: the session may be the host app's)."""
    for key in SESSION_KEYS:
        session.pop(key, None)


def is_api() -> bool:
    """Whether the current request is for the JSON API."""
    return request.blueprint == API_BLUEPRINT


class _Cookies(SecureCookieSessionInterface):
    """Session cookies marked Secure per LEXYJOBS_SECURE_COOKIES (``auto``: when served over https)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.mode == "true" or (self.mode == "auto" and request.is_secure)


def init_standalone(app: Flask, settings: Settings) -> None:
    """What only the standalone app gets: its own session cookie, body limit, proxy handling and
    the security headers on every response (its 404s too)."""
    app.config.update(SESSION_COOKIE_NAME="lexyjobs_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
                      MAX_CONTENT_LENGTH=settings.max_body)
    app.session_interface = _Cookies(settings.secure_cookies)
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies,  # type: ignore[method-assign]
                                  settings.trusted_proxy_addresses)
    app.after_request(_security_headers)


def init_blueprint(bp: Blueprint, settings: Settings) -> None:
    """The guard, the body limit and the security headers for lexyjobs' routes only."""
    max_body = settings.max_body

    @bp.before_request
    def _limit_body() -> None:
        request.max_content_length = max_body

    bp.before_request(_authorize)
    bp.after_request(_security_headers)


def init_templates(app: Flask) -> None:
    """Template globals our pages use, namespaced so they never replace a host's (Flask-WTF's
    ``csrf_token`` for one)."""
    app.jinja_env.globals.update(lexyjobs_csrf_token=csrf_token,
                                 lexyjobs_own_login=lambda: _host_authorize() is None,
                                 lexyjobs_sso=lambda: current_app.extensions.get("lexyjobs_sso"),
                                 lexyjobs_password_login=lambda: current().settings.password_login)


def _host_authorize() -> Any:
    """The host app's ``authorize`` callable, or None when lexyjobs' own users log in."""
    return current_app.extensions["lexyjobs_extension"].authorize


def _authorize() -> BaseResponse | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return None  # no such route: 404/405 as usual
    host = _host_authorize()
    if host is not None and request.blueprint in LOGIN_BLUEPRINTS:
        return redirect(url_for("lexyjobs.panel.dashboard"))  # the host's login is used, not ours
    if is_api():
        if host is not None and not request.headers.get("Authorization"):
            return _authorize_host(host, api=True)
        return _authorize_api()
    if request.method not in SAFE_METHODS and not _csrf_ok():
        return _refuse(403, "csrf_failed", "the form expired or did not come from this site; reload the page and try again")
    if getattr(view, "_lexyjobs_public", False) or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if host is not None:
        return _authorize_host(host, api=False)
    who = _session_identity()
    if who is None:
        if request.method in SAFE_METHODS and not request.headers.get("HX-Request"):
            return redirect(url_for("lexyjobs.login.login", next=request.script_root + request.full_path.rstrip("?")))
        response = _refuse(401, "login_required", "log in first")
        response.headers["HX-Redirect"] = url_for("lexyjobs.login.login")
        return response
    g.identity = who
    return None


def _authorize_host(host: Any, *, api: bool) -> BaseResponse | None:
    """Ask the host app's ``authorize``; API calls that change something also need our CSRF header."""
    answer = host(request)
    if isinstance(answer, BaseResponse):
        if api:
            return _refuse(401, "unauthorized", "log into the app first, or send an API token as 'Authorization: Bearer <token>'")
        return answer
    if answer is None:
        return _refuse(403, "forbidden", "your account may not use the jobs panel")
    g.identity = host_identity(answer)
    if api and request.method not in SAFE_METHODS and not _csrf_ok(header_only=True):
        return _refuse(403, "csrf_failed", f"send the page's CSRF token in the {CSRF_HEADER} header")
    return None


def _authorize_api() -> Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refuse(401, "unauthorized", "send an API token as 'Authorization: Bearer <token>'")
    lexy = current()
    who = accounts.token_identity(lexy.db, token.strip(), env_token=lexy.settings.api_token)
    if who is None:
        return _refuse(401, "unauthorized", "the API token is unknown or revoked")
    g.identity = who
    return None


def _session_identity() -> Identity | None:
    uid, epoch = session.get("lexyjobs_uid"), session.get("lexyjobs_epoch")
    if not isinstance(uid, int) or not isinstance(epoch, int):
        return None
    return accounts.session_identity(current().db, uid, epoch)


def _csrf_ok(*, header_only: bool = False) -> bool:
    expected = session.get("lexyjobs_csrf")
    sent = request.headers.get(CSRF_HEADER) or ("" if header_only else request.form.get("csrf_token", ""))
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def _refuse(status: int, code: str, message: str) -> Response:
    """JSON for the API and htmx, an error page for a browser form."""
    if is_api() or request.headers.get("HX-Request"):
        response = jsonify(error={"code": code, "message": message, "details": None})
    else:
        response = make_response(render_template("lexyjobs/error.html", status=status, message=message))
    response.status_code = status
    if status == 401 and is_api():
        response.headers["WWW-Authenticate"] = 'Bearer realm="lexyjobs"'
    return response


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in PUBLIC_ENDPOINTS:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
