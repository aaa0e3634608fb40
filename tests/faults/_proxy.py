"""A small TCP proxy a test controls, between errands and a server on loopback (``tc netem`` is
not available here). Modes, for every connection through it, current and new:

* ``heal()``: pass bytes both ways (the start state);
* ``stall()``: stop forwarding both ways, sockets open: bytes wait in the proxy and flow again on
  ``heal()``, as TCP retransmits them once a partition ends;
* ``half_open()``: forward client -> server only: requests reach the server and it acts on them,
  but no reply comes back until ``heal()``;
* ``drop()``: close both sides of every open connection at once (new ones are accepted).

Threads, not asyncio: each connection is two blocking pumps, so the test's own thread stays free.
"""

from __future__ import annotations

import socket
import threading
from typing import Literal

__all__ = ["Proxy"]

Mode = Literal["pass", "stall", "half_open"]


class Proxy:
    """``Proxy(5432).start()`` listens on ``proxy.port`` and forwards to 127.0.0.1:5432."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._mode: Mode = "pass"
        self._changed = threading.Condition()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.connections = 0

    def start(self) -> Proxy:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    # control ---------------------------------------------------------------------------------
    def heal(self) -> None:
        self._set("pass")

    def stall(self) -> None:
        self._set("stall")

    def half_open(self) -> None:
        self._set("half_open")

    def drop(self) -> None:
        with self._changed:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.heal()
        self.drop()

    def _set(self, mode: Mode) -> None:
        with self._changed:
            self._mode = mode
            self._changed.notify_all()

    # forwarding --------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            self.connections += 1
            with self._changed:
                self._sockets.update((client, server))
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, upstream), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self._changed:  # hold the bytes while this direction is cut
                    while not self._flows(upstream) and source in self._sockets:
                        self._changed.wait(0.5)
                    if source not in self._sockets:
                        break
                sink.sendall(data)
        except OSError:
            pass
        with self._changed:
            self._sockets.discard(source)
            self._sockets.discard(sink)
        _close(source)
        _close(sink)

    def _flows(self, upstream: bool) -> bool:
        return self._mode == "pass" or (self._mode == "half_open" and upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
