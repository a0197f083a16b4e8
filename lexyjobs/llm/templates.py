"""Prompts and inputs are Jinja2 templates rendered in a sandbox with the run's params (and, in a
batch run, the ``item`` and its ``index``). The sandbox keeps templates away from Python internals
(``''.__class__``) and from mutating values; StrictUndefined makes a missing param an error
instead of an empty string."""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.errors import InvalidDefinition

_TEMPLATES = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
# http jobs' URLs: every value is percent-encoded as it goes in ("+00:00" stays itself in a query,
# a param holding "/../" or "?x=" cannot change the path or add arguments); None is left empty.
_URLS = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                      finalize=lambda value: "" if value is None else quote(str(value), safe=""))


def checked(job: str, field: str, source: str) -> str:
    """``source`` if it compiles as a template; else InvalidDefinition with the line and problem."""
    try:
        _TEMPLATES.parse(source)
    except TemplateSyntaxError as exc:
        raise InvalidDefinition(job, field, f"template syntax error on line {exc.lineno}: {exc.message}") from None
    return source


def values(ctx: RunContext, **extra: Any) -> dict[str, Any]:
    """What a template sees: each param by name (``{{ topic }}``), ``params`` for them all,
    ``fire_time`` (the schedule time the run is for, ISO 8601 UTC, or None) and ``extra``."""
    fire_time = ctx.fire_time
    return {"params": ctx.params, **ctx.params, "fire_time": fire_time.isoformat() if fire_time else None, **extra}


def render(field: str, source: str, values: Mapping[str, Any], *, url: bool = False) -> str:
    """The rendered text (``url``: each value percent-encoded); a template that cannot render fails
    the run (JobFailed naming ``field``)."""
    try:
        return (_URLS if url else _TEMPLATES).from_string(source).render(values)
    except SecurityError as exc:
        raise JobFailed(f"{field}: not allowed in a template: {exc.message}") from None
    except TemplateError as exc:  # a missing param (StrictUndefined) above all
        raise JobFailed(f"{field}: {exc.message or exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # {{ 1 / 0 }}, {{ "a" + 1 }}
        raise JobFailed(f"{field}: {type(exc).__name__}: {exc}") from None


def messages(config: Mapping[str, Any], values: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages: the rendered system prompt (if any) and prompt."""
    out = []
    for field, role in (("system", "system"), ("prompt", "user")):
        if field in config:
            out.append({"role": role, "content": render(field, config[field], values)})
    return out
