"""Single sign-on with OpenID Connect against a real provider process (tests/oidc_provider.py):
first sign-in creates the user with the mapped role, later ones keep the role in step with the
provider's groups, and every refusal (tampered or replayed state, wrong nonce, expired or wrongly
signed ID token, disallowed domain, no role, wrong client secret, the provider saying no or not
answering) is a clear page and an audit entry, with nobody signed in. Both databases."""
from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from oidc_provider import OidcProvider, TamperingFront, authorize, free_port
from sqlalchemy import select
from werkzeug.test import TestResponse

from hostapp import make_host
from lexyjobs import accounts, create_app
from lexyjobs.config import load_settings
from lexyjobs.models import AuditEntry, User
from lexyjobs.sso_users import SsoPolicy

CALLBACK = "http://localhost/login/sso/callback"  # where the Flask test client's app lives
ROLES = ("lexyjobs-admins=admin", "lexyjobs-ops=operator")


@pytest.fixture
def sso_config(app_config: dict[str, Any], oidc_provider: OidcProvider) -> dict[str, Any]:
    client_id, secret = oidc_provider.register(CALLBACK)
    return {**app_config, "oidc_issuer": oidc_provider.url, "oidc_client_id": client_id,
            "oidc_client_secret": secret, "oidc_name": "Mock ID", "oidc_roles": ",".join(ROLES),
            "oidc_allowed_domains": "example.com"}


