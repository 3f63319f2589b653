"""The six attacks of issue 7, each measured against a real `classroom serve` process.

Run it against this tree, and against an older checkout to compare (`--tree PATH` runs that
tree's code with this interpreter):

    python benchmarks/attacks.py                       # this tree
    python benchmarks/attacks.py --tree /tmp/old-tree  # e.g. a worktree of an older commit

Prints one line per measurement and writes benchmarks/results/attacks.json. The attacker is an
ordinary signed-up user; the "others" are requests from another client address (127.0.0.1
while the attacker uses 127.0.0.2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

HERE = Path(__file__).resolve().parent
PASSWORD = "attack password"


class Server:
    def __init__(self, tree: Path, db: str, extra: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "classroom.cli", "serve", "--db", db, "--http",
             "127.0.0.1:0", "--chat", "127.0.0.1:0", *extra],
            cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.http = self.chat = ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if m := re.search(r"HTTP on (http://\S+?)/?$", line):
                self.http = m.group(1)
            if m := re.search(r"chat on (ws://\S+)", line):
                self.chat = m.group(1)
            if self.http and self.chat:
                break

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err


async def signup(api: httpx.AsyncClient, name: str) -> str:
    answer = await api.post("/signup", json={"username": name, "display_name": name.title(),
                                             "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def close_of(exc: ConnectionClosed) -> list[Any]:
    """The close code and reason the server sent ([None, None] for none)."""
    reason = exc.reason
    return [None, None] if reason is None else [reason.code, reason.reason]


def ws_headers(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {token}".encode())]


async def call(ws: Any, event: str, data: dict[str, Any], ref: int) -> dict[str, Any]:
    await ws.send_message(json.dumps({"event": event, "data": data, "ref": ref}))
    while True:
        frame = json.loads(await ws.get_message())
        if frame.get("ref") == ref:
            return frame  # type: ignore[no-any-return]


async def healthz_latencies(base: str, seconds: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            started = time.perf_counter()
            await client.get("/api/v1/healthz")
            latencies.append(time.perf_counter() - started)
            await trio.sleep(0.05)
    return latencies


async def regex_attack(server: Server, teacher: str, room_id: int, spaces: int
                       ) -> dict[str, Any]:
    """A heading line of `spaces` spaces in steps/import; healthz latency meanwhile."""
    markdown = "# a" + " " * spaces + "b\n"
    result: dict[str, Any] = {"spaces": spaces}
    async with open_websocket_url(server.chat, extra_headers=ws_headers(teacher)) as ws:
        await call(ws, "room/join", {"room_id": room_id}, 1)
        async with trio.open_nursery() as nursery:
            async def probe() -> None:
                result["healthz_ms"] = [round(x * 1000, 1)
                                        for x in await healthz_latencies(server.http, 3)]
            nursery.start_soon(probe)
            await trio.sleep(0.3)
            started = time.perf_counter()
            answer = await call(ws, "steps/import", {"room_id": room_id,
                                                     "markdown": markdown}, 2)
            result["import_s"] = round(time.perf_counter() - started, 3)
            result["answer"] = answer["event"]
    result["healthz_max_ms"] = max(result["healthz_ms"])
    return result


def hold_connections(port: int, source: str, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            break
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        held.append(sock)
    return held


async def address_attack(server: Server, count: int) -> dict[str, Any]:
    """127.0.0.2 holds `count` half-sent requests; 127.0.0.1 makes normal requests."""
    port = int(server.http.rsplit(":", 1)[1])
    held = hold_connections(port, "127.0.0.2", count)
    await trio.sleep(0.5)
    ok = 0
    total = 40
    try:
        async with httpx.AsyncClient(base_url=server.http, timeout=5,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as c:
            for _ in range(total):
                with contextlib.suppress(httpx.HTTPError):
                    ok += (await c.get("/api/v1/healthz")).status_code == 200
                await trio.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
    return {"held_from_127.0.0.2": len(held), "others_ok": ok, "others_total": total}


async def ws_per_user(server: Server, token: str, count: int) -> dict[str, Any]:
    accepted = refused = 0
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            try:
                await stack.enter_async_context(
                    open_websocket_url(server.chat, extra_headers=ws_headers(token)))
                accepted += 1
            except ConnectionRejected:
                refused += 1
    return {"attempted": count, "accepted": accepted, "refused": refused}


async def logout_attack(server: Server, api: httpx.AsyncClient, room_id: int, name: str
                        ) -> dict[str, Any]:
    token = await signup(api, name)
    await api.post("/classrooms/join", json={"code": CODE[0]},
                   headers={"Authorization": f"Bearer {token}"})
    result: dict[str, Any] = {}
    try:
        async with open_websocket_url(server.chat, extra_headers=ws_headers(token)) as ws:
            await call(ws, "room/join", {"room_id": room_id}, 1)
            out = await api.post("/logout", json={},
                                 headers={"Authorization": f"Bearer {token}"})
            assert out.status_code == 204
            logged_out = time.perf_counter()
            stored = 0
            with trio.move_on_after(5):
                for ref in range(2, 12):
                    answer = await call(ws, "message", {"room_id": room_id,
                                                        "text": "after logout"}, ref)
                    stored += answer["event"] == "ack"
                    await trio.sleep(0.2)
            result["stored_after_logout"] = stored
    except ConnectionClosed as exc:
        result["closed"] = close_of(exc)
        result["closed_after_ms"] = round((time.perf_counter() - logged_out) * 1000, 1)
        result.setdefault("stored_after_logout", 0)
    return result


async def last_seq(api: httpx.AsyncClient, token: str, room_id: int) -> int:
    answer = await api.get(f"/rooms/{room_id}", headers={"Authorization": f"Bearer {token}"})
    seq: int = answer.json()["room"]["last_seq"]
    return seq


async def flood_attack(server: Server, token: str, room_id: int) -> dict[str, Any]:
    """3,000 messages of 4 KB as fast as one connection can send them (no refs: no acks);
    what was stored is counted by the caller from the room's last seq."""
    frame = json.dumps({"event": "message", "data": {"room_id": room_id, "text": "x" * 4000}})
    limited = 0
    closed = None
    started = time.perf_counter()
    try:
        async with open_websocket_url(server.chat, extra_headers=ws_headers(token)) as ws:
            await call(ws, "room/join", {"room_id": room_id}, 1)

            async def read() -> None:
                nonlocal limited, closed
                try:
                    while True:
                        got = json.loads(await ws.get_message())
                        if got.get("data", {}).get("code") == "rate_limited":
                            limited += 1
                except ConnectionClosed as exc:
                    closed = close_of(exc)
                    done.set()
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                try:
                    for _ in range(3000):
                        await ws.send_message(frame)
                except ConnectionClosed as exc:
                    closed = close_of(exc)
                with trio.move_on_after(10):  # a server that never closes: read for 10 s
                    await done.wait()
                nursery.cancel_scope.cancel()
    except ConnectionClosed as exc:
        closed = close_of(exc)
    return {"sent": 3000, "rate_limited": limited, "closed": closed,
            "seconds": round(time.perf_counter() - started, 2)}


