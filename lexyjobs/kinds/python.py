"""``python`` kind: call ``module:function`` with the RunContext; its return value is the result.
By default the function runs in the worker's thread (it can only be stopped where it checks for
cancellation); ``isolation = "process"`` runs it in a child process that cancel and timeout kill
(``lexyjobs.kinds.python_process``)."""
from __future__ import annotations

import functools
import importlib
import inspect
import re
from typing import Any, Callable, Mapping

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.errors import InvalidDefinition
from lexyjobs.kinds import parse_env_passthrough

FIELDS = {
    "func": "the function to call, as `package.module:function`; it receives the run context",
    "isolation": "`thread` (default: in a worker thread of the server) or `process`: in a child process, so that "
                 "cancel and timeout stop it even when it never checks for cancellation",
    "env_passthrough": "with isolation = \"process\": `LEXYJOBS_*` variables the child still gets (names or glob "
                       "patterns); lexyjobs' own settings and secrets are removed otherwise",
}
ISOLATIONS = ("thread", "process")
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.<>]*")


def validate(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    func = fields.get("func")
    if not isinstance(func, str) or not _REF.fullmatch(func):
        raise InvalidDefinition(job, "func", "must be 'module:function', e.g. 'myapp.jobs:refresh'")
    isolation = fields.get("isolation", "thread")
    if isolation not in ISOLATIONS:
        raise InvalidDefinition(job, "isolation", "must be \"thread\" (the default) or \"process\"")
    passthrough = parse_env_passthrough(job, fields.get("env_passthrough"))
    if passthrough and isolation != "process":
        raise InvalidDefinition(job, "env_passthrough", "only applies with isolation = \"process\" (a function run "
                                "in a thread shares the server's environment)")
    config: dict[str, Any] = {"func": func}
    if isolation == "process":
        config.update(isolation=isolation, env_passthrough=passthrough)
    return config


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
    if config.get("isolation") == "process":
        from lexyjobs.kinds import python_process  # only jobs that ask for it pay for its imports
        return python_process.run(ctx, config)
    return call(ctx, config["func"])


def call(ctx: RunContext, ref: str) -> Any:
    """Call the function ``ref`` names, with the context when it takes one."""
    func, takes_context = _callable(ref)
    return func(ctx) if takes_context else func()
