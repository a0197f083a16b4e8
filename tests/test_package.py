"""lexyjobs as a package: ``import lexyjobs`` is light (checked in a fresh interpreter), pyproject.toml
declares what requirements.txt pins and every package folder, and a wheel built from the checkout,
installed in a fresh venv outside it, serves the panel with its templates and static files."""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import types
import urllib.parse
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import ROOT, wait_for
from packaging.requirements import Requirement

import lexyjobs
from lexyjobs import resources

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Imported by `import lexyjobs` in a fresh interpreter, this program prints what the import added:
# modules, threads, and the audited events that open a socket, a database, a process or a file for
# writing (run with -B, so no .pyc is written either).
IMPORT_PROBE = r"""
import json, os, sys, threading, time
events = []
WATCHED = ("socket.", "sqlite3.connect", "subprocess.Popen", "os.system", "os.fork", "os.exec", "os.posix_spawn")
def hook(event, args):
    if event.startswith(WATCHED):
        events.append(event)
    elif event == "open" and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
        events.append(f"open {args[0]} {args[1]}")
sys.addaudithook(hook)
before = set(sys.modules)
threads = threading.active_count()
started = time.perf_counter()
import lexyjobs
elapsed = time.perf_counter() - started
print(json.dumps({
    "file": lexyjobs.__file__,
    "modules": sorted(set(sys.modules) - before),
    "threads": [threads, threading.active_count()],
    "os_threads": len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1,
    "events": events,
    "seconds": elapsed,
}))
"""


