"""Keeping secrets out of sight.

Job definitions reference secrets as ``${ENV}`` and are only ever shown that way. Values under
names that look secret (``Authorization``, ``api_key``, ``password``…) that were written literally
are shown as ``****``. And the values of the variables a job references are replaced by ``****``
in everything the run records: log lines, error, traceback, result, progress message."""
from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Mapping

MASK = "****"
SENSITIVE_NAME = re.compile(r"(pass(word|wd)?|secret|token|api[-_]?key|apikey|auth|cookie|credential|"
                            r"private[-_]?key|signature|session)", re.IGNORECASE)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
AUTH_SCHEMES = {"", "bearer", "basic", "token", "bot"}
# Secrets of lexyjobs itself, masked in every run's output too.
OWN_SECRETS = ("LEXYJOBS_SECRET_KEY", "LEXYJOBS_API_TOKEN", "LEXYJOBS_ADMIN_PASSWORD", "LEXYJOBS_METRICS_TOKEN",
               "LEXYJOBS_SMTP_PASSWORD", "LEXYJOBS_ALERT_WEBHOOK_SECRET", "LEXYJOBS_ALERT_SLACK", "OPENAI_API_KEY")
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def is_sensitive(name: str) -> bool:
    return bool(SENSITIVE_NAME.search(name))


def mask_config(value: Any, name: str = "") -> Any:
    """A copy of a job's spec (or any JSON value) for display: literal values under sensitive
    names become ``****``; ``${ENV}`` references stay visible (they are names, not secrets)."""
    if isinstance(value, Mapping):
        return {key: mask_config(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_config(item, name) for item in value]
    if isinstance(value, str) and name and is_sensitive(name) and not _only_references(value):
        return MASK
    return value


def _only_references(text: str) -> bool:
    """True for ``${TOKEN}`` or ``Bearer ${TOKEN}``: nothing secret is written literally."""
    return ENV_REF.search(text) is not None and ENV_REF.sub("", text).strip().lower() in AUTH_SCHEMES


def restore_masked(new: Any, old: Any) -> Any:
    """``new`` with every ``****`` that stands where ``old`` had a value put back, so a definition
    read from the API (masked) and sent back unchanged keeps its secrets."""
    if new == MASK and isinstance(old, str):
        return old
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        return {key: restore_masked(item, old.get(key)) for key, item in new.items()}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [restore_masked(a, b) for a, b in zip(new, old)]
    return new


def referenced_names(value: Any) -> set[str]:
    """The environment variables ``${NAME}`` referenced anywhere in ``value``."""
    if isinstance(value, str):
        return set(ENV_REF.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(referenced_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(referenced_names(v) for v in value)) if value else set()
    return set()


class Redactor:
    """Replaces known secret values by ``****`` in text and JSON values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        values |= {_json_escaped(s) for s in values}  # as it appears inside a JSON text (an echoed body)
        self._pattern: re.Pattern[str] | None = None
        self._starts: re.Pattern[str] | None = None
        if values:
            alternatives = "|".join(map(re.escape, sorted(values, key=len, reverse=True)))  # longest first
            # The plain pattern is the quick "anything to mask?" test (a literal search); the
            # lookahead finds every start, so overlapping secrets are masked as a whole (their union).
            self._pattern = re.compile(alternatives)
            self._starts = re.compile(f"(?=({alternatives}))")

    @classmethod
    def for_config(cls, config: Any, environ: Mapping[str, str] | None = None) -> "Redactor":
        """A redactor for the variables ``config`` references, plus lexyjobs' own secrets."""
        environ = os.environ if environ is None else environ
        names = referenced_names(config) | set(OWN_SECRETS)
        return cls(environ[name] for name in names if environ.get(name))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None or self._pattern.search(text) is None:
            return text
        parts: list[str] = []
        done = 0
        for start, end in self._spans(text):
            parts += (text[done:start], MASK)
            done = end
        return "".join(parts) + text[done:] if parts else text

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets occur in ``text``, in order, overlapping occurrences merged."""
        assert self._starts is not None
        spans: list[tuple[int, int]] = []
        for match in self._starts.finditer(text):
            start, end = match.start(), match.end(1)
            if spans and start < spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        return spans

    def value(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def _json_escaped(secret: str) -> str:
    """``secret`` as written inside a JSON string (quotes, backslashes, non-ASCII escaped)."""
    return json.dumps(secret)[1:-1]
