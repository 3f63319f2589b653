"""Idle WebSocket connections and join storms: what each connection costs, and how joining
and the live path fare while a whole class arrives.

Starts a real `classroom serve` process, sets up one class whose students are enough for the
largest step (straight in the database, like fanout.py), connects the instructor and one probe
member to the class's live room, then adds authenticated connections in steps, each joining
that room and then staying idle (they send nothing; a cheap reader per connection drains what
the server pushes and answers its pings, which come every 20 s). The idle crowd lives in
`--crowds` load-generator processes of its own (`--crowd` below), so neither the measuring
side nor the server shares a Python process with thousands of clients' readers.

Each step reports:
- memory: the server's RSS and open descriptors (Linux /proc) once every connection has
  caught up, and `kib_per_connection`, the RSS growth over step 0 (instructor and probe
  already connected) divided by the idle connections added;
- the step's joins (the storm): p50/p99 from opening the TCP connection to the `room/join`
  answer, `presence` frames each member got meanwhile, and the instructor's messages sent
  every STORM_MESSAGE_EVERY s during it: p50/p99 until the probe member has each;
- after it: the server's CPU while idle, the median time for one more client to connect and
  join (it then hangs up), and for an instructor's message to reach the probe member (each
  waits for every idle member to receive it before the next).

    python benchmarks/idle_connections.py                    # 0, 1000, 2000, 5000
    python benchmarks/idle_connections.py --steps 0 500 1000 --db sqlite:///tmp/idle.db
    python benchmarks/idle_connections.py --steps 5000 --over 60  # a join storm, paced
    python benchmarks/idle_connections.py --steps 10000      # memory at 10,000

The open-file limit (RLIMIT_NOFILE) is raised to its hard limit in this process; the server
and the crowds inherit it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import cpu_seconds, percentile, report, server_process
from benchmarks.fanout import RawClient, join, setup
from chat.server import MAX_CONNECTIONS

# Joins in flight at once per crowd when a step is not paced (`--over 0`).
CONNECT_BATCH: Final = 100
CROWDS: Final = 2
# A join not answered in this long counts as failed (the server's own limit is 20 s).
JOIN_TIMEOUT: Final = 60.0
# A crowd says how many of its clients lack a message after this long, rather than wait on.
EXPECT_TIMEOUT: Final = 60.0
JOIN_PROBES: Final = 5
MESSAGE_PROBES: Final = 20
IDLE_WINDOW: Final = 5.0
# During a storm the instructor sends a message this often (the rate limit allows 20/s).
STORM_MESSAGE_EVERY: Final = 0.5
# Descriptors a process needs besides its connections (probes, database, stdio).
FD_MARGIN: Final = 50
# The instructor, the probe member and the one-off joiner.
OWN_CONNECTIONS: Final = 3
_MESSAGE: Final = b'{"event":"message"'
_PRESENCE: Final = b'{"event":"presence"'
_ERROR: Final = b'{"event":"error"'
_TEXT: Final = re.compile(rb'"text":"([^"]*)"')
_ROOT: Final = Path(__file__).resolve().parent.parent


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


# -- a crowd: one load-generator process -------------------------------------------------


class _Lines:
    """Lines from a byte stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = b""

    async def next(self) -> str:
        while b"\n" not in self._buf:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()


