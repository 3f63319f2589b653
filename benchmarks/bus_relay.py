"""Several chat servers over the bus: how fast an event crosses servers, and what idle rooms
cost the database.

    .venv/bin/python benchmarks/bus_relay.py [--messages 200] [--receivers 20] [--rooms 100]

Starts its own redis-server (a free port, a temporary data dir), a throwaway MariaDB
database, and two `classroom serve --no-http` chat servers on it.

- latency: an instructor on server A sends `--messages` messages (one every 60 ms: under
  the instructor's rate limit); students
  on server B (cross-server) and on A (same server) time each from send to receipt.
- idle: `--rooms` live rooms, each joined on both servers, then nothing for `--idle` seconds;
  database statements per second from both servers' /metrics, without the bus (each server
  reads every loaded room every 2 s: the old relay) and with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import percentile, report, server_process
from benchmarks.http_load import throwaway_mysql
from classroom.accounts import _HASHER, hash_token
from classroom.clock import utcnow
from storage import open_storage

# Between two messages: under the instructor's rate limit (20 a second).
INTERVAL = 0.06


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def own_redis() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
             "127.0.0.1", "--dir", data, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0?channel=bench{secrets.token_hex(3)}"
        finally:
            proc.terminate()
            proc.wait(10)


def chat_server(db_url: str, name: str, bus: str | None
                ) -> AbstractContextManager[dict[str, str]]:
    extra = ["--no-http", "--metrics", "127.0.0.1:0", "--server-name", name]
    return server_process(db_url, *extra, *(["--bus", bus] if bus else []))


def statements(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    m = re.search(r"^classroom_db_statement_seconds_count (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def people(db_url: str, students: int, rooms: int) -> tuple[str, list[str], list[int]]:
    password_hash = _HASHER.hash("benchmark-password")
    now = utcnow()
    tag = secrets.token_hex(3)
    async with open_storage(db_url) as storage:
        await storage.init_schema()

        async def person(name: str) -> tuple[Any, str]:
            user = await storage.create_user(name, name, password_hash, now)
            token = secrets.token_urlsafe(32)
            await storage.create_auth_session(hash_token(token), user.id, now,
                                              now.replace(year=now.year + 1))
            return user, token

        teacher, teacher_token = await person(f"t{tag}")
        tokens, room_ids = [], []
        students_made = [await person(f"s{tag}{i}") for i in range(students)]
        for r in range(rooms):
            classroom = await storage.create_classroom(f"bench {r}", "", f"B{tag}{r}".upper(),
                                                       teacher, now)
            if r == 0:
                for user, token in students_made:
                    await storage.add_member(classroom.id, user.id, "student", now)
                    tokens.append(token)
            room = await storage.create_room(classroom.id, "live", "bench", teacher.id, now)
            room_ids.append(room.id)
    return teacher_token, tokens, room_ids


async def latency(urls: list[dict[str, str]], teacher: str, tokens: list[str], room_id: int,
                  messages: int) -> dict[str, Any]:
    sent: dict[str, float] = {}
    run = secrets.token_hex(3)
    delays: dict[str, list[float]] = {"cross": [], "same": []}

    async def receiver(url: str, token: str, kind: str, task_status: Any) -> None:
        async with open_websocket_url(url, extra_headers=[
                (b"authorization", f"Bearer {token}".encode())]) as ws:
            await ws.send_message(json.dumps({"event": "room/join",
                                              "data": {"room_id": room_id}, "ref": 1}))
            while json.loads(await ws.get_message())["event"] != "room/join":
                pass
            task_status.started()
            got = 0
            while got < messages:
                frame = json.loads(await ws.get_message())
                if frame["event"] == "message" and frame["data"]["text"] in sent:
                    delays[kind].append(time.perf_counter() - sent[frame["data"]["text"]])
                    got += 1

    async with trio.open_nursery() as nursery:
        for i, token in enumerate(tokens):
            # Three of four students on the other server.
            far = i % 4 != 0
            await nursery.start(receiver, urls[1 if far else 0]["chat"], token,
                                "cross" if far else "same")
        async with open_websocket_url(urls[0]["chat"], extra_headers=[
                (b"authorization", f"Bearer {teacher}".encode())]) as ws:
            await ws.send_message(json.dumps({"event": "room/join",
                                              "data": {"room_id": room_id}, "ref": 1}))
            for i in range(messages):
                text = f"{run}-{i}"
                sent[text] = time.perf_counter()
                await ws.send_message(json.dumps({"event": "message", "data": {
                    "room_id": room_id, "text": text}, "ref": i + 2}))
                await trio.sleep(INTERVAL)
            with trio.move_on_after(30):
                while len(delays["cross"]) + len(delays["same"]) < messages * len(tokens):
                    await ws.get_message()
    rows = {}
    for kind, values in delays.items():
        ms = [v * 1000 for v in values]
        rows[kind] = {"deliveries": len(ms), "p50_ms": round(percentile(ms, 50), 2),
                      "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2)}
    return rows


async def idle(urls: list[dict[str, str]], teacher: str, room_ids: list[int],
               seconds: float) -> float:
    async def holder(url: str) -> None:
        async with open_websocket_url(url, extra_headers=[
                (b"authorization", f"Bearer {teacher}".encode())]) as ws:
            for rid in room_ids:
                await ws.send_message(json.dumps({"event": "room/join",
                                                  "data": {"room_id": rid}, "ref": rid}))
                while json.loads(await ws.get_message())["event"] != "room/join":
                    pass
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for u in urls:
            nursery.start_soon(holder, u["chat"])
        await trio.sleep(3 + len(room_ids) * 0.01)  # all joined, settled
        before = sum(statements(u["metrics"]) for u in urls)
        await trio.sleep(seconds)
        after = sum(statements(u["metrics"]) for u in urls)
        nursery.cancel_scope.cancel()
    return (after - before) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--mysql-server", default="mysql://root@127.0.0.1:3306/mysql")
    args = parser.parse_args()
    rows = []
    with throwaway_mysql(args.mysql_server) as db_url, own_redis() as bus:
        teacher, tokens, room_ids = trio.run(people, db_url, args.receivers, args.rooms)
        for with_bus in (False, True):
            with chat_server(db_url, "a", bus if with_bus else None) as a, \
                    chat_server(db_url, "b", bus if with_bus else None) as b:
                time.sleep(1)
                row: dict[str, Any] = {"bus": "redis" if with_bus else "none (database)"}
                lat = trio.run(latency, [a, b], teacher, tokens, room_ids[0], args.messages)
                for kind in ("cross", "same"):
                    for key, value in lat[kind].items():
                        row[f"{kind}_{key}"] = value
                row["idle_rooms"] = args.rooms
                row["idle_db_statements_per_s"] = round(
                    trio.run(idle, [a, b], teacher, room_ids, args.idle), 1)
                rows.append(row)
    report("bus_relay", list(rows[0]), rows)


if __name__ == "__main__":
    main()
