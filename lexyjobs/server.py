"""The HTTP server of ``lexyjobs serve``: waitress, with its listening socket bound before the
worker pool or the scheduler start, so a busy port or a bad host is one line and nothing was claimed.

Connection limits (waitress adjustments): at most ``LEXYJOBS_HTTP_CONNECTION_LIMIT`` open
connections (further ones wait in the kernel's listen queue), and a connection with no request in
progress that stays silent ``LEXYJOBS_HTTP_IDLE_TIMEOUT`` is closed (waitress's ``channel_timeout``,
checked every ``CLEANUP_INTERVAL``). A request being served is never cut by it, so ``/events``
streams live on. A client that trickles header bytes keeps its connection; the connection limit
bounds what that costs, and a reverse proxy in front (README "Deployment") ends it."""
from __future__ import annotations

import errno
import math
from typing import Any

from flask import Flask

from lexyjobs.config import Settings

CLEANUP_INTERVAL = 1  # seconds between waitress's sweeps for idle connections
REQUEST_LOOKAHEAD = 5  # requests read ahead per connection: waitress then notices a client that left (SSE)


class ListenError(Exception):
    """The server cannot listen where it was asked to; the message is the one line to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def listen(app: Flask, settings: Settings, host: str, port: int) -> Any:
    """A waitress server bound to ``host:port`` (not yet serving: call ``run()``)."""
    import waitress

    where = endpoint(host, port)
    try:
        return waitress.create_server(
            app, host=host, port=port, threads=settings.http_threads, channel_request_lookahead=REQUEST_LOOKAHEAD,
            connection_limit=settings.http_connection_limit, channel_timeout=math.ceil(settings.http_idle_timeout),
            cleanup_interval=CLEANUP_INTERVAL,
            # with trusted proxies, lexyjobs.proxies decides per peer which X-Forwarded-* headers count
            clear_untrusted_proxy_headers=settings.trusted_proxies == 0)
    except ValueError:  # waitress: "Invalid host/port specified." (the host does not resolve)
        raise ListenError(f"cannot listen on {where}: host '{host}' does not resolve to an address "
                          "(LEXYJOBS_HOST / --host)") from None
    except OSError as exc:
        raise ListenError(f"cannot listen on {where}: {_reason(exc, host)}") from None


def _reason(exc: OSError, host: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use (another lexyjobs?); stop that process or choose another port " \
               "(LEXYJOBS_PORT / --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (LEXYJOBS_HOST / --host)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; choose another with LEXYJOBS_PORT / --port)"
    return exc.strerror or str(exc)


def bound_port(server: Any) -> int:
    """The port the server listens on (the one the OS chose for port 0)."""
    port = getattr(server, "effective_port", None)
    if port is None:  # several sockets (a host name with IPv4 and IPv6 addresses)
        port = server.effective_listen[0][1]
    return int(port)


def endpoint(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