class CrowdWorker:
    """The `--crowd` process: joins the clients it is told to (at the times it is told),
    keeps them idle, and says when all of them have a given message. Commands come one JSON
    object a line on stdin; answers go one a line to stdout."""

    def __init__(self, host: str, port: int, room_id: int, nursery: trio.Nursery) -> None:
        self.host, self.port, self.room_id = host, port, room_id
        self.nursery = nursery
        self.alive = 0
        self.failed = 0
        self.presence_frames = 0
        # Clients that have each message (by text) so far, and the one being waited for.
        self.seen: dict[bytes, int] = {}
        self.waiting = b""
        self.all_seen = trio.Event()

    async def join(self, tokens: list[str], began: float, offsets: list[float]) -> None:
        """Each client connects at `began + offset` (wall clock, shared with the other
        crowds), or, with no offsets, CONNECT_BATCH at a time as fast as they go."""
        latencies: list[float] = []
        limit = trio.Semaphore(CONNECT_BATCH)

        async def one(token: str) -> None:
            started = time.monotonic()
            try:
                with trio.fail_after(JOIN_TIMEOUT):
                    client = await RawClient.connect(self.host, self.port, token)
                    await join(client, self.room_id)
            except (OSError, ConnectionError, RuntimeError, trio.BrokenResourceError,
                    trio.TooSlowError) as exc:
                self.failed += 1
                if self.failed <= 5:
                    print(f"connection failed: {exc!r}", file=sys.stderr)
                return
            finally:
                if not offsets:
                    limit.release()
            latencies.append((time.monotonic() - started) * 1000)
            self.alive += 1
            self.nursery.start_soon(self._reader, client)

        self.presence_frames = 0
        async with trio.open_nursery() as joining:
            for i, token in enumerate(tokens):
                if offsets:
                    await trio.sleep(max(0.0, began + offsets[i] - time.time()))
                else:
                    await limit.acquire()
                joining.start_soon(one, token)
        self._answer({"joined": latencies, "failed": self.failed, "alive": self.alive})

    async def _reader(self, client: RawClient) -> None:
        try:
            async for payload in client.frames():
                if payload.startswith(_MESSAGE) and (found := _TEXT.search(payload)):
                    text = found.group(1)
                    self.seen[text] = self.seen.get(text, 0) + 1
                    if text == self.waiting and self.seen[text] >= self.alive:
                        self.all_seen.set()
                elif payload.startswith(_PRESENCE):
                    self.presence_frames += 1
                elif payload.startswith(_ERROR) and b'"ref":1,' in payload:
                    # The join failed after its answer (history replay timed out): the
                    # server let this client go from the room.
                    self.failed += 1
                    print(f"join failed after its answer: {payload[:200]!r}", file=sys.stderr)
                    break
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            print("an idle connection was closed by the server", file=sys.stderr)
        self.alive -= 1
        await client.stream.aclose()

    async def expect(self, text: str) -> None:
        """Answer once every client here has the message with this text (it may have
        arrived before the command)."""
        self.waiting, self.all_seen = text.encode(), trio.Event()
        self.seen = {self.waiting: self.seen.get(self.waiting, 0)}
        if self.seen[self.waiting] < self.alive:
            with trio.move_on_after(EXPECT_TIMEOUT):
                await self.all_seen.wait()
        self._answer({"seen": text, "presence_frames": self.presence_frames,
                      "alive": self.alive, "missing": self.alive - self.seen[self.waiting]})

    def _answer(self, answer: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


async def crowd_main() -> None:
    commands = _Lines(trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))
    first = json.loads(await commands.next())
    async with trio.open_nursery() as nursery:
        worker = CrowdWorker(first["host"], first["port"], first["room_id"], nursery)
        while True:
            try:
                command = json.loads(await commands.next())
            except EOFError:
                break
            if "join" in command:
                await worker.join(command["join"], command["began"], command["offsets"])
            elif "expect" in command:
                await worker.expect(command["expect"])
        nursery.cancel_scope.cancel()


class Crowds:
    """The measuring side's handle on the crowd processes."""

    def __init__(self, procs: list[trio.Process]) -> None:
        self._procs = procs
        self._lines = [_Lines(p.stdout) for p in procs]  # type: ignore[arg-type]
        self.alive = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, count: int, host: str, port: int, room_id: int) -> Any:
        procs = []
        try:
            for _ in range(count):
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "benchmarks.idle_connections", "--crowd"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_ROOT)
                procs.append(proc)
            crowds = cls(procs)
            await crowds._tell_all({"host": host, "port": port, "room_id": room_id})
            yield crowds
        finally:
            for proc in procs:
                with contextlib.suppress(OSError, trio.BrokenResourceError,
                                         trio.ClosedResourceError):
                    assert proc.stdin is not None
                    await proc.stdin.aclose()
            with trio.move_on_after(10):
                for proc in procs:
                    await proc.wait()
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()

    async def _tell(self, index: int, command: dict[str, Any]) -> None:
        stdin = self._procs[index].stdin
        assert stdin is not None
        await stdin.send_all((json.dumps(command) + "\n").encode())

    async def _tell_all(self, command: dict[str, Any]) -> None:
        for index in range(len(self._procs)):
            await self._tell(index, command)

    async def _answers(self) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = [{} for _ in self._procs]

        async def read(index: int) -> None:
            answers[index] = json.loads(await self._lines[index].next())

        async with trio.open_nursery() as nursery:
            for index in range(len(self._procs)):
                nursery.start_soon(read, index)
        return answers

    async def join(self, tokens: list[str], over: float) -> tuple[list[float], int]:
        """Join these, dealt round the crowds; paced evenly over `over` seconds (when > 0).
        Returns every join's ms and the failures so far."""
        count = len(self._procs)
        gap = over / max(1, len(tokens))
        began = time.time() + 0.2
        for index in range(count):
            mine = list(range(index, len(tokens), count))
            await self._tell(index, {"join": [tokens[i] for i in mine], "began": began,
                                     "offsets": [i * gap for i in mine] if over > 0 else []})
        answers = await self._answers()
        self.alive = sum(a["alive"] for a in answers)
        return ([ms for a in answers for ms in a["joined"]],
                sum(a["failed"] for a in answers))

    async def seen(self, text: str) -> int:
        """Wait until every crowd client has the message; the presence frames they had."""
        await self._tell_all({"expect": text})
        answers = await self._answers()
        self.alive = sum(a["alive"] for a in answers)
        missing = sum(a["missing"] for a in answers)
        if missing:
            print(f"{missing} idle clients did not get message {text}", file=sys.stderr)
        return sum(a["presence_frames"] for a in answers)


