"""A local stand-in for Slack's Socket Mode WebSocket endpoint on 127.0.0.1, recording every ack.

Plain RFC 6455 over the standard library (slack_sdk's built-in client speaks nothing more): the
test decides exactly when a frame is sent, an ack is lost or the TCP connection disappears
without a close frame, which a full WebSocket library would hide. ``FakeSlack`` hands out
``new_url()`` from ``apps.connections.open``.

Slack's contract, as simulated here: every envelope but ``hello`` carries an ``envelope_id``
that the app acknowledges with ``{"envelope_id": ...}`` within 3 s; envelopes queued while no
connection is open are delivered, after ``hello``, on the next one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


@dataclass
class Ack:
    envelope_id: str
    payload: Any
    latency: float  # seconds from the envelope's frame sent to its ack received
    connection: int


def envelope(kind: str, payload: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A Socket Mode envelope as Slack sends it (a fresh envelope_id each call)."""
    body: dict[str, Any] = {"type": kind, "envelope_id": str(uuid.uuid4())}
    if payload is not None:
        body["payload"] = payload
    body["accepts_response_payload"] = kind == "slash_commands"
    body.update(extra)
    return body


class Connection:
    def __init__(self, server: FakeSocketMode, sock: socket.socket, number: int) -> None:
        self.server, self.sock, self.number = server, sock, number
        self.path = ""
        self.open = True
        self.lose_acks = False  # acks read and thrown away, as if lost with the connection
        self.received: list[Any] = []  # every text frame from the client, decoded
        self.error: Exception | None = None
        self._send_lock = threading.Lock()

    # --- framing ------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client closed")
            data += chunk
        return data

    def _frame(self, opcode: int, data: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(data)
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self._send_lock:
            self.sock.sendall(head + data)  # server frames are never masked

    def handshake(self) -> None:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            raw += chunk
        lines = raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        self.path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
        accept = base64.b64encode(
            hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()  # noqa: S324
        ).decode()
        self.sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )

    def serve(self) -> None:
        try:
            while self.open:
                b0, b1 = self._recv_exact(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", self._recv_exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", self._recv_exact(8))
                mask = self._recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv_exact(n)))
                if opcode == OP_PING:
                    self._frame(OP_PONG, data)
                elif opcode == OP_CLOSE:
                    self._frame(OP_CLOSE, data[:2])
                    break
                elif opcode == OP_TEXT:
                    message = json.loads(data)
                    self.received.append(message)
                    if not self.lose_acks:
                        self.server._record_ack(self, message)
        except OSError:
            pass  # the client went away, or the test dropped the connection
        except Exception as exc:  # noqa: BLE001 - a bad frame: kept for the test to see
            self.error = exc
        finally:
            self.open = False
            self.sock.close()

    # --- what the test does ---------------------------------------------------------------
    def send_json(self, body: dict[str, Any]) -> None:
        self._frame(OP_TEXT, json.dumps(body).encode())

    def drop(self) -> None:
        """The TCP connection goes away without a WebSocket close frame (a load balancer
        restart, a network cut)."""
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class _Sent:
    body: dict[str, Any]
    at: float
    connection: int


@dataclass
class FakeSocketMode:
    connections: list[Connection] = field(default_factory=list)
    acks: dict[str, Ack] = field(default_factory=dict)
    sent: dict[str, _Sent] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)  # for the next connection

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fake-socket-mode")

    # --- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for conn in list(self.connections):
            conn.drop()

    def new_url(self) -> str:
        """What ``apps.connections.open`` returns: one ticket per call, as Slack does."""
        return (
            f"ws://127.0.0.1:{self._listener.getsockname()[1]}/link/?ticket={next(self._tickets)}"
        )

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(sock,), daemon=True).start()

    def _open(self, sock: socket.socket) -> None:
        with self._lock:
            conn = Connection(self, sock, len(self.connections) + 1)
        try:
            conn.handshake()
        except (OSError, KeyError, IndexError, ValueError):
            sock.close()
            return
        conn.send_json({"type": "hello", "num_connections": 1,
                        "debug_info": {"host": "fake", "approximate_connection_time": 3600}})  # fmt: skip
        with self._lock:
            self.connections.append(conn)
            backlog, self.pending = self.pending, []
        for body in backlog:
            self._send_on(conn, body)
        conn.serve()

    def _record_ack(self, conn: Connection, message: Any) -> None:
        now = time.monotonic()
        if not isinstance(message, dict) or "envelope_id" not in message:
            return
        with self._lock:
            sent = self.sent.get(message["envelope_id"])
            if sent is None or message["envelope_id"] in self.acks:
                return
            self.acks[message["envelope_id"]] = Ack(
                message["envelope_id"], message.get("payload"), now - sent.at, conn.number
            )

    def _send_on(self, conn: Connection, body: dict[str, Any]) -> None:
        if "envelope_id" in body:  # hello and disconnect are not acknowledged
            with self._lock:
                self.sent[body["envelope_id"]] = _Sent(body, time.monotonic(), conn.number)
        conn.send_json(body)

    # --- test helpers -----------------------------------------------------------------------
    def live(self) -> Connection | None:
        with self._lock:
            return next((c for c in reversed(self.connections) if c.open), None)

    def wait_connections(self, count: int, timeout: float) -> Connection:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.connections) >= count and self.connections[count - 1].open:
                    return self.connections[count - 1]
            time.sleep(0.02)
        raise TimeoutError(f"no WebSocket connection #{count} within {timeout:.0f}s "
                           f"({len(self.connections)} so far)")  # fmt: skip

    def send(self, body: dict[str, Any]) -> None:
        """On the live connection, else queued for the next one (Slack holds events while the
        app is disconnected)."""
        with self._lock:
            conn = next((c for c in reversed(self.connections) if c.open), None)
            if conn is None:
                self.pending.append(body)
                return
        self._send_on(conn, body)

    def wait_acks(self, envelope_ids: list[str], timeout: float) -> list[Ack]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(e in self.acks for e in envelope_ids):
                    return [self.acks[e] for e in envelope_ids]
            time.sleep(0.01)
        with self._lock:
            missing = [e for e in envelope_ids if e not in self.acks]
        raise AssertionError(f"envelopes not acked within {timeout:.0f}s: {missing}")

    def unacked(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.body for e, s in self.sent.items() if e not in self.acks]
