"""The timeline's geometry, in SVG pixels: pure functions of the runs, the fires and the time.

One row per job (under a band per category), its runs as bars from due to end: the wait
(due → started) drawn light and hatched, the run itself (started → finished, or → now) in the
colour of its outcome. Runs of one job that overlap in time go on separate lanes of its row, so
concurrency shows. Bars are clipped to the window, at least ``MIN_WIDTH`` wide, and a row draws
at most ``cap`` of them (the newest) and says how many more there are. The ``now`` line splits
the past from the next hours, where the scheduled fires are ticks."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Sequence

from markupsafe import Markup, escape

from lexyjobs.panel.formatting import short_duration
from lexyjobs.states import RunStatus
from lexyjobs.timeline.runs import Span

WIDTH = 960         # the chart (times), in px; the labels are a second SVG beside it
LABEL_WIDTH = 210
AXIS_HEIGHT = 26
BAND_HEIGHT = 24    # a category's heading row
LANE_HEIGHT = 13
BAR_HEIGHT = 10
ROW_PAD = 5
ROW_MIN = 34        # two lines of label
MIN_WIDTH = 2.0
MAX_LANES = 4
CAP = 24            # bars per row: a hundred busy jobs draw 2,400 bars, a page of 800 kB
TICK_CAP = 48       # fire ticks per row
NAME_CHARS = 26
CAPTION_CHARS = 34
MORE_ROOM = 96      # px left of a row's oldest bar needed to say "+N more" there


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    past: timedelta    # drawn before now
    future: timedelta  # drawn after now: the upcoming fires
    step: timedelta    # between two time labels


WINDOWS = {w.key: w for w in (
    Window("1h", "1 hour", timedelta(hours=1), timedelta(minutes=15), timedelta(minutes=10)),
    Window("24h", "24 hours", timedelta(hours=24), timedelta(hours=3), timedelta(hours=3)),
    Window("7d", "7 days", timedelta(days=7), timedelta(hours=12), timedelta(days=1)),
)}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class Frame:
    """Maps times to x: ``start`` at 0, ``end`` at ``width``; ``now`` lies between."""

    start: datetime
    now: datetime
    end: datetime
    width: float = WIDTH

    @classmethod
    def of(cls, window: Window, now: datetime, width: float = WIDTH) -> Frame:
        return cls(now - window.past, now, now + window.future, width)

    def x(self, at: float) -> float:
        """The x of a time in seconds since the epoch."""
        return (at - self.t0) * self.scale

    def x_of(self, at: datetime) -> float:
        return self.x(at.timestamp())

    @functools.cached_property
    def t0(self) -> float:
        return self.start.timestamp()

    @functools.cached_property
    def t_now(self) -> float:
        return self.now.timestamp()

    @functools.cached_property
    def t_end(self) -> float:
        return self.end.timestamp()

    @functools.cached_property
    def scale(self) -> float:
        """Pixels per second."""
        return self.width / (self.t_end - self.t0)

    @property
    def now_x(self) -> float:
        return self.x(self.t_now)


@dataclass(frozen=True)
class RowInput:
    """What a job's row draws: the job, its runs (any order) and its upcoming fires."""

    job: str
    title: str
    category: str
    caption: str                 # e.g. the schedule in words, "paused"
    spans: Sequence[Span] = ()
    more: int = 0                # runs in the window that the query left out
    fires: Sequence[datetime] = ()
    more_capped: bool = False    # ``more`` is a lower bound (the count stopped there)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per bar
class Bar:
    run_id: int
    status: str
    x: float
    width: float
    wait_width: float  # the first part, from due to started (or to the end, for a run that never started)
    y: float
    height: float
    clipped: bool      # began before the window
    title: Markup      # escaped


@dataclass(slots=True)
class Tick:
    x: float
    y: float
    height: float
    title: Markup      # escaped
    run_id: int | None = None  # a queued run due later (a fire has none)


@dataclass
class Row:
    job: str
    name: str     # the job name, shortened to fit the label column
    title: str
    caption: str
    y: float
    height: float
    lanes: int
    more: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    more_x: float | None = None  # where "+N more" ends, left of the oldest bar (None: no room, the label says it)
    more_capped: bool = False

    @property
    def more_text(self) -> str:
        """``1,234``, or ``1,000+`` when the count stopped there."""
        return f"{self.more:,}{'+' if self.more_capped else ''}"


@dataclass(frozen=True)
class Band:
    category: str
    y: float
    jobs: int


