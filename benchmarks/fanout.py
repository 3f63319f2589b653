"""WebSocket fan-out: one room, many members, one sender.

Starts a real `classroom serve` process, connects N members with a minimal raw WebSocket
client (so the measuring side stays cheap: it counts frames and parses only the probes'
payloads), has the instructor send M messages with a bounded window of unacknowledged ones,
and reports deliveries/s and end-to-end latency percentiles (send -> a probe member's read,
wall clock, same machine).

    python benchmarks/fanout.py --members 100 1000 --messages 200
    python benchmarks/fanout.py --db mysql://root@127.0.0.1:3306/bench --members 1000
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import cpu_seconds, percentile, report, server_process
from classroom.accounts import _HASHER, hash_token
from classroom.clock import utcnow
from storage import open_storage

PROBES = 20
WINDOW = 8
_TEXT_STAMP = re.compile(rb'"text":"(\d+)"')


def masked_frame(text: str) -> bytes:
    """A client text frame; the all-zero mask is legal and keeps this side cheap."""
    payload = text.encode()
    n = len(payload)
    if n <= 125:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class RawClient:
    def __init__(self, stream: trio.SocketStream, rest: bytes) -> None:
        self.stream = stream
        self.buf = bytearray(rest)
        # The reader answers pings while another task may be sending.
        self.sending = trio.Lock()

    @classmethod
    async def connect(cls, host: str, port: int, token: str) -> RawClient:
        stream = await trio.open_tcp_stream(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(stream, rest)

    async def send(self, text: str) -> None:
        async with self.sending:
            await self.stream.send_all(masked_frame(text))

    async def frames(self) -> Any:
        """Yield text payloads; answers pings."""
        while True:
            while True:
                frame = self._parse()
                if frame is None:
                    break
                opcode, payload = frame
                if opcode == 0x9:
                    async with self.sending:
                        await self.stream.send_all(struct.pack("!BB", 0x8A, 0x80 | len(payload))
                                                   + b"\0\0\0\0" + payload)
                elif opcode == 0x8:
                    return
                elif opcode == 0x1:
                    yield payload
            chunk = await self.stream.receive_some(262144)
            if not chunk:
                return
            self.buf += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        opcode, size = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, at = struct.unpack_from("!H", buf, 2)[0], 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, at = struct.unpack_from("!Q", buf, 2)[0], 10
        if len(buf) < at + size:
            return None
        payload = bytes(buf[at:at + size])
        del buf[:at + size]
        return opcode, payload


async def setup(db_url: str, members: int) -> tuple[str, list[str], int]:
    """Instructor + students + class + live room straight in the database (signing up a
    thousand users through argon2 would measure hashing, not fan-out)."""
    password_hash = _HASHER.hash("benchmark-password")
    now = utcnow()
    tag = os.urandom(3).hex()
    async with open_storage(db_url) as storage:
        await storage.init_schema()

        async def person(name: str) -> tuple[Any, str]:
            user = await storage.create_user(name, name, password_hash, now)
            token = base64.urlsafe_b64encode(os.urandom(32)).decode()
            await storage.create_auth_session(hash_token(token), user.id, now,
                                              now.replace(year=now.year + 1))
            return user, token

        teacher, teacher_token = await person(f"t{tag}")
        classroom = await storage.create_classroom("bench", "", f"B{tag}".upper(), teacher, now)
        tokens = []
        for i in range(members):
            user, token = await person(f"s{tag}{i}")
            await storage.add_member(classroom.id, user.id, "student", now)
            tokens.append(token)
        room = await storage.create_room(classroom.id, "live", "bench", teacher.id, now)
    return teacher_token, tokens, room.id


async def join(client: RawClient, room_id: int) -> None:
    await client.send(f'{{"event":"room/join","data":{{"room_id":{room_id}}},"ref":1}}')
    async for payload in client.frames():
        if payload.startswith(b'{"event":"room/join"'):
            return
        if payload.startswith(b'{"event":"error"'):
            raise RuntimeError(payload.decode())


async def run_one(chat_url: str, db_url: str, members: int, messages: int,
                  server_pid: str) -> dict[str, Any]:
    teacher_token, tokens, room_id = await setup(db_url, members)
    return await measure(chat_url, teacher_token, tokens, room_id, messages, server_pid)


async def measure(chat_url: str, teacher_token: str, tokens: list[str], room_id: int,
                  messages: int, server_pid: str) -> dict[str, Any]:
    """Connect and join every member, then send `messages` from the instructor."""
    members = len(tokens)
    parts = urlsplit(chat_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8001
    clients: list[RawClient] = []

    async def connect(token: str) -> None:
        client = await RawClient.connect(host, port, token)
        await join(client, room_id)
        clients.append(client)

    connect_started = time.monotonic()
    for start in range(0, members, 100):
        async with trio.open_nursery() as nursery:
            for token in tokens[start:start + 100]:
                nursery.start_soon(connect, token)
    connect_seconds = time.monotonic() - connect_started
    teacher = await RawClient.connect(host, port, teacher_token)
    await join(teacher, room_id)

    received = [0] * len(clients)
    latencies: list[float] = []
    last_arrival = 0.0
    all_done = trio.Event()
    remaining = [len(clients)]

    async def read(index: int, client: RawClient, probe: bool) -> None:
        nonlocal last_arrival
        async for payload in client.frames():
            if not payload.startswith(b'{"event":"message"'):
                continue
            received[index] += 1
            if probe and (m := _TEXT_STAMP.search(payload)):
                latencies.append((time.time_ns() - int(m.group(1))) / 1e6)
            if received[index] == messages:
                last_arrival = time.monotonic()
                remaining[0] -= 1
                if remaining[0] == 0:
                    all_done.set()
                return

    acks = trio.Semaphore(WINDOW)

    async def read_acks() -> None:
        async for payload in teacher.frames():
            if payload.startswith(b'{"event":"ack"'):
                acks.release()
            elif payload.startswith(b'{"event":"error"'):
                print("error:", payload[:200].decode(), file=sys.stderr)
                acks.release()

    async with trio.open_nursery() as nursery:
        for i, client in enumerate(clients):
            nursery.start_soon(read, i, client, i < PROBES)
        nursery.start_soon(read_acks)
        started = time.monotonic()
        cpu_before = cpu_seconds(server_pid)
        client_cpu_before = time.process_time()
        for n in range(messages):
            await acks.acquire()
            await teacher.send(f'{{"event":"message","data":{{"room_id":{room_id},'
                               f'"text":"{time.time_ns()}"}},"ref":{n + 2}}}')
        with trio.move_on_after(60):
            await all_done.wait()
        nursery.cancel_scope.cancel()
    server_cpu = cpu_seconds(server_pid) - cpu_before
    client_cpu = time.process_time() - client_cpu_before
    for client in [*clients, teacher]:
        await client.stream.aclose()
    elapsed = (last_arrival or time.monotonic()) - started
    delivered = sum(received)
    return {
        "members": members,
        "messages": messages,
        "delivered": delivered,
        "lost": members * messages - delivered,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": delivered / elapsed,
        "messages_per_s": messages / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "connect_s": round(connect_seconds, 2),
        "server_cpu_us_per_delivery": 1e6 * server_cpu / max(1, delivered),
        "client_cpu_s": round(client_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000])
    # Within the instructor's burst of live events (classroom/ratelimit.py).
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db or f"sqlite:///{tmp}/bench.db"
        with server_process(db_url) as urls:
            for members in args.members:
                rows.append(trio.run(run_one, urls["chat"], db_url, members, args.messages,
                                     urls["pid"]))
    report("fanout", ["members", "messages", "delivered", "lost", "seconds",
                      "deliveries_per_s", "messages_per_s", "p50_ms", "p99_ms", "connect_s",
                      "server_cpu_us_per_delivery", "client_cpu_s"],
           rows)


if __name__ == "__main__":
    main()
