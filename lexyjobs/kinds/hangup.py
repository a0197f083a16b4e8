"""Requests (the library) that another thread can abort: ``Hangup.session()`` is a
``requests.Session`` whose connections are known, so ``hang_up()`` (called by a cancel or a
timeout, from the worker's monitor thread) closes them at once. The thread blocked in the request
then fails at once instead of waiting for the read timeout, and the server sees the client leave
instead of doing the whole request for nobody.

requests has no way to abort a request in flight, and closing a socket does not wake a thread
blocked reading it; ``shutdown`` does (and sends the FIN the server notices). Connections are
recorded through urllib3's documented extension points (a pool manager's
``pool_classes_by_scheme``, a pool's ``ConnectionCls``), so proxies and redirects are covered."""
from __future__ import annotations

import socket
import threading
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter


class Hangup:
    """The connections of one run's requests, and the switch that closes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.hung_up = False

    def session(self) -> requests.Session:
        """A session whose every connection (direct or through a proxy) ``hang_up`` can close."""
        session = requests.Session()
        adapter = _Adapter(self)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def hang_up(self) -> None:
        """Close every connection now, and refuse new ones (a request still connecting fails
        before it sends anything)."""
        with self._lock:
            self.hung_up = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection.sock)

    def track(self, manager: Any) -> None:
        """Make ``manager`` (a urllib3 PoolManager) open only connections this object knows."""
        manager.pool_classes_by_scheme = {scheme: self._pool_class(pool_class)
                                          for scheme, pool_class in manager.pool_classes_by_scheme.items()}

    def _pool_class(self, pool_class: type[Any]) -> type[Any]:
        hangup = self

        class Connection(pool_class.ConnectionCls):  # type: ignore[name-defined,misc]
            def connect(self) -> None:
                hangup._connect(self, super().connect)

        return type(pool_class.__name__, (pool_class,), {"ConnectionCls": Connection})

    def _connect(self, connection: Any, connect: Callable[[], None]) -> None:
        with self._lock:
            if self.hung_up:
                raise ConnectionAbortedError("the run was stopped before the request was sent")
            self._connections.append(connection)
        connect()
        with self._lock:  # hung up while connecting: its socket may not have been there to shut
            if self.hung_up:
                _shut(connection.sock)
                raise ConnectionAbortedError("the run was stopped before the request was sent")


class _Adapter(HTTPAdapter):
    def __init__(self, hangup: Hangup) -> None:
        self._hangup = hangup  # before super().__init__, which builds the pool manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._hangup.track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        known = proxy in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not known:
            self._hangup.track(manager)
        return manager


def _shut(sock: socket.socket | None) -> None:
    """Shut the socket both ways: a thread blocked reading it wakes up, the peer sees the end."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: an SSLSocket's drops its TLS state
    except OSError:
        pass  # already closed
