"""``lexyjobs backfill start|status|cancel``: run a scheduled job once per past fire time (or
day) over a range, as one group (lexyjobs.backfill). Works without the Flask app, like ``run``."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import click

from lexyjobs import backfill
from lexyjobs.cli import handle_errors
from lexyjobs.cli_runs import writable_target


class When(click.ParamType):
    """An ISO 8601 date or date-time; without an offset it is UTC."""

    name = "DATE[THH:MM]"

    def __init__(self, *, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            if len(text) == 10:  # a bare date: the whole day
                day = date.fromisoformat(text)
                at = datetime.combine(day + timedelta(days=1), time(), UTC) - timedelta(microseconds=1) \
                    if self.end_of_day else datetime.combine(day, time(), UTC)
                return at
            at = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date (2026-11-24) or date-time (2026-11-24T02:00, +01:00 allowed)",
                      param, ctx)
        return at if at.tzinfo else at.replace(tzinfo=UTC)


@click.group("backfill")
def backfill_group() -> None:
    """Run a job once for each past fire time (or day) in a range."""


@backfill_group.command("start")
@click.argument("job")
@click.option("--from", "start", type=When(), required=True, help="first time covered (a date: from its 00:00 UTC)")
@click.option("--to", "end", type=When(end_of_day=True), required=True, help="last time covered (a date: the whole day)")
@click.option("--per", type=click.Choice(backfill.PER), default="fire", show_default=True,
              help="one run per fire time of the schedule, or per day (midnight in the job's timezone)")
@click.option("--concurrency", type=click.IntRange(1, backfill.MAX_CONCURRENCY), default=1, show_default=True,
              help="most of its runs at once (1: one after the other, oldest first)")
@click.option("--include-succeeded", is_flag=True, help="also run times that already have a succeeded run")
@handle_errors
def start_command(job: str, start: datetime, end: datetime, per: str, concurrency: int,
                  include_succeeded: bool) -> None:
    """Enqueue the backfill of JOB; prints its id and what it queued and skipped."""
    started = backfill.start(writable_target().db, job, start, end, per=per, concurrency=concurrency,
                             include_succeeded=include_succeeded, by="cli")
    click.echo(f"backfill {started.backfill_id}: {len(started.run_ids)} run(s) queued for {job} "
               f"(runs {started.run_ids[0]}–{started.run_ids[-1]}), {len(started.skipped)} time(s) skipped "
               "as already succeeded")


@backfill_group.command("status")
@click.argument("backfill_id", type=int)
@handle_errors
def status_command(backfill_id: int) -> None:
    """How far backfill BACKFILL_ID has got: "5 of 7 days done"."""
    click.echo(f"backfill {backfill_id}: {backfill.progress(writable_target().db, backfill_id).describe()}")


@backfill_group.command("cancel")
@click.argument("backfill_id", type=int)
@handle_errors
def cancel_command(backfill_id: int) -> None:
    """Cancel the backfill's queued runs, and ask its running ones to stop."""
    canceled, asked = backfill.cancel(writable_target().db, backfill_id, by="cli")
    click.echo(f"backfill {backfill_id}: {canceled} queued run(s) canceled, {asked} running run(s) asked to stop")
