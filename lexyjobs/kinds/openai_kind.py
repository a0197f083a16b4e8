"""``openai`` kind: one chat completion from any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM,
LM Studio) through the official client. The prompt and the system prompt are Jinja2 templates,
rendered in a sandbox with the run's params; the reply text is the result, or with
``response_format = "json"`` its parsed value.

Retries belong to lexyjobs (the client's own are off): a 429 or 5xx answer fails the attempt
with the server's ``Retry-After`` as the least wait before the next one. Cancel and timeout
abort the request at once (its connection is closed).

The module is not called ``openai.py`` so that it never shadows the client package, which is
imported only when a run starts (it costs 0.4 s and 25 MB, and most processes never need it)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any, Mapping

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from lexyjobs.context import JobFailed, RunCanceled, RunContext
from lexyjobs.db import utcnow
from lexyjobs.durations import format_duration
from lexyjobs.errors import InvalidDefinition
from lexyjobs.kinds import expand_env
from lexyjobs.masking import Redactor
from lexyjobs.backoff import retry_after_seconds

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

FIELDS = {
    "prompt": "the user message: a Jinja2 template rendered with the run's params, e.g. `Summarise {{ topic }}`",
    "system": "optional system message, a template like `prompt`",
    "model": "model name, e.g. `gpt-4o-mini` or `llama3.1`",
    "temperature": "sampling temperature, 0–2 (default: the server's)",
    "max_tokens": "most tokens to generate (default: the server's)",
    "response_format": "`json`: ask for a JSON object; the reply must parse and its value is the result "
                       "(default `text`: the reply text is the result)",
    "api_key": "API key, e.g. `${MY_OPENAI_KEY}` (default: the `OPENAI_API_KEY` variable)",
    "base_url": "OpenAI-compatible endpoint, e.g. `http://127.0.0.1:11434/v1` for Ollama "
                "(default: `OPENAI_BASE_URL`, else OpenAI's)",
}
RESPONSE_FORMATS = ("text", "json")
DEFAULT_TIMEOUT = 600.0  # seconds a request may take when the job sets no timeout (the client's own default)
TIMEOUT_MARGIN = 2.0  # seconds the request outlives the run's timeout (see run)
MAX_ERROR_CHARS = 500

# Params are data: the sandbox keeps templates away from Python internals (``''.__class__``) and
# from mutating values; StrictUndefined makes a missing param an error instead of an empty string.
_TEMPLATES = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


# ---------------------------------------------------------------- definition


def validate(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidDefinition(job, "prompt", "is required for an openai job: the user message, "
                                "e.g. \"Summarise {{ topic }}\"")
    config: dict[str, Any] = {"prompt": _template(job, "prompt", prompt)}
    system = fields.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise InvalidDefinition(job, "system", "must be text (a template like prompt)")
        config["system"] = _template(job, "system", system)
    model = fields.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidDefinition(job, "model", "is required for an openai job, e.g. \"gpt-4o-mini\"")
    config["model"] = model.strip()
    if fields.get("temperature") is not None:
        config["temperature"] = _number(job, "temperature", fields["temperature"], 0.0, 2.0, whole=False)
    if fields.get("max_tokens") is not None:
        config["max_tokens"] = _number(job, "max_tokens", fields["max_tokens"], 1, 10_000_000, whole=True)
    response_format = fields.get("response_format", "text")
    if response_format not in RESPONSE_FORMATS:
        raise InvalidDefinition(job, "response_format", f"'{response_format}' is not one of "
                                f"{', '.join(RESPONSE_FORMATS)}")
    config["response_format"] = response_format
    for name in ("api_key", "base_url"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidDefinition(job, name, "must be text, e.g. \"${MY_VARIABLE}\"")
        if value is not None:
            config[name] = value.strip()
    base_url = config.get("base_url", "https://")
    if not base_url.startswith(("http://", "https://", "${")):
        raise InvalidDefinition(job, "base_url", f"'{base_url}' must start with http:// or https://")
    return config


def _template(job: str, field: str, source: str) -> str:
    """``source`` if it compiles as a template; else InvalidDefinition with the line and problem."""
    try:
        _TEMPLATES.parse(source)
    except TemplateSyntaxError as exc:
        raise InvalidDefinition(job, field, f"template syntax error on line {exc.lineno}: {exc.message}") from None
    return source


def _number(job: str, field: str, value: Any, low: float, high: float, *, whole: bool) -> Any:
    """A number in [low, high]; numeric text is accepted too (the panel's form sends text)."""
    if isinstance(value, str):
        try:
            value = int(value) if whole else float(value)
        except ValueError:
            pass
    ok = not isinstance(value, bool) and isinstance(value, int if whole else (int, float)) and low <= value <= high
    if not ok:
        what = "a whole number" if whole else "a number"
        raise InvalidDefinition(job, field, f"must be {what} from {low:g} to {high:g}")
    return value if whole else float(value)


# ---------------------------------------------------------------- run


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    request: dict[str, Any] = {"model": expand_env(config["model"]), "messages": _messages(ctx, config)}
    for name in ("temperature", "max_tokens"):
        if name in config:
            request[name] = config[name]
    if config["response_format"] == "json":
        request["response_format"] = {"type": "json_object"}
    key = expand_env(config["api_key"]) if "api_key" in config else os.environ.get("OPENAI_API_KEY")
    if not key:
        raise JobFailed("no API key: set OPENAI_API_KEY or the job's api_key (a server that needs none, "
                        "such as Ollama, accepts any value)", retryable=False)
    base_url = expand_env(config["base_url"]) if "base_url" in config else os.environ.get("OPENAI_BASE_URL") or None
    # The run's timeout is enforced by the worker (the run fails "timed out after …"); the
    # request's own ends a little later, so that it never wins the race with another message.
    timeout = ctx.timeout + TIMEOUT_MARGIN if ctx.timeout else DEFAULT_TIMEOUT

    from openai import AsyncOpenAI  # here, not at import: see the module docstring

    client = AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout)
    endpoint = str(client.base_url).rstrip("/")
    ctx.progress(None, f"waiting for {request['model']}")  # what the panel shows while the model works
    started = time.monotonic()
    try:
        completion = _complete_unless_cancelled(ctx, client, request, _Failures(endpoint, key, timeout))
    finally:
        ctx.progress(None, None)
    generation_ms = round((time.monotonic() - started) * 1000)
    return _result(ctx, completion, generation_ms, endpoint, json_wanted=config["response_format"] == "json")


