"""The Docker image, without a docker engine: the Dockerfile is parsed (base, user, volume, port,
environment, health check, command), the runtime requirements it installs are checked against
what ``lexyjobs/`` imports, and the image's CMD is run as it would run in the container — with
the image's ENV, in a temp dir standing for ``/data`` (also its working directory), on loopback
and a free port instead of ``0.0.0.0:8080`` — to check /healthz, the files in the volume, the
HEALTHCHECK command itself and a clean exit on SIGTERM. ``scripts/docker-smoke.sh`` does the
same against a real image where docker exists."""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shlex
import signal
import stat
import tomllib
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import ROOT, wait_for

from lexyjobs.config import load_settings

sys.path.insert(0, str(ROOT / "scripts"))
from runtime_requirements import runtime_lines  # noqa: E402

DOCKERFILE = ROOT / "Dockerfile"
DATA = "/data"
BIN = Path(sys.executable).parent  # where the venv puts `python` and the `lexyjobs` script


@dataclass
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list; the shell form is refused (no shell for PID 1)."""
    assert arguments.startswith("["), f"use the exec form (a JSON array), not {arguments!r}"
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


@dataclass
class Image:
    base: str
    env: dict[str, str]
    user: str
    volumes: list[str]
    exposed: list[str]
    workdir: str
    healthcheck_options: dict[str, str]
    healthcheck: list[str]
    entrypoint: list[str]
    cmd: list[str]
    runs: list[str]


def load_image() -> Image:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    last = {i.keyword: i.arguments for i in instructions}
    env: dict[str, str] = {}
    for instruction in (i for i in instructions if i.keyword == "ENV"):
        for pair in shlex.split(instruction.arguments):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {pair!r}: use the KEY=value form"
            env[key] = value
    options, _, check = last["HEALTHCHECK"].partition("CMD ")
    volumes = [v for i in instructions if i.keyword == "VOLUME" for v in exec_form(i.arguments)]
    return Image(base=last["FROM"], env=env, user=last["USER"], volumes=volumes,
                 exposed=[p for i in instructions if i.keyword == "EXPOSE" for p in i.arguments.split()],
                 workdir=last["WORKDIR"], healthcheck_options=dict(o.lstrip("-").split("=") for o in options.split()),
                 healthcheck=exec_form(check), entrypoint=exec_form(last["ENTRYPOINT"]), cmd=exec_form(last["CMD"]),
                 runs=[i.arguments for i in instructions if i.keyword == "RUN"])


@pytest.fixture(scope="module")
def image() -> Image:
    return load_image()


# ---------------------------------------------------------------- static checks


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# head\nFROM x:1\n\nENV A=1 \\\n    # inside\n    B=2\nCMD [\"a\"]\n")
    assert [(i.keyword, i.arguments) for i in parsed] == [("FROM", "x:1"), ("ENV", "A=1 B=2"), ("CMD", '["a"]')]


def test_the_image_is_python_311_slim_non_root_with_data_as_its_volume(image: Image) -> None:
    assert image.base == "python:3.11-slim"
    assert image.user.split(":")[0] not in ("root", "0", "")
    assert image.volumes == [DATA] and image.workdir == DATA
    assert image.exposed == ["8080"]
    assert any("chown" in run and DATA in run for run in image.runs), "the non-root user must own /data"
    assert image.entrypoint == ["tini", "--"] and any("tini" in run for run in image.runs)


def test_the_image_environment_is_valid_and_keeps_everything_in_data(image: Image) -> None:
    assert image.env["LEXYJOBS_DATABASE_URL"] == f"sqlite:///{DATA}/jobs.db"
    assert (image.env["LEXYJOBS_HOST"], image.env["LEXYJOBS_PORT"]) == ("0.0.0.0", "8080")
    assert image.env["LEXYJOBS_LOG_FORMAT"] == "json"
    settings = load_settings(environ={k: v for k, v in image.env.items() if k.startswith("LEXYJOBS_")})
    assert str(settings.data_path()) == DATA and settings.log_format == "json" and settings.port == 8080


def test_the_health_check_and_command_are_exec_forms_of_the_apps_own_entry_points(image: Image) -> None:
    assert image.cmd == ["lexyjobs", "serve"]
    assert image.healthcheck[:2] == ["python", "-c"] and "/healthz" in image.healthcheck[2]
    assert "curl" not in " ".join(image.healthcheck)
    assert {"interval", "timeout", "start-period", "retries"} <= set(image.healthcheck_options)


def _imported_modules(package: Path) -> set[str]:
    """Top-level names of every module imported anywhere under ``package``, also by name
    (``importlib.import_module("x")``, ``find_spec("x")``)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("import_module", "find_spec") and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value.split(".")[0])
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_closure(requirements: list[str]) -> set[str]:
    """The distributions the requirements install, with their dependencies (as installed here)."""
    todo = [_canonical(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]) for line in requirements]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_canonical(re.split(r"[\[<>=!~; (]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r]
    return seen


def test_the_runtime_requirements_cover_every_import_of_the_app() -> None:
    kept = runtime_lines((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    assert not [line for line in kept if line.startswith(("pytest", "mypy", "playwright", "-e"))]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    installed = _installed_closure(kept) | _installed_closure([r for extra in extras.values() for r in extra])
    providers = importlib.metadata.packages_distributions()
    third_party = sorted(name for name in _imported_modules(ROOT / "lexyjobs")
                         if name not in sys.stdlib_module_names and name != "lexyjobs")
    missing = {name: providers.get(name, ["?"]) for name in third_party
               if not {_canonical(d) for d in providers.get(name, [])} & installed}
    assert missing == {}, ("lexyjobs imports these, but the image does not install them; add them to requirements.txt "
                           "(or, imported only when asked for, to an optional extra in pyproject.toml)")


def test_the_image_requirements_drop_comments_and_the_editable_install_and_refuse_test_tools() -> None:
    text = "# what runs\nflask==3.1.3  # web\n\nclick==8\n-e .\n"
    assert runtime_lines(text) == ["flask==3.1.3", "click==8"]
    for bad in ("pytest==9\n", "flask==3\n-r requirements-dev.txt\n", "-e .\n"):
        with pytest.raises(SystemExit):
            runtime_lines(bad)


# ---------------------------------------------------------------- the CMD, run like the container


@dataclass
class Container:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    data: Path
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def announced_port(self) -> int:
        def port() -> int | None:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.stderr()}"
            found = re.search(r'"url": "http://127\.0\.0\.1:(\d+)"', self.stderr())
            return int(found.group(1)) if found else None
        return int(wait_for(port, timeout=30))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _host_path(argument: str) -> str:
    """The image's `python` / `lexyjobs` are this venv's."""
    return str(BIN / argument) if (BIN / argument).exists() else argument


def container_env(image: Image, data: Path) -> dict[str, str]:
    """The image's ENV with /data replaced by ``data``, bound to loopback on a free port (0)."""
    env = {k: v.replace(DATA, str(data)) for k, v in image.env.items()}
    env.update(LEXYJOBS_HOST="127.0.0.1", LEXYJOBS_PORT="0", HOME=str(data), LANG="C.UTF-8",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    return env


@pytest.fixture
def start_container(image: Image, tmp_path: Path) -> Iterator[Callable[[], Container]]:
    data = tmp_path / "data"
    data.mkdir()
    started: list[Container] = []

    def start() -> Container:
        log = tmp_path / f"container-{len(started)}.log"
        env = container_env(image, data)
        with log.open("wb") as sink:
            proc = subprocess.Popen([_host_path(a) for a in image.cmd], cwd=image.workdir.replace(DATA, str(data)),
                                    env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        started.append(Container(proc, env, data, log))
        return started[-1]
    yield start
    for container in started:
        if container.proc.poll() is None:
            container.proc.kill()
            container.proc.wait()


def run_healthcheck(image: Image, container: Container, port: int) -> subprocess.CompletedProcess[str]:
    argv = [_host_path(image.healthcheck[0]), *image.healthcheck[1:]]
    timeout = float(image.healthcheck_options["timeout"].rstrip("s"))
    return subprocess.run(argv, env={**container.env, "LEXYJOBS_PORT": str(port)}, capture_output=True, text=True,
                          timeout=timeout + 5)


RUNTIME_PRINTS = re.compile(r"lexyjobs: created user 'admin' with password: \S+|lexyjobs: it is shown only this once.*"
                            r"|lexyjobs: scheduler started in pid \d+")


def _plain_lines(output: str) -> list[str]:
    """The lines of ``output`` that are not JSON log lines."""
    plain = []
    for line in output.splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            plain.append(line)
    return plain


@pytest.mark.slow
def test_the_image_command_serves_health_keeps_its_files_in_data_and_stops_cleanly(image: Image,
                                                                                    start_container: Callable[[], Container]) -> None:
    first = start_container()
    port = first.announced_port()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    assert (first.data / "jobs.db").is_file()
    key = first.data / "secret_key"
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert run_healthcheck(image, first, port).returncode == 0
    assert first.stop() == 0
    assert run_healthcheck(image, first, port).returncode != 0  # nothing answers any more: unhealthy

    output = first.stderr()
    assert "Traceback" not in output
    # JSON log lines, except what runtime.py prints itself: the one-time admin password (read it
    # with `docker logs`) and the scheduler's start line.
    plain = _plain_lines(output)
    assert plain and plain[0].startswith("lexyjobs: created user 'admin' with password: "), output
    assert all(RUNTIME_PRINTS.fullmatch(line) for line in plain), plain
    assert any('"logger": "lexyjobs.cli"' in line and "stopping" in line for line in output.splitlines())

    kept_key = key.read_text()
    second = start_container()  # the same volume: same key, same database, no new password
    second_port = second.announced_port()
    assert run_healthcheck(image, second, second_port).returncode == 0
    assert second.stop() == 0
    assert key.read_text() == kept_key and "created user 'admin'" not in second.stderr()


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``path`` (its last matching pattern wins; ``!`` re-includes)."""
    import fnmatch

    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").removeprefix("**/")
        if any(fnmatch.fnmatch(prefix, bare) or fnmatch.fnmatch(prefix.split("/")[-1], bare) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_the_build_context_keeps_what_the_image_runs_and_drops_local_state() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    needed = ["lexyjobs/__init__.py", "lexyjobs/migrations/env.py", "templates", "static", "app.py",
              "pyproject.toml", "requirements.txt", "scripts/runtime_requirements.py", "jobs.toml"]
    assert [path for path in needed if _ignored(path, patterns)] == []
    unwanted = [".git", ".venv", "tests", "bench", "jobs.db", "jobs.db-wal", "secret_key",
                "lexyjobs/__pycache__/cli.cpython-311.pyc", "lexyjobs.egg-info"]
    assert [path for path in unwanted if not _ignored(path, patterns)] == []


def test_the_smoke_script_for_real_docker_is_valid_bash() -> None:
    script = ROOT / "scripts" / "docker-smoke.sh"
    assert os.access(script, os.X_OK)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