@pytest.fixture
def make_sso_app(sso_config: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(**changes: Any) -> Flask:
        application = create_app({**sso_config, **changes})
        application.extensions["lexyjobs"].prepare()
        made.append(application)
        return application
    yield make
    for application in made:
        application.extensions["lexyjobs"].db.dispose()


@pytest.fixture
def sso_app(make_sso_app: Callable[..., Flask]) -> Flask:
    return make_sso_app()


@pytest.fixture
def person(oidc_provider: OidcProvider, request: pytest.FixtureRequest) -> str:
    """A user at the provider, unique to the test (the provider outlives it): ``<sub>``, email at example.com."""
    sub = f"{request.node.name.split('[')[0][-40:].replace('_', '-')}-{id(request)}"
    oidc_provider.set_user(sub, email=f"{sub}@example.com", email_verified=True, groups=["lexyjobs-admins"])
    return sub


def start(client: FlaskClient, next_path: str | None = None) -> str:
    """Click "Sign in with …": the provider's authorization URL lexyjobs redirects to."""
    response = client.get("/login/sso" + (f"?{urlencode({'next': next_path})}" if next_path else ""))
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.location


def come_back(client: FlaskClient, location: str) -> TestResponse:
    """Follow the provider's redirect back to lexyjobs' callback."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK, location
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(client: FlaskClient, sub: str, next_path: str | None = None) -> TestResponse:
    return come_back(client, authorize(start(client, next_path), sub))


def user(app: Flask, username: str) -> User | None:
    with app.extensions["lexyjobs"].db.read() as session:
        return accounts.get_user(session, username)


def audit_entries(app: Flask, action: str) -> list[AuditEntry]:
    with app.extensions["lexyjobs"].db.read() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def assert_refused(app: Flask, client: FlaskClient, response: TestResponse, reason: str, words: str,
                   *, status: int = 403) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code == status, page[:2000]
    assert words in page, page[page.find("<main"):]
    assert "Traceback" not in page
    refusals = audit_entries(app, "login.sso_refused")
    assert refusals and refusals[-1].details["reason"] == reason, [r.details for r in refusals]
    home = client.get("/")
    assert home.status_code == 302 and urlsplit(home.location).path == "/login"  # nobody signed in


# ------------------------------------------------------------------ signing in


def test_the_first_sign_in_creates_the_user_with_the_mapped_role(sso_app, person, oidc_provider):
    client = sso_app.test_client()
    response = sign_in(client, person, next_path="/jobs")
    assert response.status_code == 302 and response.location == "/jobs"
    page = client.get("/").get_data(as_text=True)
    assert f"{person}@example.com" in page and "admin" in page
    created = user(sso_app, f"{person}@example.com")
    assert created is not None
    assert (created.source, created.role, created.subject) == ("oidc", "admin", f"{oidc_provider.url} {person}")
    assert created.last_login_at is not None
    assert accounts.authenticate(sso_app.extensions["lexyjobs"].db, created.username, "!oidc") is None
    signed_in = audit_entries(sso_app, "login.sso")
    assert [(e.actor, e.target, e.details) for e in signed_in] == [
        (created.username, created.username, {"provider": oidc_provider.url})]


def test_the_role_follows_the_provider_groups_at_every_sign_in(sso_app, person, oidc_provider):
    name = f"{person}@example.com"
    seen = []
    for groups in (["lexyjobs-admins"], ["lexyjobs-ops", "other"], ["lexyjobs-ops", "lexyjobs-admins"], []):
        oidc_provider.set_user(person, email=name, email_verified=True, groups=groups)
        assert sign_in(sso_app.test_client(), person).status_code == 302
        seen.append(user(sso_app, name).role)  # type: ignore[union-attr]
    assert seen == ["admin", "operator", "admin", "viewer"]  # the highest match; none: the default role
    with sso_app.extensions["lexyjobs"].db.read() as session:
        assert session.scalars(select(User).where(User.username == name)).all().__len__() == 1


def test_without_a_mapping_the_role_an_admin_gave_is_kept(make_sso_app, person):
    app = make_sso_app(oidc_roles="", oidc_default_role="operator")
    name = f"{person}@example.com"
    assert sign_in(app.test_client(), person).status_code == 302
    assert user(app, name).role == "operator"  # type: ignore[union-attr]
    accounts.set_role(app.extensions["lexyjobs"].db, name, "admin")
    assert sign_in(app.test_client(), person).status_code == 302
    assert user(app, name).role == "admin"  # type: ignore[union-attr]


def test_the_login_page_offers_the_provider_and_logout_ends_the_session(sso_app, person):
    client = sso_app.test_client()
    page = client.get("/login?next=/runs").get_data(as_text=True)
    assert "Sign in with Mock ID" in page and 'href="/login/sso?next=/runs"' in page
    assert 'name="password"' in page  # password login stays on unless turned off
    sign_in(client, person)
    token = client.get("/").get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    home = client.get("/")
    assert home.status_code == 302 and urlsplit(home.location).path == "/login"
    assert [e.actor for e in audit_entries(sso_app, "logout")] == [f"{person}@example.com"]


def test_password_login_can_be_turned_off(make_sso_app, person):
    app = make_sso_app(password_login=False)
    accounts.add_user(app.extensions["lexyjobs"].db, "local", "local-password-1", "admin")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with Mock ID" in page and 'name="password"' not in page
    token = page.split('name="csrf-token" content="')[1].split('"')[0]
    refused = client.post("/login", data={"username": "local", "password": "local-password-1", "csrf_token": token})
    assert refused.status_code == 403 and "Password login is turned off" in refused.get_data(as_text=True)
    assert urlsplit(client.get("/").location).path == "/login"
    assert sign_in(client, person).status_code == 302 and client.get("/").status_code == 200


def test_the_authorization_request_uses_pkce_state_and_nonce(sso_app, person):
    client = sso_app.test_client()
    location = start(client)
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert len(query["nonce"]) >= 20 and len(query["state"]) >= 20 and query["scope"] == "openid email profile"
    assert query["redirect_uri"] == CALLBACK and query["response_type"] == "code"
    assert come_back(client, authorize(location, person)).status_code == 302


def test_states_under_way_are_bounded_in_the_session_cookie(sso_app, person):
    client = sso_app.test_client()
    locations = [start(client) for _ in range(6)]
    with client.session_transaction() as session:
        assert sum(key.startswith("_state_lexyjobs_sso_") for key in session) == 3
    assert come_back(client, authorize(locations[-1], person)).status_code == 302  # the newest still works


# ------------------------------------------------------------------ refusals


def test_a_tampered_missing_or_replayed_state_is_refused(sso_app, person):
    client = sso_app.test_client()
    back = authorize(start(client), person)
    tampered = back.replace("state=", "state=x")
    assert_refused(sso_app, client, come_back(client, tampered), "state", "state does not match")
    assert_refused(sso_app, client, client.get("/login/sso/callback?code=abc"), "state", "state does not match")
    other = sso_app.test_client()  # login CSRF: the attacker's own callback, opened in the victim's browser
    assert_refused(sso_app, other, come_back(other, back), "state", "state does not match")
    assert come_back(client, back).status_code == 302  # the untampered one, in its own browser, signs in
    replay = come_back(client, back)
    assert replay.status_code == 403 and "state does not match" in replay.get_data(as_text=True)


@pytest.mark.parametrize("mode, words", [("nonce", "issued for another sign-in"),
                                          ("signature", "not signed by the provider")])
def test_an_id_token_with_another_nonce_or_not_signed_by_the_provider_is_refused(make_sso_app, oidc_provider, person,
                                                                                 mode, words):
    front = TamperingFront(oidc_provider, mode)
    try:
        client_id, secret = oidc_provider.register(CALLBACK)
        app = make_sso_app(oidc_issuer=front.url, oidc_client_id=client_id, oidc_client_secret=secret)
        client = app.test_client()
        assert_refused(app, client, sign_in(client, person), mode, words)
    finally:
        front.stop()
    assert user(app, f"{person}@example.com") is None


def test_an_expired_id_token_is_refused(make_sso_app):
    provider = OidcProvider(token_max_age=-600)  # beyond the two minutes of clock leeway
    try:
        client_id, secret = provider.register(CALLBACK)
        provider.set_user("late", email="late@example.com", email_verified=True, groups=["lexyjobs-admins"])
        app = make_sso_app(oidc_issuer=provider.url, oidc_client_id=client_id, oidc_client_secret=secret)
        client = app.test_client()
        assert_refused(app, client, sign_in(client, "late"), "expired", "has expired")
    finally:
        provider.stop()


@pytest.mark.parametrize("claims", [
    {"email": "mallory@evil.example", "email_verified": True},
    {"email": "mallory@example.com", "email_verified": False},
    {"email": "mallory@sub.example.com.evil.example", "email_verified": True},
], ids=["other domain", "unverified", "look-alike"])
def test_an_address_outside_the_allowed_domains_is_refused(make_sso_app, oidc_provider, claims):
    app = make_sso_app(oidc_username_claim="sub")
    sub = f"mallory-{len(claims['email'])}-{claims['email_verified']}".lower()
    oidc_provider.set_user(sub, groups=["lexyjobs-admins"], **claims)
    client = app.test_client()
    assert_refused(app, client, sign_in(client, sub), "domain", "may not sign in here")
    assert audit_entries(app, "login.sso_refused")[-1].actor == sub
    assert user(app, sub) is None


def test_no_role_means_refused_when_the_default_role_is_none(make_sso_app, oidc_provider, person):
    app = make_sso_app(oidc_default_role="none")
    oidc_provider.set_user(person, email=f"{person}@example.com", email_verified=True, groups=["marketing"])
    client = app.test_client()
    assert_refused(app, client, sign_in(client, person), "no_role", "has no lexyjobs role")
    assert user(app, f"{person}@example.com") is None


def test_a_local_user_of_the_same_name_is_not_taken_over(sso_app, person):
    name = f"{person}@example.com"
    accounts.add_user(sso_app.extensions["lexyjobs"].db, name, "local-password-1", "viewer")
    client = sso_app.test_client()
    assert_refused(sso_app, client, sign_in(client, person), "name_taken", "will not take it over")
    kept = user(sso_app, name)
    assert kept is not None and (kept.source, kept.subject, kept.role) == ("local", None, "viewer")


def test_a_wrong_client_secret_and_a_denial_are_the_provider_saying_no(make_sso_app, sso_config, person):
    app = make_sso_app(oidc_client_secret="not-the-secret")
    client = app.test_client()
    assert_refused(app, client, sign_in(client, person), "provider_error", "The provider did not sign you in")
    app = make_sso_app()
    client = app.test_client()
    answer = __import__("requests").post(start(client), data={"action": "deny"}, allow_redirects=False, timeout=5)
    assert_refused(app, client, come_back(client, answer.headers["Location"]), "provider_error", "access_denied")


def test_a_provider_that_does_not_answer_is_a_clear_502(make_sso_app):
    app = make_sso_app(oidc_issuer=f"http://127.0.0.1:{free_port()}")
    client = app.test_client()
    assert_refused(app, client, client.get("/login/sso"), "unreachable", "did not answer", status=502)


def test_a_provider_naming_another_issuer_is_refused(make_sso_app, oidc_provider):
    front = TamperingFront(oidc_provider, "issuer")
    try:
        app = make_sso_app(oidc_issuer=front.url)
        client = app.test_client()
        assert_refused(app, client, client.get("/login/sso"), "issuer", f"says its issuer is &#39;{oidc_provider.url}")
    finally:
        front.stop()


def test_refusals_are_counted_on_one_audit_row_per_client(sso_app):
    client = sso_app.test_client()
    for _ in range(5):
        client.get("/login/sso/callback?state=forged&code=forged")
    rows = audit_entries(sso_app, "login.sso_refused")
    assert [(r.actor, r.details["count"], r.details["reason"]) for r in rows] == [("-", 5, "state")]


# ------------------------------------------------------------------ users on both databases


def test_sso_users_are_stored_and_found_by_subject(db_url, sso_app, person, oidc_provider):
    name = f"{person}@example.com"
    assert sign_in(sso_app.test_client(), person).status_code == 302
    oidc_provider.set_user(person, email=name, email_verified=True, groups=["lexyjobs-admins"], name="Renamed")
    assert sign_in(sso_app.test_client(), person).status_code == 302
    with sso_app.extensions["lexyjobs"].db.read() as session:
        rows = session.scalars(select(User).where(User.source == "oidc")).all()
    assert [(row.username, row.subject) for row in rows] == [(name, f"{oidc_provider.url} {person}")]


# ------------------------------------------------------------------ embedded in a host app


def test_embedded_without_authorize_signs_in_under_the_mount_point(tmp_path, db_url, oidc_provider, person):
    client_id, secret = oidc_provider.register("http://localhost/admin/jobs/login/sso/callback")
    host, jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs", config={
        "oidc_issuer": oidc_provider.url, "oidc_client_id": client_id, "oidc_client_secret": secret,
        "oidc_roles": ",".join(ROLES)})
    jobs.runtime.prepare()
    client = host.test_client()
    client.get("/remember/host-data")  # the host's own session keys survive our sign-in
    began = client.get("/admin/jobs/login/sso?next=/admin/jobs/runs")
    assert began.status_code == 302
    back = urlsplit(authorize(began.location, person))
    assert back.path == "/admin/jobs/login/sso/callback"
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302 and done.location == "/admin/jobs/runs"
    assert f"{person}@example.com" in client.get("/admin/jobs/").get_data(as_text=True)
    assert client.get("/recall").get_data(as_text=True) == "host-data"
    jobs.runtime.db.dispose()


def test_embedded_with_authorize_the_host_login_wins(tmp_path, db_url, oidc_provider):
    client_id, secret = oidc_provider.register(CALLBACK)
    host, jobs = make_host(tmp_path, db_url, url_prefix="/admin/jobs", authorize=lambda request: "admin", config={
        "oidc_issuer": oidc_provider.url, "oidc_client_id": client_id, "oidc_client_secret": secret})
    jobs.runtime.prepare()
    client = host.test_client()
    for path in ("/admin/jobs/login/sso", "/admin/jobs/login/sso/callback?state=x&code=y"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.location == "/admin/jobs/", path
    assert audit_entries_of(jobs.runtime.db, "login.sso_refused") == []
    jobs.runtime.db.dispose()


def audit_entries_of(db: Any, action: str) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_without_single_sign_on_its_routes_are_not_found(app, lj):
    client = app.test_client()
    assert client.get("/login/sso").status_code == 404
    assert client.get("/login/sso/callback?state=x").status_code == 404
    assert "Sign in with" not in client.get("/login").get_data(as_text=True)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("changes, words", [
    ({"oidc_issuer": "http://idp.example.com"}, "LEXYJOBS_OIDC_ISSUER must be an https:// URL"),
    ({"oidc_issuer": "idp.example.com"}, "LEXYJOBS_OIDC_ISSUER must be an https:// URL"),
    ({"oidc_client_id": ""}, "LEXYJOBS_OIDC_CLIENT_ID is needed"),
    ({"oidc_client_secret": None}, "LEXYJOBS_OIDC_CLIENT_SECRET is needed"),
    ({"oidc_issuer": None}, "LEXYJOBS_OIDC_CLIENT_ID needs LEXYJOBS_OIDC_ISSUER"),
    ({"oidc_issuer": None, "oidc_client_id": None, "oidc_client_secret": None, "password_login": False},
     "LEXYJOBS_PASSWORD_LOGIN can be false only with single sign-on"),
    ({"oidc_scopes": "email profile"}, "LEXYJOBS_OIDC_SCOPES must include openid"),
    ({"oidc_roles": "admins=root"}, "LEXYJOBS_OIDC_ROLES has 'admins=root'"),
    ({"oidc_roles": "=admin"}, "LEXYJOBS_OIDC_ROLES has '=admin'"),
    ({"oidc_default_role": "guest"}, "LEXYJOBS_OIDC_DEFAULT_ROLE must be one of viewer, operator, admin or none"),
])
def test_bad_single_sign_on_settings_stop_with_one_line(changes, words):
    settings = {"oidc_issuer": "https://idp.example.com", "oidc_client_id": "lexyjobs", "oidc_client_secret": "s",
                **changes}
    with pytest.raises(SystemExit) as stopped:
        load_settings(settings, environ={})
    assert words in str(stopped.value) and "\n" not in str(stopped.value)


def test_good_single_sign_on_settings_are_read_from_the_environment():
    settings = load_settings(environ={
        "LEXYJOBS_OIDC_ISSUER": "https://keycloak.example.com/realms/team", "LEXYJOBS_OIDC_CLIENT_ID": "lexyjobs",
        "LEXYJOBS_OIDC_CLIENT_SECRET": "s3cret", "LEXYJOBS_OIDC_ROLES": "lexyjobs-admins=admin, ops=operator",
        "LEXYJOBS_OIDC_ALLOWED_DOMAINS": "example.com,@example.org", "LEXYJOBS_OIDC_DEFAULT_ROLE": "none",
        "LEXYJOBS_PASSWORD_LOGIN": "false"})
    policy = SsoPolicy.from_settings(settings)
    assert policy.roles == {"lexyjobs-admins": "admin", "ops": "operator"}
    assert policy.allowed_domains == ("example.com", "example.org") and policy.default_role is None
    assert settings.password_login is False


def test_the_settings_page_shows_how_users_sign_in_but_never_the_client_secret(sso_app, sso_config, person):
    client = sso_app.test_client()
    sign_in(client, person)
    accounts.add_user(sso_app.extensions["lexyjobs"].db, "local", "local-password-1", "viewer")
    page = client.get("/settings").get_data(as_text=True)
    assert sso_config["oidc_client_secret"] not in page
    assert "LEXYJOBS_OIDC_CLIENT_SECRET" in page and "single sign-on" in page and "password" in page
    rows = [row for row in page.split("<tr>") if 'data-label="Signs in with"' in row]
    assert any(f"<td>{person}@example.com" in row and ">single sign-on<" in row for row in rows), rows
    assert any("<td>local<" in row and 'Signs in with">password<' in row for row in rows), rows


def test_a_claim_missing_from_the_id_token_is_looked_up_at_userinfo_then_refused_clearly(make_sso_app, oidc_provider,
                                                                                       person):
    oidc_provider.set_user(person, email=f"{person}@example.com", email_verified=True, nickname="nick",
                           groups=["lexyjobs-admins"])
    app = make_sso_app(oidc_username_claim="nickname", oidc_scopes="openid email")  # no profile scope: no nickname
    client = app.test_client()
    assert_refused(app, client, sign_in(client, person), "no_username", "sent no &#39;nickname&#39; claim")
    app = make_sso_app(oidc_username_claim="nickname")  # with the profile scope it is there
    assert sign_in(app.test_client(), person).status_code == 302
    assert user(app, "nick") is not None


def test_a_provider_that_goes_away_before_the_return_is_a_clear_502(make_sso_app):
    provider = OidcProvider()
    try:
        client_id, secret = provider.register(CALLBACK)
        provider.set_user("gone", email="gone@example.com", email_verified=True)
        app = make_sso_app(oidc_issuer=provider.url, oidc_client_id=client_id, oidc_client_secret=secret)
        client = app.test_client()
        back = authorize(start(client), "gone")
    finally:
        provider.stop()
    assert_refused(app, client, come_back(client, back), "unreachable", "did not answer", status=502)
