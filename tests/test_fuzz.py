"""Fuzzing the real servers: random and mutated HTTP requests and WebSocket frames, generated
by hypothesis, against one HTTP server and one chat server on a real socket.

Each case must get no 5xx (HTTP) and no `internal` error event (chat); afterwards the log
must hold no traceback and no error, and both servers must still answer. The servers run in a
thread of their own (their own trio loop) so every case can use a plain blocking socket and
the servers outlive hypothesis's examples.

About 3,000 cases in all per run (well under a minute); CLASSROOM_FUZZ_SCALE=N runs N times as
many (e.g. 20 for a long run). A failure prints the case, and hypothesis shrinks it first.
Every socket call is bounded by a timeout, so a hung server fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from chat import ChatServer
from classroom import Services
from classroom.ratelimit import Rate
from classroom.rules import Role
from protocol import HTTPServer
from storage import open_storage
from web import Site

SCALE: Final = max(1, int(os.environ.get("CLASSROOM_FUZZ_SCALE", "1")))
TIMEOUT: Final = 10.0
PASSWORD: Final = "fuzzing password"
NO_PING: Final = 24 * 3600.0


def examples(count: int) -> settings:
    return settings(max_examples=count * SCALE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


# -- the servers, in a thread ----------------------------------------------------------------

class LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        """Errors and tracebacks: a server that contained a bug still logged it."""
        return [self.format(r) for r in self.records
                if r.levelno >= logging.ERROR or r.exc_info is not None]


@attrs.define
class Servers:
    http_port: int = 0
    chat_port: int = 0
    teacher_token: str = ""
    student_token: str = ""
    room_id: int = 0
    classroom_id: int = 0
    ready: threading.Event = attrs.field(factory=threading.Event)
    failed: BaseException | None = None
    stop: trio.Event | None = None
    token: trio.lowlevel.TrioToken | None = None


async def _run_servers(db_url: str, servers: Servers) -> None:
    async with open_storage(db_url) as storage:
        await storage.init_schema()
        services = Services.build(storage)
        # Limits that would refuse a fuzzer's thousands of cases are not what is tested here.
        services.accounts.max_signups_per_address = 10**9
        unlimited = {role: Rate(burst=1e9, per_second=1e9) for role in Role}
        # No keep-alive pings within a run: trio-websocket draws a ping's payload from the
        # global `random`, and hypothesis takes any change of that state during a draw, from
        # this thread too, for a strategy using `random` (a flaky failure whenever a ping
        # fell inside a draw, more often the faster the servers answer).
        chat = ChatServer(services, event_rates=unlimited, ping_interval=NO_PING)
        async with trio.open_nursery() as nursery:
            servers.chat_port = await nursery.start(chat.serve, "127.0.0.1", 0)
            site = Site(services, chat_url=f"ws://127.0.0.1:{servers.chat_port}/ws")
            http = HTTPServer(site.handler, error_page=site.error_page)
            servers.http_port = await nursery.start(http.serve, "127.0.0.1", 0)
            teacher = await services.accounts.sign_up("fuzzteacher", "Teacher", PASSWORD)
            student = await services.accounts.sign_up("fuzzstudent", "Student", PASSWORD)
            classroom = await services.classes.create(teacher.user, "Fuzzing 101")
            await services.classes.join(student.user, classroom.join_code)
            room = await services.rooms.open(teacher.user, classroom.id, "live")
            servers.teacher_token, servers.student_token = teacher.token, student.token
            servers.room_id, servers.classroom_id = room.id, classroom.id
            servers.stop = trio.Event()
            servers.token = trio.lowlevel.current_trio_token()
            servers.ready.set()
            await servers.stop.wait()
            chat.begin_shutdown()
            http.begin_shutdown()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Servers, LogRecorder]]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    recorder = LogRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    servers = Servers()

    def run() -> None:
        try:
            trio.run(_run_servers, f"sqlite:///{db}", servers)
        except BaseException as exc:
            servers.failed = exc
            servers.ready.set()

    thread = threading.Thread(target=run, name="fuzzed-servers", daemon=True)
    thread.start()
    assert servers.ready.wait(30), "the servers did not start"
    assert servers.failed is None, servers.failed
    try:
        yield servers, recorder
    finally:
        if servers.token is not None and servers.stop is not None:
            trio.from_thread.run_sync(servers.stop.set, trio_token=servers.token)
        thread.join(15)
        root.removeHandler(recorder)
    assert not thread.is_alive(), "the servers did not shut down"
    assert servers.failed is None, servers.failed


# -- HTTP ------------------------------------------------------------------------------------

def http_exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading it all
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """The status of every response in `answer` (status lines at line starts)."""
    found = []
    for line in answer.split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[0] in (b"HTTP/1.1", b"HTTP/1.0") and parts[1].isdigit():
            found.append(int(parts[1]))
    return found


# RFC 9112 answers a transfer coding the server does not know with 501 and a version it does
# not speak with 505: refusals of the request (h11's hints), not failures of the server.
CLIENT_CAUSED_5XX: Final = frozenset({501, 505})


def assert_no_server_error(answer: bytes, sent: bytes) -> None:
    bad = [s for s in statuses(answer) if s >= 500 and s not in CLIENT_CAUSED_5XX]
    assert not bad, f"{bad} for {sent[:300]!r}: {answer[:300]!r}"


def seeds(servers: Servers) -> list[bytes]:
    cookie = f"classroom_session={servers.teacher_token}; classroom_csrf=x"
    body = json.dumps({"username": "fuzzteacher", "password": "wrong"}).encode()
    form = b"username=a&password=b&csrf=x"
    post = json.dumps({"title": "t", "body": "b", "tags": ["x"]}).encode()
    cid = servers.classroom_id
    return [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(form), form),
        f"GET /classrooms/{cid}?tag=x HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode(),
        f"POST /api/v1/classrooms/{cid}/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        f"{servers.teacher_token}\r\nContent-Type: application/json\r\nContent-Length: "
        f"{len(post)}\r\n\r\n".encode() + post,
        b"POST /api/v1/signup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
        f"GET /rooms/{servers.room_id}/stats HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n"
        f"Connection: close\r\n\r\n".encode(),
    ]


@st.composite
def mutated(draw: st.DrawFn, seed_list: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seed_list)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "cut", "junk"]))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(
                [b"\r\n", b":", b" ", b"%", b"\x00", b"\xff", b"%zz", b"9" * 25, b"&&",
                 b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"=" * 10,
                 b"\"", b"{", b"Expect: 100-continue\r\n"]))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        elif kind == "repeat":
            end = min(len(data), at + draw(st.integers(1, 40)))
            data[at:at] = data[at:end] * draw(st.integers(1, 50))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


PATH_SEGMENTS: Final = ["api", "v1", "classrooms", "sessions", "rooms", "discussions",
                        "posts", "tags", "students", "messages", "attendance", "join", "end",
                        "login", "logout", "signup", "password", "healthz", "me", "static",
                        "stats", "roomstats", "live", "new", "1", "0", "-1", "99999999999",
                        "9" * 30, "%2e%2e", "..", "%00", "é", "%", ""]


@st.composite
def structured(draw: st.DrawFn, servers: Servers) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "GeT"]))
    segments = draw(st.lists(st.sampled_from([*PATH_SEGMENTS, str(servers.classroom_id),
                                              str(servers.room_id)]), max_size=6))
    query = draw(st.sampled_from(["", "?tag=x", "?after=-1", "?after=" + "9" * 40,
                                  "?before=x", "?next=//evil", "?tag=%ff", "?a=%"]))
    headers = [("Host", "x")]
    auth = draw(st.sampled_from(["none", "cookie", "bearer", "bad"]))
    if auth == "cookie":
        headers.append(("Cookie", f"classroom_session={servers.teacher_token}"))
    elif auth == "bearer":
        token = draw(st.sampled_from([servers.teacher_token, servers.student_token]))
        headers.append(("Authorization", f"Bearer {token}"))
    elif auth == "bad":
        headers.append(("Cookie", draw(st.text(max_size=60).map(
            lambda t: "classroom_session=" + t.encode("ascii", "replace").decode()))))
    kind = draw(st.sampled_from(["json", "form", "none", "other"]))
    body = b""
    if kind == "json":
        headers.append(("Content-Type", "application/json"))
        body = json.dumps(draw(json_values)).encode()
    elif kind == "form":
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        body = draw(st.binary(max_size=200))
    elif kind == "other":
        headers.append(("Content-Type", draw(st.sampled_from(["text/plain", "", "json"]))))
        body = draw(st.binary(max_size=100))
    if body or method == "POST":
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} /{'/'.join(segments)}{query} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1", "replace") + b"\r\n" + body


# -- WebSocket -------------------------------------------------------------------------------

class WsClient:
    """A blocking WebSocket client over wsproto: byte-level control for fuzzing frames."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(
            host="127.0.0.1", target="/ws",
            extra_headers=[(b"authorization", f"Bearer {token}".encode())])))
        self.pending: list[Any] = []
        event = self._next_event()
        assert isinstance(event, AcceptConnection), event
        self.ref = 0
        self.closed: int | None = None
        self.last = ""  # the last fuzzed frame sent

    def _next_event(self) -> Any:
        while not self.pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
            if not data and not self.pending:
                raise ConnectionError("closed without a close frame")
        return self.pending.pop(0)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(Message(data=text)))

    def frames_until_answer(self, ref: int) -> list[dict[str, Any]]:
        """Every frame received until the answer to `ref` (included)."""
        frames: list[dict[str, Any]] = []
        text = ""
        while True:
            event = self._next_event()
            if isinstance(event, CloseConnection):
                self.closed = event.code
                return frames
            if isinstance(event, RejectConnection):
                raise AssertionError(f"rejected: {event}")
            if isinstance(event, Ping):  # the server drops clients that do not answer
                self.sock.sendall(self.ws.send(event.response()))
            if isinstance(event, TextMessage):
                text += event.data
                if not event.message_finished:
                    continue
                frame = json.loads(text)
                text = ""
                frames.append(frame)
                if frame.get("ref") == ref:
                    return frames

    def probe(self) -> list[dict[str, Any]]:
        """Frames until an event the server refuses without effect is answered: everything
        the server said about what came before."""
        self.ref += 1
        self.send_text(json.dumps({"event": "fuzz/probe", "ref": self.ref}))
        return self.frames_until_answer(self.ref)

    def close(self) -> None:
        self.sock.close()


