"""The child process of a python job with ``isolation = "process"`` (the parent side is
``lexyjobs.kinds.python_process``). Started as a fresh interpreter (never a fork of the
multithreaded server), it reads one pickled request on stdin, calls the function with a
RunContext whose progress, log lines and details travel to the parent as pickled messages on the
``channel`` pipe, and ends with one ``end`` message: the result, a JobFailed, a cancel or the
exception with its traceback. ``print`` and ``logging`` output (stdout/stderr) reach the run's
log through the parent too. It dies with its parent (``PR_SET_PDEATHSIG`` on Linux), and SIGTERM
raises RunCanceled in the function (its ``finally`` blocks run), SIGKILL follows after the grace.

Messages (each a 4-byte big-endian length, then a pickle):
``("write", text)``, ``("progress", percent, message)``, ``("end", outcome, details)`` with
outcome ``("result", value)``, ``("failed", message, retry_after, retryable)``,
``("canceled", reason)`` or ``("error", "Type: message", traceback)``."""
from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
from types import FrameType
from typing import Any

from lexyjobs.context import CANCEL, JobFailed, RunCanceled, RunContext

HEADER = struct.Struct(">I")
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from lexyjobs.kinds.python_child import main; main()"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the thread that started it dies (Linux ``prctl``; a no-op
    elsewhere). If the parent is already gone, exit at once."""
    if sys.platform.startswith("linux"):
        import ctypes
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(70)


class Channel:
    """Pickled messages to the parent. A SIGTERM that arrives while a message is being written
    is acted upon once it is written (a torn message would corrupt every later one)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.sending = False
        self.stop_pending = False

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            self.sending = True
            try:
                view = memoryview(HEADER.pack(len(data)) + data)
                while view:
                    view = view[os.write(self.fd, view):]
            finally:
                self.sending = False
        if self.stop_pending and threading.current_thread() is threading.main_thread():
            self.stop_pending = False
            raise RunCanceled(CANCEL)


class ChildContext(RunContext):
    """The RunContext a function sees in the child: what it writes and reports goes to the parent
    at once (the parent masks secrets and buffers it for the database)."""

    def __init__(self, channel: Channel, **fields: Any) -> None:
        super().__init__(**fields)
        self.channel = channel

    def write(self, text: str) -> None:
        if text:
            self.channel.send(("write", str(text)))

    def progress(self, percent: float | None, message: str | None = None) -> None:
        super().progress(percent, message)
        current = self.current_progress()
        if current is not None:
            self.channel.send(("progress", *current))


def _outcome(ctx: ChildContext, ref: str) -> tuple[Any, ...]:
    from lexyjobs.kinds.python import call
    try:
        return ("result", call(ctx, ref))
    except JobFailed as exc:
        return ("failed", str(exc), exc.retry_after, exc.retryable)
    except RunCanceled as exc:
        return ("canceled", exc.reason)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the run fails, as in a thread
        return ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _send_end(channel: Channel, outcome: tuple[Any, ...], details: dict[str, Any]) -> None:
    """The last message; a result or details that cannot be pickled fail the run, saying so."""
    for message in (("end", outcome, details), ("end", outcome, {})):
        try:
            channel.send(message)
            return
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
            continue
    value = outcome[1] if outcome[0] == "result" else None
    channel.send(("end", ("failed", f"the result cannot be sent back from the child process: a "
                          f"{type(value).__name__} cannot be pickled", None, False), {}))


def main() -> None:
    """Entry point of the child (see BOOT): ``argv[2]`` is the parent's pid."""
    die_with_parent(int(sys.argv[2]))
    request = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.path[:] = request["sys_path"]
    channel = Channel(request["channel_fd"])
    ctx = ChildContext(channel, **request["context"])
    ctx._fire_time = (request["fire_time"],)  # read by the parent, which has the database

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if channel.sending:
            channel.stop_pending = True
            return
        raise RunCanceled(CANCEL)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the server's terminal is the server's
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    outcome = _outcome(ctx, request["func"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the function is done: its outcome is sent whole
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _send_end(channel, outcome, dict(ctx.details))
    os._exit(0)  # threads the function left behind do not keep the child alive
