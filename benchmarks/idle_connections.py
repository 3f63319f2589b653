"""Idle WebSocket connections: how many one process holds, and what each one costs.

Starts a real `classroom serve` process, sets up one class whose students are enough for the
largest step (straight in the database, like fanout.py), connects the instructor and one probe
member to the class's live room, then adds authenticated connections in steps, each joining
that room and then staying idle (they send nothing; a cheap reader per connection drains what
the server pushes and answers its pings, which come every 20 s). After each step, once every
connection has caught up, it reports the server's RSS and open descriptors (Linux /proc), its
CPU use while idle, and the live path beside the idle crowd: median time for one more client
to connect and join (it then hangs up), and for an instructor's message to reach the probe
member (each message also waits for every idle member to receive it before the next).

`kib_per_connection` is the RSS growth over step 0 (instructor and probe already connected)
divided by the idle connections added. A step 0 is always run first.

    python benchmarks/idle_connections.py                    # 0, 1000, 2000, 5000
    python benchmarks/idle_connections.py --steps 0 500 1000 --db sqlite:///tmp/idle.db
    python benchmarks/idle_connections.py --steps 5000 --over 60  # a join storm, paced
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import cpu_seconds, report, server_process
from benchmarks.fanout import RawClient, join, setup
from chat.server import MAX_CONNECTIONS

CONNECT_BATCH: Final = 100
JOIN_PROBES: Final = 5
MESSAGE_PROBES: Final = 20
IDLE_WINDOW: Final = 5.0
# Descriptors the load generator needs besides its connections (probes, database, stdio).
FD_MARGIN: Final = 50
_MESSAGE: Final = b'{"event":"message"'
_PRESENCE: Final = b'{"event":"presence"'


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard one (the server, started after, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def rss_kib(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int | str) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class IdleRoom:
    """The room, its instructor, its probe member and the idle crowd, with their readers."""

    def __init__(self, host: str, port: int, room_id: int, nursery: trio.Nursery) -> None:
        self.host, self.port, self.room_id = host, port, room_id
        self.nursery = nursery
        self.teacher: RawClient | None = None
        self.idle: list[RawClient] = []
        self.alive = 0
        self.failed = 0
        self.ref = 1
        # The message being waited for: its `"text":"..."` bytes, who has it so far.
        self.token = b"\0"
        self.seen = 0
        self.expected = 0
        self.all_seen = trio.Event()
        self.probe_seen = trio.Event()
        self.probe_at = 0.0
        # ms from connecting to the room/join answer, for each idle member of the last step;
        # and `presence` frames the idle members received (a join storm's cost).
        self.join_ms: list[float] = []
        self.presence_frames = 0

    async def enter(self, token: str) -> RawClient:
        client = await RawClient.connect(self.host, self.port, token)
        await join(client, self.room_id)
        return client

    async def start(self, teacher_token: str, probe_token: str) -> None:
        self.teacher = await self.enter(teacher_token)
        self.nursery.start_soon(self._teacher_reader, self.teacher)
        probe = await self.enter(probe_token)
        self.nursery.start_soon(self._probe_reader, probe)

    async def add_idle(self, tokens: list[str], *, over: float = 0.0) -> None:
        """Connect and join each; CONNECT_BATCH at a time, or (`over` > 0) one by one at a
        steady pace spread over that many seconds (a class arriving, not a stampede)."""
        async def one(token: str) -> None:
            started = time.monotonic()
            try:
                client = await self.enter(token)
                self.join_ms.append((time.monotonic() - started) * 1000)
            except (OSError, ConnectionError, RuntimeError, trio.BrokenResourceError) as exc:
                self.failed += 1
                if self.failed <= 5:
                    print(f"connection failed: {exc!r}", file=sys.stderr)
                return
            self.idle.append(client)
            self.alive += 1
            self.nursery.start_soon(self._idle_reader, client)

        if over > 0:
            began, gap = trio.current_time(), over / max(1, len(tokens))
            async with trio.open_nursery() as paced:
                for i, token in enumerate(tokens):
                    await trio.sleep_until(began + i * gap)
                    paced.start_soon(one, token)
            return
        for start in range(0, len(tokens), CONNECT_BATCH):
            async with trio.open_nursery() as batch:
                for token in tokens[start:start + CONNECT_BATCH]:
                    batch.start_soon(one, token)

    async def _idle_reader(self, client: RawClient) -> None:
        try:
            async for payload in client.frames():
                if payload.startswith(_MESSAGE) and self.token in payload:
                    self.seen += 1
                    if self.seen >= self.expected:
                        self.all_seen.set()
                elif payload.startswith(_PRESENCE):
                    self.presence_frames += 1
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.alive -= 1
        print("an idle connection was closed by the server", file=sys.stderr)

    async def _probe_reader(self, client: RawClient) -> None:
        async for payload in client.frames():
            if payload.startswith(_MESSAGE) and self.token in payload:
                self.probe_at = time.monotonic()
                self.probe_seen.set()
        raise RuntimeError("the server closed the probe member's connection")

    async def _teacher_reader(self, client: RawClient) -> None:
        async for payload in client.frames():
            if payload.startswith(b'{"event":"error"'):
                print("error:", payload[:200].decode(), file=sys.stderr)
        raise RuntimeError("the server closed the instructor's connection")

    async def message(self) -> float:
        """Instructor -> room; ms until the probe member has it, returning once every idle
        member has it too (so the server is quiet again)."""
        assert self.teacher is not None
        text = f"m{self.ref}-{os.urandom(4).hex()}"
        self.token = f'"text":"{text}"'.encode()
        self.seen, self.expected = 0, self.alive
        self.all_seen, self.probe_seen = trio.Event(), trio.Event()
        if self.expected == 0:
            self.all_seen.set()
        self.ref += 1
        started = time.monotonic()
        await self.teacher.send(f'{{"event":"message","data":{{"room_id":{self.room_id},'
                                f'"text":"{text}"}},"ref":{self.ref}}}')
        with trio.fail_after(120):
            await self.probe_seen.wait()
            await self.all_seen.wait()
        return (self.probe_at - started) * 1000

    async def join_once(self, token: str) -> float:
        """ms for a new connection's handshake and room/join answer; it then hangs up."""
        started = time.monotonic()
        client = await self.enter(token)
        elapsed = (time.monotonic() - started) * 1000
        await client.stream.aclose()
        return elapsed


