"""Where a benchmark's CPU time goes, from Linux's ``/proc`` (None elsewhere).

``Usage.start()`` before the measured span and ``.stop()`` at its end give the machine's busy
share over the span (all cores: 100 % = every core busy) and the CPU seconds spent by given
processes and by every ``postgres`` server process meanwhile. That tells whether more worker
processes can go faster at all: once the cores are busy, they cannot."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot."""
    try:
        fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 if it is gone."""
    try:
        after_name = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(after_name[11]) + int(after_name[12])) / TICKS  # utime, stime


def postgres_pids() -> list[int]:
    found = []
    for entry in PROC.iterdir() if PROC.exists() else ():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Usage:
    """CPU use over one span: see the module docstring."""

    pids: list[int] = field(default_factory=list)  # the measured processes (e.g. this one, the workers)
    busy_pct: float | None = None
    seconds: float | None = None           # CPU seconds of ``pids``
    postgres_seconds: float | None = None  # CPU seconds of the postgres processes (backends come and go)
    _machine: tuple[int, int] | None = None
    _own: float = 0.0
    _postgres: dict[int, float] = field(default_factory=dict)

    def start(self) -> Usage:
        self._machine = machine_ticks()
        self._own = sum(process_seconds(pid) for pid in self.pids)
        self._postgres = {pid: process_seconds(pid) for pid in postgres_pids()}
        return self

    def stop(self) -> Usage:
        """Take the figures; call it while the measured processes still run."""
        end = machine_ticks()
        if self._machine is None or end is None:
            return self
        busy, total = end[0] - self._machine[0], end[1] - self._machine[1]
        self.busy_pct = 100.0 * busy / total if total else None
        self.seconds = sum(process_seconds(pid) for pid in self.pids) - self._own
        self.postgres_seconds = sum(process_seconds(pid) - self._postgres.get(pid, 0.0) for pid in postgres_pids())
        return self
