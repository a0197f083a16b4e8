"""The migrations build exactly the schema the models describe, and step down and up again
(SQLite and Postgres)."""
from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from lexyjobs import schema
from lexyjobs.db import Database
from lexyjobs.models import Base


def differences(db: Database) -> list[Any]:
    """What autogenerate would change to make the database match the models, plus the indexes
    missing on either side by name. (APScheduler's own table is not ours; autogenerate cannot
    compare expression indexes such as ix_runs_queue on SQLite, hence the by-name check.)"""
    with db.engine.connect() as connection:
        found = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    changes = [change for change in found
               if "apscheduler_jobs" not in repr(change) and change[0] not in ("add_index", "remove_index")]
    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        modelled = {index.name for index in table.indexes}
        present = index_names(db, table.name)
        changes += [("missing index", table.name, name) for name in sorted(modelled - present)]
        changes += [("extra index", table.name, name) for name in sorted(present - modelled)]
    return changes


def index_names(db: Database, table: str) -> set[str]:
    """The table's index names. SQLAlchemy does not reflect SQLite's expression indexes (such as
    ix_runs_duration): there they are read from sqlite_master."""
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as connection:
            return set(connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                                               "AND name NOT LIKE 'sqlite_autoindex_%'"), {"t": table}))
    return {index["name"] for index in inspect(db.engine).get_indexes(table)
            if not index.get("duplicates_constraint")}  # Postgres lists unique constraints too


def test_the_migrated_schema_matches_the_models(db: Database) -> None:
    assert differences(db) == []


def test_the_newest_migrations_step_down_and_up_again(db: Database) -> None:
    def run_indexes() -> set[str]:
        return index_names(db, "runs")

    assert "ix_runs_status_finished_times" in run_indexes()
    _downgrade(db, "0004")
    assert {"ix_runs_status_created", "ix_runs_finished"} <= run_indexes()
    assert not {"ix_runs_status_finished_times", "ix_runs_job_outcome"} & run_indexes()
    schema.upgrade(db)
    assert differences(db) == []


def _downgrade(db: Database, revision: str) -> None:
    config = schema.alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_head_names_the_newest_migration_and_the_database_reports_it(db: Database, tmp_path: Any) -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(schema.alembic_config()).get_current_head() == schema.HEAD
    assert schema.current_revision(db) == schema.HEAD
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert schema.current_revision(empty) is None
    finally:
        empty.dispose()
