"""The forms a secret value takes on its way out, as regular expressions for ``masking.Redactor``.

A value substituted for ``${SECRET}`` rarely comes back verbatim: ``requests`` percent-encodes it
in a URL (``quote``, ``quote_plus``, or only the characters it must, in upper- or lower-case hex),
a server echoes it inside JSON (``\\"``, ``\\\\``, ``\\/``, ``\\u00e9``) or an HTML page
(``&quot;``, ``&#39;``), and HTTP basic auth sends it base64-encoded after ``user:``.

``text_pattern`` matches the secret with each of its characters written literally *or* in any of
those escapes, so mixtures (a percent-encoded URL inside a JSON body, ``\\/`` in a URL) match too.
Letters and digits are only matched literally: no encoder escapes them. ``base64_cores`` are the
parts of a base64 text that depend on the secret's bytes alone, for each of the three positions
the secret can start at within the 3-byte groups (after ``user:`` it rarely starts at 0)."""
from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

BASE64_MIN_CORE = 6  # shorter cores (secrets under 5 bytes) would match ordinary words
BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")
PERCENT_HEX = re.compile("%[0-9A-F]{2}")
JSON_HEX = re.compile(r"\\u[0-9a-f]{4}")


def variants(secret: str) -> set[str]:
    """The secret and what decoding it gives (``requests`` decodes ``%41`` in a URL, and the
    user:password of a URL before basic auth): a secret written pre-encoded is sent decoded."""
    return {secret, unquote(secret), unquote_plus(secret)}


def text_pattern(secret: str) -> str:
    """A regular expression matching ``secret`` with any character in any of its escapes."""
    return "".join(_char_pattern(ch) for ch in secret)


def base64_cores(secret: str) -> set[str]:
    """Regular expressions for the base64 text (standard and URL-safe alphabets) that holds the
    secret's UTF-8 or Latin-1 bytes (``requests`` encodes basic auth in Latin-1) at any offset."""
    cores: set[str] = set()
    for encoding in ("utf-8", "latin-1"):
        try:
            data = secret.encode(encoding)
        except UnicodeEncodeError:
            continue
        for offset in range(3):
            encoded = base64.b64encode(b"\0" * offset + data).decode()
            # chars holding bits of the padding bytes, and the last one when it shares bits with what follows
            first, last = (0, 2, 3)[offset], (offset + len(data)) * 8 // 6
            core = encoded[first:last]
            if len(core) >= BASE64_MIN_CORE:
                cores.add(core)
                cores.add(core.replace("+", "-").replace("/", "_"))
    return {text_pattern(core) for core in cores}


def _char_pattern(ch: str) -> str:
    """``ch`` literally or escaped once, or one of those escapes escaped again (a JSON body
    echoed inside JSON: ``\\\\\"``; JSON in an HTML page: ``\\&quot;``; a URL encoded twice: ``%2520``)."""
    if ch.isascii() and ch.isalnum():
        return ch
    once = {ch} | _escapes(ch)
    twice = {again for form in once for again in _escapes(form)}
    return "(?:" + "|".join(map(re.escape, sorted(once | twice, key=len, reverse=True))) + ")"


def _escapes(text: str) -> set[str]:
    """``text`` escaped once, in each way an encoder may write it (minus ``text`` itself)."""
    return (_json(text) | _percent(text) | _html(text) | _mojibake(text)) - {text}


def _json(text: str) -> set[str]:
    """Inside a JSON string: ``ensure_ascii`` on and off, ``/`` escaped or not, hex in both cases."""
    ascii_only = json.dumps(text)[1:-1]
    forms = {ascii_only, json.dumps(text, ensure_ascii=False)[1:-1], ascii_only.replace("/", "\\/")}
    return forms | {JSON_HEX.sub(lambda m: m.group().upper().replace("\\U", "\\u"), form) for form in forms}


def _percent(text: str) -> set[str]:
    """Percent-encoded (``quote``, ``quote_plus``; UTF-8, or Latin-1 where it can), hex in both cases."""
    forms = {quote(text, safe=""), quote_plus(text, safe="")}
    try:
        forms.add(quote(text, safe="", encoding="latin-1"))
    except UnicodeEncodeError:
        pass
    return forms | {PERCENT_HEX.sub(lambda m: m.group().lower(), form) for form in forms}


def _html(text: str) -> set[str]:
    escaped = html.escape(text)
    forms = {escaped, escaped.replace("&#x27;", "&#39;"), html.escape(text, quote=False)}
    if len(text) == 1:  # numeric character references
        forms |= {f"&#{ord(text)};", f"&#x{ord(text):x};", f"&#x{ord(text):X};"}
    return forms


def _mojibake(text: str) -> set[str]:
    """UTF-8 bytes read as Latin-1 (``é`` shown as ``Ã©``), as servers that guess the charset do."""
    return {text.encode("utf-8").decode("latin-1")}
