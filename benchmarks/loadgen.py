"""An HTTP/1.1 keep-alive load generator in its own processes, closed-loop or paced.

Each process drives its share of the connections with one epoll loop on raw non-blocking
sockets: send a pre-built request, read until Content-Length is complete, record the
latency, check the status and a marker in the body, send the next. No HTTP library and no
async framework, so a request costs the measuring side a few microseconds and the server,
not the client, is what gets measured.

Closed loop (the default) sends the next request as soon as the last is answered: it finds
the most a server does, but its latency says little, since by Little's law K clients at R
requests/s wait K/R on average whatever the server does. Paced (`"rate"`: requests/s over
all connections, open loop) gives each connection a schedule, one request every
connections/rate seconds from a random phase, and measures each latency from the time the
schedule said to send, not from when the connection was free again: a server that stalls
is charged for every request that queued behind the stall (no coordinated omission).

Run by `benchmarks/__main__.py` (or by hand):

    python -m benchmarks.loadgen < job.json      # {"host", "port", "requests": [bytes as str],
                                                 #  "connections", "warmup_until", "until",
                                                 #  "expect", "rate"?}; prints one JSON line
"""

from __future__ import annotations

import heapq
import json
import multiprocessing
import random
import selectors
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Final

# Reads go into one buffer per process (`recv_into`): `recv(262144)` allocates, maps and
# unmaps a fresh 256 KiB object each call, 10 us against 0.5, on the cores the server uses.
RECEIVE: Final = 262144
CONNECT_TIMEOUT: Final = 10.0


class _Conn:
    __slots__ = ("buf", "busy", "due", "request", "sent_at", "sock")

    def __init__(self, sock: socket.socket, request: bytes) -> None:
        self.sock = sock
        self.request = request
        self.buf = bytearray()
        self.sent_at = 0.0  # paced: when the schedule said to send, not when it was sent
        self.busy = False
        self.due = 0.0


def _response_end(buf: bytearray) -> tuple[int, int] | None:
    """(status, total length) of the first complete response in `buf`, or None."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("response without Content-Length")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + 17:line_end if line_end > 0 else None])
    total = head_end + 4 + length
    if len(buf) < total:
        return None
    return int(head[9:12]), total


def run_share(job: dict[str, Any], progress: Callable[[int], None] | None = None
              ) -> dict[str, Any]:
    """Drive `job["connections"]` connections until `job["until"]` (wall clock); what
    completes before `warmup_until` is not counted. With `job["rate"]` (this share's
    requests/s) each connection follows a schedule instead of sending at once."""
    host, port = job["host"], job["port"]
    requests = [r.encode("latin-1") for r in job["requests"]]
    expect = job["expect"].encode()
    warmup_until, until = job["warmup_until"], job["until"]
    rate = job.get("rate")
    interval = job["connections"] / rate if rate else 0.0
    selector = selectors.EpollSelector()
    scratch = bytearray(RECEIVE)
    view = memoryview(scratch)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    schedule: list[tuple[float, int, _Conn]] = []  # paced: (due, tie-break, connection)

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    def open_conn(index: int) -> _Conn | None:
        try:
            sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            error(f"connect: {exc.strerror or exc}")
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock, requests[index % len(requests)])
        selector.register(sock, selectors.EVENT_READ, conn)
        return conn

    def send(conn: _Conn, intended: float | None = None) -> None:
        now = time.time()
        conn.sent_at = now if intended is None else intended
        conn.busy = True
        conn.sock.send(conn.request)  # a few hundred bytes: the socket buffer takes them

    def plan(conn: _Conn, due: float) -> None:
        conn.due = due
        heapq.heappush(schedule, (due, id(conn), conn))

    conns = [c for i in range(job["connections"]) if (c := open_conn(job["offset"] + i))]
    first = time.time()
    for conn in conns:
        if rate:
            plan(conn, first + random.uniform(0, interval))
        else:
            send(conn)
    done = 0
    next_progress = time.time() + 1.0
    while conns:
        now = time.time()
        if now >= until:
            break
        if progress is not None and now >= next_progress:
            progress(done)
            next_progress += 1.0
        # Paced: send what is due on idle connections; a busy one sends when it is free,
        # still charged from its due time.
        while schedule and schedule[0][0] <= now:
            due, _, conn = heapq.heappop(schedule)
            if conn in conns and not conn.busy:
                send(conn, due)
        wait = min(0.2, until - now)
        if schedule:
            wait = max(0.0, min(wait, schedule[0][0] - now))
        for key, _ in selector.select(timeout=wait):
            conn = key.data
            try:
                got = conn.sock.recv_into(scratch)
            except OSError as exc:
                got, reason = 0, f"recv: {exc.strerror or exc}"
            else:
                reason = "closed by the server"
            if not got:
                error(reason)
                selector.unregister(conn.sock)
                conn.sock.close()
                conns.remove(conn)
                if (fresh := open_conn(job["offset"])) is not None:
                    conns.append(fresh)
                    if rate:
                        plan(fresh, time.time())
                    else:
                        send(fresh)
                continue
            conn.buf += view[:got]
            try:
                end = _response_end(conn.buf)
            except ValueError as exc:
                error(str(exc))
                end = (0, len(conn.buf))
            if end is None:
                continue
            status, total = end
            finished = time.time()
            conn.busy = False
            body_ok = expect in conn.buf[:total]
            del conn.buf[:total]
            if finished >= warmup_until and conn.sent_at >= warmup_until:
                if status != 200:
                    error(f"status {status}")
                elif not body_ok:
                    error("body without the expected marker")
                else:
                    latencies.append(finished - conn.sent_at)
                    done += 1
            if finished >= until:
                continue
            if not rate:
                send(conn)
                continue
            # The next request is due one interval after the last one was; if that time
            # has passed (the server was slow), it goes now and its wait counts.
            due = conn.due + interval
            if due <= finished:
                conn.due = due
                send(conn, due)
            else:
                plan(conn, due)
    for conn in conns:
        conn.sock.close()
    selector.close()
    return {"latencies": latencies, "errors": errors}


def _worker(index: int, job: dict[str, Any], queue: Any) -> None:
    result = run_share(job, lambda n: queue.put(("progress", index, n)))
    queue.put(("result", index, result))


def run(job: dict[str, Any], processes: int,
        on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Split `job["connections"]` over `processes` processes; merged latencies and errors."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    total = job["connections"]
    shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    workers: list[multiprocessing.process.BaseProcess] = []
    offset = 0
    for share in shares:
        if share == 0:
            continue
        rate = job["rate"] * share / total if job.get("rate") else None
        proc = ctx.Process(target=_worker, args=(len(workers), {**job, "connections": share,
                                                                "offset": offset,
                                                                "rate": rate}, queue),
                           daemon=True)
        proc.start()
        workers.append(proc)
        offset += share
    latest = [0] * len(workers)
    results: list[dict[str, Any]] = []
    while len(results) < len(workers):
        kind, index, value = queue.get(timeout=job["until"] - time.time() + 60)
        if kind == "result":
            results.append(value)
        else:
            latest[index] = value
            if on_progress is not None:
                on_progress(sum(latest))
    for worker in workers:
        worker.join(10)
    errors: dict[str, int] = {}
    latencies: list[float] = []
    for result in results:
        latencies += result["latencies"]
        for key, n in result["errors"].items():
            errors[key] = errors.get(key, 0) + n
    return {"latencies": latencies, "errors": errors}


def main() -> None:
    job = json.load(sys.stdin)
    result = run(job, job.get("processes", 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