async def run_steps(chat_url: str, db_url: str, steps: list[int],
                    server_pid: str, over: float = 0.0) -> list[dict[str, Any]]:
    started = time.monotonic()
    teacher_token, tokens, room_id = await setup(db_url, steps[-1] + 2)
    print(f"setup: {len(tokens)} students in {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    probe_token, joiner_token, idle_tokens = tokens[0], tokens[1], tokens[2:]
    parts = urlsplit(chat_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8001
    rows: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        room = IdleRoom(host, port, room_id, nursery)
        await room.start(teacher_token, probe_token)
        base_rss = 0
        for step in steps:
            connect_started = time.monotonic()
            room.join_ms, room.presence_frames = [], 0
            await room.add_idle(idle_tokens[len(room.idle):step], over=over)
            connect_s = time.monotonic() - connect_started
            await room.message()  # everyone has caught up with the joins' presence frames
            storm = sorted(room.join_ms)
            presence_per_member = room.presence_frames / max(1, room.alive)
            cpu_before = cpu_seconds(server_pid)
            await trio.sleep(IDLE_WINDOW)
            idle_cpu = cpu_seconds(server_pid) - cpu_before
            rss, fds = rss_kib(server_pid), open_fds(server_pid)
            joins = []
            for _ in range(JOIN_PROBES):
                joins.append(await room.join_once(joiner_token))
                await trio.sleep(0.1)  # the server notices the hang-up...
                await room.message()  # ...and everyone has its presence frames
            messages = [await room.message() for _ in range(MESSAGE_PROBES)]
            if step == steps[0]:
                base_rss = rss
            connections = room.alive
            rows.append({
                "connections": connections,
                "rss_mib": rss / 1024,
                "kib_per_connection": ((rss - base_rss) / connections if connections
                                       else "-"),
                "fds": fds,
                "join_ms": statistics.median(joins),
                "message_ms": statistics.median(messages),
                "connect_s": round(connect_s, 1),
                # The step's joins, 100 at a time: p99 of connect + join answer, and presence
                # frames per idle member while they joined.
                "storm_join_p99_ms": (round(storm[int(0.99 * (len(storm) - 1))], 1)
                                      if storm else "-"),
                "presence_per_member": round(presence_per_member, 1),
                "idle_cpu_pct": 100 * idle_cpu / IDLE_WINDOW,
            })
            print(rows[-1], file=sys.stderr)
        nursery.cancel_scope.cancel()
    for client in room.idle:
        await client.stream.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1000, 2000, 5000],
                        help="idle connections to hold at each step (0 is added)")
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--over", type=float, default=0.0, metavar="SECONDS",
                        help="pace each step's joins evenly over this many seconds "
                             "(default: 100 at a time, as fast as they go)")
    args = parser.parse_args()
    steps = sorted({0, *args.steps})
    limit = raise_fd_limit()
    fits = [s for s in steps if s + FD_MARGIN <= limit]
    if fits != steps:
        print(f"NOTE: the open-file limit is {limit} (RLIMIT_NOFILE, soft raised to hard), so "
              f"this process (and the server, which inherits it) cannot hold more than about "
              f"{limit - FD_MARGIN} connections; skipping steps {steps[len(fits):]}. Raise "
              f"the hard limit (ulimit -Hn, limits.conf) to run them.", file=sys.stderr)
        steps = fits
    if steps[-1] + 3 > MAX_CONNECTIONS:
        print(f"NOTE: the chat server refuses connections past {MAX_CONNECTIONS} "
              "(chat.server.MAX_CONNECTIONS); larger steps will count failures.",
              file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db or f"sqlite:///{tmp}/bench.db"
        with server_process(db_url) as urls:
            rows = trio.run(run_steps, urls["chat"], db_url, steps, urls["pid"], args.over)
    report("idle_connections", ["connections", "rss_mib", "kib_per_connection", "fds",
                                "join_ms", "message_ms", "connect_s", "storm_join_p99_ms",
                                "presence_per_member", "idle_cpu_pct"],
           rows)


if __name__ == "__main__":
    main()
