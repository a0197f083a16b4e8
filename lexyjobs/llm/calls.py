"""Requests to the server: the client (``Endpoint``), an event loop of the run's own thread that
a cancel or timeout stops at once (``run_on_loop``), a 429's ``Retry-After`` waited out within the
attempt (``send``), and the client's errors as run failures (``Failures``).

Retries belong to lexyjobs (the client's own are off): a 429 that asks for a longer wait than the
attempt has, and a 5xx, fail the attempt with the server's ``Retry-After`` as the least wait
before the next one. Cancel and timeout cancel the requests' tasks, which closes their
connections: the server sees the requests aborted (and stops generating)."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Awaitable, Callable, Coroutine, Mapping, TypeVar

from lexyjobs.backoff import retry_after_seconds
from lexyjobs.context import JobFailed, RunCanceled, RunContext
from lexyjobs.db import utcnow
from lexyjobs.durations import format_duration
from lexyjobs.kinds import expand_env
from lexyjobs import tracing
from lexyjobs.masking import Redactor

T = TypeVar("T")
DEFAULT_TIMEOUT = 600.0  # seconds a request may take when the job sets no timeout (the client's own default)
TIMEOUT_MARGIN = 2.0  # seconds the request outlives the run's timeout (see Endpoint)
MAX_RATE_LIMIT_WAIT = 300.0  # seconds of a 429's Retry-After waited within the attempt, at most
MAX_ERROR_CHARS = 500


class Endpoint:
    """The client of one run, with what its messages need: the endpoint's address and a mask for
    the key (even one written literally in the job)."""

    def __init__(self, ctx: RunContext, config: Mapping[str, Any]) -> None:
        key = expand_env(config["api_key"]) if "api_key" in config else os.environ.get("OPENAI_API_KEY")
        if not key:
            raise JobFailed("no API key: set OPENAI_API_KEY or the job's api_key (a server that needs none, "
                            "such as Ollama, accepts any value)", retryable=False)
        base_url = expand_env(config["base_url"]) if "base_url" in config else os.environ.get("OPENAI_BASE_URL")
        # The run's timeout is enforced by the worker (the run fails "timed out after …"); the
        # request's own ends a little later, so that it never wins the race with another message.
        self.timeout = ctx.timeout + TIMEOUT_MARGIN if ctx.timeout else DEFAULT_TIMEOUT
        self.deadline = time.monotonic() + ctx.timeout if ctx.timeout else None

        from openai import AsyncOpenAI  # here, not at import: see the package docstring

        self.client = AsyncOpenAI(api_key=key, base_url=base_url or None, max_retries=0, timeout=self.timeout,
                                  default_headers=tracing.outgoing_headers() or None)
        self.address = str(self.client.base_url).rstrip("/")
        self.failures = Failures(self.address, key, self.timeout)
        self.mask = self.failures.mask
        # the key is a secret of the run even when written literally in the job: whatever
        # the run records (log, result, details, error) has it masked
        ctx.redactor = Redactor([*ctx.redactor.secrets, key])


def run_on_loop(ctx: RunContext, endpoint: Endpoint, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` on an event loop of the run's own thread, with the client open. A cancel
    or timeout (from another thread) cancels its task, which closes its connections, and
    RunCanceled is raised at once."""
    async def main() -> T:
        async with endpoint.client:
            return await work()

    loop = asyncio.new_event_loop()
    task = loop.create_task(main())

    def abort(_reason: str) -> None:
        loop.call_soon_threadsafe(task.cancel)

    remove = ctx.on_cancel(abort)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        raise RunCanceled(ctx.cancel_reason or "cancel") from None
    except Exception as exc:
        raise endpoint.failures.translate(exc) from None
    finally:
        remove()
        loop.close()


async def send(ctx: RunContext, endpoint: Endpoint, request: Callable[[], Awaitable[T]]) -> T:
    """``request()``, again after each 429 whose Retry-After fits in the attempt (at most
    MAX_RATE_LIMIT_WAIT, and before the run's timeout): a rate limit waits, it does not burn an
    attempt. Other errors propagate (``Failures.translate`` words them)."""
    import openai

    while True:
        try:
            return await request()
        except openai.RateLimitError as exc:
            wait = retry_after_seconds(exc.response.headers.get("retry-after"), utcnow())
            left = endpoint.deadline - time.monotonic() if endpoint.deadline is not None else MAX_RATE_LIMIT_WAIT
            if wait is None or wait > min(MAX_RATE_LIMIT_WAIT, left):
                raise
            ctx.log.warning("HTTP 429 from %s: %s; waiting %s as it asks (Retry-After), then sending again",
                            endpoint.address, endpoint.failures.said(exc), format_duration(wait))
            await asyncio.sleep(wait)


class Failures:
    """Turns the client's exceptions into JobFailed messages that name the endpoint, carry the
    server's own message and never the API key."""

    def __init__(self, address: str, key: str, timeout: float) -> None:
        self.address, self.timeout = address, timeout
        self.mask = Redactor([key])

    def translate(self, exc: BaseException) -> BaseException:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return self.status(exc)
        if isinstance(exc, openai.APITimeoutError):
            return JobFailed(f"no answer from {self.address} within {format_duration(self.timeout)}")
        if isinstance(exc, openai.APIConnectionError):
            return JobFailed(self.mask.text(f"cannot reach {self.address}: {exc.__cause__ or exc}"))
        if isinstance(exc, openai.OpenAIError):
            return JobFailed(self.mask.text(f"{type(exc).__name__}: {exc}"))
        return exc  # not the client's: the worker records it with its traceback

    def said(self, exc: Any) -> str:
        """The server's own message in an error answer (masked)."""
        body = exc.body
        said = body.get("message") if isinstance(body, Mapping) else body
        return self.mask.text(said if isinstance(said, str) and said else exc.message)

    def status(self, exc: Any) -> JobFailed:
        """HTTP 4xx/5xx. 429 and 5xx pass on the server's Retry-After for the next attempt."""
        code = exc.status_code
        text = f"HTTP {code} {exc.response.reason_phrase} from {self.address}: {self.said(exc)}"
        retry_after = None
        if code == 429 or code >= 500:
            retry_after = retry_after_seconds(exc.response.headers.get("retry-after"), utcnow())
        return JobFailed(text[:MAX_ERROR_CHARS], retry_after=retry_after)
