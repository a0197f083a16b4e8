"""``shell`` kind: run an argv list (never a shell string) in its own process group. Output
streams into the run log; ``::progress 40 message`` lines set progress; params arrive as
``LEXYJOBS_PARAM_<NAME>``; cancel and timeout kill the whole group (grandchildren included)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from typing import Any, Mapping

from lexyjobs.context import JobFailed, RunCanceled, RunContext
from lexyjobs.errors import InvalidDefinition
from lexyjobs.kinds import expand_env

FIELDS = {
    "argv": "command and arguments as a list, e.g. `[\"python\", \"scripts/ingest.py\"]`",
    "cwd": "working directory (default: the server's)",
    "env": "extra environment variables; values may use `${ENV}`",
}


def validate(job: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    argv = fields.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidDefinition(job, "argv", "must be a non-empty list of strings, e.g. [\"echo\", \"hello\"]")
    cwd = fields.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise InvalidDefinition(job, "cwd", "must be a path")
    env = fields.get("env", {})
    if not isinstance(env, Mapping) or not all(isinstance(v, (str, int, float)) for v in env.values()):
        raise InvalidDefinition(job, "env", "must be a table of text values")
    return {"argv": list(argv), "cwd": cwd, "env": {k: str(v) for k, v in env.items()}}


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """``LEXYJOBS_PARAM_<NAME>`` variables: text as is, booleans as true/false, the rest as JSON."""
    def text(value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value)
    return {f"LEXYJOBS_PARAM_{name.upper().replace('-', '_')}": text(v) for name, v in params.items()}


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1"),
           **expand_env(config["env"]), **param_env(ctx.params), "LEXYJOBS_RUN_ID": str(ctx.run_id)}
    argv = expand_env(config["argv"])
    try:
        proc = subprocess.Popen(argv, cwd=config.get("cwd"), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise JobFailed(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    ctx.details["pid"] = proc.pid
    remove = ctx.on_cancel(lambda _reason: _kill_group(proc, ctx.kill_grace))
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if line.startswith("::progress"):
                _progress(ctx, line)
            else:
                ctx.write(line)
        code = proc.wait()
    finally:
        remove()
        proc.stdout and proc.stdout.close()
    ctx.details["exit_code"] = code
    if ctx.cancelled:
        raise RunCanceled(ctx.cancel_reason or "cancel")
    if code != 0:
        raise JobFailed(f"killed by signal {-code}" if code < 0 else f"exit code {code}")
    return {"exit_code": code}


def _progress(ctx: RunContext, line: str) -> None:
    parts = line.split(maxsplit=2)
    try:
        ctx.progress(float(parts[1]), parts[2].strip() if len(parts) > 2 else None)
    except (IndexError, ValueError):
        ctx.write(line)


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds (even if the leader
    exited, so grandchildren that ignore SIGTERM cannot keep the output pipe open)."""
    def send(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    send(signal.SIGTERM)
    timer = threading.Timer(grace, send, args=(signal.SIGKILL,))
    timer.daemon = True
    timer.start()
