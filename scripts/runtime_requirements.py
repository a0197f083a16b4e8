"""Print requirements.txt for the Docker image: its requirement lines without ``-e .`` (the
Dockerfile installs the code once it is copied, after the dependencies' own layer). The file holds
runtime dependencies only (the test tools are in requirements-dev.txt); an include (``-r``) or a
test tool found in it is refused, so the image never grows them. tests/test_docker.py checks that
what this keeps covers every import of ``lexyjobs/``.

Usage: ``python scripts/runtime_requirements.py requirements.txt > runtime.txt``"""
from __future__ import annotations

import re
import sys
from pathlib import Path

TEST_TOOLS = ("pytest", "playwright", "mypy", "schemathesis", "aiosmtpd")


def runtime_lines(text: str) -> list[str]:
    """The requirement lines (comments, blanks and ``-e`` dropped); SystemExit on an include, a
    test tool or no requirement at all."""
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith(("-e", "--editable")):
            continue
        if line.startswith("-"):
            raise SystemExit(f"runtime_requirements: '{line}': the runtime requirements must list packages only")
        name = re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower()
        if name in TEST_TOOLS:
            raise SystemExit(f"runtime_requirements: {name} is a test tool; it belongs in requirements-dev.txt")
        kept.append(line)
    if not kept:
        raise SystemExit("runtime_requirements: no requirement found")
    return kept


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: runtime_requirements.py REQUIREMENTS_FILE")
    print("\n".join(runtime_lines(Path(argv[0]).read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main(sys.argv[1:])
