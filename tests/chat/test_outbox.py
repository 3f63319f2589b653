"""The outbox over a real TCP connection whose buffers hold a few KiB: frames are written in
pieces, and what arrives is parsed by wsproto's client as a browser would."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, Event, Ping, TextMessage

from chat.outbox import Outbox, OutboxStream, Overflow
from protocol.wsframe import text_frame

PING = b"\x89\x04ping"
CLOSE_1000 = b"\x88\x02\x03\xe8"
SMALL_BUFFER = 4096


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[socket.socket, trio.socket.SocketType]]:
    """(server side, non-blocking stdlib socket with a small send buffer; client side, a
    trio socket with a small receive buffer that nobody reads until the test does)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = trio.socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    await client.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    server.setblocking(False)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


async def read_events(client: trio.socket.SocketType, until: int) -> list[Event]:
    """Read and parse until `until` whole messages, pings or closes arrived (or the peer
    closed). A message that came in pieces is one TextMessage here."""
    parser = Connection(ConnectionType.CLIENT)
    events: list[Event] = []
    parts: list[str] = []
    while len(events) < until:
        chunk = await client.recv(1000)  # small reads: the sender's writes stay partial
        if not chunk:
            break
        parser.receive_data(chunk)
        for event in parser.events():
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if not event.message_finished:
                    continue
                event = TextMessage(data="".join(parts))
                parts = []
            events.append(event)
    assert not parts, "a message was cut off"
    return events


def texts(events: list[Event]) -> list[str]:
    return [str(e.data) for e in events if isinstance(e, TextMessage)]


async def test_frames_of_every_length_encoding_arrive_whole_through_partial_writes() -> None:
    # 125/126 and 65535/65536 are where the length field grows (7 bits, 16, 64).
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537, 300_000]
    messages = [chr(ord("a") + i) * n for i, n in enumerate(sizes)]
    with trio.fail_after(20):
        async with tcp_pair() as (server, client):
            outbox = Outbox()
            outbox.attach(server)
            for message in messages:
                assert outbox.push(text_frame(message))
            assert len(outbox) > 0, "the socket took everything: no partial write tested"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbox.drain)
                events = await read_events(client, len(messages))
                outbox.close()
            assert texts(events) == messages


async def test_a_control_frame_goes_right_after_the_frame_being_written() -> None:
    frames = [text_frame(f"{i:03d}" + "x" * 10_000) for i in range(50)]
    with trio.fail_after(20):
        async with tcp_pair() as (server, client):
            outbox = Outbox()
            outbox.attach(server)
            for frame in frames:
                assert outbox.push(frame)
            waiting = len(outbox)  # frames not yet in the kernel, the one begun included
            assert waiting > 10
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbox.drain)
                nursery.start_soon(outbox.send_control, PING)
                await trio.testing.wait_all_tasks_blocked()
                events = await read_events(client, len(frames) + 1)
                outbox.close()
            pings = [i for i, e in enumerate(events) if isinstance(e, Ping)]
            assert len(pings) == 1
            # Behind the frames the kernel already had and the one half written, not
            # behind the backlog.
            assert pings[0] <= len(frames) - waiting + 1, (pings, waiting)
            assert texts(events) == [f[4:].decode() for f in frames]


async def test_a_close_frame_mid_frame_follows_that_frame_and_ends_the_data() -> None:
    big = "b" * 200_000
    with trio.fail_after(20):
        async with tcp_pair() as (server, client):
            outbox = Outbox()
            outbox.attach(server)
            assert outbox.push(text_frame(big))
            assert outbox.push(text_frame("queued behind"))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbox.send_control, CLOSE_1000)
                await trio.testing.wait_all_tasks_blocked()
                assert not outbox.push(text_frame("after the close"))
                events = await read_events(client, 2)
            assert texts(events) == [big]
            assert isinstance(events[1], CloseConnection) and events[1].code == 1000
            server.shutdown(socket.SHUT_WR)
            assert await read_events(client, 1) == []  # nothing after the close frame


