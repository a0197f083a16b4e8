"""Job kinds. Each kind module provides ``FIELDS`` (its own definition fields and what they
mean), ``validate(job, fields) -> config`` and ``run(ctx, config) -> result``. The registry
below is the one place that lists them."""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping

from lexyjobs.context import JobFailed, RunContext


@dataclass(frozen=True)
class Kind:
    name: str
    fields: Mapping[str, str]
    validate: Callable[[str, Mapping[str, Any]], dict[str, Any]]
    run: Callable[[RunContext, Mapping[str, Any]], Any]


def _kind(name: str, module: ModuleType) -> Kind:
    return Kind(name, module.FIELDS, module.validate, module.run)


# kind name -> its module in this package. The modules are imported on first use of kinds():
# their libraries (requests, …) cost start-up time and idle memory that KIND_NAMES does not.
KIND_MODULES = {"python": "python", "http": "http", "shell": "shell", "openai": "openai_kind"}
KIND_NAMES = tuple(KIND_MODULES)


def _load() -> dict[str, Kind]:
    return {name: _kind(name, importlib.import_module(f"lexyjobs.kinds.{module}"))
            for name, module in KIND_MODULES.items()}


_KINDS: dict[str, Kind] | None = None


def kinds() -> dict[str, Kind]:
    """All job kinds by name."""
    global _KINDS
    if _KINDS is None:
        _KINDS = _load()
    return _KINDS


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` in strings (recursively in lists and dicts) with environment values,
    so secrets stay out of job definitions. A missing variable fails the run with its name."""
    environ = os.environ if environ is None else environ
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise JobFailed(f"environment variable {name} is not set")
            return environ[name]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    return value
