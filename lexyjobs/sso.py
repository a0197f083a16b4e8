"""Single sign-on with OpenID Connect: ``GET /login/sso`` sends the browser to the provider,
``GET /login/sso/callback`` brings it back signed in.

Authlib does the protocol: the authorization code flow with PKCE (S256), a ``state`` kept in
the session and checked on return, a ``nonce`` checked in the ID token, whose signature is
verified against the provider's published keys and whose ``iss``, ``aud``, ``exp`` and ``iat``
are checked (two minutes of clock leeway). This module turns its errors into a clear page and an
audit entry (``login.sso_refused`` with the reason), and a verified token into a lexyjobs
session through ``lexyjobs.sso_users``. A successful sign-in is audited as ``login.sso``."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import audit
from lexyjobs.config import Settings
from lexyjobs.guard import public, start_session
from lexyjobs.redirects import safe_next
from lexyjobs.runtime import current
from lexyjobs.sso_users import SsoPolicy, SsoRefused, sign_in

if TYPE_CHECKING:
    from authlib.integrations.flask_client import FlaskOAuth2App

bp = Blueprint("sso", __name__)
NAME = "lexyjobs_sso"
STATE_PREFIX = f"_state_{NAME}_"  # Authlib's session keys for sign-ins under way
KEEP_STATES = 3  # sign-ins under way per browser (tabs); older ones are dropped from the cookie
TIMEOUT = 10.0  # seconds for each request to the provider


@dataclass
class SingleSignOn:
    """The configured provider: its Authlib client and who may sign in as what."""

    name: str
    policy: SsoPolicy
    client: FlaskOAuth2App

    @classmethod
    def from_settings(cls, settings: Settings) -> SingleSignOn:
        from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App

        assert settings.oidc_issuer is not None
        issuer = settings.oidc_issuer.rstrip("/")
        client = FlaskOAuth2App(FlaskIntegration(NAME), name=NAME, client_id=settings.oidc_client_id,
                                client_secret=settings.oidc_client_secret,
                                server_metadata_url=f"{issuer}/.well-known/openid-configuration",
                                client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256",
                                               "default_timeout": TIMEOUT})
        return cls(settings.oidc_name, SsoPolicy.from_settings(settings), client)

    def check_discovery(self) -> None:
        """Read the provider's metadata (once); it must name the configured issuer (OIDC Discovery §4.3)."""
        metadata = self.client.load_server_metadata()
        issuer = str(metadata.get("issuer", "")).rstrip("/")
        if issuer != self.policy.issuer.rstrip("/"):
            self.client.server_metadata = {}  # read again next time, once the setting is fixed
            raise SsoRefused("issuer", f"The provider says its issuer is '{issuer}', not LEXYJOBS_OIDC_ISSUER's "
                             f"'{self.policy.issuer}'; an admin must correct the setting.")


def configured() -> SingleSignOn | None:
    return current_app.extensions.get("lexyjobs_sso")  # type: ignore[no-any-return]


@bp.get("/login/sso")
@public
def start() -> BaseResponse | tuple[str, int]:
    sso = _sso()
    import requests  # as Authlib's client: only once single sign-on is configured
    target = safe_next(request.args.get("next")) or url_for("lexyjobs.panel.dashboard")
    back = url_for("lexyjobs.sso.callback", _external=True)
    try:
        sso.check_discovery()
        answer = sso.client.create_authorization_url(back)
    except SsoRefused as refusal:
        return _refused(refusal)
    except (requests.RequestException, ValueError) as exc:
        return _refused(_unreachable(exc))
    _prune_states(keep=KEEP_STATES - 1)
    sso.client.save_authorize_data(redirect_uri=back, next=target, **answer)
    return redirect(answer["url"])


