"""The process log: one line per event on stderr, human-readable or JSON (``LEXYJOBS_LOG_FORMAT``).

- ``json``: one JSON object a line — ``{"ts", "level", "logger", "message", …}`` plus every field a
  call passes with ``extra=`` (the worker's run transitions carry ``run_id``, ``job``,
  ``attempt``, ``status``, ``duration_ms``) and the traceback as ``exception``. For log collectors
  (Docker, Kubernetes, Loki, Datadog); the Docker image sets it.
- ``human``: ``2025-03-01 09:30:00.123 INFO    lexyjobs.worker: run 5 (nightly) started, attempt 1/3``.
- ``auto`` (the default): human lines, the level coloured when stderr is a terminal (unless
  ``NO_COLOR`` is set). Output that is piped or redirected stays plain human text: JSON is
  chosen explicitly, never guessed, so ``python app.py > server.log`` stays readable and a
  collector is never fed a mix of formats.

``configure_logging`` installs a single handler on the root logger, so records still propagate
to other handlers (pytest's ``caplog``); calling it again replaces that handler instead of adding a
second one. lexyjobs' own loggers get ``LEXYJOBS_LOG_LEVEL``; other libraries keep the root level
(WARNING unless something else set it)."""
from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import IO, Any

from lexyjobs.config import Settings

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_RESERVED = ("ts", "level", "logger", "message", "exception", "stack")
_COLOURS = {"DEBUG": "\033[2m", "INFO": "\033[32m", "WARNING": "\033[33m", "ERROR": "\033[31m",
            "CRITICAL": "\033[1;31m"}
_RESET = "\033[0m"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a logging call added with ``extra=`` (in the order given)."""
    return {key: value for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and key not in _RESERVED and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    """``<local time> LEVEL logger: message``, then the traceback if any; ``colour`` tints the level."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        self.colour = colour

    def formatMessage(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname:<7}"
        if self.colour and record.levelname in _COLOURS:
            level = f"{_COLOURS[record.levelname]}{level}{_RESET}"
        return f"{record.asctime}.{int(record.msecs):03d} {level} {record.name}: {record.message}"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record (like logging's last-resort handler), so
    a replaced stderr (pytest's capture, a daemonizer) is honoured; or to a fixed stream."""

    lexyjobs = True  # marks the handler configure_logging installed

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:  # StreamHandler.__init__ assigns it
        pass


def wants_colour(stream: IO[str]) -> bool:
    """A terminal that accepts colour: a TTY, ``NO_COLOR`` unset, ``TERM`` not ``dumb``."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
    return tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def make_formatter(log_format: str, stream: IO[str]) -> logging.Formatter:
    """The formatter for ``LEXYJOBS_LOG_FORMAT`` (``auto``, ``human`` or ``json``) writing to ``stream``."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "human":
        return HumanFormatter()
    if log_format == "auto":
        return HumanFormatter(colour=wants_colour(stream))
    raise ValueError(f"unknown log format {log_format!r}: use auto, human or json")


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Route every log record to one handler on the root logger, in ``settings.log_format``,
    with lexyjobs' loggers at ``settings.log_level``. Idempotent: a handler installed by an
    earlier call is replaced. Returns the handler (``stream`` defaults to the current stderr)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "lexyjobs", False)]:
        root.removeHandler(old)
        old.close()
    handler = _Handler(stream)
    handler.setFormatter(make_formatter(settings.log_format, handler.stream))
    root.addHandler(handler)
    logging.getLogger("lexyjobs").setLevel(settings.log_level)
    return handler
