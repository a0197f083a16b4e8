"""Settings read from ``LEXYJOBS_*`` environment variables (12-factor), overridable by a mapping.

Every setting is listed once in ``FIELDS`` with its env var, default and meaning; the README's
configuration table is written from the same list."""
from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, fields
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Mapping, NoReturn
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lexyjobs.durations import parse_duration
from lexyjobs.flow.queues import ServedQueues, parse_served


ALERT_EVENTS = ("failed", "recovered", "stale", "missed", "too_long", "too_short", "too_often", "late_start")  # lexyjobs.alerts
ROLES = ("viewer", "operator", "admin")  # lowest first; lexyjobs.accounts uses these (config stays light to import)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///jobs.db"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 4
    prefetch: int = 8
    queues: ServedQueues | None = None  # None: every queue
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
    http_connection_limit: int = 500
    http_idle_timeout: float = 10.0
    log_format: str = "auto"
    log_level: str = "INFO"
    secret_key: str | None = None
    data_dir: str | None = None
    admin_password: str | None = None
    api_token: str | None = None
    secure_cookies: str = "auto"
    max_body: int = 1024 * 1024
    login_attempts_per_minute: int = 10
    trusted_proxies: int = 0
    trusted_proxy_addresses: tuple[str, ...] = ("127.0.0.1", "::1")
    metrics_token: str | None = None
    metrics_public: bool = False
    retention_days: int = 30
    retention_failed_days: int = 90
    audit_retention_days: int = 365
    base_url: str | None = None
    alert_webhook: str | None = None
    alert_webhook_secret: str | None = None
    alert_slack: str | None = None
    alert_email: tuple[str, ...] = ()
    alert_events: tuple[str, ...] = ALERT_EVENTS
    alert_after_failures: int = 1
    smtp_host: str | None = None
    smtp_port: int = 0
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "lexyjobs@localhost"
    smtp_tls: str = "starttls"
    idempotency_window: float = 24 * 3600.0
    password_login: bool = True
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_name: str = "single sign-on"
    oidc_scopes: str = "openid email profile"
    oidc_username_claim: str = "email"
    oidc_allowed_domains: tuple[str, ...] = ()
    oidc_role_claim: str = "groups"
    oidc_roles: tuple[str, ...] = ()
    oidc_default_role: str = "viewer"
    otel: bool = False

    def data_path(self) -> Path:
        """Where lexyjobs keeps its files (the secret key): LEXYJOBS_DATA_DIR, else the SQLite
        database's folder, else the current directory."""
        if self.data_dir:
            return Path(self.data_dir)
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url[len("sqlite:///"):].split("?")[0]).parent
        return Path(".")


