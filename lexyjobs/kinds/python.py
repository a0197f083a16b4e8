"""``python`` kind: call ``module:function`` with the RunContext; its return value is the result."""
from __future__ import annotations

import functools
import importlib
import inspect
import re
from typing import Any, Callable, Mapping

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.errors import InvalidDefinition

FIELDS = {"func": "the function to call, as `package.module:function`; it receives the run context"}
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.<>]*")


def validate(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    func = fields.get("func")
    if not isinstance(func, str) or not _REF.fullmatch(func):
        raise InvalidDefinition(job, "func", "must be 'module:function', e.g. 'myapp.jobs:refresh'")
    return {"func": func}


def resolve(ref: str) -> Callable[..., Any]:
    """Import ``module:attr.path`` and return the callable."""
    module_name, _, path = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in path.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise JobFailed(f"cannot load {ref}: {type(exc).__name__}: {exc}") from exc
    if not callable(target):
        raise JobFailed(f"{ref} is not callable")
    return target


@functools.lru_cache(maxsize=1024)
def _callable(ref: str) -> tuple[Callable[..., Any], bool]:
    """The function for ``ref`` and whether it takes the context (cached: the hot path)."""
    func = resolve(ref)
    takes_context = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in inspect.signature(func).parameters.values())
    return func, takes_context


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    func, takes_context = _callable(config["func"])
    return func(ctx) if takes_context else func()
