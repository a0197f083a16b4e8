"""Where the panel's templates and static files are. In a checkout (or an editable install) they
are the repository's top-level ``templates/`` and ``static/``; a built wheel maps them into the
package as ``lexyjobs/templates`` and ``lexyjobs/static`` (see ``pyproject.toml``)."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _folder(name: str) -> Path:
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name


TEMPLATES = _folder("templates")
STATIC = _folder("static")
