"""Each connection's bounded outgoing queue: the one writer of its socket.

Fan-out is the hot path, so it is built around three choices:
- a room encodes an event once, as finished WebSocket frame bytes (`protocol.wsframe`), and
  hands the same `bytes` to every member's outbox;
- when a member's queue is empty the frame is written to its socket at once, with one
  non-blocking write and no task switch; only what the socket does not take is queued for
  the member's writer task, which drains it in batches as the socket becomes writable;
- the queue is bounded in frames and bytes: a member that cannot keep up overflows, is
  disconnected (close 1013) and resumes from its last seq. Nobody else waits for it.

Invariants:
- the outbox is the only writer of the socket: trio-websocket's own frames (handshake done
  before, then pongs, pings, close) go through `OutboxStream.send_all`, queued behind ours, so
  bytes of two frames never interleave, even when a write was partial;
- the queue is non-empty exactly when unwritten bytes exist, and its head may be the tail of
  a partly written frame (`_head_partial`), which must be written before anything else;
- the descriptor is forgotten before the socket closes, so a late push can never write to a
  recycled descriptor.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Final

import trio

MAX_QUEUED_FRAMES: Final = 2000
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
# One write carries at most this much; big enough to batch, small enough to stay fair.
MAX_BATCH_BYTES: Final = 256 * 1024


class Overflow(Exception):
    """The client fell too far behind and must resume from its last seq."""


class Outbox:
    def __init__(self, *, max_frames: int = MAX_QUEUED_FRAMES,
                 max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._head_partial = False
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._fd: int | None = None
        self._pushed = 0  # bytes accepted so far
        self._written = 0  # bytes written so far
        self._has_data = trio.lowlevel.ParkingLot()
        self._progress = trio.lowlevel.ParkingLot()
        self.overflowed = False
        self.closed = False
        self.broken: OSError | None = None
        self._draining = False  # drain() is running: it writes what is queued

    def __len__(self) -> int:
        return len(self._queue)

    def attach(self, fd: int) -> None:
        """Start writing to this socket descriptor (non-blocking, as trio keeps it)."""
        self._fd = fd

    def close(self) -> None:
        """Forget the socket (call before closing it); pending writers are woken."""
        self._fd = None
        self.closed = True
        self._wake_all()

    def push(self, frame: bytes, *, control: bool = False) -> bool:
        """Send or queue a frame without waiting. False when the outbox is done for: on
        overflow (not for `control` frames, which are tiny and few), breakage or close."""
        if self.closed or self.broken is not None or (self.overflowed and not control):
            return False
        if not control and (len(self._queue) >= self._max_frames
                            or self._queued_bytes + len(frame) > self._max_bytes):
            self._overflow()
            return False
        self._pushed += len(frame)
        if not self._queue and self._fd is not None:
            written = self._write(frame)
            if written == len(frame):
                return True
            if self.broken is not None:
                return False
            if written:
                frame = frame[written:]
                self._head_partial = True
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if len(self._queue) == 1:
            self._has_data.unpark()
        return True

    def _write(self, data: bytes) -> int:
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # reset, broken pipe: the peer is gone
            self.broken = exc
            self._wake_all()
            return 0
        self._written += written
        if self._progress:
            self._progress.unpark_all()
        return written

    def _overflow(self) -> None:
        self.overflowed = True
        # Keep only a partly written frame's tail, so the close frame can follow at once on a
        # well-formed stream; the rest the client will fetch again when it resumes.
        keep = self._queue[0] if self._queue and self._head_partial else None
        # Dropped bytes count as done, so nobody waits for them (send_control's marks).
        self._written += self._queued_bytes - (len(keep) if keep is not None else 0)
        self._queue.clear()
        self._queued_bytes = 0
        if keep is not None:
            self._queue.append(keep)
            self._queued_bytes = len(keep)
        self._wake_all()

    def _wake_all(self) -> None:
        self._has_data.unpark_all()
        self._progress.unpark_all()

    async def push_patiently(self, frame: bytes) -> None:
        """Queue a frame, waiting while the queue is half full: for history replay, which
        may be long and must not overflow a client that is merely catching up."""
        while (not (self.overflowed or self.closed or self.broken)
               and (len(self._queue) >= self._max_frames // 2
                    or self._queued_bytes + len(frame) > self._max_bytes // 2)):
            await self._progress.park()
        if not self.push(frame):
            raise Overflow

    async def send_control(self, data: bytes) -> None:
        """Queue a frame of the WebSocket library's own and wait until it is written.
        Raises trio.BrokenResourceError when the socket fails or closes first."""
        self.push(data, control=True)
        mark = self._pushed
        while self._written < mark:
            if self.closed or self.broken is not None:
                raise trio.BrokenResourceError("connection lost") from self.broken
            if self._draining or self._fd is None:
                await self._progress.park()
            else:
                # The writer task is gone (the connection is closing, e.g. after an
                # overflow): write the close frame (behind a partial frame's tail) ourselves.
                await trio.lowlevel.wait_writable(self._fd)
                if self._fd is not None and self._queue:
                    self._write_batch()

    async def drain(self) -> None:
        """Write queued bytes as the socket allows, until the connection ends.
        Raises Overflow when the client fell behind; returns when the outbox is closed;
        raises trio.BrokenResourceError when the socket fails."""
        self._draining = True
        try:
            await self._drain()
        finally:
            self._draining = False
            self._progress.unpark_all()  # a waiting send_control writes for itself now

    async def _drain(self) -> None:
        while True:
            while not self._queue or self._fd is None:
                if self.broken is not None:
                    raise trio.BrokenResourceError("connection lost") from self.broken
                if self.closed:
                    return
                if self.overflowed and not self._queue:
                    raise Overflow
                await self._has_data.park()
            await trio.lowlevel.wait_writable(self._fd)
            if self._fd is None:
                continue
            self._write_batch()

    def _write_batch(self) -> None:
        batch = [self._queue.popleft()]
        size = len(batch[0])
        while self._queue and size + len(self._queue[0]) <= MAX_BATCH_BYTES:
            frame = self._queue.popleft()
            batch.append(frame)
            size += len(frame)
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        self._queued_bytes -= size
        was_partial = self._head_partial
        written = self._write(data)
        if written < size and self.broken is None:
            rest = data[written:]
            self._queue.appendleft(rest)
            self._queued_bytes += len(rest)
            self._head_partial = written > 0 or was_partial
        else:
            self._head_partial = False


class OutboxStream(trio.abc.Stream):
    """Stands in for a WebSocket connection's socket stream once the handshake is done:
    reads go to the socket, writes join the outbox queue (see the module invariants)."""

    def __init__(self, inner: trio.SocketStream, outbox: Outbox) -> None:
        self._inner = inner
        self._outbox = outbox
        outbox.attach(inner.socket.fileno())

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._outbox.send_control(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self._outbox.close()
        await self._inner.aclose()
