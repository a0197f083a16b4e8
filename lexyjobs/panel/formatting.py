"""Template filters: relative times with the absolute time in a tooltip, durations, JSON, and
`code` spans in help texts."""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flask import Flask
from markupsafe import Markup, escape

from lexyjobs.db import utcnow


def short_duration(seconds: float | None) -> str:
    """``850 ms``, ``42 s``, ``3 min``, ``5 h``, ``2 d``."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h" if seconds < 36000 else f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """``5 min ago`` / ``in 3 h``."""
    if value is None:
        return "–"
    delta = (value - (now or utcnow())).total_seconds()
    if abs(delta) < 5:
        return "just now"
    text = short_duration(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def time_tag(value: datetime | None) -> Markup:
    """A ``<time>`` showing the relative time, the absolute UTC time in its tooltip."""
    if value is None:
        return Markup("–")
    absolute = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{escape(value.isoformat())}" title="{escape(absolute)}">'
                  f"{escape(relative(value))}</time>")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def json_text(value: Any) -> str:
    """A value as one line of JSON with its real characters, left to autoescaping. Flask's
    ``tojson`` is meant for <script> blocks: it writes <, > and & as \\u003c… and marks the
    text safe, so a default like "<b>" showed as "\\u003cb\\u003e"."""
    return json.dumps(value, ensure_ascii=False, default=str)


_CODE_SPAN = re.compile(r"`([^`]+)`")


def code_spans(text: object) -> Markup:
    """A help or description text with its `code` spans as <code>code</code>. The text is
    escaped first and only then converted, so nothing in it becomes markup but those tags."""
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", str(escape("" if text is None else text))))


def init_app(app: Flask) -> None:
    app.add_template_filter(short_duration, "duration")
    app.add_template_filter(relative, "relative")
    app.add_template_filter(time_tag, "time")
    app.add_template_filter(pretty_json, "pretty_json")
    app.add_template_filter(json_text, "json_text")
    app.add_template_filter(code_spans, "code_spans")
