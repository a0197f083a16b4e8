"""Job kinds. Each kind module provides ``FIELDS`` (its own definition fields and what they
mean), ``validate(job, fields) -> config`` and ``run(ctx, config) -> result``. The registry
below is the one place that lists them."""
from __future__ import annotations

import importlib
import os
import re
from fnmatch import fnmatchcase
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.errors import InvalidDefinition


@dataclass(frozen=True)
class Kind:
    name: str
    fields: Mapping[str, str]
    validate: Callable[[str, Mapping[str, Any]], dict[str, Any]]
    run: Callable[[RunContext, Mapping[str, Any]], Any]


def _kind(name: str, module: ModuleType) -> Kind:
    return Kind(name, module.FIELDS, module.validate, module.run)


# kind name -> its module in this package. Each module is imported on first use of its kind
# (``kind``): their libraries (requests, jinja2…) cost start-up time and idle memory that
# KIND_NAMES does not, and enqueueing a shell job (``lexyjobs run``) needs only the shell kind.
KIND_MODULES = {"python": "python", "http": "http", "shell": "shell", "openai": "openai_kind"}
KIND_NAMES = tuple(KIND_MODULES)
# the fields each kind passes through expand_env when it runs (an unset ``${VAR}`` there fails the run)
ENV_FIELDS = {"http": ("url", "headers", "body"), "shell": ("argv", "env"), "openai": ("model", "api_key", "base_url")}
_LOADED: dict[str, Kind] = {}


def kind(name: str) -> Kind | None:
    """The job kind ``name`` (None: no such kind), importing its module on first use."""
    if name not in KIND_MODULES:
        return None
    if name not in _LOADED:
        _LOADED[name] = _kind(name, importlib.import_module(f"lexyjobs.kinds.{KIND_MODULES[name]}"))
    return _LOADED[name]


def kinds() -> dict[str, Kind]:
    """All job kinds by name."""
    return {name: found for name in KIND_NAMES if (found := kind(name)) is not None}


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` in strings (recursively in lists and dicts) with environment values,
    so secrets stay out of job definitions. A missing variable is a configuration error: the run
    fails at once (no retry: another attempt would not find it either), naming the variable."""
    environ = os.environ if environ is None else environ
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise JobFailed(f"environment variable {name} is not set", retryable=False)
            return environ[name]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    return value


def env_references(value: Any) -> list[str]:
    """The ``${NAME}`` names in ``value`` (strings in lists and dicts too), in order, once each."""
    found: dict[str, None] = {}
    if isinstance(value, str):
        found.update((name, None) for name in _ENV_REF.findall(value))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.update((name, None) for name in env_references(item))
    elif isinstance(value, Mapping):
        for item in value.values():
            found.update((name, None) for name in env_references(item))
    return list(found)


def unset_env(kind: str, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables a ``kind`` job with this (validated) ``config`` would expand but that are not
    set in ``environ`` (default: this process's environment): a run would fail on them. Only the
    fields the kind expands count (ENV_FIELDS)."""
    environ = os.environ if environ is None else environ
    names = env_references([config.get(field) for field in ENV_FIELDS.get(kind, ())])
    return [name for name in names if name not in environ]


# ---------------------------------------------------------------- job process environments

OWN_PREFIX = "LEXYJOBS_"  # lexyjobs' settings and secrets: never handed to a job process unless passed through
PASSTHROUGH_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")


def parse_env_passthrough(job: str, value: Any) -> list[str]:
    """The ``env_passthrough`` field: a list of variable names or glob patterns (``LEXYJOBS_DATA_*``)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and PASSTHROUGH_PATTERN.fullmatch(v) for v in value):
        raise InvalidDefinition(job, "env_passthrough", "must be a list of environment variable names or glob "
                                "patterns, e.g. [\"LEXYJOBS_DATABASE_URL\", \"LEXYJOBS_DATA_*\"]")
    return list(value)


def job_environ(passthrough: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a job process starts from: this process's, minus lexyjobs' own settings
    and secrets (every ``LEXYJOBS_*`` variable: the API token, admin and SMTP passwords, database
    URL…) except those matching a ``passthrough`` name or glob pattern."""
    environ = os.environ if environ is None else environ
    return {name: value for name, value in environ.items()
            if not name.startswith(OWN_PREFIX) or any(fnmatchcase(name, p) for p in passthrough)}
