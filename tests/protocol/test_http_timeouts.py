"""HTTPServer's time-outs at their real (default) lengths, on trio's autojump clock.

The server serves one in-memory stream (`serve_stream`), so nothing but the test's own tasks
runs and the mock clock jumps whenever they all wait: a 30 s time-out takes no wall time and
fires at exactly 30 s of the test's clock, so each test checks when it fired, not only that it
did. Over real sockets the clock could not jump safely (the kernel's work is invisible to it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from protocol import HTTPLimits, HTTPServer
from tests.protocol.test_http_server import GET, make_app, parse, receive_all

LIMITS = HTTPLimits()  # the defaults the server runs with
CLIENT = ("203.0.113.9", 40000)
# Virtual seconds: far beyond any time-out here, and a hang fails at once on this clock.
BOUND = 600


@asynccontextmanager
async def connected(
    pair: tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream] | None = None,
) -> AsyncIterator[tuple[trio.abc.HalfCloseableStream, trio.Event]]:
    """A client stream served by a server with the default limits, and an event set when the
    server is done with the connection."""
    client, server_side = pair or trio.testing.memory_stream_pair()
    done = trio.Event()
    server = HTTPServer(make_app(), limits=LIMITS)

    async def serve() -> None:
        await server.serve_stream(server_side, CLIENT)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        yield client, done
        nursery.cancel_scope.cancel()


async def test_a_silent_new_connection_is_closed_quietly_after_the_header_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            start = trio.current_time()
            assert await receive_all(client) == b""
            assert trio.current_time() - start == pytest.approx(LIMITS.header_timeout)


async def test_part_of_a_head_gets_408_and_close_after_the_header_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            start = trio.current_time()
            await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            (answer,) = parse(await receive_all(client))
            assert (answer.status, answer.headers["connection"]) == (408, "close")
            assert trio.current_time() - start == pytest.approx(LIMITS.header_timeout)


async def test_an_idle_keep_alive_connection_is_closed_quietly_after_its_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            await client.send_all(GET)
            (answer,) = parse(await client.receive_some(65536))
            assert answer.status == 200
            start = trio.current_time()
            assert await receive_all(client) == b""
            assert trio.current_time() - start == pytest.approx(LIMITS.keepalive_timeout)


async def test_a_head_begun_late_in_the_keep_alive_wait_gets_the_whole_header_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            await client.send_all(GET)
            parse(await client.receive_some(65536))
            await trio.sleep(LIMITS.keepalive_timeout - 1)
            began = trio.current_time()
            await client.send_all(b"GET / HTTP/1.1\r\n")
            (answer,) = parse(await receive_all(client))
            assert answer.status == 408
            # Not cut off when the keep-alive wait would have ended, a second later.
            assert trio.current_time() - began == pytest.approx(LIMITS.header_timeout)


async def test_a_body_that_stops_coming_gets_408_after_the_body_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            start = trio.current_time()
            await client.send_all(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
            (answer,) = parse(await receive_all(client), ["POST"])
            assert answer.status == 408
            assert trio.current_time() - start == pytest.approx(LIMITS.body_timeout)


async def test_a_handler_over_the_handler_timeout_is_503_and_the_connection_goes_on(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            start = trio.current_time()
            await client.send_all(b"GET /slow?delay=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            (answer,) = parse(await client.receive_some(65536))
            assert (answer.status, answer.headers["retry-after"]) == (503, "1")
            assert trio.current_time() - start == pytest.approx(LIMITS.handler_timeout)
            await client.send_all(GET)
            (answer,) = parse(await client.receive_some(65536))
            assert answer.status == 200


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        # Lockstep: each write waits for the reader, as a full socket buffer would.
        async with connected(trio.testing.lockstep_stream_pair()) as (client, done):
            await client.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            start = trio.current_time()
            await done.wait()
            assert trio.current_time() - start == pytest.approx(LIMITS.send_timeout)


async def test_each_phase_of_a_cycle_gets_its_own_whole_time_out(
        autojump_clock: trio.testing.MockClock) -> None:
    # The server keeps one deadline per connection and moves it from phase to phase: a phase
    # must get its whole time-out whatever the ones before it used up.
    with trio.fail_after(BOUND):
        async with connected() as (client, _):
            await client.send_all(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
            await trio.sleep(LIMITS.header_timeout - 1)
            await client.send_all(b"Content-Length: 4\r\n\r\nab")
            await trio.sleep(LIMITS.body_timeout - 1)
            await client.send_all(b"cd")
            (answer,) = parse(await client.receive_some(65536), ["POST"])
            assert (answer.status, answer.body) == (200, b"abcd")
            await trio.sleep(LIMITS.keepalive_timeout - 1)
            delay = LIMITS.handler_timeout - 1
            await client.send_all(f"GET /slow?delay={delay} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            (answer,) = parse(await client.receive_some(65536))
            assert answer.status == 200
            await client.send_all(GET)
            (answer,) = parse(await client.receive_some(65536))
            assert answer.status == 200
