"""Keeping secrets out of sight.

Job definitions reference secrets as ``${ENV}`` and are only ever shown that way. Values under
names that look secret (``Authorization``, ``api_key``, ``password``…) that were written literally
are shown as ``****``. And the values of the variables a job references are replaced by ``****``
in everything the run records: log lines, error, traceback, result, progress message."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any, Iterable, Mapping

from lexyjobs.secret_forms import BASE64_CHARS, base64_cores, text_pattern, variants

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
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}))
        self._anything, self._pattern, self._base64 = _patterns(self.secrets)

    @classmethod
    def for_config(cls, config: Any, environ: Mapping[str, str] | None = None) -> "Redactor":
        """A redactor for the variables ``config`` references, plus lexyjobs' own secrets."""
        return cls.for_names(referenced_names(config), environ)

    @classmethod
    def for_names(cls, names: Iterable[str], environ: Mapping[str, str] | None = None) -> "Redactor":
        """A redactor for the values the variables ``names`` and lexyjobs' own secrets have now (a
        secret changed in the environment is masked from the next run on). Redactors of the same
        values are one object: a worker asks for one per run."""
        environ = os.environ if environ is None else environ
        return _redactor_of(tuple(sorted({value for name in (*names, *OWN_SECRETS)
                                          if len(value := environ.get(name) or "") >= MIN_SECRET_LENGTH})))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._anything is None or self._pattern is None or self._anything.search(text) is None:
            return text  # the common case, found twice as fast as by the lookahead patterns
        spans = _spans(self._pattern, text)
        if self._base64 is not None:
            spans += [_whole_base64(text, span) for span in _spans(self._base64, text)]
        if not spans:
            return text
        parts: list[str] = []
        done = 0
        for start, end in _merged(spans):
            parts += (text[done:start], MASK)
            done = end
        return "".join(parts) + text[done:]

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


@lru_cache(maxsize=256)
def _redactor_of(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


@lru_cache(maxsize=256)
def _patterns(secrets: tuple[str, ...]) -> tuple[re.Pattern[str] | None, ...]:
    """A pattern finding any form of any secret, then the text and the base64 patterns (see
    ``_union``); cached, since each run builds a redactor and the runs of a process share the
    same few secrets (building the patterns takes milliseconds)."""
    values = {v for s in secrets for v in variants(s) if len(v) >= MIN_SECRET_LENGTH}
    longest_first = sorted(values, key=len, reverse=True)
    texts = [text_pattern(v) for v in longest_first]
    cores = [core for v in longest_first for core in sorted(base64_cores(v), key=len, reverse=True)]
    anything = re.compile("|".join(texts + cores)) if texts else None
    return anything, _union(texts), _union(cores)


def _union(patterns: list[str]) -> re.Pattern[str] | None:
    """One pattern whose group 1 is, at each position, the longest-listed alternative there; a
    lookahead, so ``finditer`` tries every start and overlapping secrets are all found."""
    return re.compile(f"(?=({'|'.join(patterns)}))") if patterns else None


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(match.start(), match.end(1)) for match in pattern.finditer(text)]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` in order, overlapping ones merged (their union is masked as a whole)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _whole_base64(text: str, span: tuple[int, int]) -> tuple[int, int]:
    """The base64 word around a secret's base64 core (``Basic ****``, not ``Basic YWxp****Q==``)."""
    start, end = span
    while start > 0 and text[start - 1] in BASE64_CHARS and text[start - 1] != "=":  # "=" only pads the end
        start -= 1
    while end < len(text) and text[end] in BASE64_CHARS:
        end += 1
    return start, end
