"""HTTPServer over real sockets on 127.0.0.1: keep-alive, HEAD, pipelining, limits,
errors, connection cap, shutdown and vanishing clients (the time-outs are in
test_http_timeouts.py, on a virtual clock).

Byte-level cases talk through raw trio streams and parse answers with an h11 client; normal
cases use httpx.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import httpx
import pytest
import trio

from protocol import (
    HTTPError,
    HTTPLimits,
    HTTPServer,
    Request,
    Response,
    Router,
)
from protocol.messages import Handler


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def make_app(started: trio.Event | None = None) -> Router:
    """Routes every test shares; `started` is set when /slow begins."""
    router = Router()

    @router.route("GET", "/")
    async def home(request: Request) -> Response:
        return Response.text(f"hello {request.method}")

    @router.route("GET", "/whoami")
    async def whoami(request: Request) -> Response:
        assert request.client is not None
        return Response.json({"port": request.client[1]})

    @router.route("POST", "/echo")
    async def echo(request: Request) -> Response:
        return Response(200, (("Content-Type", "application/octet-stream"),), request.body)

    @router.route("GET", "/slow")
    async def slow(request: Request) -> Response:
        if started is not None:
            started.set()
        await trio.sleep(float(request.query_value("delay") or "0.2"))
        return Response.text(f"slow {request.query_value('n')}")

    @router.route("GET", "/boom")
    async def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    @router.route("GET", "/teapot")
    async def teapot(request: Request) -> Response:
        raise HTTPError(418, "short and stout")

    @router.route("GET", "/big")
    async def big(request: Request) -> Response:
        return Response(200, (), b"x" * (8 * 1024 * 1024))

    return router


@asynccontextmanager
async def serving(
    handler: Handler | None = None, **limits: Any
) -> AsyncIterator[tuple[HTTPServer, int]]:
    server = HTTPServer(handler or make_app(), limits=HTTPLimits(**limits))
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(server.serve, "127.0.0.1", 0)
        yield server, port
        nursery.cancel_scope.cancel()


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


async def receive_all(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until the server closes its side."""
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks)


def parse(data: bytes | bytearray, methods: Sequence[str] = ("GET",)) -> list[Answer]:
    """The responses in `data`, one per request method in `methods`, in order."""
    client = h11.Connection(h11.CLIENT)
    # A trio stream's receive_some may give a bytearray (memory streams do); h11 takes bytes.
    client.receive_data(bytes(data))
    answers = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        head = client.next_event()
        while isinstance(head, h11.InformationalResponse):
            head = client.next_event()
        assert isinstance(head, h11.Response), head
        body = b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        headers = {name.decode(): value.decode() for name, value in head.headers}
        answers.append(Answer(head.status_code, headers, body))
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
    return answers


