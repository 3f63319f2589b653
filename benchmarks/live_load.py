"""Live load for the chat server's two speed targets (issue 10), clients in processes of
their own:

- `big_room`: one room of N members; the instructor sends M messages with a window of
  unacknowledged ones (closed loop), while the members of a few small rooms exchange paced
  messages. Reported: deliveries/s of the big room, and how long the small rooms' members
  waited meanwhile for their own events (intended send -> arrival at the other members,
  and -> the sender's ack), p50/p99/max;
- `many_rooms`: R rooms of S members each, every member sending paced messages (open loop:
  a message's latency counts from the time it was meant to be sent, so a server that
  stalls cannot hide the stall by slowing the senders down). Reported: p50/p99/max
  delivery latency and the deliveries/s achieved against the rate asked for.

Each load process drives its share of the connections on raw non-blocking sockets under one
selector (no async framework, no WebSocket library): a delivery costs this side a few
microseconds, so the server, not the load, is what is measured. Every message's text is the
wall-clock time (ns) it was meant to be sent; receivers take their latency from it.

    python -m benchmarks.live_load big --members 5000 --messages 60
    python -m benchmarks.live_load rooms --rooms 50 --size 20 --rate 20000
    (both on a throwaway MariaDB database by default; --db for another)
"""

from __future__ import annotations

import argparse
import base64
import heapq
import multiprocessing
import os
import queue
import re
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import cpu_seconds, percentile, py_spy, report, server_process

# Reads go into one buffer of this size per process (`recv_into`): a `recv(262144)`
# allocates (and maps, and unmaps) a fresh 256 KiB object each time, 10 us a call against
# 0.5, and that was over half of what the load processes cost the shared two cores.
RECEIVE: Final = 262144
# Handshakes (and joins) one load process has in flight at once.
CONNECTING: Final = 50
# The instructor's window of unacknowledged messages in the big room.
WINDOW: Final = 8
# After its goal (or the end of sending) a load process reads this long for what is on its
# way before it reports.
DRAIN: Final = 1.0
# Members of the big room whose every message's latency is recorded (the others count).
PROBES: Final = 50
# A process that only receives naps this long after each round of reads, so its sockets
# gather several frames per read: on a machine of two cores, receivers woken for every
# frame took the server's CPU (the big room's probes read up to this much later).
RECEIVER_NAP: Final = 0.002
_MESSAGE: Final = b'{"event":"message"'
_ACK: Final = b'{"event":"ack"'
_ERROR: Final = b'{"event":"error"'
_JOINED: Final = b'{"event":"room/join"'
_STAMP: Final = re.compile(rb'"text":"(\d+)')
_REF: Final = re.compile(rb'"ref":(\d+)')


def masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame; the all-zero mask is legal and keeps this side cheap."""
    n = len(payload)
    if n <= 125:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class Conn:
    """One client: handshake, join, then reading (and, for a sender, sending)."""

    __slots__ = ("acked", "buf", "closed", "expect", "index", "joined", "mode", "period",
                 "phase", "probe", "received", "room", "sent", "sent_at", "sock", "spec",
                 "window")

    def __init__(self, index: int, spec: dict[str, Any]) -> None:
        self.index = index
        self.spec = spec
        self.room: int = spec["room"]
        self.probe: bool = spec.get("probe", False)
        self.expect: int | None = spec.get("expect")
        send = spec.get("send") or {}
        self.mode: str | None = send.get("mode")
        self.period: float = send.get("period", 0.0)
        self.phase: float = send.get("phase", 0.0)
        self.window: int = send.get("window", WINDOW)
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.joined = False
        self.closed: int | None = None  # the close code, once closed
        self.received = 0
        self.sent = 0
        self.acked = 0
        self.sent_at: dict[int, int] = {}  # ref -> intended send time (ns)


class LoadProcess:
    """The connections of one load process, and what they measured."""

    def __init__(self, host: str, port: int, specs: list[dict[str, Any]]) -> None:
        self.host, self.port = host, port
        self.conns = [Conn(i, spec) for i, spec in enumerate(specs)]
        self.selector = selectors.EpollSelector()
        self.scratch = bytearray(RECEIVE)
        self.view = memoryview(self.scratch)
        self.errors: dict[str, int] = {}
        self.latencies: list[tuple[float, float]] = []  # (intended send s, ms) deliveries
        self.acks: list[tuple[float, float]] = []  # (intended send s, ms) senders' acks
        self.window = (0.0, 0.0)  # arrivals counted between these (wall clock s)
        self.in_window = 0
        self.last_arrival = 0.0
        self.sending = True

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # -- connecting ----------------------------------------------------------------------

    def connect_all(self) -> None:
        waiting = list(reversed(self.conns))
        busy = 0
        deadline = time.monotonic() + 120
        while (waiting or busy) and time.monotonic() < deadline:
            while waiting and busy < CONNECTING:
                conn = waiting.pop()
                if self._open(conn):
                    busy += 1
            for key, _ in self.selector.select(timeout=1.0):
                conn = key.data
                was_joined = conn.joined
                self._readable(conn)
                if not was_joined and (conn.joined or conn.closed is not None):
                    busy -= 1
        self.conns = [c for c in self.conns if c.joined and c.closed is None]

    def _open(self, conn: Conn) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=10)
        except OSError as exc:
            self.error(f"connect: {exc.strerror or exc}")
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (f"GET /ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {conn.spec['token']}"
             "\r\n\r\n").encode())
        sock.setblocking(False)
        conn.sock = sock
        self.selector.register(sock, selectors.EVENT_READ, conn)
        return True

    def _close(self, conn: Conn, code: int, why: str) -> None:
        if conn.closed is None:
            conn.closed = code
            self.error(why)
            if conn.sock is not None:
                self.selector.unregister(conn.sock)
                conn.sock.close()

    # -- reading -------------------------------------------------------------------------

    def _readable(self, conn: Conn) -> None:
        assert conn.sock is not None
        try:
            got = conn.sock.recv_into(self.scratch)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(conn, 1006, f"recv: {exc.strerror or exc}")
            return
        if not got:
            self._close(conn, 1006, "closed by the server without a close frame")
            return
        conn.buf += self.view[:got]
        if conn.sock is not None and not conn.joined and conn.buf[:4] == b"HTTP":
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(conn.buf[:end].split(b"\r\n", 1)[0])
            del conn.buf[:end + 4]
            if b" 101 " not in status:
                self._close(conn, 0, f"handshake: {status.decode(errors='replace')}")
                return
            self._send(conn, b'{"event":"room/join","data":{"room_id":%d},"ref":1}'
                       % conn.room)
        self._frames(conn)

    def _frames(self, conn: Conn) -> None:
        buf = conn.buf
        at = 0
        now = 0
        size_buf = len(buf)
        while size_buf - at >= 2:
            opcode, size = buf[at] & 0x0F, buf[at + 1] & 0x7F
            start = at + 2
            if size == 126:
                if size_buf - at < 4:
                    break
                size, start = struct.unpack_from("!H", buf, at + 2)[0], at + 4
            elif size == 127:
                if size_buf - at < 10:
                    break
                size, start = struct.unpack_from("!Q", buf, at + 2)[0], at + 10
            end = start + size
            if end > size_buf:
                break
            at = end
            if opcode == 0x1:
                if buf.startswith(_MESSAGE, start):
                    conn.received += 1
                    now = now or time.time_ns()
                    if self.window[0] <= now / 1e9 <= self.window[1]:
                        self.in_window += 1
                    if conn.probe and (m := _STAMP.search(buf, start, end)):
                        sent = int(m.group(1))
                        self.latencies.append((sent / 1e9, (now - sent) / 1e6))
                elif buf.startswith(_ACK, start):
                    if (m := _REF.search(buf, start, end)) and (
                            sent := conn.sent_at.pop(int(m.group(1)), 0)):
                        now = now or time.time_ns()
                        conn.acked += 1
                        if conn.probe:  # (the big room's instructor waits for its fan-out)
                            self.acks.append((sent / 1e9, (now - sent) / 1e6))
                elif buf.startswith(_JOINED, start):
                    conn.joined = True
                elif buf.startswith(_ERROR, start):
                    text = bytes(buf[start:end])
                    self.error("error event: " + re.sub(rb'.*"code":"([^"]*)".*', rb"\1",
                                                        text).decode(errors="replace"))
                    if b'"ref":1,' in text or b'"ref":1}' in text:  # the join was refused
                        self._close(conn, 0, "join refused")
                        return
                    if (m := _REF.search(buf, start, end)):
                        conn.sent_at.pop(int(m.group(1)), None)
                        conn.acked += 1
            elif opcode == 0x9:
                self._send_raw(conn, masked_frame(bytes(buf[start:end]), 0xA))
            elif opcode == 0x8:
                code = struct.unpack_from("!H", buf, start)[0] if size >= 2 else 1005
                self._close(conn, code, f"closed by the server ({code})")
                return
        if now:
            self.last_arrival = now / 1e9
        del buf[:at]

    # -- sending -------------------------------------------------------------------------

    def _send_raw(self, conn: Conn, frame: bytes) -> None:
        if conn.sock is None or conn.closed is not None:
            return
        try:
            conn.sock.send(frame)  # small frames: the socket buffer takes them whole
        except OSError as exc:
            self._close(conn, 1006, f"send: {exc.strerror or exc}")

    def _send(self, conn: Conn, payload: bytes) -> None:
        self._send_raw(conn, masked_frame(payload))

    def _message(self, conn: Conn, intended_ns: int) -> None:
        conn.sent += 1
        ref = conn.sent + 1
        conn.sent_at[ref] = intended_ns
        self._send(conn, b'{"event":"message","data":{"room_id":%d,"text":"%d"},"ref":%d,'
                   b'"id":"b%d-%d-%d"}' % (conn.room, intended_ns, ref, os.getpid(),
                                           conn.index, ref))

    # -- the run -------------------------------------------------------------------------

    def idle(self, seconds: float) -> None:
        for key, _ in self.selector.select(timeout=seconds):
            self._readable(key.data)

    def goal_met(self) -> bool:
        """Every member expecting a count has it and every windowed sender is done."""
        return all((c.expect is None or c.received >= c.expect)
                   and (c.mode != "window" or c.acked >= c.spec["send"]["count"])
                   for c in self.conns if c.closed is None)

    def finite(self) -> bool:
        return any(c.expect is not None or c.mode == "window" for c in self.conns)

    def run(self, start: float, send_until: float, until: float, window: tuple[float, float],
            stop: Any) -> dict[str, Any]:
        """Send and read until `until` (or, for a process with a goal, the goal plus DRAIN;
        or `stop` set by the parent). Paced senders send from `start` to `send_until`."""
        self.window = window
        paced = [(start + c.phase, c.index) for c in self.conns if c.mode == "paced"]
        heapq.heapify(paced)
        finite = self.finite()
        receiving_only = all(c.mode is None for c in self.conns)
        goal_at: float | None = None
        while time.time() < start:
            time.sleep(min(0.01, max(0.0, start - time.time())))
        for conn in self.conns:
            if conn.mode == "window":
                for _ in range(min(conn.window, conn.spec["send"]["count"])):
                    self._message(conn, time.time_ns())
        checked = 0.0
        cpu_before = time.process_time()
        while True:
            now = time.time()
            if now >= until:
                break
            if now - checked > 0.05:
                checked = now
                if stop.is_set():
                    break
                if finite and goal_at is None and self.goal_met():
                    goal_at = now
                    self.sending = False
                if goal_at is not None and now >= goal_at + (DRAIN if paced else 0):
                    break
            if now >= send_until:
                self.sending = False
            while self.sending and paced and paced[0][0] <= now:
                due, index = heapq.heappop(paced)
                conn = self.conns[index]
                if conn.closed is None:
                    self._message(conn, int(due * 1e9))
                    heapq.heappush(paced, (due + conn.period, index))
            timeout = 0.01
            if self.sending and paced:
                timeout = max(0.0, min(timeout, paced[0][0] - time.time()))
            ready = self.selector.select(timeout=timeout)
            for key, _ in ready:
                conn = key.data
                self._readable(conn)
                if conn.mode == "window" and conn.closed is None:
                    total = conn.spec["send"]["count"]
                    while conn.sent < total and conn.sent - conn.acked < conn.window:
                        self._message(conn, time.time_ns())
            if receiving_only and ready:
                time.sleep(RECEIVER_NAP)
        result = {
            "cpu_s": time.process_time() - cpu_before,
            "connections": len(self.conns),
            "received": sum(c.received for c in self.conns),
            "expected": sum(c.expect or 0 for c in self.conns),
            "sent": sum(c.sent for c in self.conns),
            "unacked": sum(len(c.sent_at) for c in self.conns),
            "closed": sum(c.closed is not None for c in self.conns),
            "in_window": self.in_window,
            "last_arrival": self.last_arrival,
            "goal_at": goal_at,
            "latencies": self.latencies,
            "acks": self.acks,
            "errors": self.errors,
        }
        return result

    def close_all(self) -> None:
        for conn in self.conns:
            if conn.sock is not None and conn.closed is None:
                conn.sock.close()


def _process(index: int, host: str, port: int, specs: list[dict[str, Any]], control: Any,
             results: Any, stop: Any, release: Any) -> None:
    load = LoadProcess(host, port, specs)
    load.connect_all()
    results.put(("ready", index, {"connections": len(load.conns), "errors": load.errors}))
    while True:  # reading meanwhile: pings are answered, so the server keeps us
        try:
            go = control.get_nowait()
            break
        except queue.Empty:
            load.idle(0.05)
    if go is None:
        return
    results.put(("done", index, load.run(go["start"], go["send_until"], go["until"],
                                         tuple(go["window"]), stop)))
    # Members stay until every process is done: 2,500 leaving at once while the others
    # still count their waits measured the departures, not the fan-out (mass_close.py
    # measures those).
    while not release.is_set():
        load.idle(0.05)
    load.close_all()


class LoadGroup:
    """Load processes, connected and waiting for the word to go."""

    def __init__(self, chat_url: str, shares: Sequence[list[dict[str, Any]]]) -> None:
        parts = urlsplit(chat_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 8001
        ctx = multiprocessing.get_context("spawn")
        self.results = ctx.Queue()
        self.stop = ctx.Event()
        self.release = ctx.Event()
        self.controls = [ctx.Queue() for _ in shares]
        self.procs = [ctx.Process(target=_process, args=(i, host, port, share, self.controls[i],
                                                         self.results, self.stop,
                                                         self.release), daemon=True)
                      for i, share in enumerate(shares)]
        for proc in self.procs:
            proc.start()
        self.ready: dict[int, dict[str, Any]] = {}
        while len(self.ready) < len(self.procs):
            kind, index, value = self.results.get(timeout=300)
            assert kind == "ready"
            self.ready[index] = value

    def connected(self) -> int:
        return sum(r["connections"] for r in self.ready.values())

    def run(self, start: float, send_until: float, until: float, window: tuple[float, float],
            on_done: Callable[[int, dict[str, Any]], bool] | None = None
            ) -> list[dict[str, Any]]:
        """Go; the results of every process (in order). `on_done(index, result)` returning
        True sets the stop flag: the processes still running report what they have."""
        spy = py_spy(PROFILE[0], PROFILE[1], rate=200) if PROFILE else None
        try:
            return self._run(start, send_until, until, window, on_done)
        finally:
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it has
                spy.wait(30)

    def _run(self, start: float, send_until: float, until: float,
             window: tuple[float, float],
             on_done: Callable[[int, dict[str, Any]], bool] | None) -> list[dict[str, Any]]:
        for control in self.controls:
            control.put({"start": start, "send_until": send_until, "until": until,
                         "window": window})
        done: dict[int, dict[str, Any]] = {}
        while len(done) < len(self.procs):
            _, index, value = self.results.get(timeout=until - time.time() + 60)
            done[index] = value
            if on_done is not None and on_done(index, value):
                self.stop.set()
        self.release.set()
        for proc in self.procs:
            proc.join(10)
        return [done[i] for i in range(len(self.procs))]


def _split(specs: list[dict[str, Any]], processes: int) -> list[list[dict[str, Any]]]:
    return [specs[i::processes] for i in range(processes)]


def _stats(samples: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
            "max_ms": max(samples, default=float("nan"))}


# -- the database ------------------------------------------------------------------------

def student_burst() -> int:
    """What a student may send at once before the rate limit answers."""
    from classroom.ratelimit import EVENT_RATES  # not in the load processes: kept light
    from classroom.rules import Role

    return int(EVENT_RATES[Role.STUDENT].burst)


async def setup_rooms(db_url: str, sizes: Sequence[int]) -> list[tuple[int, str, list[str]]]:
    """One class and live room per size (instructor + that many students), straight in the
    database (signing up thousands through argon2 would measure hashing): for each room,
    (room id, instructor token, student tokens)."""
    from classroom.accounts import _HASHER, hash_token
    from classroom.clock import utcnow
    from storage import open_storage

    password_hash = _HASHER.hash("benchmark-password")
    now = utcnow()
    later = now.replace(year=now.year + 1)
    tag = os.urandom(3).hex()
    rooms: list[tuple[int, str, list[str]]] = []
    async with open_storage(db_url) as storage:
        await storage.init_schema()
        slots = trio.Semaphore(8)

        async def person(name: str, classroom_id: int | None, into: list[str]) -> Any:
            async with slots:
                user = await storage.create_user(name, name, password_hash, now)
                token = base64.urlsafe_b64encode(os.urandom(32)).decode()
                await storage.create_auth_session(hash_token(token), user.id, now, later)
                if classroom_id is not None:
                    await storage.add_member(classroom_id, user.id, "student", now)
            into.append(token)
            return user

        for n, size in enumerate(sizes):
            teacher_tokens: list[str] = []
            teacher = await person(f"t{tag}r{n}", None, teacher_tokens)
            classroom = await storage.create_classroom("bench", "", f"B{tag}R{n}".upper(),
                                                       teacher, now)
            tokens: list[str] = []
            async with trio.open_nursery() as nursery:
                for i in range(size):
                    nursery.start_soon(person, f"s{tag}r{n}m{i}", classroom.id, tokens)
            room = await storage.create_room(classroom.id, "live", "bench", teacher.id, now)
            rooms.append((room.id, teacher_tokens[0], tokens))
    return rooms


# -- the two scenarios -------------------------------------------------------------------

# [server pid, name]: py-spy records the server while the load runs (`--profile`).
PROFILE: list[str] = []
BYSTANDER_PERIOD: Final = 0.25  # a small room's member sends 4 messages a second


def big_room(chat_url: str, server_pid: str, rooms: list[tuple[int, str, list[str]]],
             messages: int, processes: int, senders: int = 0,
             sender_messages: int = 0) -> dict[str, Any]:
    """rooms[0] is the big room, the rest the bystanders' small rooms. `senders` of the big
    room's students send `sender_messages` each too, as the instructor does (a lecture
    whose audience talks at once); they are not counted as receivers."""
    (room_id, teacher, everyone), small = rooms[0], rooms[1:]
    talkers, members = everyone[:senders], everyone[senders:]
    expect = messages + senders * sender_messages
    specs = [{"room": room_id, "token": t, "expect": expect, "probe": i < PROBES}
             for i, t in enumerate(members)]
    shares = _split(specs, processes)
    # The instructor and the small rooms in a process of their own: the small rooms' members
    # talk among themselves, each a paced sender, phases spread over the period.
    side: list[dict[str, Any]] = [{"room": room_id, "token": teacher,
                                   "send": {"mode": "window", "window": WINDOW,
                                            "count": messages}}]
    side += [{"room": room_id, "token": t,
              "send": {"mode": "window", "window": WINDOW, "count": sender_messages}}
             for t in talkers]
    bystanders = [(rid, t) for rid, _, tokens in small for t in tokens]
    for i, (rid, token) in enumerate(bystanders):
        side.append({"room": rid, "token": token, "probe": True,
                     "send": {"mode": "paced", "period": BYSTANDER_PERIOD,
                              "phase": BYSTANDER_PERIOD * i / max(1, len(bystanders))}})
    group = LoadGroup(chat_url, [side, *shares])
    start = time.time() + 0.3
    until = start + 120
    cpu_before = cpu_seconds(server_pid)
    big_done = set()

    def on_done(index: int, result: dict[str, Any]) -> bool:
        if index > 0:
            big_done.add(index)
        return len(big_done) == len(shares)

    results = group.run(start, until, until, (start, until), on_done)
    server_cpu = cpu_seconds(server_pid) - cpu_before
    fanned, side_result = results[1:], results[0]
    delivered = sum(r["received"] for r in fanned)
    ended = max((r["last_arrival"] for r in fanned), default=start)
    elapsed = max(1e-6, ended - start)
    during = [ms for at, ms in side_result["latencies"] if start <= at <= ended]
    acks = [ms for at, ms in side_result["acks"] if start <= at <= ended]
    probe = [ms for r in fanned for _, ms in r["latencies"]]
    errors: dict[str, int] = {}
    for r in results:
        for key, n in r["errors"].items():
            errors[key] = errors.get(key, 0) + n
    return {
        "members": len(members),
        "connected": group.connected() - 1 - len(talkers) - len(bystanders),
        "messages": expect,
        "delivered": delivered,
        "lost": len(members) * expect - delivered,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": delivered / elapsed,
        **{f"fanout_{k}": v for k, v in _stats(probe).items()},
        "bystanders": len(bystanders),
        "others_samples": len(during),
        **{f"others_{k}": v for k, v in _stats(during).items()},
        **{f"others_ack_{k}": v for k, v in _stats(acks).items()},
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_us_per_delivery": 1e6 * server_cpu / max(1, delivered),
        "load_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "errors": errors,
    }


def many_rooms(chat_url: str, server_pid: str, rooms: list[tuple[int, str, list[str]]],
               rate: float, seconds: float, processes: int, warmup: float = 1.0
               ) -> dict[str, Any]:
    """Every member of every room a paced sender: `rate` deliveries/s in all (a message
    reaches each member of its room, its sender included)."""
    members = sum(len(tokens) for _, _, tokens in rooms)
    deliveries_per_message = sum(len(t) ** 2 for _, _, t in rooms) / max(1, members)
    period = members * deliveries_per_message / rate
    specs: list[dict[str, Any]] = []
    for rid, _, tokens in rooms:
        for token in tokens:
            specs.append({"room": rid, "token": token, "probe": True,
                          "send": {"mode": "paced", "period": period,
                                   "phase": period * len(specs) / members}})
    group = LoadGroup(chat_url, _split(specs, processes))
    start = time.time() + 0.3
    send_until = start + warmup + seconds
    window = (start + warmup, send_until)
    cpu_before = cpu_seconds(server_pid)
    results = group.run(start, send_until, send_until + DRAIN, window)
    server_cpu = cpu_seconds(server_pid) - cpu_before
    latencies = [ms for r in results for at, ms in r["latencies"]
                 if window[0] <= at <= window[1]]
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for key, n in r["errors"].items():
            errors[key] = errors.get(key, 0) + n
    return {
        "rooms": len(rooms),
        "members": members,
        "connected": group.connected(),
        "asked_per_s": rate,
        "deliveries_per_s": sum(r["in_window"] for r in results) / seconds,
        **_stats(latencies),
        "samples": len(latencies),
        "sent": sent,
        "lost": round(sent * deliveries_per_message) - received,
        "unacked": sum(r["unacked"] for r in results),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_us_per_delivery": 1e6 * server_cpu / max(1, received),
        "load_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "errors": errors,
    }


def main() -> None:
    from benchmarks import http_load

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["big", "rooms"])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--senders", type=int, default=0,
                        help="big: this many of its students send too (--sender-messages each)")
    parser.add_argument("--sender-messages", type=int,
                        help="default: what a student may send at once (the rate limit's burst)")
    parser.add_argument("--small", type=int, nargs=2, default=[2, 5], metavar=("ROOMS", "SIZE"),
                        help="bystanders' small rooms beside the big one (default 2 of 5)")
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--db", help="database URL (default: a throwaway MariaDB database)")
    parser.add_argument("--mysql-server", default=http_load.MYSQL_SERVER)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record the server meanwhile (benchmarks/results/)")
    args = parser.parse_args()

    def database() -> Any:
        if args.db:
            from contextlib import nullcontext
            return nullcontext(args.db)
        return http_load.throwaway_mysql(args.mysql_server)

    with database() as db_url:
        if args.scenario == "big":
            sizes = [args.members] + [args.small[1]] * args.small[0]
        else:
            sizes = [args.size] * args.rooms
        rooms = trio.run(setup_rooms, db_url, sizes)
        with server_process(db_url, "--no-http", "--quiet") as urls:
            if args.profile:
                PROFILE[:] = [urls["pid"], args.scenario]
            if args.scenario == "big":
                sender_messages = (student_burst() if args.sender_messages is None
                                   else args.sender_messages)
                row = big_room(urls["chat"], urls["pid"], rooms, args.messages, args.processes,
                               args.senders, sender_messages)
            else:
                row = many_rooms(urls["chat"], urls["pid"], rooms, args.rate, args.seconds,
                                 args.processes)
    row["load_average"] = os.getloadavg()[0]
    report(f"live_{args.scenario}", [k for k in row if k != "errors"], [row])
    if row["errors"]:
        print("errors:", row["errors"])


if __name__ == "__main__":
    main()
