"""HTTP under load: the class page (HTML, session cookie) and the posts API (JSON, Bearer).

Starts a real `classroom serve` process on a throwaway MariaDB database (created as
`classroom_bench_<hex>` and dropped at the end; `--db` runs on any database URL instead,
SQLite included), sets up an instructor, a class with 20 tagged posts and one signed-in
student per client, then for each concurrency level K runs K keep-alive clients for D
seconds per page, each sending its next request as soon as the last one is answered
(closed loop). Reports requests/s, latency percentiles, errors and the CPU both sides used.

The load generator is a minimal HTTP/1.1 client on raw trio sockets (one pre-built request,
Content-Length framing, a byte search to check the body), so it costs the measuring side
little: compare client_cpu_s with server_cpu_s in the table.

    python benchmarks/http_load.py                       # K = 50 and 200, 10 s each
    python benchmarks/http_load.py --clients 10 100 --seconds 5
    python benchmarks/http_load.py --db sqlite:///tmp/bench.db
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import trio
import trio_mysql
import trio_mysql.err

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import cpu_seconds, percentile, report, server_process
from classroom.accounts import _HASHER, hash_token
from classroom.clock import utcnow
from storage import MySQLParams, open_storage

POSTS: Final = 20
MYSQL_SERVER: Final = "mysql://root@127.0.0.1:3306/mysql"
CONNECT_BATCH: Final = 100


# -- the database --------------------------------------------------------------------------


async def mysql_admin(server_url: str, sql: str) -> None:
    p = MySQLParams.from_url(server_url)
    with trio.fail_after(10):
        async with trio_mysql.connect(host=p.host, port=p.port, user=p.user,
                                      password=p.password, autocommit=True,
                                      use_unicode=True) as conn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", trio_mysql.err.Warning)
                async with conn.cursor() as cursor:
                    await cursor.execute(sql)


@contextmanager
def throwaway_mysql(server_url: str) -> Iterator[str]:
    name = f"classroom_bench_{secrets.token_hex(6)}"
    trio.run(mysql_admin, server_url,
             f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        trio.run(mysql_admin, server_url, f"DROP DATABASE IF EXISTS {name}")


# -- a minimal keep-alive HTTP/1.1 client ---------------------------------------------------


class HTTPError(Exception):
    pass


class Connection:
    """One keep-alive connection sending one fixed request over and over."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def connect(self) -> None:
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        self.buf.clear()

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None

    async def exchange(self) -> tuple[int, bytes]:
        """Send the request, return (status, body); HTTPError if the connection fails."""
        if self.stream is None:
            await self.connect()
        assert self.stream is not None
        try:
            await self.stream.send_all(self.request)
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                await self._fill()
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            status = int(head[9:12])
            length = -1
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and b"close" in value.lower():
                    close = True
                elif name == b"transfer-encoding":
                    raise HTTPError("chunked responses are not supported by this client")
            if length < 0:
                raise HTTPError(f"no Content-Length: {head[:200]!r}")
            while len(self.buf) < length:
                await self._fill()
            body = bytes(self.buf[:length])
            del self.buf[:length]
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError) as exc:
            await self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        except HTTPError:
            await self.close()
            raise
        if close:
            await self.close()
        return status, body

    async def _fill(self) -> None:
        assert self.stream is not None
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise HTTPError("connection closed by the server")
        self.buf += chunk


def build_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in
                                                                headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def page_cookie(token: str) -> str:
    """The Cookie header a browser sends for the class page once it has been there: the
    session and the CSRF cookie the first answer set (without it, every answer would make a
    new CSRF token and Set-Cookie, which no browser asks for)."""
    return f"classroom_session={token}; classroom_csrf={secrets.token_urlsafe(32)}"


# -- set-up ---------------------------------------------------------------------------------


