"""One registry for jobs from three sources: ``@job`` functions (code), the jobs.toml file
(file) and jobs created through the CLI/API (db). Code and file jobs are synced into the jobs
table at start, so every process (server, workers, CLI) sees the same definitions."""
from __future__ import annotations

import importlib
import logging
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy.orm import Session

from lexyjobs import load_problems, pipelines, store
from lexyjobs.code_jobs import code_jobs
from lexyjobs.db import Database, utcnow
from lexyjobs.definitions import JobDefinition, definition_from_job, parse_definition
from lexyjobs.errors import Conflict, InvalidDefinition, JobNotFound, ReadOnlyJob
from lexyjobs.flow import named as named_limits

log = logging.getLogger(__name__)


def load_jobs_file(path: str | Path) -> tuple[dict[str, JobDefinition], list[InvalidDefinition]]:
    """Parse a jobs.toml. Bad entries are returned as errors; the good ones still load."""
    found = read_jobs_file(path)
    return found.definitions, found.errors


@dataclass
class JobsFile:
    """What a jobs.toml holds: its good job definitions, its good ``[limits.<name>]`` tables (as
    stored in ``named_limits``), and one error per bad entry; ``unreadable``: nothing could be read."""
    definitions: dict[str, JobDefinition] = field(default_factory=dict)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[InvalidDefinition] = field(default_factory=list)
    unreadable: bool = False


