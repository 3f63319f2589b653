"""The terminal client (`classroom chat`).

Unit tests drive the sans-IO parts (commands, event lines, seq de-duplication, reconnect
policy, menus) with no sockets. The end-to-end tests run the real client under a
pseudo-terminal against a real `classroom serve` process, with a second client speaking
the protocol over a WebSocket, and a TCP proxy in between the terminal client and the
chat server so a test can cut the connection and keep the client away for a while.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, open_websocket_url

from chat.terminal import (
    Backoff,
    ChatSession,
    Command,
    LineEditor,
    LineSplitter,
    Roster,
    SeqTracker,
    Viewer,
    _closed_why,
    chat_url_for,
    format_event,
    open_rooms,
    parse_command,
    pick,
    sanitize,
)
from tests.conftest import database_url
from tests.e2e.server_process import ServerProcess, running_server

ROOM: Final = 7
TEACHER: Final = {"id": 1, "username": "grace", "display_name": "Grace Hopper",
                  "role": "instructor", "online": True}
ANN: Final = {"id": 2, "username": "ann", "display_name": "Ann Lee", "role": "student",
              "online": True}
BOB: Final = {"id": 3, "username": "bob", "display_name": "Bob", "role": "student",
              "online": False}
AT: Final = "2026-03-04T09:15:30.123Z"


def frame(event: str, data: dict[str, Any], *, seq: int | None = None,
          ref: int | None = None) -> str:
    obj: dict[str, Any] = {"event": event, "data": data}
    if seq is not None:
        obj["seq"] = seq
    if ref is not None:
        obj["ref"] = ref
    return json.dumps(obj)


def message(seq: int, text: str, sender: dict[str, Any] = TEACHER,
            event: str = "message", **extra: Any) -> str:
    return frame(event, {"room_id": ROOM, "from": {"id": sender["id"],
                                                   "name": sender["display_name"]},
                         "text": text, "at": AT, **extra}, seq=seq)


def sent(session: ChatSession) -> list[dict[str, Any]]:
    return [json.loads(f) for f in session.take_frames()]


def joined_session(you: dict[str, Any] = ANN) -> ChatSession:
    """A session whose first join was answered."""
    session = ChatSession(ROOM, tz=UTC)
    session.connected()
    [join] = sent(session)
    assert join["event"] == "room/join" and join["data"] == {"room_id": ROOM}
    session.receive(frame("room/join", {
        "room": {"id": ROOM, "kind": "live", "topic": "", "open": True, "last_seq": 0},
        "you": {k: you[k] for k in ("id", "username", "display_name", "role")},
        "members": [TEACHER, ANN, BOB]}, ref=join["ref"]))
    session.take_output()
    return session


# -- commands -----------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "command"), [
    ("hello there", Command("say", "hello there")),
    ("   ", Command("nothing")),
    ("//etc/hosts is a file", Command("say", "/etc/hosts is a file")),
    ("/to ann see me after class", Command("to", "ann see me after class")),
    ("/TO Ann Lee hi", Command("to", "Ann Lee hi")),
    ("/mentor I am stuck on step 2", Command("mentor", "I am stuck on step 2")),
    ("/who", Command("who")),
    ("/history", Command("history")),
    ("/history ann", Command("history", "ann")),
    ("/quit", Command("quit")),
    ("/exit", Command("quit")),
    ("/help", Command("help")),
    ("/to", Command("unknown", "usage: /to NAME TEXT")),
    ("/mentor   ", Command("unknown", "usage: /mentor TEXT")),
    ("/dance", Command("unknown", "unknown command /dance; /help lists the commands")),
])
def test_parse_command(line: str, command: Command) -> None:
    assert parse_command(line) == command


def test_to_finds_the_student_by_username_or_display_name() -> None:
    roster = Roster()
    roster.reset([TEACHER, ANN, BOB, {"id": 4, "username": "ann2", "display_name": "Ann",
                                      "role": "student"}])
    found = roster.split_target("ann hello", exclude=1)
    assert not isinstance(found, str) and (found[0].id, found[1]) == (2, "hello")
    found = roster.split_target("Ann Lee  two words", exclude=1)
    assert not isinstance(found, str) and (found[0].id, found[1]) == (2, "two words")
    found = roster.split_target("ANN hi", exclude=1)  # username "ann" beats name "Ann"
    assert not isinstance(found, str) and found[0].id == 2
    found = roster.split_target('"Bob" quoted', exclude=1)
    assert not isinstance(found, str) and (found[0].id, found[1]) == (3, "quoted")
    assert roster.split_target("carol hi", exclude=1) == (
        "nobody called 'carol' in this room; /who lists the members")
    assert isinstance(roster.split_target("grace hi", exclude=1), str)  # not yourself


def test_typed_lines_become_events() -> None:
    session = joined_session(TEACHER)
    session.line("hello class")
    session.line("/to Ann Lee please stay")
    session.line("/history bob")
    frames = sent(session)
    assert [(f["event"], f["data"]) for f in frames] == [
        ("message", {"room_id": ROOM, "text": "hello class"}),
        ("message/to_client", {"room_id": ROOM, "user_id": 2, "text": "please stay"}),
        ("message/user", {"room_id": ROOM, "user_id": 3}),
    ]
    assert len({f["ref"] for f in frames}) == 3
    session.line("/mentor hi")
    session.line("/to nobody hi")
    assert session.take_output() == [
        "! /mentor is for students; use /to NAME TEXT",
        "! nobody called 'nobody' in this room; /who lists the members"]
    assert sent(session) == []

    student = joined_session(ANN)
    student.line("/mentor stuck")
    student.line("/to grace hi")
    student.line("/history")
    assert [(f["event"], f["data"]) for f in sent(student)] == [
        ("message/to_mentor", {"room_id": ROOM, "text": "stuck"}),
        ("message/user", {"room_id": ROOM})]
    assert student.take_output()[0].startswith("! only the instructor")


def test_quit_help_who_and_end_of_input() -> None:
    session = joined_session()
    session.line("/help")
    assert any("/mentor TEXT" in line for line in session.take_output())
    bob = {"user_id": 3, "name": "Bob", "online": True}
    session.receive(frame("presence", {"room_id": ROOM, "changes": [bob], "online_count": 3}))
    assert session.take_output() == ["* Bob is online"]
    session.receive(frame("presence", {"room_id": ROOM, "changes": [bob], "online_count": 3}))
    assert session.take_output() == []  # no change, no line
    session.line("/who")
    assert session.take_output() == [
        "3 online:",  # a student is shown who is online, not the class's members
        "  ● Grace Hopper @grace  instructor",
        "  ● Ann Lee @ann (you)  student",
        "  ● Bob @bob  student"]
    session.line("/quit")
    assert session.exit_code == 0
    teacher = joined_session(TEACHER)  # the instructor's list is the whole class
    teacher.line("/who")
    assert teacher.take_output()[0] == "3 members, 2 online:"
    other = joined_session()
    other.end_of_input()
    assert other.exit_code == 0


def test_who_in_a_big_room_counts_everyone_online_and_lists_the_names_it_has() -> None:
    """A big room's join answer lists a student only the first names; the count is the
    server's (join answer, then each presence batch), and one never listed who leaves is
    told of but not kept."""
    session = ChatSession(ROOM, tz=UTC)
    session.connected()
    [join] = sent(session)
    session.receive(frame("room/join", {
        "room": {"id": ROOM, "kind": "live", "topic": "", "open": True, "last_seq": 0},
        "you": {k: ANN[k] for k in ("id", "username", "display_name", "role")},
        "members": [TEACHER, ANN, BOB], "online_count": 40}, ref=join["ref"]))
    assert session.take_output()[0].endswith("; 40 online. /help lists the commands.")
    gone = {"user_id": 9, "name": "Zed", "online": False}
    session.receive(frame("presence", {"room_id": ROOM, "changes": [gone], "online_count": 39}))
    assert session.take_output() == ["* Zed is offline"]
    session.line("/who")
    assert session.take_output()[0] == "39 online (2 listed):"


# -- events -> lines ----------------------------------------------------------------------

def test_event_lines() -> None:
    roster = Roster()
    roster.reset([TEACHER, ANN, BOB])
    as_ann = Viewer(2, roster, UTC)
    as_teacher = Viewer(1, roster, UTC)
    grace = {"id": 1, "name": "Grace Hopper"}
    ann = {"id": 2, "name": "Ann Lee"}
    assert format_event("message", {"from": grace, "text": "hi", "at": AT}, as_ann) == [
        "[09:15] Grace Hopper: hi"]
    assert format_event("message", {"from": ann, "text": "one\ntwo", "at": AT}, as_ann) == [
        "[09:15] Ann Lee: one\n                 two"]
    assert format_event("message/to_client", {"from": grace, "user_id": 2, "text": "psst",
                                              "at": AT}, as_ann) == [
        "[09:15] [private] Grace Hopper -> you: psst"]
    assert format_event("message/to_client", {"from": grace, "user_id": 2, "text": "psst"},
                        as_teacher) == ["[private] you -> Ann Lee: psst"]
    assert format_event("message/to_mentor", {"from": ann, "text": "help"}, as_teacher) == [
        "[private] Ann Lee -> you: help"]
    assert format_event("message/to_mentor", {"from": ann, "text": "help"}, as_ann) == [
        "[private] you -> instructor: help"]
    assert format_event("signal", {"from": ann, "value": "HELP"}, as_teacher) == [
        "* Ann Lee signals HELP"]
    assert format_event("steps/all", {"from": grace, "steps": [{"name": "Sockets"}]},
                        as_ann) == ["* Grace Hopper set 1 step(s):", "    1. Sockets"]
    assert format_event("alerts", {"status": "warning", "message": "db slow"}, as_ann) == [
        "[WARNING] db slow"]
    assert format_event("presence", {"user_id": 3, "online": True}, as_ann) == []


def test_terminal_escapes_from_others_are_neutralised() -> None:
    assert sanitize("\x1b[2J\x1b]0;owned\x07hi\rX\x9b") == (
        "\ufffd[2J\ufffd]0;owned\ufffdhi\ufffdX\ufffd")
    roster = Roster()
    line = format_event("message", {"from": {"id": 9, "name": "\x1b[31mEve"},
                                    "text": "\x08\x08gone"}, Viewer(1, roster))
    assert "\x1b" not in line[0] and "\x08" not in line[0]


def test_errors_are_shown_against_what_was_sent() -> None:
    session = joined_session()
    session.line("x" * 5000)
    [msg] = sent(session)
    session.receive(frame("error", {"code": "too_large", "message": "message is too long"},
                          ref=msg["ref"]))
    assert session.take_output() == ["! not sent ('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…'):"
                                     " message is too long"]
    session.receive(frame("error", {"code": "invalid", "message": "bad frame"}))
    assert session.take_output() == ["! bad frame"]


def test_private_history_answer() -> None:
    session = joined_session(TEACHER)
    session.line("/history ann")
    [ask] = sent(session)
    session.receive(frame("message/user", {"room_id": ROOM, "user_id": 2, "messages": [
        {"event": "message/to_mentor", "seq": 3,
         "data": {"room_id": ROOM, "from": {"id": 2, "name": "Ann Lee"}, "text": "q?"}}]},
        ref=ask["ref"]))
    assert session.take_output() == ["--- private messages with Ann Lee (1) ---",
                                     "[private] Ann Lee -> you: q?", "--- end ---"]


# -- seqs and resuming --------------------------------------------------------------------

def test_seq_tracker() -> None:
    seqs = SeqTracker()
    assert [seqs.accept(s) for s in (1, 2, 2, 5, 3, 6)] == [True, True, False, True,
                                                            False, True]
    assert seqs.last == 6


def test_resume_asks_after_the_last_seq_and_prints_nothing_twice() -> None:
    session = joined_session()
    session.receive(message(1, "first"))
    session.receive(message(2, "second"))
    session.line("typed while connected")
    [mine] = sent(session)
    assert len(session.take_output()) == 2

    session.disconnected("connection lost")
    assert session.take_output() == [
        "! connection lost",
        "! not confirmed before the connection dropped: 'typed while connected' "
        "(sent again after reconnecting; stored once)"]
    session.line("typed while away")
    assert session.take_output() == ["(not connected: will send when back)"]
    assert sent(session) == []

    session.connected()
    [resume] = sent(session)  # only the resume until it is answered
    assert resume["event"] == "room/rejoin"
    assert resume["data"] == {"room_id": ROOM, "after": 2}
    session.receive(frame("room/join", {"room": {"id": ROOM}, "you": ANN,
                                        "members": [TEACHER, ANN]}, ref=resume["ref"]))
    assert session.take_output() == ["* reconnected"]
    again, away = sent(session)
    # The unconfirmed message goes again first, under its first id: the server stores it
    # once whether or not the first try arrived.
    assert again["data"]["text"] == "typed while connected" and again["id"] == mine["id"]
    assert away["data"]["text"] == "typed while away" and away["id"] != mine["id"]
    session.receive(message(2, "second"))  # a repeat is never shown
    session.receive(message(3, "while you were away"))
    session.receive(message(3, "while you were away"))
    assert session.take_output() == ["[09:15] Grace Hopper: while you were away"]
    assert mine["data"]["text"] == "typed while connected"


def test_instructor_resumes_with_rehost_and_refusals_end_the_client() -> None:
    session = joined_session(TEACHER)
    session.receive(message(4, "x"))
    session.disconnected("closed")
    session.connected()
    [resume] = sent(session)
    assert (resume["event"], resume["data"]["after"]) == ("room/rehost", 4)
    session.receive(frame("error", {"code": "unavailable", "message": "db down"},
                          ref=resume["ref"]))
    assert session.want_reconnect and session.exit_code is None
    session.disconnected("reconnecting")
    session.connected()
    [again] = sent(session)
    session.receive(frame("error", {"code": "forbidden", "message": "removed"},
                          ref=again["ref"]))
    assert session.exit_code == 1
    assert session.take_output()[-1] == "! could not rejoin the room: removed"


def test_every_close_resumes_and_says_why() -> None:
    assert _closed_why(ConnectionClosed(CloseReason(1013, "too slow"))) == (
        "the server dropped us for falling behind; catching up")
    assert _closed_why(ConnectionClosed(CloseReason(1006, None))) == "connection lost"
    assert _closed_why(ConnectionClosed(CloseReason(1011, "\x1b[2Jboom"))) == (
        "connection closed (1011: \ufffd[2Jboom)")


def test_room_closed_ends_the_client() -> None:
    session = joined_session()
    session.receive(frame("room/closed", {"room_id": ROOM, "message": "the instructor ended"
                                          " this room"}, seq=9))
    assert session.exit_code == 0
    assert session.take_output() == ["*** the instructor ended this room",
                                     "(the room has ended; leaving)"]


def test_backoff_doubles_with_jitter_between_half_a_second_and_ten() -> None:
    low = Backoff(rng=lambda a, b: a)
    high = Backoff(rng=lambda a, b: b)
    assert [low.next() for _ in range(7)] == [0.5, 1, 2, 4, 5, 5, 5]
    assert [high.next() for _ in range(7)] == [1, 2, 4, 8, 10, 10, 10]
    high.reset()
    assert high.next() == 1
    real = Backoff()
    delays = [real.next() for _ in range(50)]
    assert all(0.5 <= d <= 10 for d in delays) and len(set(delays)) > 10


# -- menus and input ----------------------------------------------------------------------

def test_open_rooms_and_menus() -> None:
    sessions = {"sessions": [
        {"id": 4, "kind": "live", "topic": "", "open": False},
        {"id": 9, "kind": "live", "topic": "Week 3", "open": True}]}
    discussions = [{"id": 5, "kind": "discussion", "topic": "Routing", "open": True},
                   {"room": {"id": 6, "kind": "discussion", "topic": "Old",
                             "ended_at": "2026-01-01T00:00:00Z"}}]
    assert [r["id"] for r in open_rooms(sessions, discussions)] == [9, 5]
    assert open_rooms(None, None) == []
    assert [pick(a, 3) for a in ("1", " 3 ", "0", "4", "x", "")] == [0, 2, None, None,
                                                                      None, None]


def test_chat_url_discovery() -> None:
    assert chat_url_for("http://app.example:8000", None) == "ws://app.example:8001/ws"
    assert chat_url_for("https://app.example", {}) == "wss://app.example:8001/ws"
    assert chat_url_for("http://10.0.0.2:8000",
                        {"chat_url": "ws://chat.example:9000/ws"}) == "ws://chat.example:9000/ws"
    assert chat_url_for("http://10.0.0.2:8000",
                        {"chat_url": "ws://0.0.0.0:9000/ws"}) == "ws://10.0.0.2:9000/ws"


def test_line_splitter() -> None:
    split = LineSplitter()
    assert split.feed(b"he") == []
    assert split.feed(b"llo\r\nw\xc3") == ["hello"]
    assert split.feed(b"\xa9\n\n") == ["w\u00e9", ""]
    assert split.feed(b"tail") == []
    assert split.finish() == ["tail"]


# -- end to end: the real client under a pseudo-terminal ----------------------------------

PASSWORD: Final = "correct horse battery"
E2E_TIMEOUT: Final = 90
WAIT: Final = 20.0
ROOMS_MISSING: Final = "This server does not list rooms"


class ChatProxy:
    """A TCP proxy in front of the chat server. `cut()` drops every connection through it;
    while `blocked` it answers new ones with HTTP 503 (so the client's handshake fails at
    once and it backs off). A stopped upstream also gets a 503."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocked = False
        self.accepted = 0
        self._links: set[trio.CancelScope] = set()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    def cut(self) -> None:
        for scope in list(self._links):
            scope.cancel()

    async def _refuse(self, stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError):
            await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\n"
                                  b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        await stream.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.blocked:
            await self._refuse(stream)
            return
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        except OSError:
            await self._refuse(stream)
            return
        self.accepted += 1
        with trio.CancelScope() as scope:
            self._links.add(scope)
            try:
                async with stream, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, stream, upstream, nursery.cancel_scope)
                    nursery.start_soon(self._pipe, upstream, stream, nursery.cancel_scope)
            finally:
                self._links.discard(scope)

    @staticmethod
    async def _pipe(source: trio.SocketStream, sink: trio.SocketStream,
                    done: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


# Makes the pty the child's controlling terminal (so getpass can open /dev/tty and Ctrl-C
# reaches it), then becomes the real command.
_CTTY: Final = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
                " os.execv(sys.argv[1], sys.argv[1:])")


