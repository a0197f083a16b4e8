"""A bad setting stops the server with one stderr line naming the variable and what it takes, and
exit code 1, never a traceback and never silently (issue 14, C17). Each case is a real
``python app.py`` or ``python -m lexyjobs serve`` process in a temp folder; a case the server
wrongly accepted would start serving and hit the timeout."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, subprocess_env

COMMANDS = {"app.py": [PYTHON, str(ROOT / "app.py"), "--port", "0"],
            "serve": [PYTHON, "-m", "lexyjobs", "serve", "--port", "0"]}
PASSWORD_IN_URL = "hunter2-do-not-show"

CASES = [  # variable, bad value, what the line must say (besides the variable's name)
    ("LEXYJOBS_DATABASE_URL", "garbage", "is not a database URL; use sqlite:///"),
    ("LEXYJOBS_DATABASE_URL", f"mysql://lexy:{PASSWORD_IN_URL}@db/jobs", "uses 'mysql', which lexyjobs does not support"),
    ("LEXYJOBS_DATABASE_URL", "postgresql+psycopg2://lexy@db/jobs", "does not support; use sqlite:///"),
    ("LEXYJOBS_DATABASE_URL", "sqlite://", "not an in-memory database"),
    ("LEXYJOBS_SQLITE_SYNCHRONOUS", "OFF", "must be NORMAL or FULL"),
    ("LEXYJOBS_METRICS_PUBLIC", "maybe", "must be true or false"),
    ("LEXYJOBS_PORT", "eighty", "must be a whole number"),
    ("LEXYJOBS_PORT", "70000", "(0-65535)"),
    ("LEXYJOBS_HOST", "bad host!", "is not an IP address or host name"),
    ("LEXYJOBS_WORKERS", "-1", "must be 0 or more"),
    ("LEXYJOBS_HTTP_THREADS", "0", "must be at least 1"),
    ("LEXYJOBS_HTTP_CONNECTION_LIMIT", "lots", "must be a whole number"),
    ("LEXYJOBS_HTTP_IDLE_TIMEOUT", "500ms", "must be at least 1s"),
    ("LEXYJOBS_POLL_INTERVAL", "soon", "is not a duration like '30s'"),
    ("LEXYJOBS_TRUSTED_PROXIES", "-1", "must be 0 or more"),
    ("LEXYJOBS_TRUSTED_PROXY_ADDRESSES", "proxy.internal", "networks like 10.0.0.0/8"),
    ("LEXYJOBS_IMPORTS", "my-jobs", "not a Python module name"),
    ("LEXYJOBS_SECURE_COOKIES", "sometimes", "must be auto, true or false"),
    ("LEXYJOBS_LOG_LEVEL", "loud", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("LEXYJOBS_SECRET_KEY", "short", "at least 32 bytes"),
    ("LEXYJOBS_BASE_URL", "jobs.example.com", "must be an http:// or https:// URL"),
    ("LEXYJOBS_ALERT_WEBHOOK", "ftp://hooks.example.com/x", "must be an http:// or https:// URL"),
    ("LEXYJOBS_ALERT_EVENTS", "failed,exploded", "events are failed, recovered, stale, missed"),
    ("LEXYJOBS_SMTP_PORT", "99999", "must be a port number"),
    ("LEXYJOBS_SMTP_FROM", "lexyjobs", "must be an email address"),
]


@pytest.mark.parametrize(("variable", "value", "says"), CASES, ids=[f"{v}={x}" for v, x, _ in CASES])
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, variable: str, value: str, says: str) -> None:
    command = COMMANDS["serve" if CASES.index((variable, value, says)) % 2 else "app.py"]
    env = subprocess_env(f"sqlite:///{tmp_path / 'jobs.db'}", LEXYJOBS_JOBS_FILE="", LEXYJOBS_HOST="127.0.0.1",
                         LEXYJOBS_ADMIN_PASSWORD="admin-password-1")
    env[variable] = value

    done = subprocess.run(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30)

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"lexyjobs: {variable}") and says in lines[0], lines[0]
    assert PASSWORD_IN_URL not in done.stderr
    assert not (tmp_path / "jobs.db").exists()  # stopped before touching any database