async def roster_leak(server: Server, student: str, room_id: int) -> dict[str, Any]:
    async with open_websocket_url(server.chat, extra_headers=ws_headers(student)) as ws:
        answer = await call(ws, "room/join", {"room_id": room_id}, 1)
    members = answer["data"]["members"]
    return {"members_listed": len(members),
            "with_username": sum("username" in m for m in members),
            "offline_listed": sum(not m.get("online") for m in members)}


async def big_id(server: Server, teacher: str) -> dict[str, Any]:
    async with open_websocket_url(server.chat, extra_headers=ws_headers(teacher)) as ws:
        answer = await call(ws, "room/join", {"room_id": 2**63}, 1)
    return {"answer": answer["data"].get("code", answer["event"])}


async def signup_flood(api: httpx.AsyncClient) -> dict[str, Any]:
    codes: dict[int, int] = {}
    started = time.perf_counter()
    for i in range(200):
        answer = await api.post("/signup", json={"username": f"bulk{i:03}", "password":
                                                 PASSWORD, "display_name": "Bulk"})
        codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
    return {"attempted": 200, "statuses": codes,
            "seconds": round(time.perf_counter() - started, 2)}


def cl_te(server: Server) -> dict[str, Any]:
    port = int(server.http.rsplit(":", 1)[1])
    request = (b"POST /api/v1/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return {"status_line": sock.recv(200).split(b"\r\n", 1)[0].decode()}


CODE: list[str] = [""]


async def main(tree: Path, out: Path, spaces: list[int]) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, Any] = {"tree": str(tree)}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(tree, f"sqlite:///{tmp}/attacks.db", [])
        try:
            async with httpx.AsyncClient(base_url=server.http + "/api/v1", timeout=60) as api:
                teacher = await signup(api, "teacher")
                student = await signup(api, "student")
                auth = {"Authorization": f"Bearer {teacher}"}
                classroom = (await api.post("/classrooms", json={"name": "Attacks"},
                                            headers=auth)).json()["classroom"]
                CODE[0] = classroom["join_code"]
                for name in ("student", *[f"quiet{i}" for i in range(5)]):
                    token = student if name == "student" else await signup(api, name)
                    await api.post("/classrooms/join", json={"code": CODE[0]},
                                   headers={"Authorization": f"Bearer {token}"})
                room = (await api.post(f"/classrooms/{classroom['id']}/sessions", json={},
                                       headers=auth)).json()["room"]
                rid = room["id"]
                results["regex"] = [await regex_attack(server, teacher, rid, n)
                                    for n in spaces]
                for step in results["regex"]:
                    print("regex", {k: v for k, v in step.items() if k != "healthz_ms"},
                          flush=True)
                results["http_per_address"] = await address_attack(server, 1100)
                print("http per address", results["http_per_address"], flush=True)
                results["ws_per_user"] = await ws_per_user(server, student, 500)
                print("ws per user", results["ws_per_user"], flush=True)
                results["logout"] = await logout_attack(server, api, rid, "leaver")
                print("logout", results["logout"], flush=True)
                results["roster"] = await roster_leak(server, student, rid)
                print("roster", results["roster"], flush=True)
                before = await last_seq(api, teacher, rid)
                results["flood"] = await flood_attack(server, student, rid)
                await trio.sleep(2)
                results["flood"]["stored"] = await last_seq(api, teacher, rid) - before
                print("flood", results["flood"], flush=True)
                results["big_id"] = await big_id(server, teacher)
                print("id 2^63", results["big_id"], flush=True)
                results["cl_te"] = cl_te(server)
                print("CL+TE", results["cl_te"], flush=True)
                results["signups"] = await signup_flood(api)
                print("sign-ups", results["signups"], flush=True)
        finally:
            log = server.stop()
            results["tracebacks_in_log"] = log.count("Traceback")
            print("tracebacks in the server log:", results["tracebacks_in_log"])
    await trio.Path(out.parent).mkdir(exist_ok=True)
    await trio.Path(out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=HERE.parent)
    parser.add_argument("--spaces", type=int, nargs="+", default=[1500, 199_990])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "attacks.json")
    args = parser.parse_args()
    trio.run(main, args.tree.resolve(), args.out, args.spaces)
