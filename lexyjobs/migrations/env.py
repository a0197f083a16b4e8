"""Alembic environment: lexyjobs runs migrations programmatically (lexyjobs.schema.upgrade)
and passes its connection in ``config.attributes``. APScheduler's tables are not ours."""
from __future__ import annotations

from alembic import context

from lexyjobs.models import Base


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith("apscheduler_"))


connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, include_name=include_name,
                  render_as_batch=connection.dialect.name == "sqlite")
context.run_migrations()
