"""The HTTP/1.1 server: a trio accept loop and one task per connection around h11.

This module only moves bytes and enforces time; parsing and response framing are in `wire`,
`urls`, `cookies` and `messages`. Per connection the cycle is:

    receive head  (keep-alive idle: keepalive_timeout, then header_timeout once bytes come;
                   a fresh connection gets header_timeout from accept; nothing received by
                   then: close quietly, part of a head: 408)
    receive body  (body_timeout; Content-Length checked up front, chunked data counted)
    call handler  (handler_timeout -> 503; HTTPError -> error page; other exception -> 500)
    send response (send_timeout; Connection: close if the client or we want it)

Pipelined requests wait in h11's buffer and are answered one at a time, in order. Any error
before the handler runs ends the connection after its error response, because the rest of the
request may still be in flight. A client that vanishes or stops reading is not an error: its
connection just ends (debug log).

Shutdown: `begin_shutdown` stops the accept loops and closes connections waiting for a request;
the others finish their current request (answered with Connection: close) within
shutdown_grace, then the connections nursery is cancelled and `serve` returns.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any, Final

import attrs
import h11
import trio

from .accept import accept
from .addresses import ConnectionCounts, address_key
from .errors import HTTPError
from .messages import Handler, Request, Response
from .wire import (
    ErrorPage,
    HTTPDate,
    ResponseFraming,
    default_error_page,
    head_size,
    request_from_head,
    response_to_h11,
)

__all__ = ["ErrorPage", "HTTPLimits", "HTTPServer"]

logger = logging.getLogger("protocol.http")
access_logger = logging.getLogger("protocol.http.access")

RECEIVE_BYTES: Final = 64 * 1024
# After a closing response, read (and drop) what the client still sends for a moment: closing
# a socket with unread data sends a RST, which can destroy the response before it is read.
LINGER_SECONDS: Final = 1.0
LINGER_BYTES: Final = 1024 * 1024
# Connections over max_connections get a 503 within this time; beyond this many such
# rejections at once (a flood), they are closed without one.
REJECT_SECONDS: Final = 1.0
MAX_REJECTING: Final = 100


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"HTTPLimits.{attribute.name} must be > 0, not {value!r}")


@attrs.frozen
class HTTPLimits:
    """What one client may cost us. Sizes in bytes, times in seconds, all > 0 (ValueError).

    Over max_header_bytes: 431; over max_body_bytes: 413; head or body not received within
    header_timeout / body_timeout: 408 and close; idle between requests for
    keepalive_timeout: quiet close; handler slower than handler_timeout: 503; a connection
    over max_connections in all, or over max_connections_per_address from one client address
    (an IPv6 client's /64), gets 503 and close; a client not reading its response within
    send_timeout: dropped.

    The per-address cap is what keeps one client holding idle or half-sent connections from
    locking everyone else out; behind a proxy every client has the proxy's address, so there
    set it as high as max_connections.
    """

    max_header_bytes: int = attrs.field(default=16 * 1024, validator=_positive)
    max_body_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    header_timeout: float = attrs.field(default=10.0, validator=_positive)
    body_timeout: float = attrs.field(default=30.0, validator=_positive)
    keepalive_timeout: float = attrs.field(default=30.0, validator=_positive)
    handler_timeout: float = attrs.field(default=30.0, validator=_positive)
    max_connections: int = attrs.field(default=1000, validator=_positive)
    max_connections_per_address: int = attrs.field(default=256, validator=_positive)
    shutdown_grace: float = attrs.field(default=5.0, validator=_positive)
    send_timeout: float = attrs.field(default=30.0, validator=_positive)


# The phases of a request cycle, each with its own time-out (see _Connection.run).
_HEAD: Final = "head"
_BODY: Final = "body"
_HANDLER: Final = "handler"
_SEND: Final = "send"
_LINGER: Final = "linger"


class _ClientGone(Exception):
    """The client reset or closed the connection, or stopped reading."""


async def _linger(stream: trio.abc.HalfCloseableStream) -> None:
    """Half-close, then drain what the client still sends, briefly (see LINGER_SECONDS)."""
    try:
        await stream.send_eof()
        with trio.move_on_after(LINGER_SECONDS):
            drained = 0
            while drained < LINGER_BYTES:
                data = await stream.receive_some(RECEIVE_BYTES)
                if not data:
                    break
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _peer(stream: trio.SocketStream) -> tuple[str, int] | None:
    try:
        address = stream.socket.getpeername()
    except OSError:  # already disconnected
        return None
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def _error_status(exc: h11.RemoteProtocolError) -> int:
    hint = exc.error_status_hint
    return hint if 400 <= hint <= 599 else 400


class HTTPServer:
    """Serves `handler` over HTTP/1.1 on one address. One `serve` call per instance.

    `error_page` renders every error response: HTTPErrors from the handler, 500 for its other
    exceptions, and the server's own 400/408/413/431/503. Its request argument is None only
    when no request head could be parsed. If it raises, the default page is used (logged).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        limits: HTTPLimits = HTTPLimits(),
        error_page: ErrorPage | None = None,
        server_header: str = "classroom",
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.error_page = error_page or default_error_page
        self.server_header = server_header
        self.date = HTTPDate()
        self.framing = ResponseFraming(server_header)
        self._connections: set[_Connection] = set()
        self._per_address: ConnectionCounts[str] = ConnectionCounts(
            limits.max_connections_per_address)
        self._rejecting = 0
        self._shutdown = trio.Event()
        self._drained = trio.Event()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    async def serve(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on host:port and serve until cancelled or until shutdown completes.

        Reports the bound port through `task_status` (so `await nursery.start(...)` returns
        it; with port 0 and a host that resolves to several addresses, only the first is used).
        With `reuse_port`, other processes may listen on the same address (SO_REUSEPORT) and
        the kernel spreads new connections over them (first address of `host` only).
        Raises OSError if the address cannot be bound.
        """
        if reuse_port:
            listeners = [await _reuse_port_listener(host, port)]
        else:
            listeners = await trio.open_tcp_listeners(port, host=host)
        if port == 0:
            # Each listener would get its own random port; a caller can only be told one.
            for extra in listeners[1:]:
                extra.socket.close()
            listeners = listeners[:1]
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept, listener, connections)
                    task_status.started(listeners[0].socket.getsockname()[1])
                    await self._shutdown.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    listener.socket.close()
                with trio.move_on_after(self.limits.shutdown_grace):
                    await self._drained.wait()
                connections.cancel_scope.cancel()
        finally:
            for listener in listeners:
                listener.socket.close()

    def begin_shutdown(self) -> None:
        """Stop accepting and close idle connections now; requests in progress get up to
        `limits.shutdown_grace` seconds and are answered with Connection: close, then the rest
        are cancelled and `serve` returns. Call from the trio thread; idempotent."""
        if self._shutdown.is_set():
            return
        self._shutdown.set()
        for connection in list(self._connections):
            connection.close_if_idle()
        if not self._connections:
            self._drained.set()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            stream = await accept(listener, logger)
            peer = _peer(stream)
            address = address_key(peer[0]) if peer is not None else ""
            if len(self._connections) >= self.limits.max_connections:
                nursery.start_soon(self._reject, stream, "max_connections")
                continue
            if not self._per_address.acquire(address):
                nursery.start_soon(self._reject, stream, "max_connections_per_address")
                continue
            # Counted before the task starts, so a burst of accepts sees the true number.
            connection = _Connection(self, stream, peer, address)
            self._connections.add(connection)
            nursery.start_soon(self._run, connection)

    async def serve_stream(self, stream: trio.abc.HalfCloseableStream,
                           client: tuple[str, int] | None = None) -> None:
        """Serve one connection that came some other way than `serve`'s listeners (an
        in-memory stream in tests, a stream wrapped in TLS) until it ends, with the same limits
        and time-outs; `client` is the peer handlers see. The connection caps are not applied:
        whoever accepted the connection decided that."""
        connection = _Connection(self, stream, client, None)
        self._connections.add(connection)
        await self._run(connection)

    async def _run(self, connection: _Connection) -> None:
        try:
            with connection.scope:
                async with connection.stream:
                    await connection.run()
        except _ClientGone as exc:
            logger.debug("client %s gone: %s", connection.client, exc)
        except Exception:
            # A bug here must cost one connection, not the server's nursery.
            logger.exception("connection from %s failed", connection.client)
        finally:
            self._connections.discard(connection)
            if connection.address is not None:
                self._per_address.release(connection.address)
            if self._shutdown.is_set() and not self._connections:
                self._drained.set()

    async def _reject(self, stream: trio.SocketStream, cap: str) -> None:
        """Answer 503 without reading the request and close: we are at `cap`
        (max_connections or max_connections_per_address)."""
        async with stream:
            if self._rejecting >= MAX_REJECTING:
                return
            self._rejecting += 1
            try:
                error = HTTPError(
                    503, "too many connections, try again", headers=[("Retry-After", "1")]
                )
                page = _render_error(self, None, error)
                event, body = response_to_h11(
                    page, method=None, close=True, server=self.server_header, date=self.date()
                )
                state = h11.Connection(h11.SERVER)
                data = b"".join(
                    state.send(message) or b""
                    for message in (event, h11.Data(data=body), h11.EndOfMessage())
                )
                access_logger.debug("%s - rejected 503 (%s)", _peer(stream), cap)
                with trio.move_on_after(REJECT_SECONDS):
                    await stream.send_all(data)
                    await _linger(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._rejecting -= 1


async def _reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    family, kind, proto, _, address = (
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                      flags=socket.AI_PASSIVE)
    )[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _render_error(server: HTTPServer, request: Request | None, error: HTTPError) -> Response:
    try:
        return server.error_page(request, error)
    except Exception:
        logger.exception("error page failed for %s", error)
        return default_error_page(request, error)


class _Body:
    """A request body as it arrives, counted against its limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise HTTPError(413, f"request body over {self.limit} bytes")
        self.chunks.append(bytes(data))

    def joined(self) -> bytes:
        return b"".join(self.chunks)


class _Connection:
    """One client connection: its stream, its h11 state machine, its request cycle."""

    def __init__(self, server: HTTPServer, stream: trio.abc.HalfCloseableStream,
                 client: tuple[str, int] | None, address: str | None) -> None:
        self.server = server
        self.limits = server.limits
        self.stream = stream
        self.client = client
        # What this connection is counted under in the server's per-address cap (None: not
        # counted, see serve_stream).
        self.address = address
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=server.limits.max_header_bytes
        )
        # Cancelling it ends this connection alone (shutdown closing it while idle).
        self.scope = trio.CancelScope()
        # True while waiting for the first byte of a request: nothing would be lost by closing.
        self.idle = False
        # The request cycle's time-outs (see `run`): the one scope, the phase its deadline is
        # for, and what `_timed_out` needs to answer that phase.
        self._timer = trio.CancelScope()
        self._phase = _HEAD
        self._first = True
        self._head_begun = False
        self._request: Request | None = None
        self._started: float | None = None

    def close_if_idle(self) -> None:
        if self.idle:
            self.scope.cancel()

    async def run(self) -> None:
        """Serve requests until the connection should end. Every time-out of the cycle is the
        deadline of one long-lived cancel scope, `_timer`, moved as the cycle goes from phase
        to phase (`_phase` says which one it is in): a scope per phase per request cost more
        CPU than anything else the server itself does for a small cached answer. When the
        timer fires, `_timed_out` answers as that phase's time-out requires and, after a
        handler's time-out, the connection carries on under a new timer."""
        while True:
            with trio.CancelScope() as self._timer:
                await self._serve()
                return
            if not await self._timed_out():
                return
            self.h11.start_next_cycle()

    async def _serve(self) -> None:
        while True:
            try:
                head = await self._receive_head()
            except HTTPError as error:
                await self._respond(None, _render_error(self.server, None, error), close=True)
                return
            if head is None:
                return
            self._first = False
            started = self._started = trio.current_time()
            request, refused = request_from_head(head, self.client)
            self._request = request
            if head_size(head) > self.limits.max_header_bytes:
                refused = HTTPError(431)
            if refused is None:
                try:
                    body = await self._receive_body(request)
                    if body:
                        request = attrs.evolve(request, body=body)
                except HTTPError as error:
                    refused = error
            if refused is not None:
                page = _render_error(self.server, request, refused)
                await self._respond(request, page, close=True, started=started)
                return
            response = await self._call_handler(request)
            if not await self._respond(request, response, close=False, started=started):
                return
            self.h11.start_next_cycle()

    async def _timed_out(self) -> bool:
        """Answer the phase that ran out of time; True if the connection goes on."""
        phase, request = self._phase, self._request
        if phase == _SEND:
            raise _ClientGone("client stopped reading")
        if phase == _HEAD:
            if not self._head_begun:
                return False  # nothing sent, nothing lost: close quietly
            request = None
            error = HTTPError(408, "timed out waiting for the request head")
        elif phase == _BODY:
            error = HTTPError(408, "timed out waiting for the request body")
        else:
            assert request is not None
            logger.warning("handler timed out on %s %s", request.method, request.target)
            error = HTTPError(503, "the server took too long", headers=[("Retry-After", "1")])
        with trio.CancelScope() as self._timer:
            return await self._respond(request, _render_error(self.server, request, error),
                                       close=phase != _HANDLER, started=self._started)
        raise _ClientGone("client stopped reading")

    def _set_timer(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._timer.deadline = trio.current_time() + seconds

    async def _receive_head(self) -> h11.Request | None:
        """The next request head, or None if the client closed (or we are shutting down and
        it had sent nothing). Raises HTTPError(400/431/...) for what h11 refuses (h11 catches
        an oversized head only while incomplete; `_serve` checks complete ones). Running out
        of time is `_timed_out`'s: 408 once a head has begun, else a quiet close."""
        self._request = None
        self._started = None
        got_bytes = self._head_begun = bool(self.h11.trailing_data[0])
        if self.server.shutting_down and not got_bytes:
            return None
        if self._first or got_bytes:
            self._set_timer(_HEAD, self.limits.header_timeout)
        else:
            self._set_timer(_HEAD, self.limits.keepalive_timeout)
        # When the first bytes came: the head then has header_timeout from there. The deadline
        # is moved only if the head needs another read, which a head in one packet does not.
        begun_at: float | None = None
        self.idle = not got_bytes
        try:
            while True:
                event = self._next_event()
                if event is h11.NEED_DATA:
                    if begun_at is not None:
                        self._timer.deadline = begun_at + self.limits.header_timeout
                        begun_at = None
                    data = await self._receive()
                    if data and not got_bytes:
                        got_bytes = self._head_begun = True
                        self.idle = False
                        begun_at = trio.current_time()
                    self.h11.receive_data(data)
                elif isinstance(event, h11.Request):
                    return event
                elif isinstance(event, h11.ConnectionClosed):
                    return None
                else:  # nothing else can start a request cycle
                    raise HTTPError(400, "expected a request")
        finally:
            self.idle = False

    async def _receive_body(self, request: Request) -> bytes:
        """The whole body. Raises HTTPError(413) when over max_body_bytes (declared or
        counted) and HTTPError(400) for broken framing; not arriving within body_timeout is
        `_timed_out`'s (408)."""
        limit = self.limits.max_body_bytes
        length = request.header("content-length")
        if length is not None and int(length) > limit:  # h11 has checked it is digits
            raise HTTPError(413, f"request body over {limit} bytes")
        if self.h11.they_are_waiting_for_100_continue:
            continue_event = h11.InformationalResponse(status_code=100, headers=[])
            await self._send_all(self.h11.send(continue_event) or b"")
        body = _Body(limit)
        # No body (most requests), or all of it received already: no time-out to set.
        if self._take_body(body):
            return body.joined()
        self._set_timer(_BODY, self.limits.body_timeout)
        while True:
            self.h11.receive_data(await self._receive())
            if self._take_body(body):
                return body.joined()

    def _take_body(self, body: _Body) -> bool:
        """Move what h11 has of the body into `body`; True once the body is complete.
        HTTPError(413) past its limit, HTTPError(400) for broken framing."""
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Data):
                body.add(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return True
            else:
                raise HTTPError(400, "incomplete request body")

    async def _call_handler(self, request: Request) -> Response:
        """The handler's response, or the error page for what it raised; running out of
        handler_timeout is `_timed_out`'s (503)."""
        self._set_timer(_HANDLER, self.limits.handler_timeout)
        try:
            response = await self.server.handler(request)
        except HTTPError as error:
            return _render_error(self.server, request, error)
        except Exception:
            logger.exception("handler failed on %s %s", request.method, request.target)
            return _render_error(self.server, request, HTTPError(500))
        if not isinstance(response, Response):
            logger.error("handler returned %r, not a Response", type(response))
            return _render_error(self.server, request, HTTPError(500))
        return response

    async def _respond(
        self,
        request: Request | None,
        response: Response,
        *,
        close: bool,
        started: float | None = None,
    ) -> bool:
        """Send `response`; True if the connection stays open for another request."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False  # h11 cannot frame a response now; nothing sensible to send
        close = (
            close
            or self.server.shutting_down
            or "close" in (response.header("connection") or "").lower()
        )
        method = request.method if request is not None else None
        event, body = self.server.framing.frame(
            response, method=method, close=close, date=self.server.date()
        )
        parts = [self.h11.send(event) or b""]
        if body:
            parts.append(self.h11.send(h11.Data(data=body)) or b"")
        parts.append(self.h11.send(h11.EndOfMessage()) or b"")
        if access_logger.isEnabledFor(logging.DEBUG):
            elapsed = math.nan if started is None else (trio.current_time() - started) * 1000
            access_logger.debug(
                '%s "%s %s" %d %d %.1fms',
                self.client,
                method or "-",
                request.target if request is not None else "-",
                response.status,
                len(response.body),
                elapsed,
            )
        await self._send_all(b"".join(parts))
        if close or not self._cycle_done():
            self._phase = _LINGER
            self._timer.deadline = math.inf  # _linger keeps its own time
            await _linger(self.stream)
            return False
        return True

    def _cycle_done(self) -> bool:
        # Both sides DONE is what h11 needs to start another request on this connection.
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise HTTPError(_error_status(exc), str(exc)) from exc

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_BYTES))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _ClientGone("connection reset") from exc

    async def _send_all(self, data: bytes) -> None:
        """Send `data`; the client not taking it within send_timeout is `_timed_out`'s."""
        self._set_timer(_SEND, self.limits.send_timeout)
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _ClientGone("connection reset while sending") from exc
