"""One client of a scenario, run inside a client namespace by the scenario driver:

    ip netns exec netlab-c3 python3 netlab/agent.py serve --name c3

It reads one JSON command per line on stdin and writes one JSON answer per line on stdout:
  {"id", "op": "http", "method", "url", "body"?, "token"?}  -> {"id", "status", "body", "ms"}
  {"id", "op": "chat", "urls", "token", "room_id", "role"}  -> {"id", "joined": server}
      connects to urls[0] (moves to the next after 3 failed attempts), joins the room and
      stays in it: on any drop it reconnects with back-off and resumes with `room/rehost`
      (instructor) or `room/rejoin` (student) `{room_id, after: last seq seen}`.
  {"id", "op": "send", "count", "interval", "timeout"}  -> {"id", "acked", "resent", "failed"}
      public messages "NAME#k@unix-time", one at a time, each until acknowledged; one whose
      fate a drop hid is sent again only if the resumed history does not show it.
  {"id", "op": "drain", "upto", "timeout"}  -> {"id", "received": [[seq, text, ms, conn]], ...}
      waits until the room's seq `upto` arrived (or the timeout), then reports every public
      message frame in arrival order, duplicates included.
  {"id", "op": "request", "event", "data", "timeout"}  -> {"id", "answer": frame | null}
      any other event on the live connection (the instructor's `room/kill`, a kicked
      student's next message), with the server's answer (ack or error).
  {"id", "op": "presence"}  -> {"id", "online": {user_id: bool}, "ever": [...], "killed"}
      the last presence seen of each user, who was ever seen online, and whether this user
      got `room/kill`.
  {"id", "op": "text", "url"}  -> {"id", "status", "text"}  (a /metrics page)
  Every op but http and text may carry "user": one agent runs several simulated users, each
  with its own connection (default: the agent's name).
  {"op": "quit"}
It exits when stdin closes or after --max-seconds. `probe URL...` checks HTTP healthz and TCP
ports once and prints JSON (used by `up` and `status`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from topology import check_in_tree
from wsclient import Closed, WebSocket, http_json

ACK_TIMEOUT = 30.0  # the server answers every event within 20 s (ack or `unavailable`)
SILENCE_PING = 5.0  # ping a connection quiet this long
SILENCE_DEAD = 15.0  # and drop it when quiet this long
CONNECT_TIMEOUT = 5.0
RELAY_WAIT = 2.5  # without a bus, chat servers relay each other's events every 2 s
# After `unavailable` (or no answer) the server's shielded store may still commit, later:
# look this long for the message before sending it again. Every try carries the message's own
# id, so a resend of a message that was stored after all is not stored twice (the scenario's
# "stored N times" check); looking first only saves the round trip.
SLOW_STORE_WAIT = 15.0
REPLAY_QUIET = 3.0  # a join answer's history is through after this long without frames

_out_lock = threading.Lock()


def emit(value: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def log(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {text}\n")
    sys.stderr.flush()


class Chat:
    def __init__(self, name: str, urls: list[str], token: str, room_id: int, role: str) -> None:
        self.name = name
        self.urls = urls
        self.token = token
        self.room_id = room_id
        self.instructor = role == "instructor"
        self.stop = threading.Event()
        self.live = threading.Event()  # joined and the history replay is through
        self.first_join = threading.Event()
        self.ws: WebSocket | None = None
        self.lock = threading.Lock()
        self.next_ref = 100
        # Message ids: unique to this agent run (a restarted agent must not reuse them).
        self.id_prefix = secrets.token_hex(8)
        self.pending: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self.join_ref = 0
        self.joined_before = False
        self.replay_upto = 0
        self.last_seq = 0
        self.received: list[list[Any]] = []  # [seq, text, latency ms, connection number]
        self.seen: set[str] = set()
        self.connections = 0
        self.joins: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.other_seq_events = 0
        self.joined_at = 0.0  # monotonic time of this connection's join answer
        self.online: dict[int, bool] = {}  # last presence seen per user
        self.ever_online: set[int] = set()
        self.killed = threading.Event()  # room/kill: the instructor removed us
        self.thread = threading.Thread(target=self._run, daemon=True)

    def note(self, text: str) -> None:
        log(f"{self.name}: {text}")
        if len(self.errors) < 50:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {text}")

    # -- the connection loop ------------------------------------------------------------

    def _run(self) -> None:
        index, failures, delay = 0, 0, 0.2
        while not self.stop.is_set():
            url = self.urls[index]
            try:
                ws = WebSocket.connect(url, self.token, timeout=CONNECT_TIMEOUT)
            except (OSError, Closed) as exc:
                failures += 1
                self.note(f"connect {url}: {exc}")
                if failures % 3 == 0 and len(self.urls) > 1:
                    index = (index + 1) % len(self.urls)
                self.stop.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            failures, delay = 0, 0.2
            self.connections += 1
            try:
                self._session(ws, url)
            except (Closed, OSError) as exc:
                if not self.stop.is_set():
                    self.note(f"connection {self.connections} to {url} dropped: {exc}")
            finally:
                self.live.clear()
                with self.lock:
                    self.ws = None
                    for event, slot in self.pending.values():
                        slot.append({"event": "disconnected"})
                        event.set()
                    self.pending.clear()
                ws.close()
            self.stop.wait(0.2)

    def _session(self, ws: WebSocket, url: str) -> None:
        with self.lock:
            self.join_ref = self._ref()
        if not self.joined_before:
            event, data = "room/join", {"room_id": self.room_id}
        else:
            event = "room/rehost" if self.instructor else "room/rejoin"
            data = {"room_id": self.room_id, "after": self.last_seq}
        ws.send_json(event, data, ref=self.join_ref)
        with self.lock:
            self.ws = ws
        last_ping = 0.0
        self.joined_at = 0.0
        while not self.stop.is_set():
            frame = ws.recv(1.0)
            if frame is None:
                now = time.monotonic()
                quiet = now - ws.last_heard
                if quiet > SILENCE_DEAD:
                    raise Closed(f"silent for {quiet:.0f} s")
                if quiet > SILENCE_PING and now - last_ping > SILENCE_PING:
                    ws.ping()
                    last_ping = now
                if (self.joined_at and not self.live.is_set()
                        and now - self.joined_at > REPLAY_QUIET):
                    # The replay skipped others' private events up to the answer's seq.
                    self.note(f"history ended at {self.last_seq} < {self.replay_upto}")
                    self.live.set()
                continue
            self._handle(frame, url)

    def _handle(self, frame: dict[str, Any], url: str) -> None:
        event, ref, data = frame.get("event"), frame.get("ref"), frame.get("data") or {}
        seq = frame.get("seq")
        if event == "presence":
            for change in data.get("changes", []):
                uid = int(change.get("user_id", 0))
                self.online[uid] = bool(change.get("online"))
                if self.online[uid]:
                    self.ever_online.add(uid)
            return
        if event == "room/kill":
            self.killed.set()
            return
        if event == "room/join" and ref is not None and ref == self.join_ref:
            for member in data.get("members", []):
                if member.get("online"):
                    self.ever_online.add(int(member["id"]))
                    self.online[int(member["id"])] = True
        if ref is not None and ref == self.join_ref:
            if event == "error":
                raise Closed(f"join refused: {data}")
            room = data.get("room", {})
            self.replay_upto = int(room.get("last_seq", 0))
            self.joins.append({"url": url, "server": room.get("chat_server"),
                               "at": time.time(), "after": self.last_seq,
                               "upto": self.replay_upto, "event": event})
            self.joined_before = True
            self.joined_at = time.monotonic()
            self.first_join.set()
            if self.last_seq >= self.replay_upto:
                self.live.set()
            return
        if isinstance(seq, int):
            if event == "message":
                text = str(data.get("text", ""))
                mid, _, stamp = text.partition("@")
                try:
                    latency = (time.time() - float(stamp)) * 1000
                except ValueError:
                    latency = -1.0
                self.received.append([seq, text, round(latency, 2), self.connections])
                self.seen.add(mid)
            else:
                self.other_seq_events += 1
            self.last_seq = max(self.last_seq, seq)
            if self.last_seq >= self.replay_upto and self.joined_before:
                self.live.set()
            return
        if ref is not None and event in ("ack", "error"):
            with self.lock:
                waiting = self.pending.pop(ref, None)
            if waiting is not None:
                waiting[1].append(frame)
                waiting[0].set()

    def _ref(self) -> int:
        self.next_ref += 1
        return self.next_ref

    def request(self, event: str, data: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one event on the live connection; the server's answer (ack or error)."""
        with self.lock:
            ws = self.ws
            ref = self._ref()
            slot: list[dict[str, Any]] = []
            done = threading.Event()
            self.pending[ref] = (done, slot)
        if ws is None:
            return None
        try:
            ws.send_json(event, data, ref=ref)
        except Closed:
            return None
        if not done.wait(timeout):
            return None
        return slot[0]

    # -- sending ------------------------------------------------------------------------

    def send_messages(self, count: int, interval: float, deadline: float) -> dict[str, Any]:
        acked = resent = failed = 0
        for k in range(count):
            if time.monotonic() >= deadline:
                self.note(f"out of time: {count - k} messages not sent")
                failed += count - k
                break
            mid = f"{self.name}#{k}"
            unsure = 0.0  # > 0: its fate is unknown; look this long before sending again
            tries = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self.live.wait(left):
                    self.note(f"{mid}: gave up, never back in the room")
                    failed += 1
                    break
                if unsure:
                    # The resumed history (and the other chat servers' relay) shows it if it
                    # was stored.
                    until = min(time.monotonic() + unsure, deadline)
                    while mid not in self.seen and time.monotonic() < until:
                        time.sleep(0.1)
                    unsure = 0.0
                    if mid in self.seen:
                        acked += 1  # stored after all: the history showed it
                        break
                    continue
                if mid in self.seen:
                    break
                if time.monotonic() >= deadline:
                    self.note(f"{mid}: out of time")
                    failed += 1
                    break
                tries += 1
                if tries > 1:
                    resent += 1
                if tries > 8:
                    self.note(f"{mid}: gave up after {tries - 1} tries")
                    failed += 1
                    break
                with self.lock:
                    ws = self.ws
                    ref = self._ref()
                    slot: list[dict[str, Any]] = []
                    done = threading.Event()
                    self.pending[ref] = (done, slot)
                if ws is None:  # dropped just now: wait for the resume
                    with self.lock:
                        self.pending.pop(ref, None)
                    tries -= 1
                    time.sleep(0.1)
                    continue
                try:
                    ws.send_json("message", {"room_id": self.room_id,
                                             "text": f"{mid}@{time.time():.6f}"}, ref=ref,
                                 id=f"{self.id_prefix}-{k}")
                except Closed:
                    unsure = RELAY_WAIT
                    continue
                wait = max(0.1, min(ACK_TIMEOUT, deadline - time.monotonic()))
                if not done.wait(wait):
                    with self.lock:
                        self.pending.pop(ref, None)
                    self.note(f"{mid}: no answer in {wait:.0f} s")
                    unsure = SLOW_STORE_WAIT
                    continue
                answer = slot[0]
                if answer["event"] == "ack":
                    acked += 1
                    break
                if answer["event"] == "disconnected":
                    self.note(f"{mid}: connection lost before its answer")
                    unsure = RELAY_WAIT
                    continue
                self.note(f"{mid}: refused: {answer.get('data')}")
                if answer.get("data", {}).get("code") == "unavailable":
                    unsure = SLOW_STORE_WAIT
                time.sleep(0.5)
            time.sleep(interval)
        return {"acked": acked, "resent": resent, "failed": failed}

    def drain(self, upto: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.last_seq < upto and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"received": self.received, "last_seq": self.last_seq,
                "connections": self.connections, "joins": self.joins,
                "errors": self.errors, "other_seq_events": self.other_seq_events}


