"""The chat loop (trio + trio-websocket): connect, converse until the session quits or
asks for a new connection, and come back after a back-off when the connection drops; a
thread reads typed lines meanwhile and Ctrl-C leaves cleanly."""

from __future__ import annotations

import signal
from typing import Any, Final

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from .console import _Terminal
from .display import sanitize
from .session import Backoff, ChatSession

CONNECT_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 2.0
PING_INTERVAL: Final = 15.0
PING_TIMEOUT: Final = 10.0
# A join answer carries the lab's state (steps, a student's own shared code): more than
# trio-websocket's default 1 MiB in a big lesson.
MAX_MESSAGE: Final = 8 * 1024 * 1024

CLOSE_GOING_AWAY: Final = 1001
CLOSE_ABNORMAL: Final = 1006  # no close frame: the TCP connection just ended
CLOSE_TRY_AGAIN_LATER: Final = 1013
# Handshake refusals that retrying cannot fix.
FATAL_HANDSHAKE: Final = {401: "your session is no longer valid; log in again",
                          403: "the chat server refused this client",
                          404: "no chat endpoint at that address (is --chat right?)"}



class _Wake:
    """Something changed (a typed line, a quit): wake whoever waits."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def poke(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def _chat(terminal: _Terminal, session: ChatSession, chat_url: str, token: str) -> int:
    wake = _Wake()
    with terminal.editing():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_lines, terminal, session, wake)
            nursery.start_soon(_on_interrupt, session, wake)
            code = await _connect_loop(terminal, session, chat_url, token, wake)
            nursery.cancel_scope.cancel()
    terminal.say(*session.take_output())
    if code == 0:
        terminal.say("* left the room")
    return code


async def _read_lines(terminal: _Terminal, session: ChatSession, wake: _Wake) -> None:
    while session.exit_code is None:
        line = await trio.to_thread.run_sync(terminal.read_line, abandon_on_cancel=True)
        if line is None:
            session.end_of_input()
        else:
            session.line(line)
        terminal.say(*session.take_output())
        wake.poke()


async def _on_interrupt(session: ChatSession, wake: _Wake) -> None:
    """Ctrl-C: leave cleanly (close the connection politely, exit 0)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            session.quit(0)
            wake.poke()


async def _connect_loop(terminal: _Terminal, session: ChatSession, chat_url: str,
                        token: str, wake: _Wake) -> int:
    backoff = Backoff()
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    while session.exit_code is None:
        why = "connection lost"
        try:
            async with open_websocket_url(chat_url, extra_headers=headers,
                                          connect_timeout=CONNECT_TIMEOUT,
                                          disconnect_timeout=CLOSE_TIMEOUT,
                                          max_message_size=MAX_MESSAGE) as ws:
                session.connected()
                why = await _converse(terminal, session, ws, wake)
        except ConnectionRejected as exc:
            if exc.status_code in FATAL_HANDSHAKE:
                session.fail(FATAL_HANDSHAKE[exc.status_code])
            why = f"the chat server refused the connection (HTTP {exc.status_code})"
        except DisconnectionTimeout:
            pass  # closing a connection that had already died: `why` says how
        except HandshakeError as exc:
            why = f"cannot reach the chat server at {chat_url} ({_cause(exc)})"
        except ConnectionClosed as exc:
            why = _closed_why(exc)
        except OSError as exc:
            why = f"network error: {exc}"
        if session.joined:
            backoff.reset()
        session.disconnected(why)
        terminal.say(*session.take_output())
        if session.exit_code is not None:
            break
        delay = backoff.next()
        terminal.say(f"  (reconnecting in {delay:.1f} s)")
        with trio.move_on_after(delay):
            while session.exit_code is None:
                await wake.wait()
    return session.exit_code if session.exit_code is not None else 0


def _cause(exc: HandshakeError) -> str:
    if isinstance(exc, ConnectionTimeout):
        return "timed out"
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause or exc) or type(cause or exc).__name__


def _closed_why(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None or reason.code == CLOSE_ABNORMAL:
        return "connection lost"
    if reason.code == CLOSE_TRY_AGAIN_LATER:
        return "the server dropped us for falling behind; catching up"
    if reason.code == CLOSE_GOING_AWAY:
        return "the chat server is going away (restarting?)"
    text = f": {sanitize(reason.reason)}" if reason.reason else ""
    return f"connection closed ({reason.code}{text})"


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class _Dead(Exception):
    """No pong in time: the connection is gone even if TCP has not noticed."""


async def _converse(terminal: _Terminal, session: ChatSession, ws: WebSocketConnection,
                    wake: _Wake) -> str:
    """Run one connection until the session quits or asks for a new connection; raises
    ConnectionClosed when the server goes away. Returns why it ended."""
    async def reader() -> None:
        while True:
            frame = await ws.get_message()
            session.receive(frame)
            terminal.say(*session.take_output())
            wake.poke()

    async def writer() -> None:
        while True:
            for frame in session.take_frames():
                await ws.send_message(frame)
            if session.exit_code is not None or session.want_reconnect:
                return
            await wake.wait()

    async def pinger() -> None:
        while True:
            await trio.sleep(PING_INTERVAL)
            with trio.move_on_after(PING_TIMEOUT) as waited:
                await ws.ping()
            if waited.cancelled_caught:
                raise _Dead

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(pinger)
            await writer()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        closed, rest = group.split(ConnectionClosed)
        if rest is not None:
            dead, rest = rest.split(_Dead)
            if dead is not None and rest is None:
                return "the chat server stopped answering"
            raise
        assert closed is not None
        raise _first_leaf(closed) from None
    if session.exit_code is not None:
        return "leaving"
    return "reconnecting"
