"""The database connection's socket: a trio socket whose `send` returns at once when the
kernel takes the bytes, without the turn of the scheduler a trio socket's send ends with.

Every statement is a send followed by a wait for the answer, and that wait is a checkpoint
already; the send's own yield made each round trip wait for two turns of the scheduler
instead of one. On a busy chat server a turn is every other task's step (a slice of a
lecture's fan-out included): an event's store of five statements waited ten turns.

It is a `trio.socket.SocketType` (the public class trio lets us extend) over a connected
trio socket, and `trio.SocketStream` wraps it as it wraps any trio socket: trio-mysql sees a
plain stream.
"""

from __future__ import annotations

import socket as stdlib_socket
from typing import Any

import trio


class QuickSendSocket(trio.socket.SocketType):
    def __init__(self, connected: trio.SocketStream) -> None:
        """Take over the connected socket of `connected` (left closed)."""
        raw = stdlib_socket.socket(fileno=connected.socket.detach())
        raw.setblocking(False)
        self._raw = raw
        self._inner = trio.socket.from_stdlib_socket(raw)

    async def send(self, data: Any, flags: int = 0) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            return self._raw.send(data, flags)
        except BlockingIOError:
            # The kernel's buffer is full (a large statement): wait for room as trio does.
            return await self._inner.send(data, flags)

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return await self._inner.recv(bufsize, flags)

    async def wait_writable(self) -> None:
        await self._inner.wait_writable()

    def setsockopt(self, *args: Any) -> None:
        self._inner.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        return self._inner.getsockopt(*args)

    def shutdown(self, flag: int) -> None:
        self._inner.shutdown(flag)

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._inner.did_shutdown_SHUT_WR

    def fileno(self) -> int:
        return self._inner.fileno()

    def getpeername(self) -> Any:
        return self._inner.getpeername()

    def close(self) -> None:
        self._inner.close()

    @property
    def family(self) -> Any:
        return self._inner.family

    @property
    def type(self) -> Any:
        return self._inner.type

    @property
    def proto(self) -> int:
        return self._inner.proto