@dataclass(frozen=True)
class Mark:
    x: float
    label: str


@dataclass
class Chart:
    frame: Frame
    height: float
    rows: list[Row]
    bands: list[Band]
    marks: list[Mark]

    @property
    def width(self) -> float:
        return self.frame.width


def layout(inputs: Sequence[RowInput], frame: Frame, window: Window, *, cap: int = CAP) -> Chart:
    """Rows in the order given (grouped by category as they come), a band where the category changes."""
    rows, bands, y = [], [], float(AXIS_HEIGHT)
    for index, item in enumerate(inputs):
        if index == 0 or item.category != inputs[index - 1].category:
            count = sum(1 for other in inputs if other.category == item.category)
            bands.append(Band(item.category, y, count))
            y += BAND_HEIGHT
        row = lay_row(item, frame, y, cap=cap)
        rows.append(row)
        y += row.height
    return Chart(frame, y + 6, rows, bands, time_marks(frame, window))


def lay_row(item: RowInput, frame: Frame, y: float, *, cap: int = CAP) -> Row:
    """One job's row at ``y``: lanes for overlapping runs, the newest ``cap`` bars, fire ticks."""
    now = frame.t_now
    shown = [s for s in item.spans if _drawn(s, frame)]
    shown.sort(key=lambda s: (s.due, s.id), reverse=True)
    later = [s for s in item.spans if s.status == RunStatus.QUEUED and s.due > now]
    more = item.more + max(0, len(shown) - cap)
    shown = sorted(shown[:cap], key=lambda s: (s.due, s.id))
    lanes = assign_lanes([(s.due, _end(s, now)) for s in shown])
    used = max(lanes, default=0) + 1
    height = max(ROW_MIN, used * LANE_HEIGHT + 2 * ROW_PAD)
    row = Row(item.job, _shorten(item.job), item.title, _shorten(item.caption, CAPTION_CHARS), y, height, used, more,
              more_capped=item.more_capped)
    first = y + (height - used * LANE_HEIGHT) / 2 + (LANE_HEIGHT - BAR_HEIGHT) / 2  # the lanes, centred
    for span, lane in zip(shown, lanes):
        row.bars.append(bar(span, frame, round(first + lane * LANE_HEIGHT, 2)))
    if more and row.bars and row.bars[0].x - 6 >= MORE_ROOM:
        row.more_x = round(row.bars[0].x - 6, 2)
    top, tall, job = y + ROW_PAD - 1, height - 2 * ROW_PAD + 2, escape(item.job)  # (a clock needs no escaping)
    row.ticks = [Tick(round(frame.x_of(at), 2), top, tall, Markup(f"{job}: scheduled fire at {_clock(at.timestamp())}"))
                 for at in item.fires[:TICK_CAP] if frame.now < at <= frame.end]
    row.ticks += [Tick(round(frame.x(s.due), 2), top, tall,
                       Markup(f"{job} · run {s.id} · queued, due at {_clock(s.due)}"), s.id)
                  for s in later[:TICK_CAP] if s.due <= frame.t_end]
    return row


def _drawn(span: Span, frame: Frame) -> bool:
    """A bar shows when it is due by now and has not ended before the window."""
    return span.due <= frame.t_now and _end(span, frame.t_now) >= frame.t0


def _end(span: Span, now: float) -> float:
    if span.finished is not None:
        return span.finished if span.finished < now else now
    return now  # queued or running: it lasts until now


def assign_lanes(intervals: Sequence[tuple[float, float]], max_lanes: int = MAX_LANES) -> list[int]:
    """A lane per interval (given by start), the lowest free one: intervals that overlap in time
    get different lanes. Beyond ``max_lanes`` the lane that frees first is shared."""
    ends: list[float] = []
    found = []
    for start, end in intervals:
        free = next((i for i, last in enumerate(ends) if last <= start), None)
        if free is None and len(ends) < max_lanes:
            ends.append(end)
            free = len(ends) - 1
        elif free is None:
            free = min(range(len(ends)), key=lambda i: ends[i])
        ends[free] = max(ends[free], end)
        found.append(free)
    return found


