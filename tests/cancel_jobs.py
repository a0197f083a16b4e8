"""A job function the cancel tests hold at its last line (in-process workers only)."""
from __future__ import annotations

import threading

from lexyjobs import RunContext

AT_END = threading.Event()   # set by the job: its body is about to return
RETURN = threading.Event()   # set by the test: let it return


def held_at_the_end(ctx: RunContext) -> str:
    """Wait (without checking for cancellation) until the test lets it return "done"."""
    AT_END.set()
    RETURN.wait(10)
    return "done"
