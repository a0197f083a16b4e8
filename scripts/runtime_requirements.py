"""Print the runtime part of requirements.txt for the Docker image: the requirement lines from the
``# runtime`` comment up to the ``# tests`` comment. The test tools (playwright's 165 MB driver
among them) stay out of the image, and ``-e .`` is installed by the Dockerfile once the code is
copied. tests/test_docker.py checks that what this keeps covers every import of ``lexyjobs/``.

Usage: ``python scripts/runtime_requirements.py requirements.txt > runtime.txt``"""
from __future__ import annotations

import sys
from pathlib import Path

SECTIONS = ("runtime", "tests")


def runtime_lines(text: str) -> list[str]:
    """The requirement lines of the ``# runtime`` section (comments, blanks and ``-e`` dropped)."""
    kept: list[str] = []
    section = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if raw.strip().startswith("#"):
            marker = raw.strip().lstrip("#").strip().lower()
            section = marker if marker in SECTIONS else section
            continue
        if section == "runtime" and line and not line.startswith(("-e", "--editable")):
            kept.append(line)
    if not kept:
        raise SystemExit("runtime_requirements: no requirement under a '# runtime' line")
    return kept


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: runtime_requirements.py REQUIREMENTS_FILE")
    print("\n".join(runtime_lines(Path(argv[0]).read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main(sys.argv[1:])
