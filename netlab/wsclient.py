"""A small blocking WebSocket client (RFC 6455, text frames, no extensions) and a JSON HTTP
call, standard library only. One thread reads (`recv`), any thread may write (`send_*`
holds a lock)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from topology import check_in_tree

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Closed(Exception):
    """The connection ended (close frame, EOF, reset or timeout)."""


class WebSocket:
    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(rest)
        self.lock = threading.Lock()
        self.last_heard = time.monotonic()
        self.closed = False

    @classmethod
    def connect(cls, url: str, token: str, *, timeout: float = 5.0) -> WebSocket:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        check_in_tree(host)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Authorization: Bearer {token}\r\n\r\n").encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise Closed("closed during the handshake")
                data += chunk
                if len(data) > 65536:
                    raise Closed("handshake answer too long")
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            if " 101 " not in lines[0] + " ":
                raise Closed(f"handshake refused: {lines[0]}")
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            if not any(line.lower().startswith("sec-websocket-accept:")
                       and line.split(":", 1)[1].strip() == accept for line in lines):
                raise Closed("bad Sec-WebSocket-Accept")
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest)

    # -- writing ---------------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n <= 125:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n <= 0xFFFF:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            if self.closed:
                raise Closed("already closed")
            try:
                self.sock.sendall(head + mask + masked)
            except OSError as exc:
                raise Closed(str(exc)) from exc

    def send_json(self, event: str, data: dict[str, Any], ref: int | None = None,
                  id: str | None = None) -> None:
        """`id`: the event's own id, the same on every resend (the server stores it once)."""
        frame: dict[str, Any] = {"event": event, "data": data}
        if ref is not None:
            frame["ref"] = ref
        if id is not None:
            frame["id"] = id
        self._send_frame(0x1, json.dumps(frame, separators=(",", ":")).encode())

    def ping(self) -> None:
        self._send_frame(0x9, b"netlab")

    def close(self) -> None:
        with contextlib.suppress(Closed):
            self._send_frame(0x8, struct.pack("!H", 1000))
        with self.lock:
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    # -- reading ---------------------------------------------------------------------------

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next text frame as JSON, or None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                opcode, payload = frame
                self.last_heard = time.monotonic()
                if opcode == 0x1:
                    value: dict[str, Any] = json.loads(payload)
                    return value
                if opcode == 0x9:
                    self._send_frame(0xA, payload)
                elif opcode == 0x8:
                    raise Closed(f"close frame {payload[:2].hex()} {payload[2:]!r}")
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(262144)
            except TimeoutError:
                return None
            except OSError as exc:
                raise Closed(str(exc)) from exc
            if not chunk:
                raise Closed("connection closed by the server")
            self.buf += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        """One complete message (continuation frames joined) off the buffer, or None.
        A control frame between fragments is taken out and handed over first."""
        at, opcode, parts = 0, 0, []
        buf = self.buf
        while True:
            start = at
            if len(buf) < at + 2:
                return None
            first, size = buf[at], buf[at + 1] & 0x7F
            masked = buf[at + 1] & 0x80
            head = at + 2
            if size == 126:
                if len(buf) < head + 2:
                    return None
                size, head = struct.unpack_from("!H", buf, head)[0], head + 2
            elif size == 127:
                if len(buf) < head + 8:
                    return None
                size, head = struct.unpack_from("!Q", buf, head)[0], head + 8
            mask = b""
            if masked:
                if len(buf) < head + 4:
                    return None
                mask, head = bytes(buf[head:head + 4]), head + 4
            if len(buf) < head + size:
                return None
            payload = bytes(buf[head:head + size])
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            at = head + size
            this = first & 0x0F
            if this >= 0x8:
                del buf[start:at]
                return this, payload
            if this != 0:
                opcode = this
            parts.append(payload)
            if first & 0x80:
                del buf[:at]
                return opcode, b"".join(parts)


def http_json(method: str, url: str, body: dict[str, Any] | None = None,
              token: str | None = None, *, timeout: float = 10.0
              ) -> tuple[int, dict[str, Any]]:
    """One JSON API call; (status, decoded body). Raises OSError on network failure."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    check_in_tree(host)
    conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    headers = {"Accept": "application/json", "Connection": "close"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        conn.close()
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"raw": raw[:200].decode("latin-1")}
    return response.status, decoded if isinstance(decoded, dict) else {"value": decoded}