async def setup(http_url: str, db_url: str, students: int) -> tuple[int, list[str]]:
    """Instructor, class, POSTS tagged posts (through the API) and `students` members with
    session tokens (straight in the database: argon2 for each would measure hashing)."""
    password_hash = _HASHER.hash("benchmark-password")
    now = utcnow()
    tag = os.urandom(3).hex()
    async with open_storage(db_url) as storage:

        async def person(name: str) -> tuple[Any, str]:
            user = await storage.create_user(name, name.title(), password_hash, now)
            token = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
            await storage.create_auth_session(hash_token(token), user.id, now,
                                              now.replace(year=now.year + 1))
            return user, token

        _teacher, teacher_token = await person(f"t{tag}")
        parts = urlsplit(http_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        teacher = {"Authorization": f"Bearer {teacher_token}",
                   "Content-Type": "application/json"}

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            data = json.dumps(body).encode()
            request = build_request(host, port, path, {**teacher,
                                                       "Content-Length": str(len(data))})
            conn = Connection(host, port, request.replace(b"GET ", b"POST ", 1) + data)
            status, answer = await conn.exchange()
            await conn.close()
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {answer[:300]!r}")
            result: dict[str, Any] = json.loads(answer)
            return result

        classroom = (await post("/api/v1/classrooms",
                                {"name": "Benchmark 101",
                                 "description": "posts for the load test"}))["classroom"]
        for i in range(POSTS):
            await post(f"/api/v1/classrooms/{classroom['id']}/posts", {
                "title": f"Post {i}: week {i % 5 + 1} <notes>",
                "body": f"Read chapter {i}.\n" * 8,
                "tags": f"week{i % 5 + 1} {'lab' if i % 2 else 'reading'} all"})
        tokens = []
        for i in range(students):
            user, token = await person(f"s{tag}{i}")
            await storage.add_member(classroom["id"], user.id, "student", now)
            tokens.append(token)
    return classroom["id"], tokens


# -- one run ------------------------------------------------------------------------------


async def run_level(http_url: str, server_pid: str, classroom_id: int, tokens: list[str],
                    page: str, clients: int, seconds: float) -> dict[str, Any]:
    parts = urlsplit(http_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if page == "page":
        path, expect = f"/classrooms/{classroom_id}", b'class="post-title"'

        def headers(token: str) -> dict[str, str]:
            return {"Cookie": page_cookie(token), "Accept": "text/html"}
    else:
        path, expect = f"/api/v1/classrooms/{classroom_id}/posts", b'"posts"'

        def headers(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    connections = [Connection(host, port, build_request(host, port, path, headers(token)))
                   for token in tokens[:clients]]
    for start in range(0, clients, CONNECT_BATCH):
        async with trio.open_nursery() as nursery:
            for conn in connections[start:start + CONNECT_BATCH]:
                nursery.start_soon(conn.connect)
    # Warm-up: every connection answers once before the clock starts.
    async with trio.open_nursery() as nursery:
        for conn in connections:
            nursery.start_soon(conn.exchange)

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sizes: list[int] = []

    async def client(conn: Connection, deadline: float) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                status, body = await conn.exchange()
            except HTTPError as exc:
                key = str(exc)[:80]
                errors[key] = errors.get(key, 0) + 1
                continue
            if status != 200 or expect not in body:
                key = f"status {status}"
                errors[key] = errors.get(key, 0) + 1
                continue
            latencies.append(time.perf_counter() - began)
            if len(sizes) < 1:
                sizes.append(len(body))

    server_cpu = cpu_seconds(server_pid)
    client_cpu = time.process_time()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for conn in connections:
            nursery.start_soon(client, conn, started + seconds)
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    for conn in connections:
        await conn.close()
    done = len(latencies)
    failed = sum(errors.values())
    if errors:
        print(f"  errors on {page} x{clients}: {errors}", file=sys.stderr)
    return {
        "page": page,
        "clients": clients,
        "requests": done,
        "errors": failed,
        "req_per_s": done / elapsed,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p90_ms": 1000 * percentile(latencies, 90),
        "p99_ms": 1000 * percentile(latencies, 99),
        "max_ms": 1000 * max(latencies, default=float("nan")),
        "body_bytes": sizes[0] if sizes else 0,
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_ms_per_req": 1000 * server_cpu / max(1, done),
        "client_cpu_s": round(client_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200],
                        help="concurrency levels (default 50 200)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="duration of each (page, level) run (default 10)")
    parser.add_argument("--pages", nargs="+", choices=["page", "api"], default=["page", "api"])
    parser.add_argument("--db", help="database URL (default: a throwaway MariaDB database)")
    parser.add_argument("--mysql-server", default=MYSQL_SERVER,
                        help=f"where the throwaway database is made (default {MYSQL_SERVER})")
    args = parser.parse_args()

    with _database(args) as db_url, server_process(db_url) as urls:
        print(f"server {urls['http']} on {db_url.split('@')[-1]}, pid {urls['pid']}")
        started = time.monotonic()
        classroom_id, tokens = trio.run(setup, urls["http"], db_url, max(args.clients))
        print(f"set-up: class {classroom_id}, {POSTS} posts, {len(tokens)} students "
              f"({time.monotonic() - started:.1f} s)")
        rows = []
        for clients in args.clients:
            for page in args.pages:
                row = trio.run(run_level, urls["http"], urls["pid"], classroom_id, tokens,
                               page, clients, args.seconds)
                print(f"  {page:4} x{clients:<4} {row['req_per_s']:8.1f} req/s  "
                      f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
                      f"errors {row['errors']}")
                rows.append({**row, "db": db_url.split(":", 1)[0], "seconds": args.seconds})
    report("http_load", ["page", "clients", "db", "requests", "errors", "req_per_s", "p50_ms",
                         "p90_ms", "p99_ms", "max_ms", "body_bytes", "server_cpu_s",
                         "server_cpu_ms_per_req", "client_cpu_s"], rows)


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[str]:
    if args.db:
        yield args.db
    else:
        with throwaway_mysql(args.mysql_server) as url:
            yield url


if __name__ == "__main__":
    main()