@bp.get("/login/sso/callback")
@public
def callback() -> BaseResponse | tuple[str, int]:
    sso = _sso()
    import requests
    _prune_states(keep=KEEP_STATES)
    data = sso.client.framework.get_state_data(session, request.args.get("state", "")) or {}
    target = safe_next(data.get("next")) or url_for("lexyjobs.panel.dashboard")
    lexy = current()
    try:
        sso.check_discovery()
        who = sign_in(lexy.db, sso.policy, _verified_claims(sso))
    except SsoRefused as refusal:
        return _refused(refusal)
    except (requests.RequestException, ValueError) as exc:
        return _refused(_unreachable(exc))
    start_session(who)
    audit.record(lexy.db, who.actor, "login.sso", who.name, client=request.remote_addr,
                 details={"provider": sso.policy.issuer})
    return redirect(target)


def _verified_claims(sso: SingleSignOn) -> dict[str, Any]:
    """The ID token's claims once Authlib has checked state, code, signature and claims; the
    provider's userinfo fills in claims the ID token left out (some put groups only there).
    A provider that does not answer raises requests' errors (or ValueError for a bad body)."""
    from authlib.integrations.base_client import MismatchingStateError, OAuthError
    from joserfc.errors import ClaimError, ExpiredTokenError, JoseError

    try:
        token = sso.client.authorize_access_token()
    except MismatchingStateError:
        raise SsoRefused("state", "This sign-in did not start in this browser or was already used (the state "
                         "does not match). Start again from the login page.") from None
    except OAuthError as exc:
        said = f"{exc.error}: {exc.description}" if exc.description else exc.error
        raise SsoRefused("provider_error", f"The provider did not sign you in ({said}).") from None
    except ExpiredTokenError:
        raise SsoRefused("expired", "The provider's ID token has expired (are the clocks right?). Start again "
                         "from the login page.") from None
    except ClaimError as exc:
        reason = "nonce" if exc.claim == "nonce" else "claims"
        what = "was issued for another sign-in (nonce)" if reason == "nonce" else f"has a wrong '{exc.claim}' claim"
        raise SsoRefused(reason, f"The provider's ID token {what}, so it was refused. Start again from the "
                         "login page.") from None
    except JoseError:
        raise SsoRefused("signature", "The provider's ID token is not signed by the provider's keys, so it was "
                         "refused.") from None
    claims = token.get("userinfo")
    if not claims:
        raise SsoRefused("no_id_token", "The provider sent no ID token; is the `openid` scope granted?")
    claims = dict(claims)
    if _missing(sso.policy, claims) and sso.client.load_server_metadata().get("userinfo_endpoint"):
        extra = sso.client.userinfo(token=token)
        if extra.get("sub") == claims["sub"]:  # OIDC Core §5.3.2: else it is someone else's
            claims = {**extra, **claims}
    return claims


def _missing(policy: SsoPolicy, claims: dict[str, Any]) -> bool:
    wanted = {policy.username_claim} | ({policy.role_claim} if policy.roles else set())
    wanted |= {"email"} if policy.allowed_domains else set()
    return not wanted <= claims.keys()


def _unreachable(exc: Exception) -> SsoRefused:
    return SsoRefused("unreachable", f"The sign-in provider did not answer properly ({type(exc).__name__}); "
                      "try again later.")


def _refused(refusal: SsoRefused) -> tuple[str, int]:
    lexy = current()
    audit.record_refused(lexy.db, "login.sso_refused", refusal.username or "", client=request.remote_addr,
                         reason=refusal.reason)
    status = 502 if refusal.reason == "unreachable" else 403
    return render_template("lexyjobs/login.html", next=None, error=refusal.message), status


def _prune_states(*, keep: int) -> None:
    """Drop expired sign-ins under way, and all but the newest ``keep``: a session cookie must stay small."""
    now = time.time()
    under_way = sorted(((value.get("exp", 0), key) for key, value in session.items()
                        if key.startswith(STATE_PREFIX) and isinstance(value, dict)), reverse=True)
    for position, (expires, key) in enumerate(under_way):
        if expires < now or position >= keep:
            session.pop(key, None)


def _sso() -> SingleSignOn:
    sso = configured()
    if sso is None:
        raise NotFound()
    return sso


def init_app(app: Flask, parent: Blueprint) -> None:
    settings = app.extensions["lexyjobs"].settings
    if settings.oidc_issuer:
        app.extensions["lexyjobs_sso"] = SingleSignOn.from_settings(settings)
    parent.register_blueprint(bp)
