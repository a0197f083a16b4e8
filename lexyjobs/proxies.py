"""Reverse proxies: who the client is and whether it came over https.

A request's ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` are believed only when the connection
comes from an address in ``LEXYJOBS_TRUSTED_PROXY_ADDRESSES`` and ``LEXYJOBS_TRUSTED_PROXIES`` > 0;
then werkzeug's ``ProxyFix`` takes the client address, scheme and host that many hops from the
right, so ``request.remote_addr`` (audit log, login throttling) and ``request.is_secure`` (Secure
cookies) are the client's. From any other peer the ``X-Forwarded-*`` / ``Forwarded`` headers are
dropped before the app sees them: a client talking to lexyjobs directly cannot pose as another.

This runs in the app, not in waitress: waitress's own ``trusted_proxy`` takes a single exact
address, while a proxy in Docker or Kubernetes connects from a network range, and the app then
behaves the same under any WSGI server (``flask run``, gunicorn). ``lexyjobs serve`` tells
waitress to pass the headers through when proxies are trusted (see ``lexyjobs.server``)."""
from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any, Callable, Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_BY")
MAX_WARNED_PEERS = 20  # one warning per untrusted peer that sends X-Forwarded-For, for this many peers


class TrustedProxies:
    """WSGI middleware: proxy headers from trusted peers applied (``hops`` deep), from others dropped."""

    def __init__(self, app: WSGIApp, hops: int, addresses: Iterable[str]) -> None:
        self.app = app
        self.hops = hops
        self.any_peer = "*" in addresses
        self.networks: list[Network] = [ipaddress.ip_network(a, strict=False) for a in addresses if a != "*"]
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops) if hops else app
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def trusts(self, peer: str) -> bool:
        """Whether a connection from ``peer`` comes from one of the trusted proxies."""
        if self.hops == 0:
            return False
        if self.any_peer:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        peer = str(environ.get("REMOTE_ADDR") or "")
        if self.trusts(peer):
            return self.fixed(environ, start_response)
        if self.hops and "HTTP_X_FORWARDED_FOR" in environ:
            self._warn_once(peer)
        for key in FORWARDED_KEYS:
            environ.pop(key, None)
        return self.app(environ, start_response)

    def _warn_once(self, peer: str) -> None:
        """A proxy whose address is not listed would otherwise fail silently (every user one address)."""
        with self._lock:
            if peer in self._warned or len(self._warned) >= MAX_WARNED_PEERS:
                return
            self._warned.add(peer)
        log.warning("X-Forwarded-For from %s ignored: that address is not in LEXYJOBS_TRUSTED_PROXY_ADDRESSES",
                    peer, extra={"peer": peer})