def serve(name: str, max_seconds: float) -> None:
    # The driver ends this process (stdin closes); a Ctrl-C meant for it is not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    timer = threading.Timer(max_seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    chats: dict[str, Chat] = {}

    def run(command: dict[str, Any]) -> None:
        cid = command.get("id")
        op = command.get("op")
        user = str(command.get("user") or name)
        chat = chats.get(user)
        try:
            if op == "http":
                started = time.monotonic()
                try:
                    status, body = http_json(command["method"], command["url"],
                                             command.get("body"), command.get("token"),
                                             timeout=float(command.get("timeout", 10)))
                except OSError as exc:
                    emit({"id": cid, "status": 0, "body": {"error": repr(exc)},
                          "ms": (time.monotonic() - started) * 1000})
                    return
                emit({"id": cid, "status": status, "body": body,
                      "ms": (time.monotonic() - started) * 1000})
            elif op == "text":
                status, text = http_text(command["url"])
                emit({"id": cid, "status": status, "text": text})
            elif op == "request":
                assert chat is not None
                emit({"id": cid, "answer": chat.request(
                    command["event"], command["data"], float(command.get("timeout", 10)))})
            elif op == "presence":
                assert chat is not None
                emit({"id": cid, "online": {str(k): v for k, v in chat.online.items()},
                      "ever": sorted(chat.ever_online), "killed": chat.killed.is_set()})
            elif op == "chat":
                chat = chats[user] = Chat(user, command["urls"], command["token"],
                                          int(command["room_id"]),
                                          command["role"])
                chat.thread.start()
                ok = chat.first_join.wait(float(command.get("timeout", 20)))
                emit({"id": cid, "joined": chat.joins[0]["server"] if ok else None,
                      "errors": chat.errors})
            elif op == "send":
                assert chat is not None
                deadline = time.monotonic() + float(command.get("timeout", 120))
                emit({"id": cid, **chat.send_messages(int(command["count"]),
                                                     float(command["interval"]), deadline)})
            elif op == "drain":
                assert chat is not None
                emit({"id": cid, **chat.drain(int(command["upto"]),
                                              float(command["timeout"]))})
            else:
                emit({"id": cid, "error": f"unknown op {op!r}"})
        except Exception as exc:  # report, never hang the driver
            emit({"id": cid, "error": repr(exc)})

    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if command.get("op") == "quit":
                break
            threading.Thread(target=run, args=(command,), daemon=True).start()
        for chat in chats.values():
            chat.stop.set()
        for chat in chats.values():
            chat.thread.join(3)
    finally:
        os._exit(0)


