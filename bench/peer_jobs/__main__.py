"""Worker process of the peer benchmark: ``python -m bench.peer_jobs huey|pgqueuer|procrastinate STORE``
(STORE: the SQLite file for huey, the Postgres URL for the others). Runs until SIGINT."""
from __future__ import annotations

import importlib
import sys


def main(argv: list[str]) -> None:
    peer, store = argv
    importlib.import_module(f"bench.peer_jobs.{peer}_jobs").work(store)


if __name__ == "__main__":
    main(sys.argv[1:])