ENV_VARS: dict[str, tuple[str, str]] = {
    "database_url": ("LEXYJOBS_DATABASE_URL", "SQLAlchemy URL: `sqlite:///jobs.db` or `postgresql://user@host/db` (psycopg 3)"),
    "host": ("LEXYJOBS_HOST", "address the web server binds"),
    "port": ("LEXYJOBS_PORT", "port the web server listens on"),
    "workers": ("LEXYJOBS_WORKERS", "worker threads per process (runs executed at once); 0: this process runs no jobs (web and timers only, with `lexyjobs worker` processes beside it)"),
    "prefetch": ("LEXYJOBS_PREFETCH", "most runs claimed ahead per worker thread, so that each claim takes a bigger "
                 "batch; only as many as the threads start within 0.1 s at the recent pace (none for long runs); "
                 "0 claims only for idle threads"),
    "queues": ("LEXYJOBS_QUEUES", "the queues this process's worker serves, comma-separated, each optionally with "
               "`:N`, the most threads its runs may take at once (e.g. `default,ai:2`); empty: every queue"),
    "jobs_file": ("LEXYJOBS_JOBS_FILE", "jobs file loaded at start (default `./jobs.toml` when present; set but empty: none)"),
    "imports": ("LEXYJOBS_IMPORTS", "comma-separated Python modules imported at start so their `@job` functions register"),
    "poll_interval": ("LEXYJOBS_POLL_INTERVAL", "seconds between queue polls when idle (Postgres also wakes on NOTIFY)"),
    "heartbeat_interval": ("LEXYJOBS_HEARTBEAT_INTERVAL", "seconds between heartbeats of running runs"),
    "stale_after": ("LEXYJOBS_STALE_AFTER", "a running run whose heartbeat is older than this is rescued"),
    "shutdown_grace": ("LEXYJOBS_SHUTDOWN_GRACE", "seconds SIGTERM/SIGINT waits for running runs before re-queueing them"),
    "kill_grace": ("LEXYJOBS_KILL_GRACE", "seconds between SIGTERM and SIGKILL when a shell run (or a python run with "
                   "`isolation = \"process\"`) is cancelled or times out"),
    "log_max_bytes": ("LEXYJOBS_LOG_MAX_BYTES", "characters of log kept per run; older lines are trimmed with a marker"),
    "sqlite_synchronous": ("LEXYJOBS_SQLITE_SYNCHRONOUS", "`NORMAL` (WAL: a power loss may drop the last commits, a crash never does) or `FULL`"),
    "http_threads": ("LEXYJOBS_HTTP_THREADS", "waitress threads serving HTTP"),
    "http_connection_limit": ("LEXYJOBS_HTTP_CONNECTION_LIMIT", "most open HTTP connections; beyond it new ones wait "
                              "in the listen queue (each takes a file descriptor)"),
    "http_idle_timeout": ("LEXYJOBS_HTTP_IDLE_TIMEOUT", "a connection with no request being served (idle keep-alive, "
                          "or request headers not yet complete) that stays silent this long is closed; "
                          "`/events` streams and other requests in progress are not affected"),
    "log_format": ("LEXYJOBS_LOG_FORMAT", "process log lines on stderr: `auto` (human, level coloured on a terminal), "
                   "`human` or `json` (one JSON object a line, for log collectors; the Docker image's default)"),
    "log_level": ("LEXYJOBS_LOG_LEVEL", "lowest level of lexyjobs' own log lines: DEBUG, INFO, WARNING or ERROR "
                  "(other libraries log WARNING and above)"),
    "secret_key": ("LEXYJOBS_SECRET_KEY", "key signing session cookies, at least 32 characters; when unset one is generated once and kept in `<data dir>/secret_key`"),
    "data_dir": ("LEXYJOBS_DATA_DIR", "folder for lexyjobs' own files (the generated secret key); default: the SQLite database's folder, else the current one"),
    "admin_password": ("LEXYJOBS_ADMIN_PASSWORD", "creates or updates user `admin` (role admin) with this password at start; unset and no users: a password is generated and printed once"),
    "api_token": ("LEXYJOBS_API_TOKEN", "a bearer token (at least 16 characters) accepted as an admin token, for automation bootstrap"),
    "secure_cookies": ("LEXYJOBS_SECURE_COOKIES", "`auto` (Secure cookies when the request is https), `true` or `false`"),
    "max_body": ("LEXYJOBS_MAX_BODY", "largest request body in bytes; bigger ones get 413"),
    "login_attempts_per_minute": ("LEXYJOBS_LOGIN_ATTEMPTS_PER_MINUTE", "failed logins allowed per minute per client address; beyond it, failures on one username only slow its logins (see Security)"),
    "trusted_proxies": ("LEXYJOBS_TRUSTED_PROXIES", "number of reverse proxies in front whose X-Forwarded-For/-Proto/-Host/-Prefix are trusted (0 = none)"),
    "trusted_proxy_addresses": ("LEXYJOBS_TRUSTED_PROXY_ADDRESSES", "comma-separated addresses or networks "
                                "(`10.0.0.0/8`) the nearest proxy connects from; X-Forwarded-* from any other "
                                "peer are dropped; `*` = any peer"),
    "metrics_token": ("LEXYJOBS_METRICS_TOKEN", "a bearer token (at least 16 characters) that may read `/metrics` and nothing else, for Prometheus"),
    "metrics_public": ("LEXYJOBS_METRICS_PUBLIC", "`true`: `/metrics` answers without any credentials (only for scrapers on a private network)"),
    "retention_days": ("LEXYJOBS_RETENTION_DAYS", "days finished runs (with their events and logs) are kept; 0 = forever"),
    "retention_failed_days": ("LEXYJOBS_RETENTION_FAILED_DAYS", "days failed runs are kept; 0 = forever"),
    "audit_retention_days": ("LEXYJOBS_AUDIT_RETENTION_DAYS", "days audit-log entries are kept; 0 = forever"),
    "base_url": ("LEXYJOBS_BASE_URL", "the panel's public address, e.g. `https://jobs.example.com`, for links in alerts"),
    "alert_webhook": ("LEXYJOBS_ALERT_WEBHOOK", "URL every alert is POSTed to as JSON (all jobs, unless a job sets its own `alerts`)"),
    "alert_webhook_secret": ("LEXYJOBS_ALERT_WEBHOOK_SECRET", "signs webhook alerts: header `X-Lexyjobs-Signature: sha256=<HMAC of the body>`"),
    "alert_slack": ("LEXYJOBS_ALERT_SLACK", "Slack-compatible incoming-webhook URL for alerts"),
    "alert_email": ("LEXYJOBS_ALERT_EMAIL", "comma-separated addresses alerts are mailed to (needs `LEXYJOBS_SMTP_HOST`)"),
    "alert_events": ("LEXYJOBS_ALERT_EVENTS", "comma-separated events that alert: failed, recovered, stale, missed, too_long, too_short, too_often, late_start (default all)"),
    "alert_after_failures": ("LEXYJOBS_ALERT_AFTER_FAILURES", "failed runs in a row before the failed alert (default 1)"),
    "smtp_host": ("LEXYJOBS_SMTP_HOST", "SMTP server for email alerts"),
    "smtp_port": ("LEXYJOBS_SMTP_PORT", "SMTP port (default 587 with starttls, 465 with ssl, 25 with none)"),
    "smtp_user": ("LEXYJOBS_SMTP_USER", "SMTP login (optional)"),
    "smtp_password": ("LEXYJOBS_SMTP_PASSWORD", "SMTP password"),
    "smtp_from": ("LEXYJOBS_SMTP_FROM", "sender address of email alerts"),
    "smtp_tls": ("LEXYJOBS_SMTP_TLS", "`starttls`, `ssl` or `none`"),
    "idempotency_window": ("LEXYJOBS_IDEMPOTENCY_WINDOW", "how long an idempotency key (`Idempotency-Key` header, "
                           "`key=`, `--key`) returns its job's first run instead of enqueueing another (default 24h)"),
    "password_login": ("LEXYJOBS_PASSWORD_LOGIN", "`false`: the login page offers single sign-on only (API tokens "
                       "and the CLI still work); needs LEXYJOBS_OIDC_ISSUER"),
    "oidc_issuer": ("LEXYJOBS_OIDC_ISSUER", "OpenID Connect provider's issuer URL (its "
                    "`/.well-known/openid-configuration` is read); turns on single sign-on"),
    "oidc_client_id": ("LEXYJOBS_OIDC_CLIENT_ID", "the client ID lexyjobs has at the provider"),
    "oidc_client_secret": ("LEXYJOBS_OIDC_CLIENT_SECRET", "its client secret (sent to the token endpoint; PKCE is used as well)"),
    "oidc_name": ("LEXYJOBS_OIDC_NAME", "the provider's name on the login button (\"Sign in with …\")"),
    "oidc_scopes": ("LEXYJOBS_OIDC_SCOPES", "scopes asked for (space-separated; `openid` is required)"),
    "oidc_username_claim": ("LEXYJOBS_OIDC_USERNAME_CLAIM", "the ID token claim that names the user: `email`, "
                            "`preferred_username` or `sub`"),
    "oidc_allowed_domains": ("LEXYJOBS_OIDC_ALLOWED_DOMAINS", "comma-separated email domains that may sign in "
                             "(their email must not be marked unverified); empty: any"),
    "oidc_role_claim": ("LEXYJOBS_OIDC_ROLE_CLAIM", "the claim LEXYJOBS_OIDC_ROLES reads (a list or a string)"),
    "oidc_roles": ("LEXYJOBS_OIDC_ROLES", "claim value → role, comma-separated, e.g. `lexyjobs-admins=admin,"
                   "ops=operator`; the highest match wins and is set again at every sign-in"),
    "oidc_default_role": ("LEXYJOBS_OIDC_DEFAULT_ROLE", "role of a user no mapping matches: viewer, operator, "
                          "admin, or `none` (refused)"),
    "otel": ("LEXYJOBS_OTEL", "`true`: OpenTelemetry traces of runs and web requests, exported per the "
             "standard `OTEL_EXPORTER_OTLP_*` variables (needs `pip install 'lexyjobs[otel]'`)"),
}

