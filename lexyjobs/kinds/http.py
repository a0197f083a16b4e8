"""``http`` kind: one HTTP request. Non-2xx fails the run; a JSON response body is the result.
Values may reference environment variables (``${SERVICE_TOKEN}``) so secrets stay out of the
definition. Cancel and timeout abort the request at once: its connection is closed (see
``lexyjobs.kinds.hangup``), so the server sees the client leave and no thread stays blocked."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping

import requests

from lexyjobs.context import JobFailed, RunCanceled, RunContext
from lexyjobs.db import utcnow
from lexyjobs.errors import InvalidDefinition
from lexyjobs.kinds import expand_env
from lexyjobs import tracing
from lexyjobs.kinds.hangup import Hangup
from lexyjobs.backoff import retry_after_seconds

FIELDS = {
    "method": "GET, POST, PUT, PATCH, DELETE or HEAD (default GET)",
    "url": "`http://` or `https://` URL; may use `${ENV}`, and `{{ fire_time }}` or a param (`{{ brand_id }}`), "
           "each percent-encoded",
    "headers": "table of header values; may use `${ENV}`",
    "body": "JSON body; when omitted, the run's params are sent (JSON body, or query string for GET/HEAD/DELETE)",
    "verify_tls": "check the server's TLS certificate (default true)",
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
# urllib3 logs each request line, with ${ENV} values already expanded, at DEBUG: never let it.
logging.getLogger("urllib3").setLevel(logging.INFO)
DEFAULT_TIMEOUT = 60.0
MAX_BODY_CHARS = 64 * 1024
TEMPLATE_MARK = "{{"


def validate(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    url = fields.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidDefinition(job, "url", "is required for an http job")
    if not (url.startswith(("http://", "https://")) or url.startswith("${")):
        raise InvalidDefinition(job, "url", f"'{url}' must start with http:// or https://")
    if TEMPLATE_MARK in url:
        from lexyjobs.llm import templates  # jinja2: only for a job whose URL is a template
        templates.checked(job, "url", url)
    method = str(fields.get("method", "GET")).upper()
    if method not in METHODS:
        raise InvalidDefinition(job, "method", f"'{fields.get('method')}' is not one of {', '.join(METHODS)}")
    headers = fields.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise InvalidDefinition(job, "headers", "must be a table of text values")
    verify = fields.get("verify_tls", True)
    if not isinstance(verify, bool):
        raise InvalidDefinition(job, "verify_tls", "must be true or false")
    config: dict[str, Any] = {"method": method, "url": url, "headers": dict(headers), "verify_tls": verify}
    if "body" in fields:
        config["body"] = fields["body"]
    return config


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    method, url = config["method"], expand_env(_rendered_url(ctx, config["url"]))
    kwargs: dict[str, Any] = {"headers": tracing.outgoing_headers(expand_env(config["headers"])),
                              "verify": config["verify_tls"]}
    if "body" in config:
        kwargs["json"] = expand_env(config["body"])
    elif ctx.params:
        kwargs["params" if method in ("GET", "HEAD", "DELETE") else "json"] = ctx.params
    timeout = ctx.timeout or DEFAULT_TIMEOUT
    started = time.monotonic()
    response = _request_unless_cancelled(ctx, method, url, config["url"], timeout=(min(10.0, timeout), timeout), **kwargs)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    text = response.text
    ctx.details.update(status_code=response.status_code, duration_ms=elapsed_ms, response_bytes=len(response.content))
    ctx.log.info("%s %s -> %s in %d ms", method, config["url"], response.status_code, elapsed_ms)
    if not response.ok:
        body = ctx.redactor.text(text)[:500]  # mask before cutting: a cut secret could not be found any more
        retry_after = None  # 429 and 5xx: the server's Retry-After is the least wait before the next attempt
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), utcnow())
        raise JobFailed(f"HTTP {response.status_code} {response.reason}: {body}".rstrip(": "), retry_after=retry_after)
    try:
        return response.json()
    except ValueError:
        return {"status_code": response.status_code, "body": text[:MAX_BODY_CHARS]} if text else None


def _rendered_url(ctx: RunContext, url: str) -> str:
    """``url`` with its ``{{ … }}`` filled from the run (the fire time, the params), before the
    ``${ENV}`` values go in (a secret is never read as a template)."""
    if TEMPLATE_MARK not in url:
        return url
    from lexyjobs.llm import templates
    return templates.render("url", url, templates.values(ctx), url=True)


def _request_unless_cancelled(ctx: RunContext, method: str, url: str, shown: str, **kwargs: Any) -> requests.Response:
    """Send the request in a helper thread; if the run is stopped (cancel or timeout), close its
    connection and return at once (RunCanceled). Messages name ``shown``, the URL as defined
    (``${SECRET}`` references, not their values)."""
    done = threading.Event()
    box: dict[str, Any] = {}
    hangup = Hangup()

    def call() -> None:
        try:
            with hangup.session() as session:
                box["response"] = session.request(method, url, **kwargs)
        except requests.Timeout:
            box["error"] = JobFailed(f"timed out waiting for {method} {shown}")
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as exc:
            box["error"] = _invalid_url(method, url, shown, exc)
        except requests.RequestException as exc:
            box["error"] = JobFailed(f"{method} {shown} failed: {str(exc).replace(url, shown)}")
        except BaseException as exc:  # e.g. a header value requests cannot encode: the run fails with it
            box["error"] = exc
        finally:
            done.set()

    def stop(_reason: str) -> None:
        done.set()
        hangup.hang_up()

    remove = ctx.on_cancel(stop)
    threading.Thread(target=call, name=f"lexyjobs-http-{ctx.run_id}", daemon=True).start()
    done.wait()
    remove()
    if "response" not in box and "error" not in box:
        raise RunCanceled(ctx.cancel_reason or "cancel")
    if "error" in box:
        raise box["error"]
    return box["response"]


def _invalid_url(method: str, url: str, shown: str, exc: Exception) -> JobFailed:
    """A URL requests cannot parse. Its message quotes the piece it choked on, which, once
    ``${VAR}`` references are expanded, may be a fragment of a secret that masking cannot
    recognise: then only the URL as defined is named. Not retried: it is the definition's fault."""
    if url == shown:
        return JobFailed(f"{method} {shown} failed: {exc}", retryable=False)
    return JobFailed(f"{method} {shown} failed: not a valid URL once its ${{…}} references are expanded "
                     "(the expanded URL is not shown: it holds their values)", retryable=False)
