"""The ``lexyjobs`` console script imports modules from the current folder, as ``python -m
lexyjobs`` does (issue 14, C19): ``LEXYJOBS_IMPORTS=mymodule lexyjobs serve`` in a folder holding
``mymodule.py`` registers its ``@job`` functions (``say_hello`` → job ``say-hello``) and runs them.
Real console script, real server process, run from a temp folder that is not on PYTHONPATH."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import subprocess_env, wait_for

LEXYJOBS = str(Path(sys.executable).parent / "lexyjobs")  # the console script installed beside this python
MODULE = '''
from lexyjobs import job


@job(category="Greetings")
def say_hello(ctx):
    return {"greeting": "hello from " + __name__}
'''


def test_the_console_script_imports_a_module_from_the_working_folder(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mymodule.py").write_text(MODULE)
    env = subprocess_env(f"sqlite:///{tmp_path / 'jobs.db'}", LEXYJOBS_IMPORTS="mymodule", LEXYJOBS_JOBS_FILE="",
                         LEXYJOBS_HOST="127.0.0.1", LEXYJOBS_POLL_INTERVAL="0.05",
                         LEXYJOBS_ADMIN_PASSWORD="admin-password-1")
    assert str(folder) not in env["PYTHONPATH"].split(":")
    server = subprocess.Popen([LEXYJOBS, "serve", "--port", "0"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def drain() -> None:
        assert server.stderr is not None
        lines.extend(server.stderr)
    threading.Thread(target=drain, daemon=True).start()
    try:
        wait_for(lambda: any("lexyjobs serving on" in line for line in list(lines)) or server.poll() is not None,
                 timeout=60)
        assert server.poll() is None, "".join(lines)
        loaded = [line for line in lines if re.search(r"\d+ jobs loaded", line)]
        assert "1 jobs loaded" in loaded[0] and "rejected" not in loaded[0], "".join(lines)

        done = subprocess.run([LEXYJOBS, "run", "say-hello", "--wait", "--timeout", "60s"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout + done.stderr
        shown = subprocess.run([LEXYJOBS, "show", "1"], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
        assert "succeeded" in shown.stdout and "hello from mymodule" in shown.stdout, shown.stdout + shown.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, "".join(lines)