DURATION_FIELDS = {"poll_interval", "heartbeat_interval", "stale_after", "shutdown_grace", "kill_grace",
                   "http_idle_timeout", "idempotency_window"}
LIST_FIELDS = {"imports", "alert_email", "alert_events", "trusted_proxy_addresses", "oidc_allowed_domains", "oidc_roles"}
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
SQLITE_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")  # OFF is refused: a crash could corrupt the database


def _convert(name: str, raw: Any, default: Any) -> Any:
    """The typed value of one setting; ValueError with what is allowed, for the one-line message."""
    if name in DURATION_FIELDS:
        return parse_duration(raw)
    if name == "queues":
        return parse_served(raw)
    if name in LIST_FIELDS:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(item.strip() for item in items if item.strip())
    if name in ("secure_cookies", "log_format", "smtp_tls"):
        return str(raw).strip().lower()
    if name in ("log_level", "sqlite_synchronous"):
        return str(raw).strip().upper()
    if isinstance(default, bool):
        return _boolean(raw)
    if isinstance(default, int) and not isinstance(raw, int):
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    return raw


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError("must be true or false")
    return word in TRUE_WORDS


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, then ``overrides`` (keys are field names, e.g. ``workers``).
    A bad value stops with one line naming the variable and what it accepts (SystemExit)."""
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
    settings = Settings(**values)
    _check(settings)
    _check_formats(settings)
    return settings


def _check(settings: Settings) -> None:
    """Refuse settings that would make the worker misbehave, naming the variable."""
    if settings.workers < 0:
        _refuse("workers", "must be 0 or more (0: this process runs no jobs, only the web side and timers)")
    if not 0 <= settings.prefetch <= 100:
        _refuse("prefetch", "must be between 0 and 100")
    if not 0 <= settings.port <= 65535:
        _refuse("port", "must be a port number (0-65535)")
    if settings.poll_interval <= 0:
        _refuse("poll_interval", "must be more than 0")
    if settings.heartbeat_interval <= 0:
        _refuse("heartbeat_interval", "must be more than 0")
    if settings.stale_after < 2 * settings.heartbeat_interval:
        _refuse("stale_after", f"must be at least twice LEXYJOBS_HEARTBEAT_INTERVAL ({settings.heartbeat_interval:g}s), "
               "or healthy runs would be rescued")
    if settings.log_max_bytes < 256:
        _refuse("log_max_bytes", "must be at least 256")
    if settings.secret_key is not None and len(settings.secret_key.encode()) < 32:
        _refuse("secret_key", "must be at least 32 bytes long (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    if settings.api_token is not None and len(settings.api_token) < 16:
        _refuse("api_token", "must be at least 16 characters long")
    if settings.metrics_token is not None and len(settings.metrics_token) < 16:
        _refuse("metrics_token", "must be at least 16 characters long")
    if settings.admin_password is not None and len(settings.admin_password) < 8:
        _refuse("admin_password", "must be at least 8 characters long")
    if settings.secure_cookies not in ("auto", "true", "false"):
        _refuse("secure_cookies", "must be auto, true or false")
    if settings.log_format not in ("auto", "human", "json"):
        _refuse("log_format", "must be auto, human or json")
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        _refuse("log_level", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    if settings.max_body < 1024:
        _refuse("max_body", "must be at least 1024 bytes")
    if settings.login_attempts_per_minute < 1:
        _refuse("login_attempts_per_minute", "must be at least 1")
    if settings.trusted_proxies < 0:
        _refuse("trusted_proxies", "must be 0 or more")
    if settings.retention_days < 0 or settings.retention_failed_days < 0:
        _refuse("retention_days" if settings.retention_days < 0 else "retention_failed_days", "must be 0 (keep) or more")
    if settings.audit_retention_days < 0:
        _refuse("audit_retention_days", "must be 0 (keep) or more")
    unknown_events = sorted(set(settings.alert_events) - set(ALERT_EVENTS))
    if unknown_events:
        _refuse("alert_events", f"has '{unknown_events[0]}'; events are {', '.join(ALERT_EVENTS)}")
    if settings.alert_after_failures < 1:
        _refuse("alert_after_failures", "must be at least 1")
    if settings.idempotency_window <= 0:
        _refuse("idempotency_window", "must be more than 0 (e.g. 24h)")
    if settings.smtp_tls not in ("starttls", "ssl", "none"):
        _refuse("smtp_tls", "must be starttls, ssl or none")
    if settings.alert_email and not settings.smtp_host:
        _refuse("alert_email", "needs LEXYJOBS_SMTP_HOST")



def _refuse(field: str, problem: str) -> NoReturn:
    raise SystemExit(f"lexyjobs: {ENV_VARS[field][0]} {problem}")


def _check_formats(settings: Settings) -> None:
    """Refuse values of the wrong form (addresses, URLs, names), naming the variable and what it takes."""
    problem = database_url_problem(settings.database_url)
    if problem:
        _refuse("database_url", f"{problem}; use sqlite:///path/to/jobs.db or postgresql://user:password@host/db")
    if settings.sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        _refuse("sqlite_synchronous", "must be NORMAL or FULL (or EXTRA)")
    if not _is_host(settings.host):
        _refuse("host", f"'{settings.host}' is not an IP address or host name (e.g. 127.0.0.1, 0.0.0.0, ::1)")
    if settings.http_threads < 1:
        _refuse("http_threads", "must be at least 1")
    if settings.http_connection_limit < 1:
        _refuse("http_connection_limit", "must be at least 1")
    if settings.http_idle_timeout < 1:
        _refuse("http_idle_timeout", "must be at least 1s")
    for entry in settings.trusted_proxy_addresses:
        if not _is_network(entry):
            _refuse("trusted_proxy_addresses", f"has '{entry}'; use IP addresses or networks like 10.0.0.0/8, or *")
    for module in settings.imports:
        if not all(part.isidentifier() for part in module.split(".")):
            _refuse("imports", f"has '{module}', which is not a Python module name (e.g. myjobs or app.jobs)")
    for field in ("base_url", "alert_webhook", "alert_slack"):
        url = getattr(settings, field)
        if url is not None and not _is_http_url(url):
            _refuse(field, "must be an http:// or https:// URL")
    for address in settings.alert_email:
        if not _is_email(address):
            _refuse("alert_email", f"has '{address}', which is not an email address (name@example.com)")
    if not _is_email(settings.smtp_from):
        _refuse("smtp_from", "must be an email address (name@example.com or 'Name <name@example.com>')")
    if not 0 <= settings.smtp_port <= 65535:
        _refuse("smtp_port", "must be a port number (0-65535; 0 = by LEXYJOBS_SMTP_TLS)")
    if settings.smtp_host is not None and not _is_host(settings.smtp_host):
        _refuse("smtp_host", "must be a host name or IP address")
    _check_sso(settings)


def _check_sso(settings: Settings) -> None:
    if settings.oidc_issuer is None:
        for field in ("oidc_client_id", "oidc_client_secret"):
            if getattr(settings, field) is not None:
                _refuse(field, "needs LEXYJOBS_OIDC_ISSUER")
        if not settings.password_login:
            _refuse("password_login", "can be false only with single sign-on (LEXYJOBS_OIDC_ISSUER), or nobody could log in")
        return
    issuer = urlsplit(settings.oidc_issuer)
    if not _is_http_url(settings.oidc_issuer) or (issuer.scheme == "http" and issuer.hostname not in LOOPBACK):
        _refuse("oidc_issuer", "must be an https:// URL (http:// only on 127.0.0.1, ::1 or localhost)")
    for field in ("oidc_client_id", "oidc_client_secret"):
        if not getattr(settings, field):
            _refuse(field, "is needed with LEXYJOBS_OIDC_ISSUER (the provider gives both when you register lexyjobs)")
    if "openid" not in settings.oidc_scopes.split():
        _refuse("oidc_scopes", "must include openid")
    for entry in settings.oidc_roles:
        value, _, role = entry.partition("=")
        if not value.strip() or role.strip() not in ROLES:
            _refuse("oidc_roles", f"has '{entry}'; write claim-value=role, role one of {', '.join(ROLES)}")
    if settings.oidc_default_role not in ROLES + ("none",):
        _refuse("oidc_default_role", f"must be one of {', '.join(ROLES)} or none")


def database_url_problem(url: str) -> str | None:
    """What is wrong with a database URL lexyjobs cannot use (never repeating it: it may hold a password)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "is not a database URL"
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if not parsed.database or parsed.database == ":memory:" or parsed.query.get("mode") == "memory":
            return "needs a database file (several threads and processes share it), not an in-memory database"
        return None
    if parsed.drivername == "postgresql+psycopg":
        return None
    return f"uses '{parsed.drivername}', which lexyjobs does not support"


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    return (0 < len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not all(label.isdigit() for label in labels))