def http_text(url: str) -> tuple[int, str]:
    """GET a text page (a server's /metrics) inside the tree."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    check_in_tree(host)
    try:
        with socket.create_connection((host, parts.port or 80), timeout=5) as sock:
            sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {host}\r\n"
                         "Connection: close\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        return 0, repr(exc)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode("utf-8", "replace")


def probe(urls: list[str]) -> None:
    """HTTP URLs: GET and report status; ws:// URLs: TCP connect only."""
    result: dict[str, Any] = {}
    for url in urls:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        check_in_tree(host)
        started = time.monotonic()
        try:
            if parts.scheme == "http":
                status, body = http_json("GET", url, timeout=3)
                result[url] = {"ok": status == 200, "status": status, "body": body}
            else:
                with socket.create_connection((host, port), timeout=3):
                    result[url] = {"ok": True}
        except OSError as exc:
            result[url] = {"ok": False, "error": str(exc)}
        result[url]["ms"] = round((time.monotonic() - started) * 1000, 1)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve")
    run.add_argument("--name", required=True)
    run.add_argument("--max-seconds", type=float, default=900)
    check = commands.add_parser("probe")
    check.add_argument("urls", nargs="+")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.name, args.max_seconds)
    else:
        probe(args.urls)


if __name__ == "__main__":
    main()
