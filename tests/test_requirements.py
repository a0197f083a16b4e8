"""requirements.txt holds what lexyjobs needs to run, requirements-dev.txt adds the test tools, and
``.ci/run`` (the README's one test command) installs the dev ones, Chromium, and runs pytest."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from conftest import ROOT
from test_docker import _canonical, _imported_modules, _installed_closure

sys.path.insert(0, str(ROOT / "scripts"))
from runtime_requirements import TEST_TOOLS, runtime_lines  # noqa: E402


def _optional_imports(package: Path) -> set[str]:
    """Top-level names imported inside ``try: … except ImportError`` (a fallback is there)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    for h in node.handlers):
                for inner in node.body:
                    if isinstance(inner, ast.Import):
                        names.update(alias.name.split(".")[0] for alias in inner.names)
    return names


def _requirement_names(path: Path) -> list[str]:
    return [_canonical(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0])
            for line in (l.split(" #", 1)[0].strip() for l in path.read_text(encoding="utf-8").splitlines())
            if line and not line.startswith(("#", "-"))]


def test_the_runtime_requirements_hold_no_test_tool() -> None:
    names = _requirement_names(ROOT / "requirements.txt")
    assert names and not set(names) & set(TEST_TOOLS)
    assert runtime_lines((ROOT / "requirements.txt").read_text(encoding="utf-8"))  # what the image installs
    assert "-e ." in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()  # the `lexyjobs` command


def test_the_dev_requirements_add_the_test_tools_to_the_runtime_ones() -> None:
    text = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert "-r requirements.txt" in text.splitlines()
    assert {"pytest", "playwright", "mypy"} <= set(_requirement_names(ROOT / "requirements-dev.txt"))


def test_the_dev_and_bench_requirements_cover_every_import_of_the_tests() -> None:
    wanted = [line for path in ("requirements.txt", "requirements-dev.txt", "bench/requirements.txt")
              for line in _requirement_names(ROOT / path)]
    installed = _installed_closure(wanted)
    providers = importlib.metadata.packages_distributions()
    local = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"lexyjobs", "bench", "app", "runtime_requirements", "examples"}
    local |= _optional_imports(ROOT / "tests")
    imported = sorted(name for name in _imported_modules(ROOT / "tests")
                      if name not in sys.stdlib_module_names and name not in local)
    missing = {name: providers.get(name, ["?"]) for name in imported
               if not {_canonical(d) for d in providers.get(name, [])} & installed}
    assert missing == {}, "the tests import these; add them to requirements-dev.txt"


def test_ci_installs_the_dev_requirements_and_chromium_then_runs_the_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = next(line for line in script.splitlines() if "pip install" in line)
    assert "-r requirements-dev.txt" in install
    assert "apt-get install -y chromium" in script
    assert script.rstrip().splitlines()[-1].endswith("-m pytest -q")


def test_the_readme_names_the_one_test_command_and_the_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tests = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    assert "bash .ci/run" in tests and "minutes" in tests
    quickstart = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    first_block = quickstart.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]
    assert "pip install -r requirements.txt" in first_block and "python app.py" in first_block
    assert "3.11" in quickstart and "venv" in quickstart
    assert len(commands) == 2