def _import_probe(cwd: Path) -> dict[str, Any]:
    """``import lexyjobs`` in a fresh, isolated interpreter (-I: no PYTHONPATH, no cwd on sys.path)."""
    done = subprocess.run([sys.executable, "-I", "-B", "-c", IMPORT_PROBE], cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_import_lexyjobs_loads_only_the_standard_library_and_starts_and_opens_nothing(tmp_path: Path) -> None:
    probe = _import_probe(tmp_path)
    assert Path(probe["file"]).resolve() == ROOT / "lexyjobs" / "__init__.py"
    third_party = sorted({name.split(".")[0] for name in probe["modules"]}
                         - set(sys.stdlib_module_names) - {"lexyjobs"})
    assert third_party == [], "import lexyjobs must stay light: import these on first use (lexyjobs._LAZY)"
    assert probe["threads"] == [1, 1] and probe["os_threads"] == 1
    assert probe["events"] == []


def test_the_lazy_names_are_public_and_resolve_to_their_modules() -> None:
    assert set(lexyjobs._LAZY) <= set(lexyjobs.__all__)
    for name, module in lexyjobs._LAZY.items():
        assert getattr(lexyjobs, name) is getattr(importlib.import_module(module), name)
    assert all(hasattr(lexyjobs, name) for name in lexyjobs.__all__)
    assert set(lexyjobs._LAZY) <= set(dir(lexyjobs))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        getattr(lexyjobs, "no_such_name")


def _requirements() -> dict[str, Requirement]:
    lines = (line.split(" #", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    found = [Requirement(line) for line in lines if line and not line.startswith(("#", "-"))]
    return {_canonical(r.name): r for r in found}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_no_submodule_shadows_a_public_name() -> None:
    """Importing ``lexyjobs.x`` sets the attribute ``lexyjobs.x`` to the module: a submodule named
    like a public name (``lexyjobs.retry`` once was) would replace the function as soon as any code
    imported it."""
    package = Path(lexyjobs.__file__).parent
    submodules = {path.stem for path in package.glob("*.py")} | {path.parent.name for path in package.glob("*/__init__.py")}
    assert submodules & set(lexyjobs._LAZY) == set()
    for name in sorted(submodules - {"__init__", "__main__"}):
        importlib.import_module(f"lexyjobs.{name}")
    for name in lexyjobs._LAZY:
        assert not isinstance(getattr(lexyjobs, name), types.ModuleType), name


def test_the_package_dependencies_are_the_pinned_requirements_as_ranges() -> None:
    pinned = _requirements()
    declared = {_canonical(r.name): r for r in map(Requirement, PYPROJECT["project"]["dependencies"])}
    assert sorted(declared) == sorted(pinned), "pyproject.toml [project].dependencies and requirements.txt differ"
    for name, requirement in pinned.items():
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"requirements.txt pins {name} exactly"
        assert declared[name].specifier.contains(pin.version), f"{name}=={pin.version} is outside {declared[name]}"
        assert declared[name].extras == requirement.extras


def test_pyproject_lists_every_package_folder_and_maps_templates_and_static() -> None:
    tool = PYPROJECT["tool"]["setuptools"]
    folders = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "lexyjobs").rglob("__init__.py")}
    assert folders | {"lexyjobs.templates", "lexyjobs.static"} == set(tool["packages"])
    assert tool["package-dir"] == {"lexyjobs.templates": "templates", "lexyjobs.static": "static"}
    assert PYPROJECT["project"]["scripts"] == {"lexyjobs": "lexyjobs.cli:main"}


def test_the_checkout_serves_the_top_level_templates_and_static_files() -> None:
    """Tests run on the editable install (`-e .`): the folders are the checkout's, not copies."""
    assert Path(lexyjobs.__file__).resolve().parent == ROOT / "lexyjobs"
    assert (resources.TEMPLATES, resources.STATIC) == (ROOT / "templates", ROOT / "static")
    assert not (ROOT / "lexyjobs" / "templates").exists() and not (ROOT / "lexyjobs" / "static").exists()


# ---------------------------------------------------------------- the wheel, in a fresh venv

LOCAL_STATE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".mypy_cache", "test-artifacts", "demo-data", "jobs.db*",
                                     "secret_key")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (the build writes build/ and *.egg-info beside its
    sources), offline: this venv's setuptools, no build isolation."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "src", ignore=LOCAL_STATE)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(work / "dist"), str(work / "src")],
                           cwd=work, capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = (work / "dist").glob("lexyjobs-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the wheel installed. Its dependencies come from this
    venv (a .pth line, added after the install so pip sees an empty venv): nothing is downloaded."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=180)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    ours = Path(importlib.import_module("flask").__file__ or "").parent.parent
    (site / "dependencies-from-the-test-venv.pth").write_text(f"{ours}\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_templates_static_files_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"lexyjobs/" + str(path.relative_to(ROOT / "lexyjobs"))
                for path in (ROOT / "lexyjobs").rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    for folder in ("templates", "static"):
        expected |= {f"lexyjobs/{folder}/{path.relative_to(ROOT / folder)}"
                     for path in (ROOT / folder).rglob("*") if path.is_file()}
    assert sorted(expected - names) == []
    assert {"lexyjobs/templates/login.html", "lexyjobs/templates/_partials/_macros.html", "lexyjobs/static/app.css",
            "lexyjobs/static/app.js", "lexyjobs/migrations/env.py", "lexyjobs/migrations/script.py.mako"} <= names
    assert any(re.fullmatch(r"lexyjobs/migrations/versions/0001_\w+\.py", name) for name in names)
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "lexyjobs = lexyjobs.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


class _Assets(HTMLParser):
    """The stylesheet and script URLs of a page, and whether it has a login form."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.password_field = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "link" and found.get("rel") == "stylesheet" and found.get("href"):
            self.urls.append(str(found["href"]))
        elif tag == "script" and found.get("src"):
            self.urls.append(str(found["src"]))
        elif tag == "input" and found.get("type") == "password":
            self.password_field = True


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``lexyjobs serve`` of the venv on a free port, from a temp dir, with its data in a temp dir."""
    data, cwd, log = tmp_path / "data", tmp_path / "cwd", tmp_path / "serve.log"
    data.mkdir()
    cwd.mkdir()
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "HOME": str(data), "LANG": "C.UTF-8",
           "LEXYJOBS_DATABASE_URL": f"sqlite:///{data / 'jobs.db'}", "LEXYJOBS_DATA_DIR": str(data),
           "LEXYJOBS_HOST": "127.0.0.1", "LEXYJOBS_PORT": "0", "LEXYJOBS_LOG_FORMAT": "json"}
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(venv / "bin" / "lexyjobs"), "serve"], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)

    def url() -> str | None:
        output = log.read_text(encoding="utf-8", errors="replace")
        assert proc.poll() is None, f"lexyjobs serve exited with {proc.returncode}:\n{output}"
        found = re.search(r'"url": "(http://127\.0\.0\.1:\d+)"', output)
        return found.group(1) if found else None
    try:
        yield str(wait_for(url, timeout=45)), log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=15) as response:
        return response.status, response.geturl(), response.read()


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_imports_from_it_and_serves_the_panel(
        venv: Path, served: tuple[str, Path], tmp_path: Path) -> None:
    probe = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                            "import json, lexyjobs; from lexyjobs import resources; "
                            "print(json.dumps([lexyjobs.__file__, str(resources.TEMPLATES), str(resources.STATIC)]))"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    for path in json.loads(probe.stdout):  # the package, its templates and static files: the venv's own
        assert Path(path).resolve().is_relative_to(venv.resolve()), path
        assert not Path(path).resolve().is_relative_to(ROOT)

    base, log = served
    status, final_url, body = _get(base + "/")  # redirected to the login page
    page = body.decode()
    assert status == 200 and "/login" in final_url
    assets = _Assets()
    assets.feed(page)
    assert assets.password_field and "<form" in page
    names = [url.split("?")[0].rsplit("/", 1)[-1] for url in assets.urls]
    assert {"app.css", "app.js", "htmx.min.js"} <= set(names), assets.urls
    for url in assets.urls:
        status, _, content = _get(urllib.parse.urljoin(final_url, url))
        assert status == 200 and content.strip(), url
    assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace")
