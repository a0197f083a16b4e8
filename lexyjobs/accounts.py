"""Users, roles and API tokens: who may do what.

Roles are ordered: ``viewer`` reads; ``operator`` also runs, cancels, retries, pauses and resumes;
``admin`` also creates, edits and deletes jobs, users and tokens. Passwords are hashed with
werkzeug's scrypt; API tokens are 256 random bits shown once and stored as their SHA-256."""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from lexyjobs.config import ROLES
from lexyjobs.db import Database, utcnow
from lexyjobs.errors import Conflict, LexyjobsError, NotFound
from lexyjobs.models import ApiToken, User

MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "lxj_"
LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most once a minute per token
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-@")


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown users' passwords against (equal cost). Made on first use: scrypt
    takes ~80 ms, which every process (CLI commands included) would otherwise pay at import."""
    return generate_password_hash(secrets.token_hex(16))


class InvalidAccount(LexyjobsError):
    """The user or token is invalid."""

    status_code = 422
    code = "invalid_account"


@dataclass(frozen=True)
class Identity:
    """Who is acting: a user (panel), a token (API), the env bootstrap token or the CLI."""

    name: str
    role: str
    kind: str  # user | token | cli
    user_id: int | None = None
    session_epoch: int = 0

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        """The name written to the audit log: ``alice``, ``token:ci``, ``cli:root``."""
        return self.name if self.kind == "user" else f"{self.kind}:{self.name}"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidAccount(f"role '{role}' is not one of {', '.join(ROLES)}", details={"field": "role"})
    return role


def check_username(username: str) -> str:
    if not 1 <= len(username) <= 100 or not set(username) <= USERNAME_CHARS:
        raise InvalidAccount("username must be 1–100 characters of a-z, 0-9, '_', '.', '-' or '@'",
                             details={"field": "username"})
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidAccount(f"password must be at least {MIN_PASSWORD_LENGTH} characters",
                             details={"field": "password"})
    return password


# ---- users

def get_user(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).first()


def list_users(db: Database) -> list[User]:
    with db.read() as session:
        return list(session.scalars(select(User).order_by(User.username)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def add_user(db: Database, username: str, password: str, role: str) -> User:
    """Create a user. Conflict if the name is taken."""
    check_username(username)
    check_password(password)
    check_role(role)
    now = utcnow()
    user = User(username=username, password_hash=generate_password_hash(password), role=role,
                session_epoch=0, created_at=now, updated_at=now)
    try:
        with db.write() as session:
            if get_user(session, username) is not None:
                raise Conflict(f"a user named '{username}' already exists", details={"username": username})
            session.add(user)
    except IntegrityError:
        raise Conflict(f"a user named '{username}' already exists", details={"username": username}) from None
    return user


def set_password(db: Database, username: str, password: str, *, role: str | None = None) -> None:
    """Change a user's password (and role), ending their existing sessions."""
    check_password(password)
    values: dict[str, object] = {"password_hash": generate_password_hash(password), "updated_at": utcnow(),
                                 "session_epoch": User.session_epoch + 1}
    if role is not None:
        values["role"] = check_role(role)
    with db.write() as session:
        if role is not None and role != "admin":
            _keep_an_admin(session, username)
        done = session.execute(update(User).where(User.username == username).values(**values)).rowcount  # type: ignore[attr-defined]
    if not done:
        raise NotFound(f"no user named '{username}'", details={"username": username})


def set_role(db: Database, username: str, role: str) -> str:
    """Change a user's role; returns the role it had. The last admin cannot be demoted. Sessions
    read the role from the database on every request, so it applies at once."""
    check_role(role)
    with db.write() as session:
        user = get_user(session, username)
        if user is None:
            raise NotFound(f"no user named '{username}'", details={"username": username})
        before = user.role
        if role != "admin":
            _keep_an_admin(session, username)
        user.role, user.updated_at = role, utcnow()
    return before


def remove_user(db: Database, username: str) -> None:
    with db.write() as session:
        _keep_an_admin(session, username)
        done = session.execute(delete(User).where(User.username == username)).rowcount  # type: ignore[attr-defined]
    if not done:
        raise NotFound(f"no user named '{username}'", details={"username": username})


