"""Settings read from ``LEXYJOBS_*`` environment variables (12-factor), overridable by a mapping.

Every setting is listed once in ``FIELDS`` with its env var, default and meaning; the README's
configuration table is written from the same list."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from lexyjobs.durations import parse_duration


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///jobs.db"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 4
    jobs_file: str | None = None
    imports: tuple[str, ...] = ()
    poll_interval: float = 0.5
    heartbeat_interval: float = 5.0
    stale_after: float = 30.0
    shutdown_grace: float = 30.0
    kill_grace: float = 5.0
    log_max_bytes: int = 256 * 1024
    sqlite_synchronous: str = "NORMAL"
    http_threads: int = 16
    secret_key: str | None = None


ENV_VARS: dict[str, tuple[str, str]] = {
    "database_url": ("LEXYJOBS_DATABASE_URL", "SQLAlchemy URL: `sqlite:///jobs.db` or `postgresql://user@host/db` (psycopg 3)"),
    "host": ("LEXYJOBS_HOST", "address the web server binds"),
    "port": ("LEXYJOBS_PORT", "port the web server listens on"),
    "workers": ("LEXYJOBS_WORKERS", "worker threads per process (runs executed at once)"),
    "jobs_file": ("LEXYJOBS_JOBS_FILE", "jobs file loaded at start (default `./jobs.toml` when present; set but empty: none)"),
    "imports": ("LEXYJOBS_IMPORTS", "comma-separated Python modules imported at start so their `@job` functions register"),
    "poll_interval": ("LEXYJOBS_POLL_INTERVAL", "seconds between queue polls when idle (Postgres also wakes on NOTIFY)"),
    "heartbeat_interval": ("LEXYJOBS_HEARTBEAT_INTERVAL", "seconds between heartbeats of running runs"),
    "stale_after": ("LEXYJOBS_STALE_AFTER", "a running run whose heartbeat is older than this is rescued"),
    "shutdown_grace": ("LEXYJOBS_SHUTDOWN_GRACE", "seconds SIGTERM/SIGINT waits for running runs before re-queueing them"),
    "kill_grace": ("LEXYJOBS_KILL_GRACE", "seconds between SIGTERM and SIGKILL when a shell run is cancelled or times out"),
    "log_max_bytes": ("LEXYJOBS_LOG_MAX_BYTES", "characters of log kept per run; older lines are trimmed with a marker"),
    "sqlite_synchronous": ("LEXYJOBS_SQLITE_SYNCHRONOUS", "`NORMAL` (WAL: a power loss may drop the last commits, a crash never does) or `FULL`"),
    "http_threads": ("LEXYJOBS_HTTP_THREADS", "waitress threads serving HTTP"),
    "secret_key": ("LEXYJOBS_SECRET_KEY", "Flask secret key (sessions); random per start when unset"),
}

DURATION_FIELDS = {"poll_interval", "heartbeat_interval", "stale_after", "shutdown_grace", "kill_grace"}


def _convert(name: str, raw: Any, default: Any) -> Any:
    if name in DURATION_FIELDS:
        return parse_duration(raw)
    if name == "imports":
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(item.strip() for item in items if item.strip())
    if isinstance(default, bool):
        return str(raw).lower() in ("1", "true", "yes", "on")
    if isinstance(default, int) and not isinstance(raw, int):
        return int(raw)
    return raw


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, then ``overrides`` (keys are field names, e.g. ``workers``)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        env_name = ENV_VARS[f.name][0]
        if env_name in environ and environ[env_name] != "":
            try:
                values[f.name] = _convert(f.name, environ[env_name], f.default)
            except ValueError as exc:
                raise SystemExit(f"lexyjobs: {env_name}={environ[env_name]!r} is invalid: {exc}") from None
    for key, value in (overrides or {}).items():
        if key not in ENV_VARS:
            raise ValueError(f"unknown setting '{key}'")
        values[key] = _convert(key, value, getattr(Settings, key, None)) if value is not None else None
    explicit = "jobs_file" in (overrides or {}) or ENV_VARS["jobs_file"][0] in environ  # set, even to "": no default
    if values.get("jobs_file") is None and not explicit and Path("jobs.toml").is_file():
        values["jobs_file"] = "jobs.toml"
    values["database_url"] = normalize_database_url(values.get("database_url", Settings.database_url))
    if values.get("sqlite_synchronous", "NORMAL").upper() not in ("NORMAL", "FULL", "EXTRA", "OFF"):
        raise SystemExit("lexyjobs: LEXYJOBS_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    """Refuse settings that would make the worker misbehave, naming the variable."""
    def refuse(field: str, problem: str) -> None:
        raise SystemExit(f"lexyjobs: {ENV_VARS[field][0]} {problem}")
    if settings.workers < 1:
        refuse("workers", "must be at least 1")
    if not 0 <= settings.port <= 65535:
        refuse("port", "must be a port number (0-65535)")
    if settings.poll_interval <= 0:
        refuse("poll_interval", "must be more than 0")
    if settings.heartbeat_interval <= 0:
        refuse("heartbeat_interval", "must be more than 0")
    if settings.stale_after < 2 * settings.heartbeat_interval:
        refuse("stale_after", f"must be at least twice LEXYJOBS_HEARTBEAT_INTERVAL ({settings.heartbeat_interval:g}s), "
               "or healthy runs would be rescued")
    if settings.log_max_bytes < 256:
        refuse("log_max_bytes", "must be at least 256")


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` / ``postgres://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
