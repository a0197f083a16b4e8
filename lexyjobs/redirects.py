"""Where a ``next`` parameter may send the browser: only a path on this site.

Browsers forgive a lot in a ``Location``: they drop tabs and newlines anywhere, strip leading
spaces and control characters, and read ``\\`` as ``/``, so ``/\\t/evil.example`` and
``/\\evil.example`` both become ``//evil.example`` — another site. A newline would also make the
header itself invalid (a 500). So a target is followed only when it starts with exactly one
``/``, has no scheme or host, and contains no backslash, control, format or whitespace character,
neither as written nor once percent-decoded (a proxy or a later redirect may decode it)."""
from __future__ import annotations

import unicodedata
from urllib.parse import unquote, urlsplit

MAX_LENGTH = 2000
_DECODE_ROUNDS = 3  # %25252F… : decoding stops changing the text after a few rounds, or the target is refused


def safe_next(target: object) -> str | None:
    """``target`` when it is a same-site relative path (see the module docstring), else None."""
    if not isinstance(target, str) or not target or len(target) > MAX_LENGTH:
        return None
    forms = [target]
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    else:
        return None
    return target if all(_is_local_path(form) for form in forms) else None


def _is_local_path(text: str) -> bool:
    if not text.startswith("/") or text.startswith("//"):
        return False
    if any(char == "\\" or unicodedata.category(char)[0] in "CZ" for char in text):
        return False  # C*: control/format/unassigned/surrogate; Z*: every kind of space
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc
