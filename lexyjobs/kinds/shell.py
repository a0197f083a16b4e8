"""``shell`` kind: run an argv list (never a shell string) in its own process group. Output
streams into the run log; ``::progress 40 message`` lines set progress; params arrive as
``LEXYJOBS_PARAM_<NAME>``; cancel and timeout kill the whole group (grandchildren included).
The run ends when the command exits (output still arriving is read for EXIT_DRAIN seconds).
The group never outlives lexyjobs: see ``lexyjobs.children`` (die with parent, the group guard,
the group recorded on the run for the rescue)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import time
from typing import Any, Iterator, Mapping

from lexyjobs import children
from lexyjobs.context import JobFailed, RunCanceled, RunContext
from lexyjobs.errors import InvalidDefinition
from lexyjobs.kinds import expand_env, job_environ, parse_env_passthrough

EXIT_DRAIN = 2.0  # seconds output is still read after the command exited

FIELDS = {
    "argv": "command and arguments as a list, e.g. `[\"python\", \"scripts/ingest.py\"]`",
    "cwd": "working directory (default: the server's)",
    "env": "extra environment variables; values may use `${ENV}`",
    "env_passthrough": "`LEXYJOBS_*` variables the command still gets (names or glob patterns); "
                       "lexyjobs' own settings and secrets are removed otherwise",
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
    config: dict[str, Any] = {"argv": list(argv), "cwd": cwd, "env": {k: str(v) for k, v in env.items()}}
    passthrough = parse_env_passthrough(job, fields.get("env_passthrough"))
    if passthrough:
        config["env_passthrough"] = passthrough
    return config


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """``LEXYJOBS_PARAM_<NAME>`` variables: text as is, booleans as true/false, the rest as JSON."""
    def text(value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value)
    return {f"LEXYJOBS_PARAM_{name.upper().replace('-', '_')}": text(v) for name, v in params.items()}


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    env = {**job_environ(config.get("env_passthrough", ())),  # without lexyjobs' own settings and secrets
           "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1"),
           **expand_env(config["env"]), **param_env(ctx.params), "LEXYJOBS_RUN_ID": str(ctx.run_id)}
    if ctx.fire_time is not None:  # the schedule time this run is for, e.g. the day a daily job covers
        env["LEXYJOBS_FIRE_TIME"] = ctx.fire_time.isoformat()
    argv = expand_env(config["argv"])
    try:
        proc = subprocess.Popen(argv, cwd=config.get("cwd"), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=children.die_with_parent())
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise JobFailed(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    ctx.details["pid"] = proc.pid
    guard = children.guard()
    guard.watch(proc.pid)  # its own session: the group's id is the command's pid
    killer = children.GroupStopper(proc.pid, ctx.kill_grace)
    remove = ctx.on_cancel(killer.stop)
    try:
        ctx.process_started(proc.pid)
        for raw in _lines(proc):
            line = raw.decode("utf-8", "replace")
            if line.startswith("::progress"):
                _progress(ctx, line)
            else:
                ctx.write(line)
        code = proc.wait()
    finally:
        remove()
        killer.finish()
        guard.forget(proc.pid)  # what the command left running in the background is no longer the run's
        if proc.stdout is not None:
            proc.stdout.close()
    ctx.details["exit_code"] = code
    if ctx.cancelled:
        raise RunCanceled(ctx.cancel_reason or "cancel")
    if code != 0:
        raise JobFailed(f"killed by signal {-code}" if code < 0 else f"exit code {code}")
    return {"exit_code": code}


def _lines(proc: subprocess.Popen[bytes]) -> Iterator[bytes]:
    """The command's output line by line, as it comes. Reading stops at end of output, or
    EXIT_DRAIN seconds after the command exited (a child that left its process group may keep
    the pipe open forever)."""
    assert proc.stdout is not None
    fd, pending, exited_at = proc.stdout.fileno(), b"", None
    while True:
        if proc.poll() is not None:
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > EXIT_DRAIN:
                break
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


def _progress(ctx: RunContext, line: str) -> None:
    parts = line.split(maxsplit=2)
    try:
        ctx.progress(float(parts[1]), parts[2].strip() if len(parts) > 2 else None)
    except (IndexError, ValueError):
        ctx.write(line)
