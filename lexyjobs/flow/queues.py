"""Which named queues a worker process serves: ``LEXYJOBS_QUEUES=default,ai:2`` or ``lexyjobs worker
--queues ai``. Each entry is a queue name, optionally with ``:N``, the most of this process's threads
that may hold runs of that queue at once (runs claimed ahead included). Not set: every queue, no cap.

A team can so put LLM jobs (``queue = "ai"``) on one machine and shell jobs on another, and keep a
slow queue from taking every thread of a shared one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from lexyjobs.flow.spec import QUEUE_PATTERN

MAX_CAP = 10_000


@dataclass(frozen=True)
class ServedQueues:
    """The queues a process serves, in the order given, each with its thread cap (None: none)."""

    caps: tuple[tuple[str, int | None], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.caps)

    def entries(self) -> list[str]:
        """``["default", "ai:2"]``: what the workers registry and the panel show."""
        return [name if cap is None else f"{name}:{cap}" for name, cap in self.caps]

    def __str__(self) -> str:
        return ",".join(self.entries())

    def room(self, busy: Mapping[str, int]) -> dict[str, int | None]:
        """What the claim may still take per queue, given the runs of each this process holds."""
        return {name: None if cap is None else max(cap - busy.get(name, 0), 0) for name, cap in self.caps}


def parse_served(value: Any) -> ServedQueues | None:
    """``"default,ai:2"`` (or a list of such entries, or a mapping name → cap) as ServedQueues;
    empty: None (every queue). ValueError says what is wrong, for a one-line refusal."""
    if value is None or isinstance(value, ServedQueues):
        return value
    if isinstance(value, Mapping):
        items: Iterable[Any] = (name if cap is None else f"{name}:{cap}" for name, cap in value.items())
    elif isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError("must be queue names separated by commas, e.g. default,ai:2")
    caps: dict[str, int | None] = {}
    for raw in items:
        entry = str(raw).strip()
        if not entry:
            continue
        name, cap = _entry(entry)
        if name in caps:
            raise ValueError(f"names queue '{name}' twice")
        caps[name] = cap
    return ServedQueues(tuple(caps.items())) if caps else None


def _entry(entry: str) -> tuple[str, int | None]:
    name, colon, cap_text = entry.partition(":")
    name = name.strip()
    if not QUEUE_PATTERN.fullmatch(name):
        raise ValueError(f"has '{name}', which is not a queue name (lowercase letters, digits, '_', '.', '-'; "
                         "e.g. default,ai:2)")
    if not colon:
        return name, None
    cap_text = cap_text.strip()
    if not cap_text.isdigit() or not 1 <= int(cap_text) <= MAX_CAP:
        raise ValueError(f"has '{entry}': the thread cap after ':' must be a whole number from 1 to {MAX_CAP:,} "
                         "(leave ':N' out for no cap)")
    return name, int(cap_text)
