"""The WebSocket listener: handshake checks, one task and cancel scope per connection,
pings, and shutdown. trio-websocket does the handshake, reading, pings and closing; frames
we send go through each client's outbox (see outbox.py).

Connection life: handshake (path /ws, Origin, session cookie or Bearer token; refused with an
HTTP status otherwise) -> reader loop in this task, writer and pinger beside it in the
connection's nursery -> on any end (client closed, overflow, dead peer, kick of the last
room, shutdown) the nursery is cancelled, the client leaves its rooms (attendance), and the
close frame carries `Client.close_code`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from classroom import Services, User
from classroom.accounts import SESSION_COOKIE
from classroom.errors import ClassroomError
from classroom.ratelimit import EVENT_RATES, Rate
from classroom.rules import Role
from protocol import parse_cookie_header
from protocol.accept import accept
from protocol.addresses import ConnectionCounts, address_key
from protocol.envelope import MAX_FRAME_BYTES, EnvelopeError, parse_envelope

from . import metrics
from .bus import RedisBus
from .client import CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN_LATER, Client
from .flood import FloodGuard
from .handlers import Dispatcher
from .hub import LISTED_ONLINE, RoomHub
from .membership import MembershipWatch
from .outbox import MAX_QUEUED_BYTES, MAX_QUEUED_FRAMES, Outbox, OutboxStream, Overflow
from .presence import PRESENCE_INTERVAL
from .relay import SYNC_INTERVAL
from .sessions import CHECK_INTERVAL, SessionWatch

# One INFO line per WebSocket connection when it ends; `classroom serve --quiet` mutes it.
access = logging.getLogger("chat.access")
log = logging.getLogger("chat.server")

WS_PATH: Final = "/ws"
# trio-websocket closes with 1009 past this; frames a little over MAX_FRAME_BYTES (1 MiB)
# get an `error` event instead, so a message just too long does not cost the connection.
# Not more: the library holds a message's fragments until its last one, so this is what one
# connection may make the server hold (4 MiB was 1 GiB from one address's 256 connections),
# and an over-long frame is parsed on the event loop to find its ref (100 ms at 4 MiB).
HARD_MESSAGE_LIMIT: Final = MAX_FRAME_BYTES + 64 * 1024
HANDSHAKE_TIMEOUT: Final = 10.0
PING_INTERVAL: Final = 20.0
PING_TIMEOUT: Final = 15.0
# The keepalive task looks for connections due a ping every PING_TICK seconds (or this many
# times a ping interval when that is shorter), and starts at most PINGS_PER_TICK pings each
# time, the rest at the next look. A lecture's members connect together, so their pings fall
# due together: looked for every 2 s, 500 of them went out at once (and their 500 pongs came
# back at once), scheduler rounds of 50-120 ms that every other client waited for.
PING_TICK: Final = 0.1
PING_TICKS: Final = 10
PINGS_PER_TICK: Final = 100
EVENT_TIMEOUT: Final = 20.0
CLOSE_TIMEOUT: Final = 3.0
# Connections whose peer has gone that close at the same time; the rest wait their turn.
CLOSING_AT_ONCE: Final = 32
SHUTDOWN_GRACE: Final = 3.0
MAX_CONNECTIONS: Final = 10_000
# One client address (an IPv6 /64) may hold this many connections, handshakes included: a
# class behind one school NAT fits, one machine cannot take the whole listener. Behind a proxy
# every client has the proxy's address: raise it to MAX_CONNECTIONS there.
MAX_CONNECTIONS_PER_ADDRESS: Final = 256
# One user: a few tabs and a terminal, not hundreds of sockets.
MAX_CONNECTIONS_PER_USER: Final = 16
# Refusing over the per-address cap gets an HTTP answer within this long; beyond this many
# such refusals at once (a flood), connections are closed without one.
REFUSE_TIMEOUT: Final = 2.0
MAX_REFUSING: Final = 100


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return "a vanished peer"
    return f"{host}:{port}"


def _address_of(stream: trio.SocketStream) -> str:
    try:
        host = stream.socket.getpeername()[0]
    except OSError:
        return ""
    return address_key(str(host))


class ChatServer:
    def __init__(self, services: Services, *, server_name: str | None = None,
                 outbox_frames: int = MAX_QUEUED_FRAMES,
                 outbox_bytes: int = MAX_QUEUED_BYTES,
                 ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT,
                 relay_interval: float = SYNC_INTERVAL,
                 max_per_address: int = MAX_CONNECTIONS_PER_ADDRESS,
                 max_per_user: int = MAX_CONNECTIONS_PER_USER,
                 session_interval: float = CHECK_INTERVAL,
                 event_rates: Mapping[Role, Rate] = EVENT_RATES,
                 presence_interval: float = PRESENCE_INTERVAL,
                 listed_online: int = LISTED_ONLINE,
                 pings_per_tick: int = PINGS_PER_TICK,
                 bus: RedisBus | None = None) -> None:
        self._services = services
        # Closes connections whose sign-in ended (logout, expiry, password change).
        self._session_watch = SessionWatch(services, interval=session_interval)
        self._flood = FloodGuard(event_rates)
        self._per_address: ConnectionCounts[str] = ConnectionCounts(max_per_address)
        self._per_user: ConnectionCounts[int] = ConnectionCounts(max_per_user)
        self._refusing = 0
        # Seconds between looks at the database for other servers' events (short in tests).
        self._relay_interval = relay_interval
        # Seconds between pings of a connection, and how long its pong may take (short in
        # tests).
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        # Each connection's outgoing queue bound (see outbox.py); small in tests.
        self._outbox_limits = (outbox_frames, outbox_bytes)
        # Connections whose peer has gone, closing at once (see OutboxStream.receive_some).
        self._closing = trio.CapacityLimiter(CLOSING_AT_ONCE)
        self._hub = RoomHub(services, server_name or "chat",
                            presence_interval=presence_interval, listed_online=listed_online)
        self._dispatcher = Dispatcher(services, self._hub)
        # Takes students out of a class's rooms once they are no longer in the class.
        self._membership = MembershipWatch(services, self._hub)
        if bus is not None:
            # Start-up runs the bus (app servers in the process publish on it too).
            bus.listener = self._hub.crossing
        metrics.CONNECTIONS.set_function(lambda: len(self._clients))
        metrics.ROOMS_LOADED.set_function(lambda: len(self._hub.hosted()))
        # Filled by start-up once the site's address is known; empty means "no browser
        # origin is trusted", so only clients that send no Origin (terminal) get in.
        self.allowed_origins: set[str] = set()
        self._clients: set[Client] = set()
        # Connections by when they are next due a ping, soonest first: every due time is
        # "now + the interval", so appending keeps the order.
        self._due_pings: deque[tuple[float, Client]] = deque()
        self._pings_per_tick = pings_per_tick
        self._shutdown = trio.Event()
        self._all_gone = trio.Event()
        self._server_name_given = server_name is not None

    @property
    def clients(self) -> int:
        return len(self._clients)

    def rooms_hosted(self) -> int:
        return len(self._hub.hosted())

    async def serve(self, host: str, port: int, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until begin_shutdown() (then close every client with 1001) or cancellation.
        `task_status.started` gets the bound port."""
        try:
            await self._serve_all(host, port, task_status)
        finally:
            # The departures of the connections that ended last (their attendance is
            # written by a task of the nursery, gone now), within the database's timeouts.
            with trio.CancelScope(shield=True):
                await self._hub.departures.write()

    async def _serve_all(self, host: str, port: int, task_status: Any) -> None:
        async with trio.open_nursery() as connections:
            listener = trio.CancelScope()

            async def listen(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                with listener:
                    sockets = await trio.open_tcp_listeners(port, host=host)
                    async with trio.open_nursery() as accepting:
                        for one in sockets:
                            accepting.start_soon(self._accept, one, connections)
                        task_status.started(sockets)

            listeners = await connections.start(listen)
            bound = listeners[0].socket.getsockname()[1]
            if not self._server_name_given:
                self._hub.server_name = f"{host}:{bound}"
            connections.start_soon(self._hub.lease.start, self._hub.server_name)
            connections.start_soon(lambda: self._hub.follow_database(
                interval=self._relay_interval))
            connections.start_soon(self._hub.watch.follow)
            connections.start_soon(self._session_watch.run)
            connections.start_soon(self._membership.run)
            connections.start_soon(self._keepalive)
            task_status.started(bound)
            await self._shutdown.wait()
            listener.cancel()
            self._hub.closing = True
            for client in list(self._clients):
                client.disconnect(CLOSE_GOING_AWAY, "server shutting down")
            with trio.move_on_after(SHUTDOWN_GRACE):
                if self._clients:
                    await self._all_gone.wait()
            connections.cancel_scope.cancel()

    def begin_shutdown(self) -> None:
        self._shutdown.set()

    # -- one connection ------------------------------------------------------------------

    async def _accept(self, listener: trio.SocketListener, connections: trio.Nursery) -> None:
        """trio.serve_tcp's loop, without its close of each connection's stream when the
        handler returns (`aclose_forcefully`: a checkpoint in a cancelled scope, two task
        steps and a Cancelled raised, for a socket `_connection` has closed already; at the
        end of a lecture that was thousands at once)."""
        async with listener:
            while True:
                connections.start_soon(self._handler, await accept(listener, log))

    async def _handler(self, stream: trio.SocketStream) -> None:
        try:
            await self._counted_connection(stream)
        finally:
            stream.socket.close()  # (nothing to do when `_connection` took the socket)

    async def _counted_connection(self, stream: trio.SocketStream) -> None:
        """`_connection` within the per-address cap; over it, a 503 handshake answer."""
        address = _address_of(stream)
        if self._per_address.acquire(address):
            try:
                await self._connection(stream)
            finally:
                self._per_address.release(address)
            return
        async with stream:
            if self._refusing >= MAX_REFUSING:
                return
            self._refusing += 1
            try:
                with trio.move_on_after(REFUSE_TIMEOUT):
                    async with trio.open_nursery() as websocket_tasks:
                        request = await wrap_server_stream(websocket_tasks, stream)
                        await request.reject(503, body=b"too many connections from your "
                                                       b"address; try again soon")
                        websocket_tasks.cancel_scope.cancel()
            except Exception as exc:
                log.debug("refusing %s: %r", _peer(stream), exc)
            finally:
                self._refusing -= 1

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One TCP connection, from WebSocket handshake to close. Whatever goes wrong in it,
        trio-websocket's own reader task included (it can raise on a ping that crosses our
        close frame), ends this connection only: it never reaches the listener's nursery,
        where it would stop the server."""
        frames, size = self._outbox_limits
        outbox = Outbox(max_frames=frames, max_bytes=size)
        # From here on the outbox is the socket's only writer (see outbox.py).
        wire = OutboxStream.take(stream, outbox, self._closing)
        try:
            async with trio.open_nursery() as websocket_tasks:
                with trio.move_on_after(HANDSHAKE_TIMEOUT) as handshake:
                    request = await wrap_server_stream(websocket_tasks, wire,
                                                       max_message_size=HARD_MESSAGE_LIMIT)
                if not handshake.cancelled_caught:
                    await self._handle(request, outbox, websocket_tasks)
                websocket_tasks.cancel_scope.cancel()
        except Exception as exc:
            log.warning("connection from %s ended in error: %r", wire.peer, exc)
        finally:
            wire.close()

    async def _handle(self, request: WebSocketRequest, outbox: Outbox,
                      tasks: trio.Nursery) -> None:
        admitted = await self._admit(request)
        if admitted is None:
            return
        user, token = admitted
        if not self._per_user.acquire(user.id):
            await request.reject(429, body=b"too many connections for this user; close one")
            return
        try:
            await self._serve(request, outbox, user, token, tasks)
        finally:
            self._per_user.release(user.id)

    async def _serve(self, request: WebSocketRequest, outbox: Outbox, user: User,
                     token: str, tasks: trio.Nursery) -> None:
        """The connection's life as a member: this task reads; a writer runs beside it in
        `tasks` (the connection's nursery, trio-websocket's reader's too) only while bytes
        wait for the socket (see outbox.py): no nursery of its own, which cost every idle
        connection its memory too."""
        ws = await request.accept()
        started = trio.current_time()
        client = Client(user=user, outbox=outbox, ws=ws)
        self._clients.add(client)
        self._due_pings.append((trio.current_time() + self._ping_interval, client))
        self._session_watch.watch(client, token)
        self._hub.connected(client)
        try:
            with client.scope:
                outbox.start_writer = lambda: tasks.start_soon(self._write, client)
                if len(outbox):
                    outbox.start_writer()
                await self._read(client, ws)
        finally:
            outbox.start_writer = None
            if client.ping is not None:
                client.ping.cancel()
            with trio.CancelScope(shield=True):
                await self._hub.disconnected(client)
                if ws.closed is None:  # (a peer that closed first needs no close frame)
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await ws.aclose(client.close_code, client.close_reason or None)
                client.outbox.close()  # before the socket closes, whatever aclose managed
                # Only now: shutdown cancels the connection tasks once all are gone, and
                # the closing handshake above needs trio-websocket's reader task.
                self._clients.discard(client)
                self._session_watch.forget(client)
                access.info("WS %s 101 %.1fs user=%s close=%s", request.path,
                            trio.current_time() - started, user.id, client.close_code)
                if self._shutdown.is_set() and not self._clients:
                    self._all_gone.set()

    async def _admit(self, request: WebSocketRequest) -> tuple[User, str] | None:
        """The user and their session token, or None once the handshake was refused."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in request.headers}
        path = request.path.split("?", 1)[0]
        if path != WS_PATH:
            await request.reject(404, body=b"no such WebSocket endpoint; use /ws")
            return None
        origin = headers.get("origin")
        if origin is not None and origin not in self.allowed_origins:
            await request.reject(403, body=b"this origin may not open the chat")
            return None
        if len(self._clients) >= MAX_CONNECTIONS:
            await request.reject(503, body=b"too many connections; try again soon")
            return None
        token = None
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        else:
            token = parse_cookie_header(headers.get("cookie", "")).get(SESSION_COOKIE)
        try:
            user = await self._services.accounts.user_for_token(token)
        except ClassroomError:
            await request.reject(503, body=b"the database is unavailable; retry shortly")
            return None
        if user is None or token is None:
            await request.reject(401, body=b"sign in first")
            return None
        return user, token

    async def _read(self, client: Client, ws: WebSocketConnection) -> None:
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            try:
                envelope = parse_envelope(frame)
            except EnvelopeError as exc:
                if self._flood.admit(client, None):
                    client.error(exc.code, exc.message, ref=exc.ref)
                continue
            if not self._flood.admit(client, envelope):
                continue
            try:
                with trio.fail_after(EVENT_TIMEOUT):
                    await self._dispatcher.dispatch(client, envelope)
            except ClassroomError as exc:
                client.error(exc.code, exc.message, ref=envelope.ref)
            except trio.TooSlowError:
                client.error("unavailable", "the server took too long; the event may not "
                             "have been stored", ref=envelope.ref)
            except Overflow:
                client.disconnect(CLOSE_TRY_AGAIN_LATER, "too slow; resume from your last seq")
                return
            except Exception:
                # A bug must cost this event, not every connection of the server (an
                # exception leaving this task would cancel the whole listener).
                log.exception("event %r from user %s failed", envelope.event, client.user.id)
                client.error("internal", "the server failed to handle this event",
                             ref=envelope.ref)

    async def _write(self, client: Client) -> None:
        """Write what waits in the outbox, then end (the outbox starts another when bytes
        wait again)."""
        try:
            await client.outbox.drain(until_idle=True)
        except Overflow:
            client.disconnect(CLOSE_TRY_AGAIN_LATER, "too slow; resume from your last seq")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # Closed: trio-websocket closed the socket while we waited to write to it.
            client.scope.cancel()
        else:
            if client.outbox.closed:
                client.scope.cancel()

    async def _keepalive(self) -> None:
        """Ping each quiet connection every ping interval (from when it opened, or its last
        pong); one that does not answer within the ping timeout is dropped. One task starts
        the pings due (see PING_TICK), and each ping waits for its pong in a task of its
        own only meanwhile: a sleeping task per connection cost about 2 KiB of each idle
        connection's memory."""
        tick = min(PING_TICK, self._ping_interval / PING_TICKS)
        async with trio.open_nursery() as pings:
            while True:
                await trio.sleep(tick)
                now = trio.current_time()
                started = 0
                due = self._due_pings
                while due and due[0][0] <= now and started < self._pings_per_tick:
                    _, client = due.popleft()
                    if client in self._clients and client.ping is None:
                        client.ping = trio.CancelScope()
                        pings.start_soon(self._ping, client)
                        started += 1

    async def _ping(self, client: Client) -> None:
        assert client.ping is not None
        try:
            with client.ping:
                with trio.move_on_after(self._ping_timeout) as waited:
                    try:
                        await client.ws.ping()
                    except ConnectionClosed:
                        client.scope.cancel()
                        return
                    except Exception as exc:
                        # This connection's trouble, not the server's (this task's nursery
                        # is every connection's).
                        log.debug("ping of user %s failed: %r", client.user.id, exc)
                        client.scope.cancel()
                        return
                if waited.cancelled_caught:
                    log.info("user %s: no pong in %.1f s, dropping", client.user.id,
                             self._ping_timeout)
                    client.disconnect(CLOSE_GOING_AWAY, "no answer to ping")
        finally:
            client.ping = None
            if client in self._clients:
                self._due_pings.append((trio.current_time() + self._ping_interval, client))
