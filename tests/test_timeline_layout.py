"""The timeline's geometry (lexyjobs.timeline.layout), pure: lanes for overlapping runs, the wait
and run parts of a bar, clipping at the window's edges, the minimum width, the per-row cap, fire
ticks and time labels."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from lexyjobs.timeline import layout as L
from lexyjobs.timeline.runs import Span

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
HOUR = L.WINDOWS["1h"]  # 60 min past + 15 min ahead over 960 px: 12.8 px a minute
FRAME = L.Frame.of(HOUR, NOW)
PX_PER_MIN = 960 / 75


def span(run_id: int, due_min: float, started_min: float | None, finished_min: float | None, status: str = "succeeded",
         job: str = "etl") -> Span:
    """A run due ``due_min`` minutes from NOW (negative: before), started and finished likewise."""
    at = lambda m: None if m is None else (NOW + timedelta(minutes=m)).timestamp()  # noqa: E731
    due = at(due_min)
    assert due is not None
    return Span.of(run_id, job, status, "schedule", 1, due, due, at(started_min), at(finished_min))


def x(minutes_from_now: float) -> float:
    return round((60 + minutes_from_now) * PX_PER_MIN, 2)


def test_a_bar_waits_hatched_from_due_to_start_then_runs_in_its_outcome_colour() -> None:
    bar = L.bar(span(1, -30, -25, -10, "failed"), FRAME, 40)
    assert (bar.x, bar.wait_width, bar.width) == (x(-30), round(5 * PX_PER_MIN, 2), round(20 * PX_PER_MIN, 2))
    assert bar.status == "failed" and not bar.clipped and bar.y == 40
    assert bar.title.splitlines() == ["etl · run 1 · failed", "due 2030-06-01 11:30:00 UTC, waited 5 min",
                                      "ran 11:35:00 → 11:50:00 (15 min)",
                                      "trigger schedule"]


def test_a_finished_runs_title_is_kept_between_polls_and_a_changed_or_running_one_is_written_again() -> None:
    later = L.Frame.of(HOUR, NOW + timedelta(minutes=1))
    title = L.bar(span(7, -30, -25, -10), FRAME, 0).title
    assert L.bar(span(7, -30, -25, -10), later, 0).title is title
    rerun = L.bar(span(7, -30, -25, -5, "failed"), later, 0).title
    assert rerun is not title and rerun.splitlines()[0] == "etl · run 7 · failed" and "→ 11:55:00" in rerun
    other_database = L.bar(span(7, -30, -25, -5, "failed", job="load"), later, 0).title  # the same id
    assert other_database.splitlines()[0] == "load · run 7 · failed"
    assert "→ now (5 min)" in L.bar(span(8, -10, -5, None, "running"), FRAME, 0).title
    assert "→ now (6 min)" in L.bar(span(8, -10, -5, None, "running"), later, 0).title


def test_titles_are_escaped_markup() -> None:
    title = L.bar(span(9, -30, -25, -10, job="<b>etl</b>"), FRAME, 0).title
    assert str(title).startswith("&lt;b&gt;etl&lt;/b&gt; · run 9") and title.__html__() == str(title)


def test_queued_and_running_runs_last_until_now() -> None:
    queued = L.bar(span(1, -5, None, None, "queued"), FRAME, 0)
    assert (queued.x, queued.width, queued.wait_width) == (x(-5), round(5 * PX_PER_MIN, 2), round(5 * PX_PER_MIN, 2))
    assert "waiting 5 min" in queued.title
    running = L.bar(span(2, -8, -6, None, "running"), FRAME, 0)
    assert round(running.x + running.width, 2) == x(0) and running.wait_width == round(2 * PX_PER_MIN, 2)
    assert "→ now (6 min)" in running.title


def test_bars_are_clipped_at_the_start_of_the_window_and_at_now() -> None:
    long = L.bar(span(1, -90, -80, -20), FRAME, 0)
    assert long.x == 0 and long.clipped and long.wait_width == 0 and long.width == x(-20)
    future_end = L.bar(span(2, -2, -1, 30), FRAME, 0)  # a finish time past now (clock skew) stops at now
    assert round(future_end.x + future_end.width, 2) == x(0)


def test_a_tiny_run_gets_the_minimum_width_even_against_the_now_line() -> None:
    blink = L.bar(span(1, -20, -20, -20 + 1 / 600), FRAME, 0)  # 0.1 s
    assert blink.width == L.MIN_WIDTH and blink.x == x(-20)
    at_now = L.bar(span(2, 0, 0, 0), FRAME, 0)
    assert at_now.width == L.MIN_WIDTH and round(at_now.x + at_now.width, 2) == x(0)


def test_a_run_that_never_started_ends_in_a_mark_of_its_outcome() -> None:
    skipped = L.bar(span(1, -10, None, -10, "skipped"), FRAME, 0)
    assert skipped.width == L.MIN_WIDTH and skipped.wait_width == 0 and "did not run" in skipped.title
    canceled = L.bar(span(2, -10, None, -4, "canceled"), FRAME, 0)  # canceled while it waited
    assert canceled.width == round(6 * PX_PER_MIN, 2)
    assert canceled.wait_width == round(6 * PX_PER_MIN - L.MIN_WIDTH, 2)


def test_overlapping_runs_of_a_job_stack_on_lanes_and_sequential_ones_share_one() -> None:
    t = lambda m: float(m * 60)  # noqa: E731
    assert L.assign_lanes([(t(0), t(10)), (t(10), t(20)), (t(20), t(30))]) == [0, 0, 0]
    assert L.assign_lanes([(t(0), t(10)), (t(5), t(15)), (t(6), t(8)), (t(9), t(12))]) == [0, 1, 2, 2]
    five = [(t(0), t(60)), (t(0), t(50)), (t(0), t(40)), (t(0), t(30)), (t(1), t(70)), (t(2), t(70))]
    assert L.assign_lanes(five, max_lanes=4) == [0, 1, 2, 3, 3, 2]  # beyond 4: the lane that frees first


def test_a_row_with_overlaps_grows_a_lane_per_concurrent_run() -> None:
    spans = [span(1, -40, -40, -20), span(2, -30, -30, -10), span(3, -5, -5, -2)]
    row = L.lay_row(L.RowInput("etl", "", "General", "manual", spans), FRAME, 100)
    assert row.lanes == 2 and row.height == max(L.ROW_MIN, 2 * L.LANE_HEIGHT + 2 * L.ROW_PAD)
    by_id = {b.run_id: b for b in row.bars}
    assert by_id[1].y == by_id[3].y and by_id[2].y == by_id[1].y + L.LANE_HEIGHT
    assert 100 <= by_id[1].y and by_id[2].y + L.BAR_HEIGHT <= 100 + row.height


def test_a_row_draws_at_most_cap_bars_the_newest_and_counts_the_rest() -> None:
    spans = [span(i, -59 + i, -59 + i, -58.5 + i) for i in range(50)]
    row = L.lay_row(L.RowInput("etl", "", "General", "every 1m", spans, more=100), FRAME, 0, cap=20)
    assert sorted(b.run_id for b in row.bars) == list(range(30, 50))
    assert row.more == 100 + 30 and row.lanes == 1


def test_the_count_of_runs_not_drawn_goes_left_of_the_oldest_bar_when_there_is_room() -> None:
    roomy = L.lay_row(L.RowInput("etl", "", "General", "manual", [span(1, -30, -30, -29)], more=5), FRAME, 0)
    assert roomy.more == 5 and roomy.more_x == round(x(-30) - 6, 2)
    cramped = L.lay_row(L.RowInput("etl", "", "General", "manual", [span(1, -58, -58, -57)], more=5), FRAME, 0)
    assert cramped.more == 5 and cramped.more_x is None  # the label column says it instead
    assert roomy.more_text == "5"
    counted_up_to = L.lay_row(L.RowInput("etl", "", "General", "manual", [span(1, -30, -30, -29)], more=1000,
                                         more_capped=True), FRAME, 0)
    assert counted_up_to.more_text == "1,000+"
    assert L.lay_row(L.RowInput("etl", "", "General", "manual", [span(1, -30, -30, -29)]), FRAME, 0).more_x is None


def test_runs_outside_the_window_are_not_drawn_and_queued_runs_due_later_are_ticks() -> None:
    spans = [span(1, -200, -199, -100), span(2, 5, None, None, "queued")]
    row = L.lay_row(L.RowInput("etl", "", "General", "manual", spans), FRAME, 0)
    assert row.bars == [] and [(t.x, t.run_id) for t in row.ticks] == [(x(5), 2)]
    assert "queued, due at 2030-06-01 12:05:00 UTC" in row.ticks[0].title


def test_fires_are_ticks_after_now_within_the_window() -> None:
    fires = [NOW + timedelta(minutes=m) for m in (-1, 5, 10, 14, 16)]
    row = L.lay_row(L.RowInput("etl", "", "General", "every 5m", (), fires=fires), FRAME, 0)
    assert [t.x for t in row.ticks] == [x(5), x(10), x(14)] and all(t.run_id is None for t in row.ticks)
    assert row.ticks[0].title == "etl: scheduled fire at 2030-06-01 12:05:00 UTC"


def test_the_chart_puts_a_band_above_each_category_and_rows_below_it() -> None:
    rows = [L.RowInput("a", "", "Data", "manual"), L.RowInput("b", "", "Data", "manual"),
            L.RowInput("c", "", "Reports", "manual")]
    chart = L.layout(rows, FRAME, HOUR)
    assert [(b.category, b.y, b.jobs) for b in chart.bands] == [
        ("Data", L.AXIS_HEIGHT, 2), ("Reports", L.AXIS_HEIGHT + L.BAND_HEIGHT + 2 * L.ROW_MIN, 1)]
    assert [r.y for r in chart.rows] == [L.AXIS_HEIGHT + L.BAND_HEIGHT, L.AXIS_HEIGHT + L.BAND_HEIGHT + L.ROW_MIN,
                                         L.AXIS_HEIGHT + 2 * L.BAND_HEIGHT + 2 * L.ROW_MIN]
    assert chart.height == chart.rows[-1].y + L.ROW_MIN + 6


def test_time_labels_fall_on_whole_steps() -> None:
    assert [m.label for m in L.time_marks(FRAME, HOUR)] == ["11:10", "11:20", "11:30", "11:40", "11:50", "12:00",
                                                            "12:10"]
    edge = L.Frame.of(HOUR, NOW - timedelta(minutes=4, seconds=30))  # 12:10 would be 6 px from the right edge
    assert edge.x_of(NOW + timedelta(minutes=10)) > 960 - 18
    assert [m.label for m in L.time_marks(edge, HOUR)][-1] == "12:00"
    week = L.Frame.of(L.WINDOWS["7d"], NOW)  # Saturday noon
    assert [m.label for m in L.time_marks(week, L.WINDOWS["7d"])] == ["Sun 26", "Mon 27", "Tue 28", "Wed 29", "Thu 30",
                                                                      "Fri 31", "Sat 1"]


def test_long_job_names_are_shortened_for_the_label_column() -> None:
    name = "a-very-long-job-name-that-goes-on-and-on"
    row = L.lay_row(L.RowInput(name, "", "General", "manual"), FRAME, 0)
    assert row.name == name[:L.NAME_CHARS - 1] + "…" and row.job == name
    long_caption = L.lay_row(L.RowInput("etl", "", "General", "Every 20 minutes (interval) in Europe/Berlin"), FRAME, 0)
    assert long_caption.caption == "Every 20 minutes (interval) in Eu…"
