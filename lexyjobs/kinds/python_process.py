"""python jobs with ``isolation = "process"``: the function runs in a child process
(``lexyjobs.kinds.python_child``) that cancel and timeout stop within the kill grace, like a
shell command: SIGTERM to its process group (RunCanceled is raised in the function), then SIGKILL.

The child is a fresh interpreter (``sys.executable``, the "spawn" way: a fork of this
multithreaded process could inherit a lock some other thread held), in its own process group,
with lexyjobs' own settings and secrets removed from its environment (``job_environ``). It gets
this process's ``sys.path`` and imports only the function's module. Params go to it and the
result comes back pickled; progress, log lines and details stream back while it runs."""
from __future__ import annotations

import codecs
import contextlib
import os
import pickle
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from lexyjobs import children
from lexyjobs.context import ChildError, JobFailed, RunCanceled, RunContext
from lexyjobs.kinds import job_environ
from lexyjobs.kinds.python_child import BOOT, HEADER

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the folder holding the lexyjobs package
EXIT_WAIT = 2.0  # seconds the child may take to exit after its last message, and output is still read


def run(ctx: RunContext, config: Mapping[str, Any]) -> Any:
    channel_read, channel_write = os.pipe()
    env = {**job_environ(config.get("env_passthrough", ())), "LEXYJOBS_RUN_ID": str(ctx.run_id),
           "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1")}
    try:
        proc = subprocess.Popen([sys.executable, "-c", BOOT, PACKAGE_ROOT, str(os.getpid())], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=(channel_write,), process_group=0)
    except OSError as exc:
        os.close(channel_read)
        raise JobFailed(f"cannot start the child process: {exc.strerror or exc}") from None
    finally:
        os.close(channel_write)
    ctx.details["pid"] = proc.pid
    guard = children.guard()
    guard.watch(proc.pid)  # its own process group: the group's id is the child's pid
    killer = children.GroupStopper(proc.pid, ctx.kill_grace)
    remove = ctx.on_cancel(killer.stop)
    try:
        ctx.process_started(proc.pid)
        _send_request(proc, ctx, config, channel_write)
        end = _Exchange(ctx, proc, channel_read).follow()
    finally:
        remove()
        killer.finish(leftover=proc.poll() is None)  # stopped, or stuck after its end: nothing outlives the run
        proc.wait()
        guard.forget(proc.pid)
        os.close(channel_read)
        assert proc.stdout is not None
        proc.stdout.close()
    if ctx.cancelled:
        raise RunCanceled(ctx.cancel_reason or "cancel")
    return _result(end, proc.returncode)


def _send_request(proc: subprocess.Popen[bytes], ctx: RunContext, config: Mapping[str, Any], fd: int) -> None:
    request = {"func": config["func"], "sys_path": list(sys.path), "channel_fd": fd, "fire_time": ctx.fire_time,
               "context": {"run_id": ctx.run_id, "job_name": ctx.job_name, "params": ctx.params,
                           "attempt": ctx.attempt, "max_attempts": ctx.max_attempts, "timeout": ctx.timeout,
                           "kill_grace": ctx.kill_grace}}
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # it died at start (or was stopped): its output says why
        try:
            proc.stdin.write(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            proc.stdin.close()


def _result(end: tuple[Any, ...] | None, code: int | None) -> Any:
    """The function's result, or the exception that says how it ended."""
    if end is None:
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        raise JobFailed(f"the child process {how} before the function returned (its output is in the log)")
    outcome, *rest = end
    if outcome == "result":
        return rest[0]
    if outcome == "failed":
        message, retry_after, retryable = rest
        raise JobFailed(message, retry_after=retry_after, retryable=retryable)
    if outcome == "canceled":
        raise RunCanceled(rest[0])
    raise ChildError(rest[0], rest[1])


class _Exchange:
    """Reads the child's messages and output until it has exited (or, once it sent its end, for
    at most EXIT_WAIT seconds: a grandchild may hold the output pipe open)."""

    def __init__(self, ctx: RunContext, proc: subprocess.Popen[bytes], channel: int) -> None:
        self.ctx, self.proc = ctx, proc
        assert proc.stdout is not None
        self.open: dict[int, Callable[[bytes], None]] = {channel: self._messages, proc.stdout.fileno(): self._output}
        self.buffer = b""
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.end: tuple[Any, ...] | None = None

    def follow(self) -> tuple[Any, ...] | None:
        done_at: float | None = None
        while self.open:
            if done_at is None and (self.end is not None or self.proc.poll() is not None):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > EXIT_WAIT:
                break
            for fd in select.select(list(self.open), [], [], 0.2)[0]:
                chunk = os.read(fd, 65536)
                if chunk:
                    self.open[fd](chunk)
                else:
                    del self.open[fd]
        self._output(b"", final=True)
        return self.end

    def _output(self, chunk: bytes, final: bool = False) -> None:
        text = self.decoder.decode(chunk, final)
        if text:
            self.ctx.write(text)

    def _messages(self, chunk: bytes) -> None:
        self.buffer += chunk
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < HEADER.size + size:
                return
            data, self.buffer = self.buffer[HEADER.size:HEADER.size + size], self.buffer[HEADER.size + size:]
            self._handle(pickle.loads(data))

    def _handle(self, message: tuple[Any, ...]) -> None:
        what = message[0]
        if what == "write":
            self.ctx.write(message[1])
        elif what == "progress":
            self.ctx.progress(message[1], message[2])
        elif what == "end":
            self.end = message[1]
            self.ctx.details.update(message[2])