class PtyClient:
    """`classroom chat` running under a pseudo-terminal; `text` is all it has shown."""

    def __init__(self, process: trio.Process, master: trio.lowlevel.FdStream) -> None:
        self.process = process
        self.master = master
        self.text = ""
        self.raw = ""  # as written, carriage returns kept: what `screen()` replays
        self._changed = trio.Event()
        self.closed = trio.Event()

    async def pump(self) -> None:
        try:
            while True:
                try:
                    chunk = await self.master.receive_some(4096)
                except trio.BrokenResourceError as exc:  # EIO: every slave fd is closed
                    if not (isinstance(exc.__cause__, OSError)
                            and exc.__cause__.errno == errno.EIO):
                        raise
                    chunk = b""
                if not chunk:
                    break
                decoded = chunk.decode("utf-8", "replace")
                self.raw += decoded
                self.text += decoded.replace("\r", "")
                self._changed.set()
                self._changed = trio.Event()
        finally:
            self.closed.set()
            self._changed.set()

    async def expect(self, pattern: str, *, start: int = 0) -> int:
        """Wait (up to WAIT s) until `pattern`, a regex, shows at or after `start`; returns
        where it ends."""
        with trio.move_on_after(WAIT):
            while True:
                found = re.compile(pattern).search(self.text, start)
                if found:
                    return found.end()
                if self.closed.is_set():
                    break
                await self._changed.wait()
        raise AssertionError(f"{pattern!r} not shown; the terminal shows:\n{self.text}")

    async def type(self, data: str) -> None:
        await self.master.send_all(data.encode())

    def screen(self) -> list[str]:
        """The lines a terminal would show now: a carriage return goes back to the start of
        the line and later text overwrites what was there (the client blanks with spaces)."""
        lines: list[list[str]] = [[]]
        column = 0
        for char in self.raw:
            if char == "\r":
                column = 0
            elif char == "\n":
                lines.append([])
                column = 0
            else:
                line = lines[-1]
                line.extend(" " * (column + 1 - len(line)))
                line[column] = char
                column += 1
        return ["".join(line).rstrip() for line in lines]


