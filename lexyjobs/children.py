"""Job processes that never outlive the lexyjobs process that started them.

A job process (the shell kind's command, a python run in its own process) is started in its own
process group, so cancel and timeout can stop it with its grandchildren. That same choice means a
``kill -9`` of lexyjobs leaves it running, and a rescue would then start the next attempt beside
it. Three layers prevent that:

- ``die_with_parent()``: a ``preexec_fn`` setting ``PR_SET_PDEATHSIG`` (Linux), so the kernel
  SIGKILLs the job's *direct* child when the thread that started it dies (with its process). It
  does not reach grandchildren (``sleep`` under ``sh -c``), hence:
- ``GroupGuard``: one small watchdog process per lexyjobs process (started at the first job
  process, in its own session so a ``kill -9 -<pgid>`` of lexyjobs' group spares it) that is told
  each job's process group and SIGKILLs the groups still listed when its stdin reaches end of
  file, i.e. when lexyjobs died;
- the rescue (``lexyjobs.runs``): a run records its process group and host when the process
  starts; a rescue on that host kills the group and waits until it is gone (``end_group``)
  before the run is queued again. Elsewhere it cannot see the group and relies on the first two.

Only processes that stay in the group are covered: one that starts its own session escapes all
three (as it escapes cancel)."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from lexyjobs.context import SHUTDOWN

log = logging.getLogger(__name__)
HOST = socket.gethostname()  # where the recorded process groups live (runs.process_host)
_PR_SET_PDEATHSIG = 1
_prctl: Any = None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child is SIGKILLed when the calling thread
    (and so this process) dies. None where the kernel offers no such thing (not Linux).

    The libc function is looked up here, in the parent, so the child (forked from a
    multi-threaded process) only makes the system call. If the parent died before the call took
    effect, the child kills itself."""
    global _prctl
    if not sys.platform.startswith("linux"):
        return None
    if _prctl is None:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        _prctl = prctl
    parent, call = os.getpid(), _prctl

    def preexec() -> None:
        call(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent is already gone: nobody would ever stop us
            os.kill(os.getpid(), signal.SIGKILL)
    return preexec


def group_alive(pgid: int, *, marker: str | None = None) -> bool:
    """True while a process of group ``pgid`` that this user may signal is alive. Zombies (dead,
    only waiting to be reaped) do not count, nor do another user's processes (jobs run as
    lexyjobs' user). With ``marker`` (``run_marker``), only a member whose environment holds it
    counts: after the group ended its number may have been reused by an unrelated group, which
    must not be mistaken for the job's (a number is never reused while a member lives, so one
    member with the marker proves the group is the job's)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    members = _members(pgid)
    if members is None:
        return True  # no /proc to tell: believe the kernel
    return any(marker is None or _carries(pid, marker) for pid in members)


def run_marker(run_id: int) -> str:
    """The environment entry every process of a run's shell command carries (``LEXYJOBS_RUN_ID``,
    set by the shell kind and inherited by its children unless they clear their environment)."""
    return f"LEXYJOBS_RUN_ID={run_id}"


def _members(pgid: int) -> list[int] | None:
    """The pids of group ``pgid`` that are not zombies, read from /proc (None without /proc)."""
    try:
        entries = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    members = []
    for pid in entries:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(pid))
    return members


def _carries(pid: int, marker: str) -> bool:
    """Whether process ``pid``'s environment holds ``marker`` (True when it cannot be read)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except FileNotFoundError:
        return False  # gone meanwhile
    except OSError:
        return True
    return marker.encode("utf-8", "replace") in environ.split(b"\0")


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to group ``pgid``; a group that is gone (or not ours) is left alone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(pgid: int, *, marker: str | None = None, timeout: float = 5.0) -> bool:
    """SIGKILL group ``pgid`` and wait until none of its processes is alive (``group_alive``,
    ``marker`` as there: a group that is not the job's is left alone); True once gone, False if
    some member still lives after ``timeout`` seconds (say, stuck in the kernel)."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid, marker=marker):
        if time.monotonic() > deadline:
            return False
        kill_group(pgid)
        time.sleep(0.02)
    return True


# The watchdog's program: run with ``python -I -S`` (no site, nothing of lexyjobs imported), so it
# starts in milliseconds and holds a few MB. Lines "+<pgid>" and "-<pgid>" add and remove groups.
_GUARD_PROGRAM = """
import os, signal, sys
groups = set()
for line in sys.stdin.buffer:
    text = line.decode("ascii", "replace").strip()
    if text[1:].isdigit():
        (groups.add if text[0] == "+" else groups.discard)(int(text[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupGuard:
    """The watchdog that kills this process's job process groups when this process dies (see the
    module docstring). Thread-safe. ``watch(pgid)`` right after a group starts, ``forget(pgid)``
    once it is over; if the watchdog was killed, the next call starts a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The watchdog's pid, or None before the first group."""
        return self._proc.pid if self._proc is not None else None

    def watch(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Stop the watchdog (it kills the groups still listed: none, after a clean stop)."""
        with self._lock:
            if self._proc is not None and self._proc.stdin is not None:
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            self._proc = None

    def _send(self, line: str) -> None:
        """Tell the watchdog ``line``, starting one if there is none (or it died: the new one gets
        every group still listed). Never raises: without a watchdog, die-with-parent and the
        rescue remain."""
        for _ in range(2):
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                assert self._proc is not None and self._proc.stdin is not None
                self._proc.stdin.write(line.encode("ascii"))
                self._proc.stdin.flush()
                return
            except (BrokenPipeError, ValueError):
                self._drop()  # it died meanwhile: start another
            except OSError as exc:
                log.warning("cannot start the job process guard (%s); job processes of a killed lexyjobs "
                            "are stopped by die-with-parent and the rescue only", exc)
                self._drop()
                return

    def _drop(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        self._proc = None

    def _start(self) -> None:
        # Its own session: a kill of lexyjobs' process group must not take the watchdog along.
        # Only lexyjobs holds the write end of its stdin (Popen closes other fds in children).
        self._proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD_PROGRAM], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, start_new_session=True)
        assert self._proc.stdin is not None
        if self._groups:
            self._proc.stdin.write("".join(f"+{pgid}\n" for pgid in self._groups).encode("ascii"))
            self._proc.stdin.flush()


_guard: GroupGuard | None = None
_guard_lock = threading.Lock()


def guard() -> GroupGuard:
    """This process's watchdog (created on first use; started at its first group)."""
    global _guard
    with _guard_lock:
        if _guard is None:
            _guard = GroupGuard()
        return _guard


class GroupStopper:
    """Stops a job's process group on cancel or timeout: SIGTERM, then SIGKILL after ``grace``
    seconds (at once when lexyjobs is shutting down). ``finish`` when the run is over: leftovers
    of a stopped group (or, with ``leftover``, of one still running) are killed and no timer
    stays armed (a process-group id may be reused later)."""

    def __init__(self, pgid: int, grace: float) -> None:
        self.pgid, self.grace = pgid, grace
        self.stopped = False
        self._timer: threading.Timer | None = None

    def stop(self, reason: str) -> None:
        self.stopped = True
        if reason == SHUTDOWN:
            kill_group(self.pgid)
            return
        kill_group(self.pgid, signal.SIGTERM)
        self._timer = threading.Timer(self.grace, kill_group, args=(self.pgid,))
        self._timer.daemon = True
        self._timer.start()

    def finish(self, *, leftover: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.stopped or leftover:
            kill_group(self.pgid)
