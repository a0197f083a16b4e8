"""``python -m examples.host_app [--port N]``: serve the example host app with waitress on
127.0.0.1 (port 0 picks a free one), lexyjobs' runtime started before the first request and
stopped gracefully on Ctrl-C / SIGTERM."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from waitress.server import create_server

from examples.host_app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.host_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    app = create_app()
    jobs = app.extensions["host_app.jobs"]
    server = create_server(app, host=args.host, port=args.port, threads=8)
    jobs.start()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    threading.Thread(target=_serve, args=(server, stopping), daemon=True).start()
    print(f"host app serving on http://{args.host}:{server.effective_port}", file=sys.stderr, flush=True)
    stopping.wait()
    server.close()
    jobs.stop()


def _serve(server: Any, stopping: threading.Event) -> None:
    try:
        server.run()
    except (OSError, ValueError):  # select() on the socket close() shut: expected once stopping
        if not stopping.is_set():
            raise


if __name__ == "__main__":
    main()