json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=40) | st.sampled_from([2**63, -(2**63) - 1, 2**64, 0, -1]))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4),
                           max_leaves=12)
# Closes a client may cause: normal, rate limits, oversized frames, its sign-in ended.
ALLOWED_CLOSES: Final = (1000, 1008, 1009, 4401)
EVENTS: Final = ["message", "message/to_mentor", "message/to_client", "message/user",
                 "room/create", "room/join", "room/rejoin", "room/rehost", "room/leave",
                 "room/kill", "settings", "sharing/start", "sharing/end", "sharing/code_send",
                 "sharing/code_update", "steps/all", "steps/import", "steps/preview",
                 "steps/status/to_mentor", "steps/status/to_client", "steps/table",
                 "exercise", "exercise/feedback", "exercise/reset", "signal", "class/watch",
                 "class/unwatch", "sharing/code", "nope", "Message"]
FIELDS: Final = ["room_id", "text", "user_id", "after", "classroom_id", "kind", "topic",
                 "steps", "markdown", "files", "files_to_ignore", "step", "status", "value",
                 "content", "accepted", "id", "filename", "upload", "name", "language", "type"]


@st.composite
def envelopes(draw: st.DrawFn, servers: Servers) -> str:
    ids = st.sampled_from([servers.room_id, servers.classroom_id, 1, 2, 0])
    data = draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                                ids | json_values, max_size=6))
    if draw(st.booleans()):
        data["room_id"] = servers.room_id
    frame: dict[str, Any] = {"event": draw(st.sampled_from(EVENTS) | st.text(max_size=20)),
                             "data": data}
    shape = draw(st.sampled_from(["ok", "ok", "ok", "extra", "ref", "raw"]))
    if shape == "extra":
        frame[draw(st.text(max_size=5))] = draw(json_values)
    elif shape == "ref":
        frame["ref"] = draw(json_values)
    text = json.dumps(frame)
    if shape == "raw":
        text = draw(st.text(max_size=200))
    return text


