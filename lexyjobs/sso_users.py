"""Who a verified OpenID Connect sign-in is in lexyjobs: the policy (allowed email domains, claim →
role mapping, default role) and the user it finds or creates.

A user is matched by ``subject``, ``"<issuer> <sub>"``: the provider's stable id, never the email,
which an account at the provider may change or reuse. The first sign-in creates the user (source
``oidc``, no password) under the name the username claim gives; a local user holding that name
is never taken over. With ``LEXYJOBS_OIDC_ROLES`` set, the provider decides the role at every
sign-in (moving someone out of the admins group demotes them at their next sign-in); without
it, a new user gets the default role and an admin changes it in the panel as for anyone."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lexyjobs.accounts import ROLES, USERNAME_CHARS, Identity, get_user
from lexyjobs.config import Settings
from lexyjobs.db import Database, utcnow
from lexyjobs.models import User

NO_PASSWORD = "!oidc"  # not a werkzeug hash: no password ever matches it


class SsoRefused(Exception):
    """A sign-in lexyjobs will not accept; ``reason`` goes to the audit log, the message to the page."""

    def __init__(self, reason: str, message: str, *, username: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.username = reason, message, username


@dataclass(frozen=True)
class SsoPolicy:
    issuer: str
    username_claim: str = "email"
    allowed_domains: tuple[str, ...] = ()
    role_claim: str = "groups"
    roles: Mapping[str, str] = field(default_factory=dict)
    default_role: str | None = "viewer"

    @classmethod
    def from_settings(cls, settings: Settings) -> SsoPolicy:
        assert settings.oidc_issuer is not None
        roles = dict(entry.split("=", 1) for entry in settings.oidc_roles)
        return cls(issuer=settings.oidc_issuer, username_claim=settings.oidc_username_claim,
                   allowed_domains=tuple(domain.lower().lstrip("@") for domain in settings.oidc_allowed_domains),
                   role_claim=settings.oidc_role_claim,
                   roles={value.strip(): role.strip() for value, role in roles.items()},
                   default_role=None if settings.oidc_default_role == "none" else settings.oidc_default_role)

    def username(self, claims: Mapping[str, Any]) -> str:
        value = claims.get(self.username_claim)
        if not isinstance(value, str) or not value.strip():
            raise SsoRefused("no_username", f"The provider sent no '{self.username_claim}' claim to name you by; "
                             "an admin can pick another claim with LEXYJOBS_OIDC_USERNAME_CLAIM.")
        name = value.strip().lower()
        if len(name) > 100 or not set(name) <= USERNAME_CHARS:
            raise SsoRefused("bad_username", f"'{value[:100]}' cannot be a lexyjobs user name (1–100 characters of "
                             "a-z, 0-9, '_', '.', '-' or '@'); an admin can pick another claim with "
                             "LEXYJOBS_OIDC_USERNAME_CLAIM.", username=value[:100])
        return name

    def check_domain(self, claims: Mapping[str, Any], username: str) -> None:
        if not self.allowed_domains:
            return
        email = claims.get("email")
        domain = email.rpartition("@")[2].lower() if isinstance(email, str) and "@" in email else None
        if domain not in self.allowed_domains or claims.get("email_verified") is False:
            shown = email if isinstance(email, str) else "an account without an email address"
            raise SsoRefused("domain", f"{shown} may not sign in here: only verified addresses at "
                             f"{', '.join(self.allowed_domains)} may.", username=username)

    def role(self, claims: Mapping[str, Any]) -> str | None:
        """The highest role a claim value maps to, else the default role (None: refused)."""
        values = claims.get(self.role_claim)
        if isinstance(values, str):
            values = [values]
        found = [self.roles[value] for value in values or () if isinstance(value, str) and value in self.roles]
        return max(found, key=ROLES.index) if found else self.default_role


def sign_in(db: Database, policy: SsoPolicy, claims: Mapping[str, Any]) -> Identity:
    """The identity for verified ID token ``claims``: the user is created or updated (role,
    last login) in one transaction. Raises SsoRefused."""
    username = policy.username(claims)
    policy.check_domain(claims, username)
    role = policy.role(claims)
    if role is None:
        raise SsoRefused("no_role", f"{username} has no lexyjobs role: ask an admin to add you to a group that "
                         "LEXYJOBS_OIDC_ROLES maps to a role.", username=username)
    subject = f"{policy.issuer} {claims['sub']}"
    try:
        return _upsert(db, policy, subject, username, role)
    except IntegrityError:  # the same person's first sign-in in another tab, at the same moment
        return _upsert(db, policy, subject, username, role)


def _upsert(db: Database, policy: SsoPolicy, subject: str, username: str, role: str) -> Identity:
    now = utcnow()
    with db.write() as session:
        user = session.scalars(select(User).where(User.subject == subject)).first()
        if user is None:
            if get_user(session, username) is not None:
                raise SsoRefused("name_taken", f"A local user named '{username}' already exists, so single sign-on "
                                 "will not take it over; an admin must remove or rename it first.", username=username)
            user = User(username=username, password_hash=NO_PASSWORD, role=role, session_epoch=0, created_at=now,
                        updated_at=now, source="oidc", subject=subject)
            session.add(user)
        elif policy.roles and user.role != role:
            user.role, user.updated_at = role, now
        user.last_login_at = now
        session.flush()
        return Identity(user.username, user.role, "user", user.id, user.session_epoch)
