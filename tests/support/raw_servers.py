"""Socket-level servers on 127.0.0.1 for fault tests, each started at once, stopped by ``stop()``
(every held connection closed, the accept thread joined with a bound):

- ``SilentServer``: accepts TCP connections and never answers (a site or an MLflow server that
  hangs); holds them until stopped.
- ``HeaderDripServer``: answers every request with a status line, then one header byte every
  ``interval`` seconds, forever (dripping headers: only a total deadline ends the read).
- ``TcpProxy``: forwards to ``127.0.0.1:<upstream>``; ``hang()`` makes it stop relaying (new
  connections accepted and held, open ones frozen), ``resume()`` forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class _Acceptor:
    """Accept loop on a free loopback port; ``_serve(conn)`` runs on its own thread."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=type(self).__name__)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.held.append(conn)
            threading.Thread(target=self._guarded, args=(conn,), daemon=True).start()

    def _guarded(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:  # default: read nothing, answer nothing
        return None

    def open_connections(self) -> int:
        return len(self.held)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for conn in self.held:
                with contextlib.suppress(OSError):
                    conn.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentServer(_Acceptor):
    """Accepts TCP connections and never answers."""


class HeaderDripServer(_Acceptor):
    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            conn.recv(65536)  # the request (its headers fit)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not self._stop.is_set():
            conn.sendall(b"X")  # one byte of an endless header name
            self._stop.wait(self.interval)


class TcpProxy(_Acceptor):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._running = threading.Event()
        self._running.set()
        super().__init__()

    def hang(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def _serve(self, conn: socket.socket) -> None:
        while not self._running.is_set():  # hanging: accepted, nothing answered
            if self._stop.wait(0.1):
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            conn.close()
            return
        with self._lock:
            self.held.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()
        self._pump(conn, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                if not self._running.is_set():  # frozen: keep the bytes, relay nothing
                    time.sleep(0.1)
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
