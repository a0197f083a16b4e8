"""Chat completions: the request a job's fields make (``request``), one completion, whole or
streamed into the run's log as it is generated (``complete``), and its text as the run's result
(``result``: the text, or under ``response_format = "json"`` its parsed value)."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

from lexyjobs.context import JobFailed, RunContext
from lexyjobs.kinds import expand_env
from lexyjobs.llm import templates
from lexyjobs.llm.calls import Endpoint, send
from lexyjobs.masking import Redactor


@dataclass
class Answer:
    """A completion's text and facts (``usage`` None: the server did not report it)."""

    text: str | None
    model: str
    finish_reason: str | None
    usage: tuple[int, int] | None  # (prompt tokens, completion tokens)
    generation_ms: int
    first_token_ms: int | None = None  # streamed: when the first text arrived
    cached: bool = False  # from the cache (cache_for): nothing was sent

    @property
    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"model": self.model, "generation_ms": self.generation_ms,
                                   "output_bytes": len(self.text.encode("utf-8")) if self.text else 0,
                                   "finish_reason": self.finish_reason}
        if self.usage is not None:
            details.update(prompt_tokens=self.usage[0], completion_tokens=self.usage[1])
        if self.first_token_ms is not None:
            details["first_token_ms"] = self.first_token_ms
        if self.cached:
            details["cached"] = True
        return details


def request(config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The request's body for the rendered messages and the job's settings."""
    body: dict[str, Any] = {"model": expand_env(config["model"]), "messages": templates.messages(config, values)}
    for name in ("temperature", "max_tokens"):
        if name in config:
            body[name] = config[name]
    if config["response_format"] == "json":
        body["response_format"] = {"type": "json_object"}
    return body


async def complete(ctx: RunContext, endpoint: Endpoint, body: dict[str, Any], *, stream: bool) -> Answer:
    """One completion. Streamed: each piece of text goes to the run's log as it arrives and the
    progress says how many tokens came so far."""
    started = time.monotonic()
    if not stream:
        completion = await send(ctx, endpoint, lambda: endpoint.client.chat.completions.create(**body))
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        return Answer(choice.message.content if choice is not None else None, completion.model,
                      choice.finish_reason if choice is not None else None,
                      (usage.prompt_tokens, usage.completion_tokens) if usage is not None else None,
                      _ms_since(started))
    chunks = await send(ctx, endpoint, lambda: endpoint.client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True}))
    log = StreamedText(ctx, endpoint.mask)
    model, finish, usage_seen, first = body["model"], None, None, None
    async with chunks:
        async for chunk in chunks:
            model = chunk.model or model
            if chunk.usage is not None:
                usage_seen = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices[:1]:
                finish = choice.finish_reason or finish
                if choice.delta.content:
                    first = first if first is not None else _ms_since(started)
                    log.add(choice.delta.content)
    log.end()
    return Answer(log.text if log.pieces else None, model, finish, usage_seen, _ms_since(started), first)


class StreamedText:
    """The streamed reply, written to the run's log as it grows. Written up to its last
    whitespace only, so that no secret (never containing whitespace) is cut between two writes,
    where masking would not see it whole."""

    def __init__(self, ctx: RunContext, mask: Redactor) -> None:
        self.ctx, self.mask = ctx, mask
        self.pieces: list[str] = []
        self._pending = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        self._pending += piece
        cut = max(self._pending.rfind(" "), self._pending.rfind("\n"), self._pending.rfind("\t"))
        if cut >= 0:
            self.ctx.write(self.mask.text(self._pending[:cut + 1]))
            self._pending = self._pending[cut + 1:]
        self.ctx.progress(None, f"streaming: {len(self.pieces):,} tokens")

    def end(self) -> None:
        self.ctx.write(self.mask.text(self._pending) + ("\n" if self.pieces else ""))
        self._pending = ""


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


_FENCED = re.compile(r"\A\s*```[A-Za-z]*[ \t]*\n(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)


def result(ctx: RunContext, answer: Answer, *, json_wanted: bool) -> Any:
    """The reply text or (``json_wanted``) its parsed value; JobFailed when there is none."""
    text, finish = answer.text, answer.finish_reason
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
