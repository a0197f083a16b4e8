"""Real lexyjobs servers to crash: ``python app.py --port 0`` children, each the leader of its own
process group (so a test can ``kill -9 -<pgid>`` it as an operator would, without hitting pytest),
and a look at the processes a run left behind, through /proc (Linux)."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from conftest import PYTHON, ROOT, subprocess_env, wait_for

# Fast intervals: a run is stale 2 s after its last heartbeat.
FAST_ENV = {"LEXYJOBS_POLL_INTERVAL": "0.05", "LEXYJOBS_HEARTBEAT_INTERVAL": "0.3", "LEXYJOBS_STALE_AFTER": "2",
            "LEXYJOBS_SHUTDOWN_GRACE": "2", "LEXYJOBS_KILL_GRACE": "1"}
READY = "lexyjobs serving on http://127.0.0.1:"


class Servers:
    """Starts servers on one database; ``close()`` kills every group still there."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path, self.db_url = tmp_path, db_url
        self.started: list[subprocess.Popen[bytes]] = []
        self.jobs_file = tmp_path / "no-jobs.toml"
        self.jobs_file.write_text("# the tests create their jobs in the database\n", encoding="utf-8")

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        """A server in its own session, ready (its start-up line printed)."""
        output = self.tmp_path / f"server-{len(self.started)}.log"
        environment = subprocess_env(self.db_url, LEXYJOBS_JOBS_FILE=str(self.jobs_file), **{**FAST_ENV, **env})
        with open(output, "wb") as out:
            proc = subprocess.Popen([PYTHON, "app.py", "--port", "0"], cwd=ROOT, env=environment,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.started.append(proc)

        def ready() -> bool:
            text = output.read_text(encoding="utf-8", errors="replace")
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}:\n{text}")
            return READY in text
        wait_for(ready, timeout=30)
        return proc

    def crash(self, proc: subprocess.Popen[bytes]) -> None:
        """``kill -9 -<pgid>``: the server and everything still in its process group."""
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL

    def close(self) -> None:
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def _proc_stat(pid: str) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    return stat[stat.rfind(")") + 2:].split()


def processes_of_run(run_id: int) -> list[int]:
    """Live (not zombie) processes whose environment says they belong to run ``run_id``."""
    marker = f"LEXYJOBS_RUN_ID={run_id}".encode()
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") and _proc_stat(pid)[0] not in "ZX":
                found.append(int(pid))
        except OSError:
            continue  # gone meanwhile, or not ours
    return found


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (whichever of its threads started them)."""
    found = []
    for child in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            state, ppid = _proc_stat(child)[:2]
        except OSError:
            continue
        if ppid == str(pid) and state not in "ZX":
            found.append(int(child))
    return found


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