async def test_closing_mid_frame_stops_writing_and_a_late_push_reaches_no_other_socket(
        ) -> None:
    with trio.fail_after(20):
        async with tcp_pair() as (server, _client):
            outbox = Outbox()
            outbox.attach(server)
            assert outbox.push(text_frame("c" * 200_000))
            with pytest.RaisesGroup(trio.ClosedResourceError):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(outbox.drain)
                    await trio.testing.wait_all_tasks_blocked()
                    # The stream closes the socket (as OutboxStream.aclose does, through
                    # trio, which wakes the writer waiting for it) before the outbox heard.
                    trio.socket.from_stdlib_socket(server).close()
            outbox.push(text_frame("late"))
            # A new connection likely gets the old descriptor number: nothing reaches it.
            async with tcp_pair() as (other_server, other_client):
                outbox.push(text_frame("late again"))
                with pytest.raises(trio.BrokenResourceError):
                    await outbox.drain()
                assert not outbox.push(text_frame("later still"))
                outbox.close()
                other_server.shutdown(socket.SHUT_WR)
                assert await other_client.recv(100) == b""


async def test_overflow_keeps_the_frame_begun_and_lets_the_close_frame_through() -> None:
    with trio.fail_after(20):
        async with tcp_pair() as (server, client):
            outbox = Outbox(max_frames=5, max_bytes=1024 * 1024)
            outbox.attach(server)
            first = "o" * 100_000
            pushed = [outbox.push(text_frame(first))]
            pushed += [outbox.push(text_frame(f"m{i}")) for i in range(10)]
            assert pushed[:6] == [True] * 6 and not any(pushed[6:])
            assert outbox.overflowed
            events: list[Event] = []

            async def read() -> None:
                events.extend(await read_events(client, 2))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                with pytest.raises(Overflow):
                    await outbox.drain()  # the begun frame's tail first, then Overflow
                await outbox.send_control(CLOSE_1000)  # as the closing handshake does
            assert texts(events) == [first]
            assert isinstance(events[1], CloseConnection)


async def test_a_writer_is_started_only_while_bytes_wait_and_ends_when_they_are_written(
        ) -> None:
    """An idle connection keeps no writer task: the outbox asks for one when the socket
    does not take a frame at once, the writer ends once all is written, and the next
    backlog asks again."""
    big = ["x" * 100_000, "y" * 100_000]
    with trio.fail_after(20):
        async with tcp_pair() as (server, client), trio.open_nursery() as nursery:
            outbox = Outbox()
            outbox.attach(server)
            started: list[float] = []
            ended: list[float] = []

            async def writer() -> None:
                await outbox.drain(until_idle=True)
                ended.append(trio.current_time())

            def start_writer() -> None:
                started.append(trio.current_time())
                nursery.start_soon(writer)

            outbox.start_writer = start_writer
            assert outbox.push(text_frame("small"))  # the socket takes it: no writer
            assert started == []
            for text in big:
                assert outbox.push(text_frame(text))
            assert len(started) == 1  # one writer for the backlog, however many frames
            events = await read_events(client, 1 + len(big))
            assert texts(events) == ["small", *big]
            await trio.testing.wait_all_tasks_blocked()
            assert len(ended) == 1 and len(outbox) == 0
            assert outbox.push(text_frame(big[0]))
            assert len(started) == 2
            assert texts(await read_events(client, 1)) == [big[0]]
            await trio.testing.wait_all_tasks_blocked()
            assert len(ended) == 2


async def test_connections_whose_peer_has_gone_close_in_turns() -> None:
    """At the end of a lecture thousands of peers go at once: each connection that reads
    the end of its peer waits for a slot of the closing limiter, held until it is closed."""
    with trio.fail_after(20):
        closing = trio.CapacityLimiter(1)
        async with tcp_pair() as (server_a, client_a), tcp_pair() as (server_b, client_b):
            a, b = (OutboxStream.take(trio.SocketStream(trio.socket.from_stdlib_socket(raw)),
                                      Outbox(), closing) for raw in (server_a, server_b))
            client_a.close()
            client_b.close()
            assert await a.receive_some() == b""
            ended: list[bytes | bytearray] = []

            async def read_b() -> None:
                ended.append(await b.receive_some())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_b)
                await trio.testing.wait_all_tasks_blocked()
                assert ended == []  # b's end waits while a is still closing
                assert closing.borrowed_tokens == 1
                a.close()
            assert ended == [b""]
            b.close()
            assert closing.borrowed_tokens == 0