def _keep_an_admin(session: Session, username: str) -> None:
    """Refuse to remove or demote the last admin: nobody could manage users and jobs any more."""
    admins = list(session.scalars(select(User.username).where(User.role == "admin")))
    if admins == [username]:
        raise Conflict(f"'{username}' is the last admin; make another user admin first",
                       details={"username": username})


def end_sessions(db: Database, user_id: int) -> None:
    """Log the user out everywhere (every cookie carrying the old epoch stops working)."""
    with db.write() as session:
        session.execute(update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1))


def authenticate(db: Database, username: str, password: str) -> Identity | None:
    """The user's identity if the password is right, else None (same cost either way)."""
    if len(username) > 100 or not set(username) <= USERNAME_CHARS:
        check_password_hash(_dummy_hash(), password)
        return None
    with db.read() as session:
        user = get_user(session, username)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    with db.write() as session:
        session.execute(update(User).where(User.id == user.id).values(last_login_at=utcnow()))
    return Identity(user.username, user.role, "user", user.id, user.session_epoch)


def session_identity(db: Database, user_id: int, epoch: int) -> Identity | None:
    """The identity of a logged-in session, if the user still exists and the session is current."""
    with db.read() as session:
        user = session.get(User, user_id)
    if user is None or user.session_epoch != epoch:
        return None
    return Identity(user.username, user.role, "user", user.id, user.session_epoch)


def ensure_admin(db: Database, password: str | None) -> str | None:
    """Make sure someone can log in. With ``password``: create or update user ``admin`` with it.
    Without: if there are no users, create ``admin`` with a generated password and return it
    (the caller prints it once). Returns None when nothing was generated."""
    if password is not None:
        with db.read() as session:  # a restart finds the admin: one hash check, not a hash and a check
            user = get_user(session, "admin")
        if user is not None and user.role == "admin" and check_password_hash(user.password_hash, password):
            return None
        try:
            add_user(db, "admin", password, "admin")
        except Conflict:  # it exists (or another process just made it): set the role and password
            set_password(db, "admin", password, role="admin")
        return None
    with db.read() as session:
        if count_users(session):
            return None
    generated = secrets.token_urlsafe(12)
    try:
        add_user(db, "admin", generated, "admin")
    except Conflict:  # another process created it at the same moment; it printed its password
        return None
    return generated


# ---- API tokens

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, name: str, role: str, *, created_by: str | None = None) -> str:
    """Create a token and return it; it is never shown again."""
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise InvalidAccount("token name must be 1–100 printable characters", details={"field": "name"})
    check_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=hash_token(token), prefix=token[:len(TOKEN_PREFIX) + 4], role=role,
                   created_by=created_by, created_at=utcnow())
    try:
        with db.write() as session:
            existing = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
            if existing is not None:
                raise Conflict(f"a token named '{name}' already exists", details={"name": name})
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a token named '{name}' already exists", details={"name": name}) from None
    return token


def list_tokens(db: Database) -> list[ApiToken]:
    with db.read() as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(db: Database, name: str) -> None:
    with db.write() as session:
        done = session.execute(update(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
                               .values(revoked_at=utcnow())).rowcount  # type: ignore[attr-defined]
    if not done:
        raise NotFound(f"no active token named '{name}'", details={"name": name})


def token_identity(db: Database, token: str, *, env_token: str | None = None,
                   now: datetime | None = None) -> Identity | None:
    """The identity a bearer token stands for, or None. ``env_token`` (LEXYJOBS_API_TOKEN) is an
    admin token that lives only in the environment. Records when a stored token was last used."""
    if env_token and hmac.compare_digest(token.encode(), env_token.encode()):
        return Identity("LEXYJOBS_API_TOKEN", "admin", "token")
    if not token.startswith(TOKEN_PREFIX):
        return None
    now = now or utcnow()
    with db.read() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        with db.write() as session:
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return Identity(row.name, row.role, "token")
