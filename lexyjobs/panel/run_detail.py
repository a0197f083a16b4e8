"""Panel pages: run_detail (routes added to the panel blueprint)."""
from __future__ import annotations

from lexyjobs.panel import bp  # noqa: F401