def _messages(ctx: RunContext, config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages: the rendered system prompt (if any) and prompt."""
    values = {"params": ctx.params, **ctx.params}  # ``{{ topic }}``, or ``params`` to loop over them all
    messages = []
    for field, role in (("system", "system"), ("prompt", "user")):
        if field in config:
            messages.append({"role": role, "content": _render(field, config[field], values)})
    return messages


def _render(field: str, source: str, values: Mapping[str, Any]) -> str:
    try:
        return _TEMPLATES.from_string(source).render(values)
    except SecurityError as exc:
        raise JobFailed(f"{field}: not allowed in a template: {exc.message}") from None
    except TemplateError as exc:  # a missing param (StrictUndefined) above all
        raise JobFailed(f"{field}: {exc.message or exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # {{ 1 / 0 }}, {{ "a" + 1 }}
        raise JobFailed(f"{field}: {type(exc).__name__}: {exc}") from None


def _complete_unless_cancelled(ctx: RunContext, client: AsyncOpenAI, request: dict[str, Any],
                               failures: _Failures) -> ChatCompletion:
    """Send the request on an event loop of the run's own thread. A cancel or timeout (from
    another thread) cancels the request's task, which closes its connection: the server sees
    the request aborted, and RunCanceled is raised at once."""
    async def complete() -> ChatCompletion:
        async with client:
            return await client.chat.completions.create(**request)

    loop = asyncio.new_event_loop()
    task = loop.create_task(complete())
    def abort(_reason: str) -> None:
        loop.call_soon_threadsafe(task.cancel)

    remove = ctx.on_cancel(abort)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        raise RunCanceled(ctx.cancel_reason or "cancel") from None
    except Exception as exc:
        raise failures.translate(exc) from None
    finally:
        remove()
        loop.close()


class _Failures:
    """Turns the client's exceptions into JobFailed messages that name the endpoint, carry the
    server's own message and never the API key (even one written literally in the job)."""

    def __init__(self, endpoint: str, key: str, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self.mask = Redactor([key])

    def translate(self, exc: Exception) -> Exception:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return self.status(exc)
        if isinstance(exc, openai.APITimeoutError):
            return JobFailed(f"no answer from {self.endpoint} within {format_duration(self.timeout)}")
        if isinstance(exc, openai.APIConnectionError):
            return JobFailed(self.mask.text(f"cannot reach {self.endpoint}: {exc.__cause__ or exc}"))
        if isinstance(exc, openai.OpenAIError):
            return JobFailed(self.mask.text(f"{type(exc).__name__}: {exc}"))
        return exc  # not the client's: the worker records it with its traceback

    def status(self, exc: Any) -> JobFailed:
        """HTTP 4xx/5xx. 429 and 5xx pass on the server's Retry-After for the next attempt."""
        code, body = exc.status_code, exc.body
        said = body.get("message") if isinstance(body, Mapping) else body
        said = said if isinstance(said, str) and said else exc.message
        text = self.mask.text(f"HTTP {code} {exc.response.reason_phrase} from {self.endpoint}: {said}")
        retry_after = None
        if code == 429 or code >= 500:
            retry_after = retry_after_seconds(exc.response.headers.get("retry-after"), utcnow())
        return JobFailed(text[:MAX_ERROR_CHARS], retry_after=retry_after)


_FENCED = re.compile(r"\A\s*```[A-Za-z]*[ \t]*\n(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)


def _result(ctx: RunContext, completion: ChatCompletion, generation_ms: int, endpoint: str, *,
            json_wanted: bool) -> Any:
    """Record the details, then return the reply text or (``json_wanted``) its parsed value."""
    choice = completion.choices[0] if completion.choices else None
    text = choice.message.content if choice is not None else None
    finish = choice.finish_reason if choice is not None else None
    ctx.details.update(model=completion.model, generation_ms=generation_ms,
                       output_bytes=len(text.encode("utf-8")) if text else 0, finish_reason=finish)
    usage = completion.usage
    if usage is not None:  # some compatible servers leave it out
        ctx.details.update(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
    tokens = f"{usage.prompt_tokens} + {usage.completion_tokens} tokens" if usage is not None else "no token counts"
    ctx.log.info("%s answered from %s in %d ms: %s, finish reason %s", completion.model, endpoint, generation_ms,
                 tokens, finish)
    if text is None:
        raise JobFailed(f"the reply has no text (finish reason {finish})")
    if not json_wanted:
        return text
    fenced = _FENCED.match(text)  # many models wrap JSON in a ```json block despite being asked not to
    try:
        return json.loads(fenced.group(1) if fenced else text, parse_constant=_not_json)
    except ValueError as exc:
        ctx.log.error("the reply is not valid JSON (%s); it was:\n%s", exc, text)
        cut = " (the reply was cut off at max_tokens)" if finish == "length" else ""
        raise JobFailed(f"the reply is not valid JSON: {exc}{cut}; the raw text is in the run's log") from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")