def read_jobs_file(path: str | Path) -> JobsFile:
    """Parse a jobs.toml: ``[jobs.<name>]`` and ``[limits.<name>]`` tables. Bad entries are
    returned as errors; the good ones still load."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return JobsFile(errors=[InvalidDefinition(str(path), None, f"cannot read jobs file: {exc}")], unreadable=True)
    found = JobsFile()
    found.limits, found.errors = named_limits.parse_tables(data.get("limits", {}))
    tables = data.get("jobs", {})
    unknown = sorted(set(data) - {"jobs", "limits"})
    if unknown:
        found.errors.append(InvalidDefinition(str(path), unknown[0],
                                              "unknown top-level table; put jobs under [jobs.<name>], limits under [limits.<name>]"))
    if not isinstance(tables, dict):
        found.errors.append(InvalidDefinition(str(path), "jobs", "must be a table of [jobs.<name>] tables"))
        found.unreadable = True
        return found
    for name, raw in tables.items():
        try:
            found.definitions[name] = parse_definition(name, raw, source="file")
        except InvalidDefinition as exc:
            found.errors.append(exc)
    return found


@dataclass
class SyncReport:
    loaded: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    errors: list[InvalidDefinition] = field(default_factory=list)
    found: list[load_problems.Found] = field(default_factory=list)  # the errors with where they came from

    def reject(self, origin: str, error: InvalidDefinition, *, about_job: bool = True) -> None:
        self.errors.append(error)
        self.found.append(load_problems.Found(origin, error, about_job))


def sync_jobs(db: Database, *, jobs_file: str | None, imports: tuple[str, ...] = (),
              archive_missing: bool = False) -> SyncReport:
    """Import ``imports`` (so their ``@job`` functions register), load ``jobs_file``, and save
    both into the jobs table. With ``archive_missing`` (the server), jobs that disappeared from
    their source are archived. A job defined
    in two places is reported and the first (code, then file) wins. Every problem is in the
    report, logged and recorded in the load_problems table (lexyjobs.load_problems) in the same
    transaction; none stops the other jobs from loading."""
    report = SyncReport()
    code = load_problems.CODE
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken user module must not stop the server
            report.reject(code, InvalidDefinition(module, None, f"cannot import module: {type(exc).__name__}: {exc}"),
                          about_job=False)
    sources: dict[str, dict[str, JobDefinition]] = {"code": {}, "file": {}}
    for name, raw in code_jobs().items():
        try:
            sources["code"][name] = parse_definition(name, raw, source="code")
        except InvalidDefinition as exc:
            report.reject(code, exc)
    origins = {"code": code, "file": str(Path(jobs_file).absolute()) if jobs_file else ""}
    file_unreadable = False
    jobs_toml = JobsFile()
    if jobs_file:
        jobs_toml = read_jobs_file(jobs_file)
        sources["file"] = jobs_toml.definitions
        for error in jobs_toml.errors:
            report.reject(origins["file"], error, about_job=error.job != str(jobs_file)
                          and not isinstance(error, named_limits.InvalidLimit))
        # an unreadable file says nothing about which jobs it holds: archive none of them
        file_unreadable = jobs_toml.unreadable
    for name in set(sources["code"]) & set(sources["file"]):
        del sources["file"][name]
        report.reject(origins["file"], InvalidDefinition(
            name, "name", f"defined both in code and in {jobs_file}; the code one is used"))
    now = utcnow()
    with db.write() as session:
        if jobs_file or archive_missing:
            _save_limits(session, jobs_toml, replace=archive_missing and not file_unreadable, now=now)
        _reject_undefined_limits(session, sources, report, origins)
        _reject_graph_problems(session, sources, report, origins)
        for source, definitions in sources.items():
            for name, definition in sorted(definitions.items()):  # row locks in name order, as claims take them
                existing = store.get_job(session, name)
                if existing is not None and existing.source == "db":
                    report.reject(origins[source], InvalidDefinition(
                        name, "name", f"a job created in the panel/API already has this name; the {source} one is ignored"))
                    continue
                store.save_job(session, definition.row(), now=now)
                report.loaded.append(name)
            if archive_missing and not (source == "file" and file_unreadable):
                # a job whose new definition is broken keeps its last good one (and is reported)
                keep = [n for n in definitions if n in report.loaded] + [e.job for e in report.errors]
                report.archived += store.archive_jobs_not_in(session, source, keep, now=now)
        loaded = [origin for origin, used in ((code, bool(imports or code_jobs())), (origins["file"], bool(jobs_file)))
                  if used]
        load_problems.replace(session, report.found, origins=None if archive_missing else loaded, now=now)
    for error in report.errors:
        log.error("job definition rejected: %s", error.message)
    return report


def _save_limits(session: Session, jobs_toml: JobsFile, *, replace: bool, now: Any) -> None:
    """Store the file's ``[limits.<name>]`` tables; with ``replace`` (the server) delete the
    stored ones gone from the file — but a table that is there and broken keeps its last good
    version, as a broken job does."""
    broken = {e.limit for e in jobs_toml.errors if isinstance(e, named_limits.InvalidLimit)}
    kept = {row_name: spec for row_name, spec in store.named_limit_specs(session).items() if row_name in broken}
    named_limits.save(session, {**kept, **jobs_toml.limits}, now=now, replace=replace)


def _reject_undefined_limits(session: Session, sources: dict[str, dict[str, JobDefinition]], report: SyncReport,
                             origins: dict[str, str]) -> None:
    """Drop (and report) definitions whose ``limits`` name a limit no ``[limits.<name>]`` defines."""
    if not any(d.flow.limits for definitions in sources.values() for d in definitions.values()):
        return
    defined, names = store.named_limits(session), store.named_limit_specs(session)
    for source, definitions in sources.items():
        for name, problem in named_limits.undefined(definitions.values(), defined, names).items():
            del definitions[name]
            report.reject(origins[source], problem)


def _reject_graph_problems(session: Session, sources: dict[str, dict[str, JobDefinition]], report: SyncReport,
                           origins: dict[str, str]) -> None:
    """Drop (and report) definitions whose ``depends_on`` names unknown jobs or closes a cycle."""
    graph = dict(store.job_dependencies(session))
    graph.update({name: d.depends_on for definitions in sources.values() for name, d in definitions.items()})
    new_names = [name for definitions in sources.values() for name in definitions]
    for name, (field_name, problem) in pipelines.graph_problems(graph, new_names).items():
        origin = origins["code"] if name in sources["code"] else origins["file"]
        for definitions in sources.values():
            definitions.pop(name, None)
        report.reject(origin, InvalidDefinition(name, field_name, problem))


def _check_limits(session: Session, definition: JobDefinition) -> None:
    """A job created in the panel/API may only name limits that jobs.toml defines."""
    if definition.flow.limits:
        problem = named_limits.undefined([definition], store.named_limits(session),
                                         store.named_limit_specs(session)).get(definition.name)
        if problem is not None:
            raise problem


def _check_graph(session: Session, definition: JobDefinition) -> None:
    graph = {**store.job_dependencies(session), definition.name: definition.depends_on}
    problem = pipelines.graph_problems(graph, [definition.name]).get(definition.name)
    if problem is not None:
        raise InvalidDefinition(definition.name, *problem)


def create_job(db: Database, name: str, raw: Mapping[str, Any]) -> JobDefinition:
    """Create a job stored in the database (source ``db``). Conflict if the name is taken."""
    definition = parse_definition(name, dict(raw), source="db")
    with db.write() as session:
        existing = store.get_job(session, name)
        if existing is not None and not existing.archived:
            raise Conflict(f"a job named '{name}' already exists", details={"job": name})
        _check_graph(session, definition)
        _check_limits(session, definition)
        store.save_job(session, definition.row(), now=utcnow())
    return definition


def update_job(db: Database, name: str, raw: Mapping[str, Any]) -> JobDefinition:
    """Replace the definition of a database job; code and file jobs are read-only."""
    definition = parse_definition(name, dict(raw), source="db")
    with db.write() as session:
        editable_job(session, name)
        _check_graph(session, definition)
        _check_limits(session, definition)
        store.save_job(session, definition.row(), now=utcnow())
    return definition


def delete_job(db: Database, name: str) -> None:
    """Delete a database job and its run history; code and file jobs are read-only."""
    with db.write() as session:
        editable_job(session, name)
        dependents = dependents_of(session, name)
        if dependents:
            raise Conflict(f"job '{name}' is an upstream of {', '.join(dependents)}; change their depends_on first",
                           details={"job": name, "dependents": dependents})
        store.delete_job(session, name)


def dependents_of(session: Any, name: str) -> list[str]:
    """The jobs whose ``depends_on`` names ``name`` (sorted): while there are any, it cannot be deleted."""
    return sorted(job for job, ups in store.job_dependencies(session).items() if name in ups)


def editable_job(session: Any, name: str) -> Any:
    """The stored job ``name`` if it may be changed from the panel, the API or the CLI: code and
    file jobs are read-only (``ReadOnlyJob`` says where to change them)."""
    job_row = store.get_job(session, name)
    if job_row is None:
        raise JobNotFound(name)
    if job_row.source != "db" and not job_row.archived:
        where = "in code (@job)" if job_row.source == "code" else "in the jobs file"
        raise ReadOnlyJob(f"job '{name}' is defined {where}; change it there", details={"job": name})
    return job_row


class JobCatalog:
    """Parsed definitions cached by (name, version): the worker's hot path never re-parses or
    re-reads a job whose version it has seen."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[int, JobDefinition]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int | None = None) -> JobDefinition:
        """The definition of ``name`` at ``version`` (None: whatever is current in the database)."""
        cached = self._cache.get(name)
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        with self.db.read() as session:
            row = store.get_job(session, name)
            if row is None:
                raise JobNotFound(name)
            definition, current = definition_from_job(row), row.version
        with self._lock:
            self._cache[name] = (current, definition)
        return definition