@pytest.fixture(scope="module")
def member(servers: tuple[Servers, LogRecorder]) -> Iterator[list[WsClient]]:
    """The instructor's connection, joined to the room; replaced when the server closes it."""
    clients = [WsClient(servers[0].chat_port, servers[0].teacher_token)]
    yield clients
    clients[0].close()


def fresh_member(servers: Servers, clients: list[WsClient], *, token: str | None = None
                 ) -> WsClient:
    if clients[0].closed is not None:
        clients[0].close()
        clients[0] = WsClient(servers.chat_port, token or servers.teacher_token)
    return clients[0]


# -- the cases -------------------------------------------------------------------------------

def test_fuzz_http_random_bytes(servers: tuple[Servers, LogRecorder]) -> None:
    running, _ = servers

    @examples(300)
    @given(st.binary(max_size=600) | st.binary(max_size=60).map(lambda b: b"GET " + b))
    def case(data: bytes) -> None:
        assert_no_server_error(http_exchange(running.http_port, data), data)

    case()


def test_fuzz_http_mutated_requests(servers: tuple[Servers, LogRecorder]) -> None:
    running, _ = servers

    @examples(700)
    @given(mutated(seeds(running)))
    def case(data: bytes) -> None:
        assert_no_server_error(http_exchange(running.http_port, data), data)

    case()