async def exchange(port: int, data: bytes, methods: Sequence[str] = ("GET",)) -> list[Answer]:
    """Send raw bytes on a new connection, read until the server closes, parse."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        return parse(await receive_all(stream), methods)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port), httpx.AsyncClient(base_url=base_url(port)) as client:
            first = await client.get("/whoami")
            second = await client.get("/whoami")
            assert first.status_code == second.status_code == 200
            assert first.json() == second.json()
            assert "connection" not in first.headers
            assert first.headers["server"] == "classroom"
            assert "date" in first.headers


async def test_keep_alive_raw() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port), await trio.open_tcp_stream("127.0.0.1", port) as s:
            await s.send_all(GET)
            first = await s.receive_some(65536)
            await s.send_all(GET_CLOSE)
            rest = await receive_all(s)
            one, two = parse(first + rest, ["GET", "GET"])
            assert one.body == two.body == b"hello GET"
            assert two.headers["connection"] == "close"


async def test_head_has_get_headers_and_no_body() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port):
            request = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE
            head, get = await exchange(port, request, ["HEAD", "GET"])
            assert (head.status, head.body) == (200, b"")
            assert head.headers["content-length"] == str(len(b"hello HEAD"))
            assert head.headers["content-type"] == get.headers["content-type"]
            assert get.body == b"hello GET"


async def test_head_with_httpx() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port), httpx.AsyncClient(base_url=base_url(port)) as client:
            response = await client.head("/")
            assert response.status_code == 200
            assert response.content == b""
            assert response.headers["content-length"] == "10"


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port):
            requests = (
                b"GET /slow?n=1&delay=0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /slow?n=3&delay=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answers = await exchange(port, requests, ["GET", "POST", "GET"])
            assert [a.body for a in answers] == [b"slow 1", b"abc", b"slow 3"]


async def test_huge_header_is_431_and_closes() -> None:
    with trio.fail_after(5):
        async with serving(max_header_bytes=4096) as (_, port):
            request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
            (answer,) = await exchange(port, request)
            assert answer.status == 431
            assert answer.headers["connection"] == "close"


async def test_huge_incomplete_header_is_431() -> None:
    with trio.fail_after(5):
        async with serving(max_header_bytes=4096) as (_, port):
            # No blank line: h11 itself refuses once its buffer passes the limit.
            request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000
            (answer,) = await exchange(port, request)
            assert answer.status == 431


async def test_declared_body_over_limit_is_413_before_reading_it() -> None:
    with trio.fail_after(5):
        async with serving(max_body_bytes=1000) as (_, port):
            request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
            (answer,) = await exchange(port, request, ["POST"])
            assert answer.status == 413
            assert answer.headers["connection"] == "close"


async def test_chunked_body_over_limit_is_413() -> None:
    with trio.fail_after(5):
        async with serving(max_body_bytes=1000) as (_, port):
            chunk = b"400\r\n" + b"a" * 0x400 + b"\r\n"
            request = (
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunk * 2
                + b"0\r\n\r\n"
            )
            (answer,) = await exchange(port, request, ["POST"])
            assert answer.status == 413


async def test_chunked_body_within_limit_is_read() -> None:
    with trio.fail_after(5):
        async with serving(max_body_bytes=1000) as (_, port):
            request = (
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            (answer,) = await exchange(port, request, ["POST"])
            assert (answer.status, answer.body) == (200, b"hello world")


async def test_expect_100_continue() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port), await trio.open_tcp_stream("127.0.0.1", port) as s:
            await s.send_all(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            )
            interim = await s.receive_some(65536)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await s.send_all(b"ok")
            (answer,) = parse(interim + await receive_all(s), ["POST"])
            assert (answer.status, answer.body) == (200, b"ok")


async def test_bad_request_line_is_400_with_no_request() -> None:
    seen: list[Request | None] = []

    def error_page(request: Request | None, error: HTTPError) -> Response:
        seen.append(request)
        return Response.json({"error": error.message}, error.status)

    server = HTTPServer(make_app(), error_page=error_page)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            (answer,) = await exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
            assert answer.status == 400
            assert answer.headers["content-type"] == "application/json"
            (answer,) = await exchange(port, b"GET /api/x?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.status == 400
            nursery.cancel_scope.cancel()
    assert seen[0] is None
    assert seen[1] is not None and seen[1].path == "/api/x"


async def test_error_page_gets_the_request_whenever_the_head_was_parsed() -> None:
    seen: list[tuple[int, str | None]] = []

    def error_page(request: Request | None, error: HTTPError) -> Response:
        seen.append((error.status, request.path if request else None))
        return Response.json({"error": error.message}, error.status)

    server = HTTPServer(make_app(), error_page=error_page, limits=HTTPLimits(max_body_bytes=10))
    requests = [
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
        b"GET /api/big-head HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /api/none HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            for request in requests:
                await exchange(
                    port, request + GET_CLOSE, ["GET", "GET"][: 1 + (b"none" in request)]
                )
            nursery.cancel_scope.cancel()
    assert seen == [(413, "/api/echo"), (431, "/api/big-head"), (404, "/api/none")]


async def test_handler_errors_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(5):
        async with serving() as (_, port), httpx.AsyncClient(base_url=base_url(port)) as client:
            response = await client.get("/boom")
            assert response.status_code == 500
            assert "text/html" in response.headers["content-type"]
            teapot = await client.get("/teapot")
            assert teapot.status_code == 418
            assert "short and stout" in teapot.text
            missing = await client.post("/")
            assert (missing.status_code, missing.headers["allow"]) == (405, "GET, HEAD")
            assert (await client.get("/")).text == "hello GET"
    failures = [r for r in caplog.records if r.name == "protocol.http" and r.exc_info]
    assert len(failures) == 1
    assert "handler bug" in str(failures[0].exc_info)


async def test_failing_error_page_falls_back_to_default() -> None:
    def broken(request: Request | None, error: HTTPError) -> Response:
        raise ValueError("template missing")

    server = HTTPServer(make_app(), error_page=broken)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=base_url(port)) as client:
                response = await client.get("/nowhere")
                assert response.status_code == 404
                assert "404 Not Found" in response.text
            nursery.cancel_scope.cancel()


async def test_connections_over_the_cap_get_503() -> None:
    with trio.fail_after(5):
        async with (
            serving(max_connections=2) as (_, port),
            await trio.open_tcp_stream("127.0.0.1", port) as first,
            await trio.open_tcp_stream("127.0.0.1", port) as second,
        ):
            for stream in (first, second):  # both accepted and counted
                await stream.send_all(GET)
                assert parse(await stream.receive_some(65536))[0].status == 200
            (answer,) = await exchange(port, GET)
            assert answer.status == 503
            assert answer.headers["retry-after"] == "1"
            assert answer.headers["connection"] == "close"
            await second.aclose()
            # The freed slot is usable again once the server has seen the close.
            statuses = []
            for _ in range(100):
                statuses.append((await exchange(port, GET_CLOSE))[0].status)
                if statuses[-1] == 200:
                    break
                await trio.sleep(0.01)
            assert statuses[-1] == 200


async def test_shutdown_finishes_in_flight_request_then_serve_returns() -> None:
    started = trio.Event()
    server = HTTPServer(make_app(started), limits=HTTPLimits(shutdown_grace=3))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            idle = await trio.open_tcp_stream("127.0.0.1", port)
            busy = await trio.open_tcp_stream("127.0.0.1", port)
            async with idle, busy:
                await idle.send_all(GET)
                assert parse(await idle.receive_some(65536))[0].status == 200
                await busy.send_all(b"GET /slow?n=1&delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
                await started.wait()
                begin = trio.current_time()
                server.begin_shutdown()
                assert await receive_all(idle) == b""  # idle keep-alive closed at once
                assert trio.current_time() - begin < 0.2
                (answer,) = parse(await receive_all(busy))
                assert (answer.status, answer.body) == (200, b"slow 1")
                assert answer.headers["connection"] == "close"
            with pytest.raises(OSError):  # no longer listening
                await trio.open_tcp_stream("127.0.0.1", port)
        # leaving the nursery means serve() returned by itself
        assert trio.current_time() - begin < 2


async def test_shutdown_closes_silent_new_connections_and_returns_at_once() -> None:
    server = HTTPServer(make_app())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await trio.sleep(0.05)  # accepted, nothing sent yet
                begin = trio.current_time()
                server.begin_shutdown()
                server.begin_shutdown()  # idempotent
                assert await receive_all(stream) == b""
        assert trio.current_time() - begin < 0.5


async def test_shutdown_cancels_requests_that_outlast_the_grace() -> None:
    started = trio.Event()
    server = HTTPServer(make_app(started), limits=HTTPLimits(shutdown_grace=0.2))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"GET /slow?delay=60 HTTP/1.1\r\nHost: x\r\n\r\n")
                await started.wait()
                server.begin_shutdown()
                assert await receive_all(stream) == b""


async def test_client_vanishing_mid_response_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="protocol.http")
    with trio.fail_after(5):
        async with serving() as (_, port):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await stream.receive_some(1024)
            # the server is still fine
            async with httpx.AsyncClient(base_url=base_url(port)) as client:
                assert (await client.get("/")).status_code == 200
            for _ in range(100):  # the server notices the reset on its next send
                if any("gone" in r.getMessage() for r in caplog.records):
                    break
                await trio.sleep(0.01)
            else:
                pytest.fail("the server never noticed the client leaving")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_http_1_0_is_answered_and_closed() -> None:
    with trio.fail_after(5):
        async with serving() as (_, port):
            (answer,) = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
            assert (answer.status, answer.body) == (200, b"hello GET")


async def test_access_log_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="protocol.http.access")
    with trio.fail_after(5):
        async with serving() as (_, port):
            await exchange(port, GET + GET_CLOSE, ["GET", "GET"])
    lines = [r.getMessage() for r in caplog.records if r.name == "protocol.http.access"]
    assert len(lines) == 2
    assert '"GET /" 200 9 ' in lines[0]


async def test_content_length_with_transfer_encoding_is_400_and_closes() -> None:
    # RFC 9112 6.3: both framings at once is how requests are smuggled past a proxy.
    smuggle = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + GET)
    with trio.fail_after(5):
        async with serving() as (_, port):
            answers = await exchange(port, smuggle, methods=("POST",))
            assert [a.status for a in answers] == [400]
            assert answers[0].headers["connection"] == "close"
            assert b"Content-Length and Transfer-Encoding" in answers[0].body


async def connect_from(source: str, port: int) -> trio.SocketStream:
    """A TCP connection to the server from `source` (any 127.x address is this host)."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def test_one_address_holding_its_cap_does_not_lock_out_others() -> None:
    with trio.fail_after(10):
        async with serving(max_connections=20, max_connections_per_address=5) as (_, port):
            held = []
            for n in range(5):  # idle and half-sent connections, the slowloris way
                stream = await connect_from("127.0.0.2", port)
                if n % 2:
                    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                held.append(stream)
            await trio.sleep(0.1)  # let the server accept them all
            # A sixth from the same address is refused at once; the others are served.
            async with await connect_from("127.0.0.2", port) as sixth:
                await sixth.send_all(GET)
                (answer,) = parse(await receive_all(sixth))
                assert answer.status == 503 and answer.headers["connection"] == "close"
            for source in ("127.0.0.1", "127.0.0.3"):
                async with await connect_from(source, port) as other:
                    await other.send_all(GET_CLOSE)
                    assert parse(await receive_all(other))[0].status == 200
            # A closed connection frees its slot for its address.
            await held.pop().aclose()
            statuses = []
            for _ in range(100):
                async with await connect_from("127.0.0.2", port) as again:
                    await again.send_all(GET_CLOSE)
                    statuses.append(parse(await receive_all(again))[0].status)
                if statuses[-1] == 200:
                    break
                await trio.sleep(0.01)
            assert statuses[-1] == 200
            for stream in held:
                await stream.aclose()
