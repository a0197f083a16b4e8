"""Named rate limits: ``[limits.<name>]`` tables of jobs.toml (``rate = "500/m"``, or per key
value: ``rate = "60/m per {customer_id}"``), shared by every job that lists the name in
``limits``. A table may also (or only) limit the LLM requests of the ``openai`` jobs that name it:
requests and tokens per minute, a daily budget, prices (``lexyjobs.llm.providers``).

Why a table and not a copy in each job: one budget (an API's 500 requests a minute) is spent by
several jobs, so it must be defined once; and the claim reads it from the run (the buckets are
resolved at enqueue, ``flow_columns``), so the load stores the tables in ``named_limits`` for
every process (server, workers, CLI) to enqueue with the same numbers.

The load (``registry.sync_jobs``) parses the tables (``parse_tables``), saves them
(``save``: insert or update, and delete the ones gone from the file when the server loads), and
rejects jobs that name a limit no table defines (``undefined``) — each a load problem naming it."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lexyjobs.errors import InvalidDefinition
from lexyjobs.flow.spec import QUEUE_PATTERN, RateLimit, parse_rate
from lexyjobs.llm import providers
from lexyjobs.models import NamedLimit

FIELDS = ("rate", *providers.FIELDS)


class InvalidLimit(InvalidDefinition):
    """A bad ``[limits.<name>]`` table: recorded as a load problem of the file (not of a job),
    its message naming the limit."""

    def __init__(self, limit: str, field: str | None, problem: str) -> None:
        super().__init__(f"limits.{limit}", field, problem)
        self.limit = limit
        self.message = f"limit '{limit}'" + (f", field '{field}'" if field else "") + f": {problem}"
        self.args = (self.message,)


def parse_tables(tables: Any) -> tuple[dict[str, dict[str, Any]], list[InvalidDefinition]]:
    """The ``[limits]`` table of jobs.toml: the good limits (name → spec as stored) and one
    error per bad table (its ``job`` is ``limits.<name>``, so the problem names it)."""
    if not isinstance(tables, Mapping):
        return {}, [InvalidLimit("", None, "[limits] must be a table of [limits.<name>] tables")]
    good: dict[str, dict[str, Any]] = {}
    errors: list[InvalidDefinition] = []
    for name, raw in tables.items():
        try:
            good[name] = parse_table(name, raw)
        except InvalidDefinition as exc:
            errors.append(exc)
    return good, errors


def parse_table(name: str, raw: Any) -> dict[str, Any]:
    """One ``[limits.<name>]`` table, checked: the spec to store. InvalidDefinition says what is wrong."""
    if not QUEUE_PATTERN.fullmatch(name):
        raise InvalidLimit(name, None, "a limit's name is 1–100 characters of a-z, 0-9, '-', '_' or '.'")
    if not isinstance(raw, Mapping):
        raise InvalidLimit(name, None, 'must be a table, e.g. [limits.openai] rate = "500/m"')
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise InvalidLimit(name, unknown[0], f"unknown field; a limit has {', '.join(FIELDS)} only")
    if not raw:
        raise InvalidLimit(name, "rate", 'is required (or an LLM limit such as requests_per_minute), e.g. '
                           'rate = "500/m" or "60/m per {customer_id}"')
    if "rate" in raw:
        try:
            parse_rate(raw["rate"])
        except ValueError as exc:
            raise InvalidLimit(name, "rate", str(exc)) from None
    try:
        providers.parse_provider(name, raw)
    except ValueError as exc:
        field, problem = exc.args
        raise InvalidLimit(name, field, problem) from None
    return dict(raw)


def save(session: Session, limits: Mapping[str, Mapping[str, Any]], *, now: datetime, replace: bool) -> None:
    """Insert or update ``limits``; with ``replace``, delete the stored ones not among them."""
    stored = {row.name: row for row in session.scalars(select(NamedLimit))}
    for name, spec in sorted(limits.items()):
        row = stored.get(name)
        if row is None:
            session.add(NamedLimit(name=name, spec=dict(spec), updated_at=now))
        elif row.spec != dict(spec):
            row.spec, row.updated_at = dict(spec), now
    gone = sorted(set(stored) - set(limits))
    if replace and gone:
        session.execute(delete(NamedLimit).where(NamedLimit.name.in_(gone)))
    session.flush()


def undefined(definitions: Iterable[Any], defined: Mapping[str, RateLimit],
              names: Iterable[str]) -> dict[str, InvalidDefinition]:
    """The definitions (JobDefinition) that name a limit not among ``names`` (every table), or a
    per-key rate limit (of ``defined``) whose placeholders are not among the job's declared
    params: the problem, by job name."""
    problems: dict[str, InvalidDefinition] = {}
    names = set(names)
    for definition in definitions:
        for name in definition.flow.limits:
            limit = defined.get(name)
            if name not in names:
                known = ", ".join(sorted(names)) or "none is defined"
                problems[definition.name] = InvalidDefinition(
                    definition.name, "limits", f"names limit '{name}', which no [limits.{name}] table defines ({known})")
                break
            missing = [f for f in (limit.key.fields if limit and limit.key else ())
                       if definition.params and f not in definition.params]
            if missing:
                problems[definition.name] = InvalidDefinition(
                    definition.name, "limits", f"limit '{name}' is per {{{missing[0]}}}, which is not one of the job's params")
                break
    return problems
