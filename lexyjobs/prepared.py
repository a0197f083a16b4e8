"""Hot statements compiled once per dialect and sent as driver SQL.

The worker's write cycle (finish a batch, claim the next) and an enqueue run the same few
statements thousands of times a second. Through ``Session.execute`` each execution pays for
SQLAlchemy's ORM layer, a cache-key walk of the statement, parameter construction and bind
processing for every row of an executemany, and result processing — together several times
what SQLite spends running them (the dispatcher thread was busy ~95 %, mostly there).

``Prepared`` compiles a Core statement once for a dialect, keeps the SQL text, the order of its
parameters and the type processors of its binds and result columns (the very ones SQLAlchemy
would apply, so values are stored exactly as through the ORM: datetimes, JSON ``null``), and
runs it with ``Connection.exec_driver_sql`` on the session's connection: same transaction,
same cursor events, same error wrapping, none of the per-execution compilation work.

Statements passed here have no "expanding" IN parameters: ``ids_in`` builds a variant per
size of ``id_chunks`` instead (powers of two up to ``MAX_IDS``; a chunk is padded by repeating
its last id, which an IN list ignores)."""
from __future__ import annotations

import functools
from collections import namedtuple
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import bindparam
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import Executable


_MISSING = object()


class Prepared:
    """One statement compiled for one dialect, with its parameters' and columns' processors."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]  # every Core statement can
        if compiled.insert_prefetch or compiled.update_prefetch:  # values SQLAlchemy computes per execution
            raise ValueError("a prepared statement must bind every column default it writes")
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        self.names = names
        self._bind: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names]
        # Values written into the statement (``.values(status='x')`` becomes a bind with a value);
        # a bind without one must be given.
        self._fixed = {name: compiled.binds[name].value for name in names if not compiled.binds[name].required}
        columns = list(getattr(statement, "exported_columns", ()) or ())
        self._convert = [(i, p) for i, p in ((i, c.type.dialect_impl(dialect).result_processor(dialect, None))
                                             for i, c in enumerate(columns)) if p is not None]
        self.Row: Any = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None  # type: ignore[misc]

    def parameters(self, values: Mapping[str, Any], memo: dict[tuple[str, int], Any] | None = None) -> Any:
        """The DBAPI parameters (a tuple, or a dict for named paramstyles) for ``values``.
        ``memo`` (one executemany's) keeps each processed value by the identity of the value
        given: a batch's rows share their time, their ``None`` JSON and so on."""
        fixed, out = self._fixed, []
        for name, process in self._bind:
            value = values[name] if name in values else fixed[name]
            if process is not None:
                if memo is None:
                    value = process(value)
                else:
                    key = (name, id(value))
                    found = memo.get(key, _MISSING)
                    if found is _MISSING:
                        found = memo[key] = process(value)
                    value = found
            out.append(value)
        return tuple(out) if self.positional else dict(zip(self.names, out))

    def execute(self, session: Session, values: Mapping[str, Any]) -> list[Any]:
        """Run once with ``values``; returns the rows (named tuples, values processed) if any."""
        result = _connection(session).exec_driver_sql(self.sql, self.parameters(values))
        if self.Row is None:
            return []
        return self.rows(result.cursor.fetchall() if result.cursor is not None else [])

    def execute_many(self, session: Session, values: Sequence[Mapping[str, Any]]) -> None:
        """Run once per mapping in ``values`` (DBAPI executemany); nothing is returned. The
        mappings' values must stay unchanged meanwhile (see ``parameters``)."""
        if values:
            memo: dict[tuple[str, int], Any] = {}
            _connection(session).exec_driver_sql(self.sql, [self.parameters(v, memo) for v in values])

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[Any]:
        make, convert = self.Row._make, self._convert
        if not convert:
            return [make(row) for row in raw]
        out = []
        for row in raw:
            values = list(row)
            for i, process in convert:
                values[i] = process(values[i])
            out.append(make(values))
        return out


def _connection(session: Session) -> Connection:
    return session.connection()


@functools.lru_cache(maxsize=1024)
def prepare(statement: Executable, dialect: Dialect) -> Prepared:
    """``statement`` compiled for ``dialect``, once (pass statements built once, e.g. cached)."""
    return Prepared(statement, dialect)


def dialect_of(session: Session) -> Dialect:
    return session.get_bind().dialect


def run(session: Session, statement: Executable, values: Mapping[str, Any]) -> list[Any]:
    """Execute a statement built once (see ``prepare``) with ``values``; its rows, if any."""
    return prepare(statement, dialect_of(session)).execute(session, values)


def run_many(session: Session, statement: Executable, values: Sequence[Mapping[str, Any]]) -> None:
    """Execute a statement built once for each of ``values`` (executemany)."""
    prepare(statement, dialect_of(session)).execute_many(session, values)


MAX_IDS = 64


def id_chunks(ids: Sequence[Any], prefix: str = "i") -> Iterable[tuple[int, dict[str, Any]]]:
    """``ids`` in chunks of at most MAX_IDS: (size, the binds' values) for ``ids_in(column, size)``."""
    for start in range(0, len(ids), MAX_IDS):
        part = ids[start:start + MAX_IDS]
        size = 1 << (len(part) - 1).bit_length()
        yield size, id_values([*part, *[part[-1]] * (size - len(part))], prefix)


def ids_in(column: ColumnElement[Any], count: int, prefix: str = "i") -> tuple[ColumnElement[bool], list[str]]:
    """``column IN (:i0, :i1, …)`` with ``count`` binds, and their names (see ``id_chunks``)."""
    names = [f"{prefix}{k}" for k in range(count)]
    return column.in_([bindparam(name, type_=column.type) for name in names]), names


def id_values(ids: Sequence[Any], prefix: str = "i") -> dict[str, Any]:
    """The values of the binds ``ids_in`` made for ``ids``."""
    return {f"{prefix}{k}": value for k, value in enumerate(ids)}
