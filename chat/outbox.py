"""Each connection's bounded outgoing queue and the task that drains it to the socket.

Fan-out is the hot path, so it is built around three choices:
- a room encodes an event once, as finished WebSocket frame bytes (`protocol.wsframe`), and
  pushes the same `bytes` to every member's outbox: pushing is a deque append, no I/O;
- a member's writer task drains everything queued into one `send_all`, so a busy room costs
  one syscall per member per batch, not per message;
- the queue is bounded in frames and bytes: a member that cannot keep up overflows, is
  disconnected (close 1013) and resumes from its last seq. Nobody else waits for it.

The writer bypasses trio-websocket's per-message framing but takes its stream lock, so our
frames never interleave with its pings, pongs and close frame.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

MAX_QUEUED_FRAMES: Final = 2000
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
# One send_all carries at most this much; big enough to batch, small enough to stay fair.
MAX_BATCH_BYTES: Final = 256 * 1024


class Overflow(Exception):
    """The client fell too far behind and must resume from its last seq."""


class Outbox:
    def __init__(self, *, max_frames: int = MAX_QUEUED_FRAMES,
                 max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._has_frames = trio.lowlevel.ParkingLot()
        self._has_room = trio.lowlevel.ParkingLot()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> bool:
        """Queue a frame without waiting; False (and the outbox is done for) on overflow."""
        if self.overflowed:
            return False
        if (len(self._frames) >= self._max_frames
                or self._bytes + len(frame) > self._max_bytes):
            self.overflowed = True
            self._has_frames.unpark_all()
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        if len(self._frames) == 1:
            self._has_frames.unpark()
        return True

    async def push_patiently(self, frame: bytes) -> None:
        """Queue a frame, waiting while the queue is half full: for history replay, which
        may be long and must not overflow a client that is merely catching up."""
        while (not self.overflowed
               and (len(self._frames) >= self._max_frames // 2
                    or self._bytes + len(frame) > self._max_bytes // 2)):
            await self._has_room.park()
        if not self.push(frame):
            raise Overflow

    async def take(self) -> bytes:
        """Wait for frames and return as many as fit in one batch, joined."""
        while not self._frames:
            if self.overflowed:
                raise Overflow
            await self._has_frames.park()
        if self.overflowed:
            raise Overflow
        batch = [self._frames.popleft()]
        size = len(batch[0])
        while self._frames and size + len(self._frames[0]) <= MAX_BATCH_BYTES:
            frame = self._frames.popleft()
            batch.append(frame)
            size += len(frame)
        self._bytes -= size
        self._has_room.unpark_all()
        return batch[0] if len(batch) == 1 else b"".join(batch)


async def write_frames(ws: WebSocketConnection, data: bytes) -> None:
    """Write finished frames to the connection's stream. Raises ConnectionClosed."""
    conn: Any = ws  # trio-websocket keeps these private; see the module docstring
    async with conn._stream_lock:
        if ws.closed is not None:
            raise ConnectionClosed(ws.closed)
        try:
            await conn._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed(ws.closed) from exc


async def pump(outbox: Outbox, ws: WebSocketConnection) -> None:
    """Drain the outbox to the socket until the connection closes (ConnectionClosed) or the
    client falls behind (Overflow)."""
    while True:
        await write_frames(ws, await outbox.take())