def _is_network(text: str) -> bool:
    if text == "*":
        return True
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_email(text: str) -> bool:
    return bool(re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", parseaddr(text)[1]))

SECRET_KEY_FILE = "secret_key"


def secret_key(settings: Settings, *, create: bool = True) -> str:
    """LEXYJOBS_SECRET_KEY, else the key kept in the data directory, generated (mode 0600) on the
    first start so that restarts keep sessions valid. ``create=False`` (the CLI's one-shot
    commands, which sign no cookie) never writes the file: without a readable key it returns one
    for this process only."""
    if settings.secret_key is not None:
        return settings.secret_key
    path = settings.data_path() / SECRET_KEY_FILE
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    except OSError as exc:
        if not create:
            return secrets.token_hex(32)
        raise SystemExit(f"lexyjobs: cannot read the secret key {path}: {exc.strerror}") from None
    if len(key.encode()) >= 32 or not create:
        return key if len(key.encode()) >= 32 else secrets.token_hex(32)
    key = secrets.token_hex(32)
    temporary = path.with_name(f".{SECRET_KEY_FILE}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(key + "\n")
        os.link(temporary, path)  # atomic; fails if another process (or an old short key) is there
    except FileExistsError:
        key = path.read_text().strip()
        if len(key.encode()) < 32:
            raise SystemExit(f"lexyjobs: the secret key in {path} is shorter than 32 bytes; delete the file "
                             "or set LEXYJOBS_SECRET_KEY") from None
    except OSError as exc:
        raise SystemExit(f"lexyjobs: cannot write the secret key {path}: {exc.strerror}; set LEXYJOBS_SECRET_KEY "
                         "or LEXYJOBS_DATA_DIR") from None
    finally:
        temporary.unlink(missing_ok=True)
    return key


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` / ``postgres://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
