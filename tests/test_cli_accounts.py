"""``lexyjobs users …`` and ``lexyjobs tokens …`` (lexyjobs.cli_accounts), driven through click's
CliRunner on both databases, like tests/test_cli.py. ``LOGNAME`` is set so the audit actor is known."""
from __future__ import annotations

import getpass
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from lexyjobs import accounts, audit
from lexyjobs.cli import main

Invoke = Callable[..., Result]
OS_USER = "ops-alice"
ACTOR = f"cli:{OS_USER}"
PASSWORD = "correct horse battery"


@pytest.fixture
def cli(db_url: str, db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """``cli("users", "list")`` runs the real CLI against the test database as OS user ``ops-alice``.
    The database exists (``db``), as the server creates it: the CLI never does (test_cli_database)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False,
                             env={"LEXYJOBS_DATABASE_URL": db_url, "LEXYJOBS_JOBS_FILE": "", "LOGNAME": OS_USER})
    return invoke


def user_row(db, name: str) -> Any:  # type: ignore[no-untyped-def]
    with db.read() as session:
        return accounts.get_user(session, name)


def all_cells(db, table: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Every value in every row of ``table``, as text (to scan for leaked secrets)."""
    with db.read() as session:
        return [str(cell) for row in session.execute(text(f"SELECT * FROM {table}")) for cell in row]


def audit_entries(db) -> list[tuple[str, str, str | None, str | None, Any]]:  # type: ignore[no-untyped-def]
    """(actor, action, target, client, details), oldest first."""
    page = audit.search(db, limit=1000)
    return [(e.actor, e.action, e.target, e.client, e.details) for e in reversed(page.entries)]


def add_user(cli: Invoke, name: str = "alice", role: str = "operator", password: str = PASSWORD) -> Result:
    return cli("users", "add", name, "--role", role, "--password-stdin", input=password + "\n")


def create_token(cli: Invoke, name: str = "ci", role: str = "operator") -> str:
    result = cli("tokens", "create", "--name", name, "--role", role)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# ---------------------------------------------------------------- users add


def test_users_add_with_password_stdin_creates_a_user_who_can_log_in(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = add_user(cli, "alice", "operator")
    assert (result.exit_code, result.stdout) == (0, "added user alice (operator)\n")
    identity = accounts.authenticate(db, "alice", PASSWORD)
    assert identity is not None and (identity.name, identity.role) == ("alice", "operator")
    assert accounts.authenticate(db, "alice", PASSWORD + "x") is None


def test_users_add_keeps_spaces_but_not_the_newline_of_the_stdin_line(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    assert add_user(cli, "bob", "viewer", password=" spaced out ").exit_code == 0
    assert accounts.authenticate(db, "bob", " spaced out ") is not None


def test_users_add_prompts_for_the_password_twice(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("users", "add", "carol", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password:" in result.stderr and "Repeat for confirmation:" in result.stderr
    assert PASSWORD not in result.output
    assert result.stdout == "added user carol (admin)\n"
    assert accounts.authenticate(db, "carol", PASSWORD) is not None


def test_users_add_with_a_mistyped_confirmation_creates_nobody(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("users", "add", "carol", "--role", "admin", input="first-try-1\nsecond-try-2\n")
    assert result.exit_code == 1
    assert "do not match" in result.output
    assert user_row(db, "carol") is None


@pytest.mark.parametrize(("args", "password", "message"), [
    (["alice", "--role", "root"], PASSWORD, "error: role 'root' is not one of viewer, operator, admin"),
    (["Alice Smith", "--role", "viewer"], PASSWORD, "error: username must be 1–100 characters"),
    (["alice", "--role", "viewer"], "short", "error: password must be at least 8 characters"),
    (["alice", "--role", "viewer"], "", "error: password must be at least 8 characters"),
])
def test_users_add_rejects_bad_input_and_writes_nothing(cli: Invoke, db, args: list[str], password: str,  # type: ignore[no-untyped-def]
                                                        message: str) -> None:
    result = cli("users", "add", *args, "--password-stdin", input=password + "\n")
    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr
    assert accounts.list_users(db) == [] and audit_entries(db) == []


def test_users_add_with_a_bad_role_fails_before_asking_for_a_password(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("users", "add", "alice", "--role", "superuser", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 2 and "error: role 'superuser'" in result.stderr
    assert "Password" not in result.output


def test_users_add_of_a_taken_name_fails_and_keeps_the_old_password(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    assert add_user(cli, "alice").exit_code == 0
    result = add_user(cli, "alice", "admin", password="another password")
    assert result.exit_code == 2
    assert "error: a user named 'alice' already exists" in result.stderr
    assert user_row(db, "alice").role == "operator"
    assert accounts.authenticate(db, "alice", PASSWORD) is not None
    assert [action for _, action, *_ in audit_entries(db)] == ["user.add"]


# ---------------------------------------------------------------- users list


def test_users_list_shows_name_role_created_and_last_login(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice", "admin")
    add_user(cli, "bob", "viewer")
    accounts.authenticate(db, "alice", PASSWORD)
    result = cli("users", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "SIGN-IN", "CREATED", "LAST", "LOGIN"]
    alice, bob = (line.split() for line in lines[1:])
    created = user_row(db, "alice").created_at.strftime("%Y-%m-%d")
    assert alice[:4] == ["alice", "admin", "password", created] and len(alice) == 7  # created, last login: date + time
    assert bob[:4] == ["bob", "viewer", "password", created] and bob[-1] == "-"
    assert PASSWORD not in result.output and "scrypt" not in result.output


def test_users_list_json_is_machine_readable(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice", "operator")
    result = cli("users", "list", "--json")
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.stdout)
    assert set(item) == {"name", "role", "source", "created_at", "last_login_at"}
    assert (item["name"], item["role"], item["source"], item["last_login_at"]) == ("alice", "operator", "local", None)
    assert item["created_at"].startswith(user_row(db, "alice").created_at.strftime("%Y-%m-%d %H:%M"))


def test_users_list_on_an_empty_database_prints_only_the_header(cli: Invoke) -> None:
    result = cli("users", "list")
    assert (result.exit_code, result.stdout) == (0, "NAME  ROLE  SIGN-IN  CREATED  LAST LOGIN\n")


# ---------------------------------------------------------------- users remove


def test_users_remove_with_yes_deletes_the_user(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice")
    result = cli("users", "remove", "alice", "--yes")
    assert (result.exit_code, result.stdout) == (0, "removed user alice\n")
    assert user_row(db, "alice") is None
    assert accounts.authenticate(db, "alice", PASSWORD) is None


def test_users_remove_asks_first(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice")
    result = cli("users", "remove", "alice", input="n\n")
    assert result.exit_code == 1 and "Delete user alice?" in result.output
    assert user_row(db, "alice") is not None
    result = cli("users", "remove", "alice", input="y\n")
    assert result.exit_code == 0 and user_row(db, "alice") is None


def test_users_remove_of_an_unknown_user_fails_without_asking(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("users", "remove", "ghost", input="y\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no user named 'ghost' in the database ") and "Delete" not in result.output
    assert audit_entries(db) == []


# ---------------------------------------------------------------- users set-password


def test_users_set_password_changes_it_and_ends_existing_sessions(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice")
    before = user_row(db, "alice")
    result = cli("users", "set-password", "alice", "--password-stdin", input="a brand new secret\n")
    assert (result.exit_code, result.stdout) == (0, "changed the password of alice\n")
    assert accounts.authenticate(db, "alice", PASSWORD) is None
    assert accounts.authenticate(db, "alice", "a brand new secret") is not None
    after = user_row(db, "alice")
    assert after.session_epoch == before.session_epoch + 1
    assert accounts.session_identity(db, before.id, before.session_epoch) is None
    assert after.role == before.role


def test_users_set_password_prompts_twice_without_password_stdin(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice")
    result = cli("users", "set-password", "alice", input="typed twice!\ntyped twice!\n")
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation:" in result.stderr
    assert accounts.authenticate(db, "alice", "typed twice!") is not None


def test_users_set_password_rejects_a_short_password_and_keeps_the_old_one(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice")
    epoch = user_row(db, "alice").session_epoch
    result = cli("users", "set-password", "alice", "--password-stdin", input="tiny\n")
    assert result.exit_code == 2 and "error: password must be at least 8 characters" in result.stderr
    assert accounts.authenticate(db, "alice", PASSWORD) is not None
    assert user_row(db, "alice").session_epoch == epoch


def test_users_set_password_of_an_unknown_user_fails_without_prompting(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("users", "set-password", "ghost", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 2 and result.stderr.startswith("error: no user named 'ghost' in the database ")
    assert "Password" not in result.output


# ---------------------------------------------------------------- tokens


def test_tokens_create_prints_the_token_once_and_stores_only_its_sha256(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("tokens", "create", "--name", "ci", "--role", "operator")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith(accounts.TOKEN_PREFIX) and len(token) > 40
    assert "not shown again" in result.stderr and token not in result.stderr
    [row] = accounts.list_tokens(db)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (row.name, row.role, row.created_by, row.prefix) == ("ci", "operator", ACTOR, token[:8])
    assert [cell for cell in all_cells(db, "api_tokens") if token in cell] == []
    identity = accounts.token_identity(db, token)
    assert identity is not None and (identity.name, identity.role, identity.kind) == ("ci", "operator", "token")


def test_two_tokens_differ(cli: Invoke) -> None:
    assert create_token(cli, "one") != create_token(cli, "two")


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "ci", "--role", "root"], "error: role 'root' is not one of viewer, operator, admin"),
    (["--name", "", "--role", "viewer"], "error: token name must be 1–100 printable characters"),
    (["--name", "x" * 101, "--role", "viewer"], "error: token name must be 1–100 printable characters"),
])
def test_tokens_create_rejects_bad_input_and_writes_nothing(cli: Invoke, db, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("tokens", "create", *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert accounts.list_tokens(db) == [] and audit_entries(db) == []


def test_tokens_create_of_a_taken_name_fails_and_prints_no_token(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    first = create_token(cli, "ci")
    result = cli("tokens", "create", "--name", "ci", "--role", "admin")
    assert result.exit_code == 2 and result.stdout == ""
    assert "error: a token named 'ci' already exists" in result.stderr
    [row] = accounts.list_tokens(db)
    assert row.role == "operator" and accounts.token_identity(db, first) is not None


def test_tokens_list_shows_prefix_and_times_but_never_the_token_or_hash(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    token = create_token(cli, "ci", "operator")
    other = create_token(cli, "deploy", "admin")
    accounts.token_identity(db, token)  # marks "ci" as used
    result = cli("tokens", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PREFIX", "ROLE", "CREATED", "LAST", "USED", "REVOKED"]
    ci, deploy = (line.split() for line in lines[1:])
    assert ci[:3] == ["ci", token[:8], "operator"] and len(ci) == 8 and ci[-1] == "-"  # used, not revoked
    assert deploy[:3] == ["deploy", other[:8], "admin"] and deploy[-2:] == ["-", "-"]
    hashes = [row.token_hash for row in accounts.list_tokens(db)]
    for secret in (token, other, *hashes):
        assert secret not in result.output


def test_tokens_list_json_has_no_token_or_hash(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    token = create_token(cli, "ci", "viewer")
    result = cli("tokens", "list", "--json")
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.stdout)
    assert set(item) == {"name", "prefix", "role", "created_by", "created_at", "last_used_at", "revoked_at"}
    assert (item["name"], item["prefix"], item["role"], item["created_by"]) == ("ci", token[:8], "viewer", ACTOR)
    assert item["revoked_at"] is None
    assert token not in result.stdout and accounts.list_tokens(db)[0].token_hash not in result.stdout


def test_tokens_revoke_makes_the_token_useless(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    token = create_token(cli, "ci")
    keep = create_token(cli, "keep")
    result = cli("tokens", "revoke", "ci")
    assert (result.exit_code, result.stdout) == (0, "revoked token ci\n")
    assert accounts.token_identity(db, token) is None
    assert accounts.token_identity(db, keep) is not None
    [item, _] = json.loads(cli("tokens", "list", "--json").stdout)
    assert item["name"] == "ci" and item["revoked_at"] is not None


def test_tokens_revoke_of_an_unknown_or_revoked_token_fails(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    result = cli("tokens", "revoke", "nope")
    assert result.exit_code == 2 and result.stderr.startswith("error: no active token named 'nope' in the database ")
    create_token(cli, "ci")
    assert cli("tokens", "revoke", "ci").exit_code == 0
    result = cli("tokens", "revoke", "ci")
    assert result.exit_code == 2 and result.stderr.startswith("error: no active token named 'ci' in the database ")
    assert [action for _, action, *_ in audit_entries(db)] == ["token.create", "token.revoke"]


# ---------------------------------------------------------------- audit


def test_every_change_is_audited_as_the_os_user_without_secrets(cli: Invoke, db) -> None:  # type: ignore[no-untyped-def]
    add_user(cli, "alice", "viewer")
    cli("users", "set-password", "alice", "--password-stdin", input="second password\n")
    cli("users", "remove", "alice", "--yes")
    token = create_token(cli, "ci", "admin")
    cli("tokens", "revoke", "ci")
    cli("users", "list")
    cli("tokens", "list")  # reads are not audited
    assert audit_entries(db) == [
        (ACTOR, "user.add", "alice", None, {"role": "viewer"}),
        (ACTOR, "user.set_password", "alice", None, None),
        (ACTOR, "user.remove", "alice", None, None),
        (ACTOR, "token.create", "ci", None, {"role": "admin"}),
        (ACTOR, "token.revoke", "ci", None, None),
    ]
    secrets = (PASSWORD, "second password", token, hashlib.sha256(token.encode()).hexdigest())
    assert [cell for cell in all_cells(db, "audit_log") for s in secrets if s in cell] == []


def test_the_actor_is_plain_cli_when_the_os_user_is_unknown(cli: Invoke, db,  # type: ignore[no-untyped-def]
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("No username set in the environment")
    monkeypatch.setattr(getpass, "getuser", no_user)
    create_token(cli, "ci")
    assert [(actor, action) for actor, action, *_ in audit_entries(db)] == [("cli", "token.create")]
    assert accounts.list_tokens(db)[0].created_by == "cli"
