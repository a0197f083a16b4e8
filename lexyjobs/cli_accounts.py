"""``lexyjobs users …`` and ``lexyjobs tokens …``: panel logins and API tokens from the command line.
The CLI is trusted (it can reach the database directly), so it acts as an admin; every change is
written to the audit log as ``cli:<OS user>``. Loaded by lexyjobs.cli when one of
its commands runs; uses the helpers of lexyjobs.cli_commands."""
from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from typing import Any

import click
from flask.cli import with_appcontext

from lexyjobs import accounts, audit
from lexyjobs.cli import handle_errors as _handle_errors
from lexyjobs.cli_commands import _lexy, _reader, _table
from lexyjobs.errors import NotFound
from lexyjobs.models import ApiToken


def _actor() -> str:
    """``cli:<OS user>``, or ``cli`` when the OS cannot say who is running us."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (e.g. a bare container uid)
        return "cli"
    return accounts.Identity(user, "admin", "cli").actor if user else "cli"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _read_password(from_stdin: bool) -> str:
    """One line from stdin (for scripts), else an interactive prompt typed twice. Prompts go to
    stderr so stdout carries only results."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return password


def _require_user(username: str) -> None:
    """Fail before prompting for anything when the user does not exist."""
    lj = _lexy()
    with lj.db.read() as session:
        if accounts.get_user(session, username) is None:
            raise NotFound(f"no user named '{username}'", details={"username": username})


# ---------------------------------------------------------------- users


# Built directly (not with @click.group) so the type is declared.
users_group: click.Group = click.Group("users", help="Panel logins and their roles (viewer, operator, admin).")


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, metavar="|".join(accounts.ROLES), help="what the user may do")
@click.option("--password-stdin", is_flag=True, help="read the password from one line of stdin")
@with_appcontext
@_handle_errors
def users_add(name: str, role: str, password_stdin: bool) -> None:
    """Create a user; asks for the password twice unless --password-stdin."""
    accounts.check_username(name)
    accounts.check_role(role)
    lj = _lexy()
    password = _read_password(password_stdin)
    accounts.add_user(lj.db, name, password, role)
    audit.record(lj.db, _actor(), "user.add", name, client=None, details={"role": role})
    click.echo(f"added user {name} ({role})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@with_appcontext
@_handle_errors
def users_list(as_json: bool) -> None:
    """List users with their role, how they sign in (password or single sign-on), creation and last login (UTC)."""
    users = accounts.list_users(_reader().db)
    if as_json:
        click.echo(json.dumps([{"name": u.username, "role": u.role, "source": u.source, "created_at": u.created_at,
                                "last_login_at": u.last_login_at} for u in users], indent=2, default=str))
        return
    _table(("NAME", "ROLE", "SIGN-IN", "CREATED", "LAST LOGIN"),
           [(u.username, u.role, "sso" if u.source == "oidc" else "password", _when(u.created_at),
             _when(u.last_login_at)) for u in users])


@users_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask")
@with_appcontext
@_handle_errors
def users_remove(name: str, yes: bool) -> None:
    """Delete a user (their sessions stop working at once)."""
    _require_user(name)
    if not yes:
        click.confirm(f"Delete user {name}?", abort=True)
    lj = _lexy()
    accounts.remove_user(lj.db, name)
    audit.record(lj.db, _actor(), "user.remove", name, client=None)
    click.echo(f"removed user {name}")


@users_group.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from one line of stdin")
@with_appcontext
@_handle_errors
def users_set_password(name: str, password_stdin: bool) -> None:
    """Change a user's password; their existing sessions are logged out."""
    _require_user(name)
    lj = _lexy()
    accounts.set_password(lj.db, name, _read_password(password_stdin))
    audit.record(lj.db, _actor(), "user.set_password", name, client=None)
    click.echo(f"changed the password of {name}")


# ---------------------------------------------------------------- tokens


tokens_group: click.Group = click.Group("tokens", help="API bearer tokens (stored only as their SHA-256).")


@tokens_group.command("create")
@click.option("--name", required=True, help="a unique name, e.g. ci")
@click.option("--role", required=True, metavar="|".join(accounts.ROLES), help="what the token may do")
@with_appcontext
@_handle_errors
def tokens_create(name: str, role: str) -> None:
    """Create a token and print it on stdout, alone on its line; it is never shown again."""
    lj = _lexy()
    actor = _actor()
    token = accounts.create_token(lj.db, name, role, created_by=actor)
    audit.record(lj.db, actor, "token.create", name, client=None, details={"role": role})
    click.echo(token)
    click.echo(f"token {name} ({role}) created; copy it now, it is not shown again", err=True)


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@with_appcontext
@_handle_errors
def tokens_list(as_json: bool) -> None:
    """List tokens by name and prefix (UTC times); never the token or its hash."""
    tokens = accounts.list_tokens(_reader().db)
    if as_json:
        click.echo(json.dumps([_token_dict(t) for t in tokens], indent=2, default=str))
        return
    _table(("NAME", "PREFIX", "ROLE", "CREATED", "LAST USED", "REVOKED"),
           [(t.name, t.prefix, t.role, _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
            for t in tokens])


def _token_dict(token: ApiToken) -> dict[str, Any]:
    return {"name": token.name, "prefix": token.prefix, "role": token.role, "created_by": token.created_by,
            "created_at": token.created_at, "last_used_at": token.last_used_at, "revoked_at": token.revoked_at}


@tokens_group.command("revoke")
@click.argument("name")
@with_appcontext
@_handle_errors
def tokens_revoke(name: str) -> None:
    """Revoke a token; requests bearing it are refused from now on."""
    lj = _lexy()
    accounts.revoke_token(lj.db, name)
    audit.record(lj.db, _actor(), "token.revoke", name, client=None)
    click.echo(f"revoked token {name}")