def bar(span: Span, frame: Frame, y: float) -> Bar:
    """The bar of one run: clipped to [0, now], at least MIN_WIDTH, its wait part first."""
    t0, scale, now = frame.t0, frame.scale, frame.t_now
    now_x = (now - t0) * scale
    finished = span.finished
    end = finished if finished is not None and finished < now else now
    raw_x0 = (span.due - t0) * scale
    x0 = 0.0 if raw_x0 < 0 else now_x if raw_x0 > now_x else raw_x0
    x1 = (end - t0) * scale
    x1 = x0 if x1 < x0 else now_x if x1 > now_x else x1
    began = (span.started - t0) * scale if span.started is not None else x1
    split = x0 if began < x0 else x1 if began > x1 else began
    if x1 - x0 < MIN_WIDTH:  # too short to see: widen it, leftwards where the now line stops it
        x1 = x0 + MIN_WIDTH
        if x1 > now_x:
            x0, x1 = max(now_x - MIN_WIDTH, 0.0), max(now_x, MIN_WIDTH)
        split = min(max(split, x0), x1)
    wait = split - x0
    if span.started is None and span.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
        wait = max(0.0, (x1 - x0) - MIN_WIDTH)  # never ran: its outcome shows as a mark at the end
    if wait < 0.5:
        wait = 0.0  # a wait too short to see is not drawn
    return Bar(span.id, span.status, round(x0, 2), round(x1 - x0, 2), round(wait, 2), y, BAR_HEIGHT,
               raw_x0 < 0, title(span, now))


def title(span: Span, now: float) -> Markup:
    """``describe``, escaped; a finished run's is kept: the chart redraws the same finished
    runs on every poll, and their tooltips were a third of the layout's time. Kept by run id
    with everything the tooltip says (ids repeat across databases in one process)."""
    if span.finished is None:
        return escape(describe(span, now))
    said = (span.job, span.status, span.trigger, span.attempt, span.due, span.started, span.finished)
    kept = _TITLES.get(span.id)
    if kept is not None and kept[0] == said:
        return kept[1]
    if len(_TITLES) >= TITLES_KEPT:
        _TITLES.clear()
    found = escape(describe(span, now))
    _TITLES[span.id] = (said, found)
    return found


TITLES_KEPT = 20_000  # a hundred rows of 24 bars, a few windows' worth
_TITLES: dict[int, tuple[tuple[object, ...], Markup]] = {}  # run id: (what its tooltip says, the tooltip)


def describe(span: Span, now: float) -> str:
    """The tooltip: job, run, status, then when it waited and ran, and for how long."""
    head = f"{span.job} · run {span.id} · {span.status}"
    due = _clock(span.due)
    if span.started is not None:
        waited = short_duration(max(0.0, span.started - span.due))
        ran_to = span.finished if span.finished is not None else now
        until = _hms(span.finished) if span.finished is not None else "now"
        body = (f"due {due}, waited {waited}\nran {_hms(span.started)} → {until} "
                f"({short_duration(max(0.0, ran_to - span.started))})")
    elif span.status == RunStatus.QUEUED:
        body = f"due {due}, waiting {short_duration(max(0.0, now - span.due))}"
    else:
        body = f"due {due}, did not run"
    tail = f"trigger {span.trigger} · attempt {span.attempt}" if span.attempt > 1 else f"trigger {span.trigger}"
    return f"{head}\n{body}\n{tail}"


def time_marks(frame: Frame, window: Window) -> list[Mark]:
    """Labels at whole steps (UTC) across the frame: ``14:30`` or, by the day, ``Sat 5``."""
    step = window.step.total_seconds()
    at = (int(frame.t0 // step) + 1) * step
    marks = []
    while at < frame.t_end:
        moment = datetime.fromtimestamp(at, timezone.utc)
        label = f"{moment:%a} {moment.day}" if step >= 86400 else f"{moment:%H:%M}"
        x = frame.x(at)
        if 18 <= x <= frame.width - 18:  # a label cut by the chart's edge is left out
            marks.append(Mark(round(x, 2), label))
        at += step
    return marks


def _clock(at: float) -> str:
    """``2030-06-01 11:30:00 UTC``, by arithmetic (datetime formatting, a few times per bar, cost
    more than the rest of the layout)."""
    return _date(int(at) // 86400) + " " + _hms(at) + " UTC"


def _hms(at: float) -> str:
    """``11:30:00`` (UTC)."""
    second = int(at) % 86400
    return _TWO[second // 3600] + ":" + _TWO[second // 60 % 60] + ":" + _TWO[second % 60]


_TWO = [f"{n:02d}" for n in range(60)]


@functools.lru_cache(maxsize=64)
def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%d")


def _shorten(text: str, chars: int = NAME_CHARS) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"