def test_fuzz_http_structured_requests(servers: tuple[Servers, LogRecorder]) -> None:
    running, _ = servers

    @examples(700)
    @given(structured(running))
    def case(data: bytes) -> None:
        assert_no_server_error(http_exchange(running.http_port, data), data)

    case()


def test_fuzz_websocket_envelopes(servers: tuple[Servers, LogRecorder],
                                  member: list[WsClient]) -> None:
    running, _ = servers

    @examples(1200)
    @given(envelopes(running))
    def case(frame: str) -> None:
        client = fresh_member(running, member)
        for _ in range(2):
            client.ref += 1
            client.send_text(json.dumps({"event": "room/join",
                                         "data": {"room_id": running.room_id},
                                         "ref": client.ref}))
            client.frames_until_answer(client.ref)
            if client.closed is None:
                break
            # Closed while joining: after the previous case, which must have allowed it.
            assert client.closed in ALLOWED_CLOSES, (client.closed, client.last[:300])
            client = fresh_member(running, member)
        client.last = frame
        client.send_text(frame)
        said = client.probe()
        internal = [f for f in said if f.get("event") == "error"
                    and f.get("data", {}).get("code") == "internal"]
        assert not internal, f"{internal} for {frame[:300]!r}"
        assert client.closed in (None, *ALLOWED_CLOSES), (client.closed, frame[:300])

    case()


def test_fuzz_websocket_raw_frames(servers: tuple[Servers, LogRecorder]) -> None:
    running, _ = servers

    @examples(150)
    @given(st.binary(max_size=300), st.booleans())
    def case(data: bytes, framed: bool) -> None:
        client = WsClient(running.chat_port, running.student_token)
        try:
            if framed and data:
                # A well-formed frame header around random payload bytes, then mutated.
                frame = bytearray(client.ws.send(Message(data=data)))
                frame[0] = data[0] | 0x80 if len(data) % 2 else frame[0]
                client.send_raw(bytes(frame))
            else:
                client.send_raw(data)
            # A frame header may announce more bytes than were sent: the server waits for
            # them, which is right, so the probe's answer is not waited for long.
            client.sock.settimeout(0.3)
            try:
                said = client.probe()
            except (ConnectionError, TimeoutError, OSError):
                return  # a broken frame may end the connection: allowed, not a crash
            assert not [f for f in said if f.get("data", {}).get("code") == "internal"]
        finally:
            client.close()

    case()


def test_after_the_fuzzing_the_servers_answer_and_logged_no_error(
        servers: tuple[Servers, LogRecorder]) -> None:
    running, recorder = servers
    answer = http_exchange(running.http_port,
                           b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(answer) == [200], answer[:300]
    client = WsClient(running.chat_port, running.student_token)
    try:
        said = client.probe()
        assert said[-1]["data"]["code"] == "invalid"
    finally:
        client.close()
    problems = recorder.problems()
    assert not problems, "\n\n".join(problems[:5])