# -- the measuring side -------------------------------------------------------------------


class IdleRoom:
    """The room, its instructor and its probe member; the idle crowd is in `crowds`."""

    def __init__(self, host: str, port: int, room_id: int, crowds: Crowds,
                 nursery: trio.Nursery) -> None:
        self.host, self.port, self.room_id = host, port, room_id
        self.crowds = crowds
        self.nursery = nursery
        self.teacher: RawClient | None = None
        self.ref = 1
        self.token = b"\0"
        self.probe_seen = trio.Event()
        self.probe_at = 0.0

    async def enter(self, token: str) -> RawClient:
        client = await RawClient.connect(self.host, self.port, token)
        await join(client, self.room_id)
        return client

    async def start(self, teacher_token: str, probe_token: str) -> None:
        self.teacher = await self.enter(teacher_token)
        self.nursery.start_soon(self._teacher_reader, self.teacher)
        probe = await self.enter(probe_token)
        self.nursery.start_soon(self._probe_reader, probe)

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

    async def probe_message(self) -> tuple[float, str]:
        """Instructor -> room; ms until the probe member has it, and its text."""
        assert self.teacher is not None
        text = f"m{self.ref}-{os.urandom(4).hex()}"
        self.token = f'"text":"{text}"'.encode()
        self.probe_seen = trio.Event()
        self.ref += 1
        started = time.monotonic()
        await self.teacher.send(f'{{"event":"message","data":{{"room_id":{self.room_id},'
                                f'"text":"{text}"}},"ref":{self.ref}}}')
        with trio.fail_after(120):
            await self.probe_seen.wait()
        return (self.probe_at - started) * 1000, text

    async def message(self) -> tuple[float, int]:
        """The same, returning once every idle member has it too (so the server is quiet
        again); with the presence frames the crowd got since its last join."""
        ms, text = await self.probe_message()
        with trio.fail_after(120):
            presence = await self.crowds.seen(text)
        return ms, presence

    async def join_once(self, token: str) -> float:
        """ms for a new connection's handshake and room/join answer; it then hangs up."""
        started = time.monotonic()
        client = await self.enter(token)
        elapsed = (time.monotonic() - started) * 1000
        await client.stream.aclose()
        return elapsed

    async def storm(self, tokens: list[str], over: float) -> tuple[list[float], int,
                                                                    list[float]]:
        """The crowd joins; meanwhile the instructor's messages are timed to the probe."""
        messages: list[float] = []
        done = trio.Event()

        async def talk() -> None:
            while not done.is_set():
                messages.append((await self.probe_message())[0])
                with trio.move_on_after(STORM_MESSAGE_EVERY):
                    await done.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(talk)
            joins, failed = await self.crowds.join(tokens, over)
            done.set()
        return joins, failed, messages


