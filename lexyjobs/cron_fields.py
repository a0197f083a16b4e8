"""Field-by-field checks of a 5-field cron expression, run before croniter so that a mistake
is named: ``61 25 * * *`` is "minute 61 is out of range 0–59; hour 25 is out of range 0–23",
not "not a valid cron expression". The same message reaches the job form, the API (422) and
jobs.toml load problems, since they all parse schedules with ``lexyjobs.cron.parse_schedule``.

Only the plain shapes are judged here (``*``, ``N``, ``A-B``, any of them ``/STEP``, lists and
month or weekday names). croniter's extensions (``L``, ``W``, ``#``, ``?``) are left to croniter,
which still has the last word on the whole expression."""
from __future__ import annotations

import re
from dataclasses import dataclass

MONTH_NAMES = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    note: str = ""


FIELDS = (Field("minute", 0, 59), Field("hour", 0, 23), Field("day-of-month", 1, 31),
          Field("month", 1, 12, MONTH_NAMES, " or jan–dec"),
          Field("day-of-week", 0, 7, DAY_NAMES, " (0 and 7 are Sunday) or sun–sat"))
# croniter's own syntax (last day L, nearest weekday 15W, last Friday L5 or 5L, second Monday mon#2, "?"):
# left to croniter
_EXTENSION = re.compile(r"\?|L|LW|\d{1,2}W|L\d|\d+L|[a-z0-9]+#\d+", re.IGNORECASE)
_PART = re.compile(r"(?P<base>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>[^/]*))?")


def fields_problem(fields: list[str], forms: str) -> str | None:
    """What is wrong with the five fields (each bad field named, in order), or None. Text where
    two or more fields are not cron at all (``lorem ipsum dolor sit amet``) is not taken for a
    cron expression: the message lists the accepted ``forms`` instead."""
    problems = field_problems(fields)
    if sum(" is not a number " in problem for problem in problems) >= 2:
        return f"'{' '.join(fields)}' is not a schedule lexyjobs reads; use {forms}"
    return "; ".join(problems) or None


def field_problems(fields: list[str]) -> list[str]:
    """What is wrong with each of the five fields, in field order (empty: nothing found here)."""
    problems: list[str] = []
    for spec, text in zip(FIELDS, fields):
        for part in text.split(","):
            problem = _part_problem(spec, part)
            if problem:
                problems.append(problem)
                break  # one problem a field is enough to find it
    return problems


def _part_problem(spec: Field, part: str) -> str | None:
    if _EXTENSION.fullmatch(part):
        return None
    match = _PART.fullmatch(part)
    if match is None:
        return _not_a_value(spec, part)
    step = match["step"]
    if step is not None and not (step.isdigit() and int(step) >= 1):
        return f"{spec.name} step '{step}' in '{part}' must be a whole number of 1 or more"
    if match["base"] == "*":
        return None
    for bound in match["base"].split("-"):
        value = _value(spec, bound)
        if value is None:
            return _not_a_value(spec, part if part == bound else bound)
        if not spec.low <= value <= spec.high:
            return f"{spec.name} {bound} is out of range {spec.low}–{spec.high}{spec.note}"
    return None


def _value(spec: Field, text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if spec.names is not None:
        return spec.names.get(text.lower())
    return None


def _not_a_value(spec: Field, text: str) -> str:
    names = f", a name ({spec.note.split(' or ')[-1]})" if spec.names else ""
    return (f"{spec.name} '{text}' is not a number ({spec.low}–{spec.high}){names}, a range (1-5), "
            "a list (1,15) or a step (*/15)")
