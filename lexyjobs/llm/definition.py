"""The ``openai`` kind's fields (``FIELDS``) and their checks (``validate``): a chat job needs a
prompt, an embeddings job an input (or items); numbers are accepted as text too (the panel's form
sends text)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from lexyjobs.durations import parse_duration
from lexyjobs.errors import InvalidDefinition
from lexyjobs.llm import providers
from lexyjobs.llm.templates import checked

FIELDS = {
    "mode": "`chat` (default: one chat completion per run or per item) or `embeddings`: vectors for the input texts",
    "prompt": "chat: the user message, a Jinja2 template rendered with the run's params, e.g. `Summarise {{ topic }}`",
    "system": "chat: optional system message, a template like `prompt`",
    "model": "model name, e.g. `gpt-4o-mini`, `text-embedding-3-large` or `llama3.1`",
    "temperature": "chat: sampling temperature, 0–2 (default: the server's)",
    "max_tokens": "chat: most tokens to generate (default: the server's)",
    "response_format": "chat: `json`: ask for a JSON object; the reply must parse and its value is the result "
                       "(default `text`: the reply text is the result)",
    "stream": "chat: stream the reply into the run's live log as it is generated (default on)",
    "input": "embeddings: the text to embed, a template like `prompt` (default `{{ item }}`: each item)",
    "dimensions": "embeddings: the vectors' length, for models that can shorten them (text-embedding-3-*)",
    "batch_size": "embeddings: inputs sent in one request (default 100)",
    "items": "`module:function` returning the items of a batch run (a list, or it yields them); default: the "
             "run's `items` param when it is a list. One request per item (per batch_size for embeddings)",
    "parallel": "batch runs: requests sent at once (default 4)",
    "save": "batch runs: `module:function` called with (ctx, results) as each request's items finish, to "
            "write them where they belong; the run's result is then the counts",
    "max_cost": "the most one attempt may spend, e.g. `0.50 USD` (needs `prices`): no request is sent past it",
    "max_tokens_total": "the most tokens one attempt may use (prompt and completion, every request)",
    "budget_per_day": "what the job may spend per UTC day, e.g. `5 USD` (needs `prices`)",
    "on_budget": "when a daily budget is spent: `wait` (default: the run waits for the next UTC day) or `fail`",
    "prices": "per model, per 1M tokens: `{ \"gpt-4o-mini\" = { input = 0.15, output = 0.60 } }` (also on the "
              "job's provider table)",
    "cache_for": "reuse the answer to an identical request for this long, e.g. `24h` (default: no cache)",
    "cache_shared": "with cache_for: share the answers with the other jobs that cache (default: this job's only)",
    "api_key": "API key, e.g. `${MY_OPENAI_KEY}` (default: the `OPENAI_API_KEY` variable)",
    "base_url": "OpenAI-compatible endpoint, e.g. `http://127.0.0.1:11434/v1` for Ollama "
                "(default: `OPENAI_BASE_URL`, else OpenAI's)",
}
MODES = ("chat", "embeddings")
RESPONSE_FORMATS = ("text", "json")
DEFAULT_INPUT = "{{ item }}"
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 2048  # OpenAI's limit of inputs per embeddings request
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64
MAX_CACHE_SECONDS = 365 * 86400
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_CHAT_ONLY = ("prompt", "system", "temperature", "max_tokens")
_EMBEDDINGS_ONLY = ("input", "dimensions", "batch_size")


def validate(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    mode = fields.get("mode") or "chat"
    if mode not in MODES:
        raise InvalidDefinition(job, "mode", f"'{mode}' is not one of {', '.join(MODES)}")
    model = fields.get("model")
    if not isinstance(model, str) or not model.strip():
        example = "text-embedding-3-small" if mode == "embeddings" else "gpt-4o-mini"
        raise InvalidDefinition(job, "model", f"is required for an openai job, e.g. \"{example}\"")
    config: dict[str, Any] = {"mode": mode, "model": model.strip()}
    config.update(_chat(job, fields) if mode == "chat" else _embeddings(job, fields))
    for name in ("items", "save"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, str) or not _REF.fullmatch(value.strip())):
            raise InvalidDefinition(job, name, "must be 'module:function', e.g. 'myapp.ai:pending_texts'")
        if value is not None:
            config[name] = value.strip()
    if fields.get("parallel") is not None:
        config["parallel"] = number(job, "parallel", fields["parallel"], 1, MAX_PARALLEL, whole=True)
    config.update(_spending(job, fields))
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


def _chat(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    _refuse(job, fields, _EMBEDDINGS_ONLY, "chat")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidDefinition(job, "prompt", "is required for an openai job: the user message, "
                                "e.g. \"Summarise {{ topic }}\"")
    config: dict[str, Any] = {"prompt": checked(job, "prompt", prompt)}
    system = fields.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise InvalidDefinition(job, "system", "must be text (a template like prompt)")
        config["system"] = checked(job, "system", system)
    if fields.get("temperature") is not None:
        config["temperature"] = number(job, "temperature", fields["temperature"], 0.0, 2.0, whole=False)
    if fields.get("max_tokens") is not None:
        config["max_tokens"] = number(job, "max_tokens", fields["max_tokens"], 1, 10_000_000, whole=True)
    response_format = fields.get("response_format", "text")
    if response_format not in RESPONSE_FORMATS:
        raise InvalidDefinition(job, "response_format", f"'{response_format}' is not one of "
                                f"{', '.join(RESPONSE_FORMATS)}")
    config["response_format"] = response_format
    stream = fields.get("stream", True)
    if not isinstance(stream, bool):
        raise InvalidDefinition(job, "stream", "must be true or false")
    config["stream"] = stream
    return config


def _embeddings(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    _refuse(job, fields, _CHAT_ONLY, "embeddings")
    source = fields.get("input", DEFAULT_INPUT)
    if not isinstance(source, str) or not source.strip():
        raise InvalidDefinition(job, "input", "must be a template of the text to embed, e.g. \"{{ item.text }}\"")
    config: dict[str, Any] = {"input": checked(job, "input", source)}
    if fields.get("dimensions") is not None:
        config["dimensions"] = number(job, "dimensions", fields["dimensions"], 1, 100_000, whole=True)
    config["batch_size"] = number(job, "batch_size", fields.get("batch_size", DEFAULT_BATCH_SIZE), 1, MAX_BATCH_SIZE,
                                  whole=True)
    return config


def _spending(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The budget, price and cache fields, checked; kept as written (parsed again when a run starts)."""
    config: dict[str, Any] = {}
    own = {key: fields[key] for key in providers.JOB_FIELDS if fields.get(key) not in (None, "")}
    try:
        providers.parse_provider("", own)
    except ValueError as exc:
        raise InvalidDefinition(job, *exc.args) from None
    config.update(own)
    if fields.get("max_cost") not in (None, ""):
        try:
            providers.parse_money(fields["max_cost"])
        except ValueError as exc:
            raise InvalidDefinition(job, "max_cost", str(exc)) from None
        config["max_cost"] = fields["max_cost"]
    if fields.get("max_tokens_total") not in (None, ""):
        config["max_tokens_total"] = number(job, "max_tokens_total", fields["max_tokens_total"], 1, 10**12, whole=True)
    if fields.get("cache_for") not in (None, ""):
        try:
            seconds = parse_duration(fields["cache_for"])
        except (TypeError, ValueError):
            seconds = 0
        if not 0 < seconds <= MAX_CACHE_SECONDS:
            raise InvalidDefinition(job, "cache_for", "must be a duration from 1s to 365d, e.g. \"24h\"")
        config["cache_for"] = fields["cache_for"]
    shared = fields.get("cache_shared", False)
    if not isinstance(shared, bool):
        raise InvalidDefinition(job, "cache_shared", "must be true or false")
    if shared and "cache_for" not in config:
        raise InvalidDefinition(job, "cache_shared", "needs cache_for (how long answers are reused)")
    if shared:
        config["cache_shared"] = True
    return config


def own_provider(config: Mapping[str, Any]) -> providers.Provider:
    """The job's own budget and prices (validated when the job was defined)."""
    return providers.parse_provider("", {key: config[key] for key in providers.JOB_FIELDS if key in config})


def _refuse(job: str, fields: Mapping[str, Any], names: tuple[str, ...], mode: str) -> None:
    """A field of the other mode is a mistake worth saying (it would be silently ignored)."""
    for name in names:
        if fields.get(name) not in (None, ""):
            raise InvalidDefinition(job, name, f"does not apply to mode = \"{mode}\"")


def number(job: str, field: str, value: Any, low: float, high: float, *, whole: bool) -> Any:
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
