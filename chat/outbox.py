"""Each connection's bounded outgoing queue: the one writer of its socket.

Fan-out is the hot path, so it is built around three choices:
- a room encodes an event once, as finished WebSocket frame bytes (`protocol.wsframe`), and
  hands the same `bytes` to every member's outbox;
- when a member's queue is empty the frame is written to its socket at once, with one
  non-blocking `send` and no task switch; only what the socket does not take is queued for
  the member's writer task, which drains it in batches as the socket becomes writable;
- the queue is bounded in frames and bytes: a member that cannot keep up overflows, is
  disconnected (close 1013) and resumes from its last seq. Nobody else waits for it.

The WebSocket library (trio-websocket) is handed an `OutboxStream` before its handshake, so
everything it writes (the handshake answer, pongs, pings, close frames) comes through here
too, by its public stream interface; nothing of the library's own is touched.

Invariants:
- the outbox is the only writer of the socket, so bytes of two frames never interleave, even
  when a write was partial: `_partial` (the unwritten tail of a started frame) always goes
  first;
- then control frames (the library's), in order, then data frames, in order: a pong or a
  close frame waits for the frame being written, never for a backlog of MiBs;
- after a close frame nothing else is written (queued data is dropped);
- the outbox writes through its own reference to the socket object, which the stream closes:
  once closed, a late write fails with EBADF instead of reaching a recycled descriptor.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Final

import trio

MAX_QUEUED_FRAMES: Final = 2000
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
# One write carries at most this much; big enough to batch, small enough to stay fair.
MAX_BATCH_BYTES: Final = 256 * 1024
# First byte of a server's close frame (FIN + opcode 8); a handshake answer starts with "H".
_CLOSE_FRAME: Final = 0x88


class Overflow(Exception):
    """The client fell too far behind and must resume from its last seq."""


class Outbox:
    def __init__(self, *, max_frames: int = MAX_QUEUED_FRAMES,
                 max_bytes: int = MAX_QUEUED_BYTES) -> None:
        # Lists, not deques: an empty deque is ~700 bytes, and most connections are idle
        # (a batch takes from the front with one slice; the queues are bounded).
        self._data: list[bytes] = []
        self._data_bytes = 0
        self._control: list[bytes] = []
        # The unwritten tail of a frame already begun, and whether it is a control frame.
        self._partial: bytes = b""
        self._partial_control = False
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._sock: socket.socket | None = None
        self._controls_queued = 0  # control frames accepted so far
        self._controls_done = 0  # control frames fully written (or dropped) so far
        self._has_data = trio.lowlevel.ParkingLot()
        self._progress = trio.lowlevel.ParkingLot()
        self.overflowed = False
        self.closed = False
        self.closing = False  # a close frame was queued: nothing may follow it
        self.broken: OSError | None = None
        self._waiting_writable = False  # one task waits for the socket; the others for it
        # Set by the connection: starts a writer task (`drain(until_idle=True)`) when bytes
        # wait for the socket and none runs. Most connections are idle most of the time, and
        # a writer parked for each of them cost about 2 KiB of memory apiece.
        self.start_writer: Callable[[], None] | None = None
        self._writer_started = False

    def __len__(self) -> int:
        return len(self._data) + len(self._control) + bool(self._partial)

    def attach(self, sock: socket.socket) -> None:
        """Start writing to this non-blocking socket."""
        self._sock = sock

    def close(self) -> None:
        """Stop writing (the connection is over); pending writers are woken."""
        self._sock = None
        self.closed = True
        self._wake_all()

    def _idle(self) -> bool:
        return not (self._partial or self._control or self._data)

    def push(self, frame: bytes) -> bool:
        """Send or queue a data frame without waiting. False when the outbox is done for:
        on overflow, breakage, close or once a close frame was sent."""
        if self.closed or self.closing or self.broken is not None or self.overflowed:
            return False
        if (len(self._data) >= self._max_frames
                or self._data_bytes + len(frame) > self._max_bytes):
            self._overflow()
            return False
        if self._idle() and self._sock is not None:
            written = self._send(frame)
            if written == len(frame):
                return True
            if self.broken is not None:
                return False
            if written:
                self._partial, self._partial_control = frame[written:], False
                self._backlog()
                return True
        self._data.append(frame)
        self._data_bytes += len(frame)
        self._backlog()
        return True

    def _backlog(self) -> None:
        """Bytes wait for the socket: wake the writer, or have one started."""
        self._has_data.unpark()
        if self.start_writer is not None and not self._writer_started:
            self._writer_started = True
            self.start_writer()

    def _send(self, data: bytes) -> int:
        assert self._sock is not None
        try:
            written = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:  # reset, broken pipe, or closed under us: the peer is gone
            self.broken = exc
            self._wake_all()
            return 0
        if written and self._progress:
            self._progress.unpark_all()
        return written

    def _overflow(self) -> None:
        self.overflowed = True
        # Only data goes: a started frame's tail stays, so the close frame can follow on a
        # well-formed stream; the client fetches the rest again when it resumes.
        self._data.clear()
        self._data_bytes = 0
        self._wake_all()

    def _wake_all(self) -> None:
        self._has_data.unpark_all()
        self._progress.unpark_all()

    async def push_patiently(self, frame: bytes) -> None:
        """Queue a frame, waiting while the queue is half full: for history replay, which
        may be long and must not overflow a client that is merely catching up."""
        while (not (self.overflowed or self.closed or self.closing or self.broken)
               and (len(self._data) >= self._max_frames // 2
                    or self._data_bytes + len(frame) > self._max_bytes // 2)):
            await self._progress.park()
        if not self.push(frame):
            raise Overflow

    async def send_control(self, data: bytes) -> None:
        """Send a frame of the WebSocket library's own (or its handshake answer) right after
        the frame being written, and wait until it is written. Raises
        trio.BrokenResourceError when the socket fails or closes first."""
        if self.closed or self.broken is not None:
            raise trio.BrokenResourceError("connection lost") from self.broken
        if data[:1] == bytes([_CLOSE_FRAME]):
            self.closing = True
            self._data.clear()
            self._data_bytes = 0
        self._control.append(data)
        self._controls_queued += 1
        mine = self._controls_queued
        self._backlog()
        while self._controls_done < mine:
            if self.closed or self.broken is not None:
                raise trio.BrokenResourceError("connection lost") from self.broken
            # Written by whoever waits for the socket: the writer task, or (during the
            # handshake, or a close after the connection's tasks ended) this one.
            await self._write_when_writable()

    async def _write_when_writable(self) -> None:
        """Write a batch once the socket takes bytes; while another task already waits for
        that (only one may), wait for its progress instead."""
        if self._waiting_writable or self._sock is None:
            await self._progress.park()
            return
        if self._sock.fileno() < 0:  # closed by the stream before the outbox heard
            self.broken = OSError(errno.EBADF, "the socket was closed")
            self._wake_all()
            return
        self._waiting_writable = True
        try:
            await trio.lowlevel.wait_writable(self._sock)
        finally:
            self._waiting_writable = False
            self._progress.unpark_all()  # whoever waited behind us looks again
        if self._sock is not None:
            self._write_batch()

    async def drain(self, *, until_idle: bool = False) -> None:
        """Write queued bytes as the socket allows, until the connection ends (or, with
        `until_idle`, until nothing is left to write: a writer `start_writer` started).
        Raises Overflow when the client fell behind; returns when the outbox is closed;
        raises trio.BrokenResourceError when the socket fails (ClosedResourceError when
        it is closed while this waits for it)."""
        try:
            while True:
                if self.broken is not None:
                    raise trio.BrokenResourceError("connection lost") from self.broken
                if self._idle() or self._sock is None:
                    if self.closed:
                        return
                    if self.overflowed and self._idle():
                        raise Overflow
                    if until_idle:
                        return
                    await self._has_data.park()
                    continue
                await self._write_when_writable()
        finally:
            if until_idle:
                self._writer_started = False

    def _write_batch(self) -> None:
        """One non-blocking write of the partial tail, then control frames, then data, up to
        MAX_BATCH_BYTES; what the socket did not take goes back in front (a begun frame's
        tail back to `_partial`, even when none of it went this time)."""
        pieces: list[tuple[bytes, bool]] = []
        size = 0
        begun = bool(self._partial)
        if begun:
            pieces.append((self._partial, self._partial_control))
            size = len(self._partial)
            self._partial = b""
        for queue, control in ((self._control, True), (self._data, False)):
            taken = 0
            while taken < len(queue) and (not pieces
                                          or size + len(queue[taken]) <= MAX_BATCH_BYTES):
                piece = queue[taken]
                taken += 1
                if not control:
                    self._data_bytes -= len(piece)
                pieces.append((piece, control))
                size += len(piece)
            del queue[:taken]
        data = pieces[0][0] if len(pieces) == 1 else b"".join(p for p, _ in pieces)
        written = self._send(data)
        if self.broken is not None:
            return
        for index, (piece, control) in enumerate(pieces):
            if written >= len(piece):
                written -= len(piece)
                if control:
                    self._controls_done += 1
                continue
            rest = pieces[index + 1:]
            if written or (index == 0 and begun):
                self._partial, self._partial_control = piece[written:], control
            else:
                rest = pieces[index:]
            self._control[0:0] = [p for p, c in rest if c]
            unsent = [p for p, c in rest if not c]
            self._data[0:0] = unsent
            self._data_bytes += sum(map(len, unsent))
            break
        if self._controls_done and self._progress:
            self._progress.unpark_all()


class OutboxStream(trio.abc.Stream):
    """The stream trio-websocket is handed: reads come from the socket, writes go through
    the outbox (see the module invariants). Made with `take` before the handshake."""

    def __init__(self, inner: trio.SocketStream, outbox: Outbox,
                 closing: trio.CapacityLimiter | None = None) -> None:
        self._inner = inner
        self._outbox = outbox
        self._closing = closing
        self._closing_held = False

    @classmethod
    def take(cls, stream: trio.SocketStream, outbox: Outbox,
             closing: trio.CapacityLimiter | None = None) -> OutboxStream:
        """Move the connection's socket out of `stream` (left closed) into a stream whose
        writes go through `outbox`. `closing`: see `receive_some`."""
        raw = socket.socket(fileno=stream.socket.detach())
        raw.setblocking(False)
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        outbox.attach(raw)
        return cls(inner, outbox, closing)

    @property
    def peer(self) -> str:
        try:
            host, port, *_ = self._inner.socket.getpeername()
        except OSError:
            return "a vanished peer"
        return f"{host}:{port}"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._outbox.send_control(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """The socket's next bytes. When the peer has gone (end of file, reset), a slot of
        `closing` is taken first, and held until `close`: at the end of a lecture thousands
        of connections end in the same instant, and closed all at once their teardown made
        scheduler rounds of 100-150 ms that every other client's events waited through.
        Taking turns, a few dozen close at a time, between other tasks' steps."""
        try:
            data = await self._inner.receive_some(max_bytes)
        except trio.BrokenResourceError:
            await self._take_closing_slot()
            raise
        if not data:
            await self._take_closing_slot()
        return data

    async def _take_closing_slot(self) -> None:
        if self._closing is not None and not self._closing_held:
            await self._closing.acquire_on_behalf_of(self)
            self._closing_held = True

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """`aclose` without its checkpoint: the connection's last act, once its tasks are
        done (a task step fewer for each of a lecture's thousand closes)."""
        self._outbox.close()
        self._inner.socket.close()
        if self._closing_held:
            self._closing_held = False
            assert self._closing is not None
            self._closing.release_on_behalf_of(self)
