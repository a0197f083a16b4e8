"""Template filters (lexyjobs.panel.formatting) that are more than a format string."""
from __future__ import annotations

import pytest
from markupsafe import Markup

from lexyjobs.panel.formatting import code_spans


@pytest.mark.parametrize(("text", "html"), [
    ("`http://` or `https://` URL", "<code>http://</code> or <code>https://</code> URL"),
    ("may use `${ENV}`", "may use <code>${ENV}</code>"),
    ("no code here", "no code here"),
    ("a lone ` backtick", "a lone ` backtick"),
    ("``", "``"),
    (None, ""),
])
def test_code_spans_become_code_elements(text: str | None, html: str) -> None:
    assert code_spans(text) == Markup(html)


@pytest.mark.parametrize(("text", "html"), [
    ("`<script>alert(1)</script>`", "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"),
    ("<b>bold</b> and `a & b`", "&lt;b&gt;bold&lt;/b&gt; and <code>a &amp; b</code>"),
    ('`" onmouseover="x`', "<code>&#34; onmouseover=&#34;x</code>"),
])
def test_code_spans_escape_the_text_before_converting(text: str, html: str) -> None:
    assert str(code_spans(text)) == html
