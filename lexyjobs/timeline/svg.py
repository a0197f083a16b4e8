"""The timeline's bars and ticks as SVG markup. Built here rather than in the template: a week
can draw thousands of bars, and a Jinja loop costs several times this per bar. Every text that
comes from a job or run is escaped (titles by the layout)."""
from __future__ import annotations

import functools
from typing import Callable, Sequence

from markupsafe import Markup, escape

from lexyjobs.timeline.layout import Row


def rows_markup(rows: Sequence[Row], run_url: str, more_url: Callable[[str], str]) -> Markup:
    """Each row's fire ticks, then its bars (each a link to ``run_url`` + the run id), and where
    there is room left of the oldest bar, "+N more" linking to ``more_url(job)``."""
    base = escape(run_url)
    out: list[str] = []
    for row in rows:
        if row.more_x is not None:
            out.append(f'<a href="{escape(more_url(row.job))}" class="tl-more-link"><title>{row.more_text} more runs of '
                       f'{escape(row.job)} in the window: the runs list</title><text class="tl-more" x="{row.more_x}" '
                       f'y="{row.y + row.height / 2 + 4:.1f}">+{row.more_text} more</text></a>')
        for tick in row.ticks:
            line = (f'<title>{tick.title}</title><line class="tl-fire" x1="{tick.x}" x2="{tick.x}" '
                    f'y1="{tick.y}" y2="{tick.y + tick.height}"/>')
            out.append(f'<a href="{base}{tick.run_id}" class="tl-due">{line}</a>' if tick.run_id is not None
                       else f'<g class="tl-tick">{line}</g>')
        for bar in row.bars:
            out.append(f'<a href="{base}{bar.run_id}" class="tl-bar" data-run="{bar.run_id}"><title>{bar.title}</title>')
            if bar.wait_width:
                out.append(f'<rect class="tl-wait" x="{bar.x}" y="{bar.y}" width="{bar.wait_width}" height="{bar.height}"/>')
            ran = bar.width - bar.wait_width
            if ran > 0:
                out.append(f'<rect class="{_ran_class(bar.status)}" x="{bar.x + bar.wait_width:.2f}" y="{bar.y}" '
                           f'width="{ran:.2f}" height="{bar.height}"/>')
            out.append("</a>")
    return Markup("".join(out))


@functools.lru_cache(maxsize=32)
def _ran_class(status: str) -> Markup:
    return Markup(f"tl-ran tl-{escape(status)}")