async def run_steps(chat_url: str, db_url: str, steps: list[int], server_pid: str,
                    over: float = 0.0, crowds: int = CROWDS) -> list[dict[str, Any]]:
    started = time.monotonic()
    teacher_token, tokens, room_id = await setup(db_url, steps[-1] + 2)
    print(f"setup: {len(tokens)} students in {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    probe_token, joiner_token, idle_tokens = tokens[0], tokens[1], tokens[2:]
    parts = urlsplit(chat_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8001
    rows: list[dict[str, Any]] = []
    async with Crowds.started(crowds, host, port, room_id) as crowd, \
            trio.open_nursery() as nursery:
        room = IdleRoom(host, port, room_id, crowd, nursery)
        await room.start(teacher_token, probe_token)
        base_rss = 0
        added = 0
        for step in steps:
            cpu_before = cpu_seconds(server_pid)
            connect_started = time.monotonic()
            joins, failed, storm_messages = await room.storm(idle_tokens[added:step], over)
            connect_s = time.monotonic() - connect_started
            storm_cpu = cpu_seconds(server_pid) - cpu_before
            joined = step - added
            added = step
            _, presence = await room.message()  # everyone has caught up
            presence_per_member = presence / max(1, crowd.alive)
            cpu_before = cpu_seconds(server_pid)
            await trio.sleep(IDLE_WINDOW)
            idle_cpu = cpu_seconds(server_pid) - cpu_before
            rss, fds = rss_kib(server_pid), open_fds(server_pid)
            join_probes = []
            for _ in range(JOIN_PROBES):
                join_probes.append(await room.join_once(joiner_token))
                await trio.sleep(0.1)  # the server notices the hang-up...
                await room.message()  # ...and everyone has its presence frames
            messages = [(await room.message())[0] for _ in range(MESSAGE_PROBES)]
            if step == steps[0]:
                base_rss = rss
            connections = crowd.alive
            rows.append({
                "connections": connections,
                "rss_mib": rss / 1024,
                "kib_per_connection": ((rss - base_rss) / connections if connections
                                       else "-"),
                "fds": fds,
                "join_ms": statistics.median(join_probes),
                "message_ms": statistics.median(messages),
                "connect_s": round(connect_s, 1),
                # The step's joins: connect + join answer, presence frames per idle member
                # meanwhile, the instructor's messages to the probe during them.
                "storm_join_p50_ms": round(percentile(joins, 50), 1) if joins else "-",
                "storm_join_p99_ms": round(percentile(joins, 99), 1) if joins else "-",
                "storm_message_p50_ms": (round(percentile(storm_messages, 50), 1)
                                         if joins else "-"),
                "storm_message_p99_ms": (round(percentile(storm_messages, 99), 1)
                                         if joins else "-"),
                "storm_cpu_ms_per_join": (round(1000 * storm_cpu / joined, 2) if joined
                                          else "-"),
                "failed": failed,
                "presence_per_member": round(presence_per_member, 1),
                "idle_cpu_pct": 100 * idle_cpu / IDLE_WINDOW,
                "load_average": round(os.getloadavg()[0], 1),
            })
            print(rows[-1], file=sys.stderr)
        nursery.cancel_scope.cancel()
    return rows


COLUMNS: Final = ["connections", "rss_mib", "kib_per_connection", "fds", "join_ms",
                  "message_ms", "connect_s", "storm_join_p50_ms", "storm_join_p99_ms",
                  "storm_message_p50_ms", "storm_message_p99_ms", "storm_cpu_ms_per_join",
                  "failed", "presence_per_member", "idle_cpu_pct", "load_average"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1000, 2000, 5000],
                        help="idle connections to hold at each step (0 is added)")
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--over", type=float, default=0.0, metavar="SECONDS",
                        help="pace each step's joins evenly over this many seconds "
                             "(default: 100 at a time per crowd, as fast as they go)")
    parser.add_argument("--crowds", type=int, default=CROWDS,
                        help=f"load-generator processes holding the idle clients ({CROWDS})")
    parser.add_argument("--crowd", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crowd:
        trio.run(crowd_main)
        return
    steps = fit_steps(sorted({0, *args.steps}))
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db or f"sqlite:///{tmp}/bench.db"
        with server_process(db_url, "--no-http") as urls:
            rows = trio.run(run_steps, urls["chat"], db_url, steps, urls["pid"], args.over,
                            args.crowds)
    report("idle_connections", COLUMNS, rows)


def fit_steps(steps: list[int]) -> list[int]:
    """The steps the open-file limit and the server's connection cap allow (each capped:
    a step of 10,000 holds MAX_CONNECTIONS - OWN_CONNECTIONS idle clients)."""
    limit = raise_fd_limit()
    if steps[-1] + FD_MARGIN > limit:
        print(f"NOTE: the open-file limit is {limit} (RLIMIT_NOFILE, soft raised to hard), so "
              f"the server (which inherits it) cannot hold more than about "
              f"{limit - FD_MARGIN} connections. Raise the hard limit (ulimit -Hn, "
              f"limits.conf) to run more.", file=sys.stderr)
    cap = min(limit - FD_MARGIN, MAX_CONNECTIONS - OWN_CONNECTIONS)
    return sorted({min(step, cap) for step in steps})


if __name__ == "__main__":
    main()