@asynccontextmanager
async def pty_client(*args: str, program: str = "chat") -> AsyncIterator[PtyClient]:
    master, slave = os.openpty()
    command = [sys.executable, "-m", "classroom.cli", program, *args]
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", _CTTY, *command], stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True,
            env={**os.environ, "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(slave)
    client = PtyClient(process, trio.lowlevel.FdStream(master))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.pump)
            yield client
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
        await client.master.aclose()


class Api:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def call(self, method: str, path: str, token: str | None = None,
                   **body: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = await self.http.request(method, "/api/v1" + path, headers=headers,
                                         json=body if method == "POST" else None)
        assert answer.status_code < 300, answer.text
        return answer.json()

    async def sign_up(self, username: str, name: str) -> str:
        signed = await self.call("POST", "/signup", username=username, display_name=name,
                                 password=PASSWORD)
        return str(signed["token"])


class Peer:
    """The other side: a WebSocket client speaking the envelope protocol by hand."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ref = 0

    async def receive(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(await self.ws.get_message())
        return value

    async def request(self, event: str, data: dict[str, Any],
                      answer: str = "ack") -> dict[str, Any]:
        """Send; the answer carrying our ref (frames in between are dropped)."""
        self._ref += 1
        await self.ws.send_message(json.dumps({"event": event, "data": data,
                                               "ref": self._ref}))
        while True:
            got = await self.receive()
            if got.get("ref") == self._ref:
                assert got["event"] == answer, got
                return got

    async def join(self, room_id: int) -> dict[str, Any]:
        return await self.request("room/join", {"room_id": room_id}, answer="room/join")


@asynccontextmanager
async def ws_peer(chat_url: str, token: str) -> AsyncIterator[Peer]:
    async with open_websocket_url(chat_url, extra_headers=[
            (b"Authorization", f"Bearer {token}".encode())]) as ws:
        yield Peer(ws)


async def next_message(peer: Peer, event: str = "message") -> dict[str, Any]:
    """The next frame of `event`, skipping presence, acks and anything else."""
    while True:
        got = await peer.receive()
        if got["event"] == event:
            return got


async def start_class(api: Api, server: ServerProcess) -> tuple[str, str, int, int]:
    """Grace teaches Networks, Ann takes it, and a live session is open (made over the
    WebSocket, which can do it today). Returns both tokens, the class and the room."""
    grace = await api.sign_up("grace", "Grace Hopper")
    ann = await api.sign_up("ann", "Ann Lee")
    await api.call("POST", "/classrooms", grace, name="Algebra")
    created = await api.call("POST", "/classrooms", grace, name="Networks")
    classroom = created["classroom"]
    await api.call("POST", "/classrooms/join", ann, code=classroom["join_code"])
    assert server.chat_url is not None
    async with ws_peer(server.chat_url, grace) as teacher:
        made = await teacher.request("room/create", {"classroom_id": classroom["id"],
                                                     "kind": "live"}, answer="room/update")
    return grace, ann, int(classroom["id"]), int(made["data"]["room"]["id"])


def port_of(url: str | None) -> int:
    assert url is not None
    found = re.search(r":(\d+)(/|$)", url.split("://", 1)[1])
    assert found
    return int(found.group(1))


class RoomsApiMissing(Exception):
    pass


async def pick_room(client: PtyClient, at: int) -> int:
    """Choose the first room if the server lists rooms; RoomsApiMissing if it cannot."""
    shown = await client.expect(rf"Room \[1-1, q to quit\]: |{ROOMS_MISSING}", start=at)
    if ROOMS_MISSING in client.text[at:]:
        raise RoomsApiMissing
    await client.type("1\n")
    return shown


def run_story(story: Callable[[str], Awaitable[None]], backend: str, tmp_path: Path) -> None:
    """Run an end-to-end story on a fresh database in its own trio loop; skip, saying why,
    where the server cannot list rooms yet (login and the masked password were checked by
    then). A sync test because pytest-trio drops the reason of a skip inside a nursery."""
    missing = False

    async def main() -> None:
        nonlocal missing
        async with database_url(backend, tmp_path) as url:
            try:
                await story(url)
            except* RoomsApiMissing:
                missing = True

    trio.run(main)
    if missing:
        pytest.skip("SERVER SIDE MISSING: GET /api/v1/classrooms/{id}/sessions and "
                    "/discussions, listing rooms {id, kind, topic, open}")


async def test_login_refused_exits_1_without_echoing_the_password(tmp_path: Path) -> None:
    with trio.fail_after(E2E_TIMEOUT):
        async with running_server(f"sqlite:///{tmp_path / 'c.db'}",
                                  ("--http", "127.0.0.1:0", "--no-chat")) as server:
            assert server.http_url
            async with pty_client("--server", server.http_url) as client:
                await client.expect("Username: ")
                await client.type("nobody\n")
                await client.expect("Password: ")
                await client.type("not-the-password-42\n")
                await client.expect("login failed: wrong username or password")
                assert await client.process.wait() == 1
                await client.closed.wait()
                assert "not-the-password-42" not in client.text


def test_student_chats_through_reconnects_and_a_server_restart(backend: str,
                                                               tmp_path: Path) -> None:
    run_story(student_story, backend, tmp_path)


async def student_story(db_url: str) -> None:
    with trio.fail_after(E2E_TIMEOUT):
        args = ("--http", "127.0.0.1:0", "--chat", "127.0.0.1:0")
        async with running_server(db_url, args) as server, trio.open_nursery() as nursery:
            assert server.http_url and server.chat_url
            http_port, chat_port = port_of(server.http_url), port_of(server.chat_url)
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
                grace, _, _, room_id = await start_class(Api(http), server)
            proxy = ChatProxy(chat_port)
            proxy_port = await nursery.start(proxy.serve)

            async with pty_client("--server", server.http_url,
                                  "--chat", f"ws://127.0.0.1:{proxy_port}/ws") as client:
                # Log in: the password typed is never shown.
                at = await client.expect("Username: ")
                await client.type("ann\n")
                at = await client.expect("Password: ", start=at)
                await client.type(PASSWORD + "\n")
                at = await client.expect("Signed in as Ann Lee", start=at)
                assert PASSWORD not in client.text
                at = await client.expect(r"1\. Networks \(student, Grace Hopper\)", start=at)
                await client.expect(r"Class \[1-1, q to quit\]: ", start=at)
                await client.type("1\n")
                at = await pick_room(client, at)
                at = await client.expect(r"joined the live session as student", start=at)

                async with ws_peer(server.chat_url, grace) as teacher:
                    await teacher.join(room_id)
                    # Typed in the terminal -> the other client gets it.
                    await client.type("hello from the terminal\n")
                    got = await next_message(teacher)
                    assert got["data"]["text"] == "hello from the terminal"
                    assert got["data"]["from"]["name"] == "Ann Lee"
                    ann_id = got["data"]["from"]["id"]
                    # Sent by the other client -> the terminal shows it; privately too.
                    await teacher.request("message", {"room_id": room_id, "text": "hi ann"})
                    at = await client.expect(r"Grace Hopper: hi ann\n", start=at)
                    await teacher.request("message/to_client", {
                        "room_id": room_id, "user_id": got["data"]["from"]["id"],
                        "text": "see me after class"})
                    at = await client.expect(
                        r"\[private\] Grace Hopper -> you: see me after class", start=at)
                    await client.type("/mentor sure thing\n")
                    assert (await next_message(teacher, "message/to_mentor")
                            )["data"]["text"] == "sure thing"

                    # The connection drops and the client is kept away for a while: what is
                    # said meanwhile shows once it is back, exactly once.
                    proxy.blocked = True
                    proxy.cut()
                    at = await client.expect(r"reconnecting in", start=at)
                    await teacher.request("message", {"room_id": room_id,
                                                      "text": "said while you were away"})
                    await trio.sleep(1.5)  # at least one refused attempt
                    proxy.blocked = False
                    at = await client.expect(r"\* reconnected", start=at)
                    at = await client.expect("said while you were away", start=at)
                    await teacher.request("message", {"room_id": room_id, "text": "marker 1"})
                    at = await client.expect("marker 1", start=at)
                    assert client.text.count("said while you were away") == 1
                    assert client.text.count("Grace Hopper: hi ann") == 1
                    await client.type("back again\n")
                    assert (await next_message(teacher))["data"]["text"] == "back again"
                    last_seq = (await teacher.request("message", {
                        "room_id": room_id, "text": "marker 2"}))["data"]["seq"]
                    at = await client.expect("marker 2", start=at)

                # The server dies (no goodbye) and comes back on the same ports and database.
                server.process.kill()
                await server.process.wait()
                at = await client.expect(r"reconnecting in", start=at)
                async with running_server(db_url, ("--http", f"127.0.0.1:{http_port}",
                                                   "--chat", f"127.0.0.1:{chat_port}")
                                          ) as again:
                    assert again.chat_url is not None
                    async with ws_peer(again.chat_url, grace) as teacher:
                        await teacher.request("room/rehost", {"room_id": room_id,
                                                              "after": last_seq},
                                              answer="room/join")
                        await teacher.request("message", {"room_id": room_id,
                                                          "text": "after the restart"})
                        at = await client.expect("after the restart", start=at)
                        await client.type("still here\n")
                        assert (await next_message(teacher))["data"]["text"] == "still here"
                        await teacher.request("message", {"room_id": room_id,
                                                          "text": "marker 3"})
                        at = await client.expect("marker 3", start=at)
                        assert client.text.count("after the restart") == 1
                        assert client.text.count("said while you were away") == 1
                        assert client.text.count("Grace Hopper: hi ann") == 1

                        # Ctrl-C leaves cleanly, exit 0, and the room sees Ann go.
                        await client.type("\x03")
                        assert await client.process.wait() == 0
                        # (Asked afresh: if she joined this server less than a presence
                        # interval ago, her arrival and departure cancel out in one batch.)
                        while True:
                            answer = await teacher.join(room_id)
                            members = {m["id"]: m["online"] for m in answer["data"]["members"]}
                            if not members[ann_id]:
                                break
                            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()


def test_instructor_private_messages_and_who(tmp_path: Path) -> None:
    run_story(instructor_story, "sqlite", tmp_path)


async def instructor_story(db_url: str) -> None:
    with trio.fail_after(E2E_TIMEOUT):
        args = ("--http", "127.0.0.1:0", "--chat", "127.0.0.1:0")
        async with running_server(db_url, args) as server:
            assert server.http_url and server.chat_url
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
                _, ann, _, room_id = await start_class(Api(http), server)
                health = (await http.get("/api/v1/healthz")).json()
            # The client finds the chat server through healthz's "chat_url".
            # SERVER SIDE MISSING while healthz lacks it: then the address is given.
            told = [] if "chat_url" in health else ["--chat", server.chat_url]
            async with ws_peer(server.chat_url, ann) as student, \
                    pty_client("--server", server.http_url, "--user", "grace",
                               *told) as client:
                await student.join(room_id)
                at = await client.expect("Password: ")
                await client.type(PASSWORD + "\n")
                await client.expect(r"Class \[1-2, q to quit\]: ", start=at)
                menu = re.search(r"(\d)\. Networks \(instructor\)", client.text[at:])
                assert menu, client.text
                await client.type(menu.group(1) + "\n")
                at = await pick_room(client, at)
                at = await client.expect("joined the live session as instructor", start=at)
                await client.type("/who\n")
                at = await client.expect(r"● Ann Lee @ann  student", start=at)
                await client.type("/to Ann Lee welcome, Ann\n")
                got = await next_message(student, "message/to_client")
                assert got["data"]["text"] == "welcome, Ann"
                await student.request("message/to_mentor", {"room_id": room_id,
                                                            "text": "thanks!"})
                at = await client.expect(r"\[private\] Ann Lee -> you: thanks!", start=at)
                await client.type("/history ann\n")
                at = await client.expect(r"--- private messages with Ann Lee \(2\) ---",
                                         start=at)
                await client.type("/to carol hi\n")
                at = await client.expect("nobody called 'carol'", start=at)
                await client.type("\x04")  # Ctrl-D: end of input
                assert await client.process.wait() == 0
                assert PASSWORD not in client.text


def test_line_editor_keys() -> None:
    editor = LineEditor("> ")
    assert editor.feed("helo\x7flo wor") == [] and editor.line() == "> hello wor"
    assert editor.feed("\x1b[D\x1bOA") == []  # arrow keys do nothing
    assert editor.feed("\x17world\r") == ["hello world"]
    assert editor.line() == "> "
    assert editor.feed("gone\x15kept\n\x04") == ["kept", None]
    assert editor.feed("x\x04") == [] and editor.line() == "> x"  # Ctrl-D mid-line


async def test_no_password_is_asked_for_a_server_that_is_not_there() -> None:
    with trio.fail_after(E2E_TIMEOUT):
        with trio.socket.socket() as sock:  # a port nothing listens on
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        async with pty_client("--server", f"http://127.0.0.1:{port}") as client:
            await client.expect(f"cannot reach http://127.0.0.1:{port}")
            assert await client.process.wait() == 1
            await client.closed.wait()
            assert "Password" not in client.text and "Username" not in client.text


def test_typing_survives_incoming_messages(tmp_path: Path) -> None:
    run_story(typing_story, "sqlite", tmp_path)


async def typing_story(db_url: str) -> None:
    with trio.fail_after(E2E_TIMEOUT):
        args = ("--http", "127.0.0.1:0", "--chat", "127.0.0.1:0")
        async with running_server(db_url, args) as server:
            assert server.http_url and server.chat_url
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
                grace, _, _, room_id = await start_class(Api(http), server)
            async with ws_peer(server.chat_url, grace) as teacher, \
                    pty_client("--server", server.http_url, "--user", "ann",
                               "--chat", server.chat_url) as client:
                await teacher.join(room_id)
                at = await client.expect("Password: ")
                await client.type(PASSWORD + "\n")
                await client.expect(r"Class \[1-1, q to quit\]: ", start=at)
                await client.type("1\n")
                at = await pick_room(client, at)
                at = await client.expect("joined the live session as student", start=at)
                # Half a line typed when a message arrives: the message goes above, the
                # input line comes back below it, intact.
                await client.type("half typed")
                at = await client.expect("half typed", start=at)
                await teacher.request("message", {"room_id": room_id, "text": "breaking news"})
                at = await client.expect(r"Grace Hopper: breaking news\n> half typed",
                                         start=at)
                screen = client.screen()
                news = next(i for i, line in enumerate(screen) if "breaking news" in line)
                assert "half typed" not in screen[news], screen
                assert screen[-1] == "> half typed", screen
                # Finishing the line sends it whole, and it shows once: the server's copy.
                await client.type(" line\n")
                got = await next_message(teacher)
                assert got["data"]["text"] == "half typed line"
                await client.expect(r"Ann Lee: half typed line\n", start=at)
                screen = client.screen()
                assert [line for line in screen if "half typed" in line] == [
                    line for line in screen if line.endswith("Ann Lee: half typed line")], \
                    screen
                assert screen[-1] == ">", screen
                await client.type("\x03")
                assert await client.process.wait() == 0
