"""The host app's login: ``Lexyjobs(app, authorize=callable)``.

The callable sees the request and answers with a role (``"viewer"`` / ``"operator"`` / ``"admin"``),
a ``HostUser(name, role)``, a Response (sent as is, e.g. a redirect to the host's login page; the
JSON API answers 401 instead) or None (403). This module turns that answer into an ``Identity``
so role checks and the audit log work and name the host's user."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

if TYPE_CHECKING:
    from lexyjobs.accounts import Identity


@dataclass(frozen=True)
class HostUser:
    """A user of the host app as ``authorize`` may return it: ``HostUser("alice", "operator")``."""

    name: str
    role: str


Authorize = Callable[[Any], Union[str, HostUser, Any, None]]


class HostAuthorizeError(TypeError):
    """``authorize`` answered something lexyjobs cannot use (a programming error of the host)."""


def host_identity(answer: object) -> Identity:
    """The Identity for a role string or a HostUser answer (raises HostAuthorizeError otherwise)."""
    from lexyjobs.accounts import ROLES, Identity

    if isinstance(answer, HostUser):
        name, role = answer.name, answer.role
    elif isinstance(answer, str):
        name, role = _login_manager_user() or "host", answer
    else:
        raise HostAuthorizeError(f"authorize() returned {answer!r}: expected a role, a HostUser, a Response or None")
    if role not in ROLES:
        raise HostAuthorizeError(f"authorize() returned role {role!r}: expected one of {', '.join(ROLES)}")
    return Identity(str(name) or "host", role, "user")


def _login_manager_user() -> str | None:
    """Flask-Login's current user's username (or id), when Flask-Login is installed and set up."""
    try:
        from flask import current_app
        from flask_login import current_user  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not hasattr(current_app, "login_manager"):
        return None
    user = current_user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    for attribute in ("username", "name", "email"):
        value = getattr(user, attribute, None)
        if isinstance(value, str) and value:
            return value
    get_id = getattr(user, "get_id", None)
    return str(get_id()) if callable(get_id) else None
