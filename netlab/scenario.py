"""Run a class through the tree from the client namespaces and check the live room.

c1 is the instructor, c2..cN are students; each is an agent process (agent.py) inside its
own namespace. Sign-ups, log-ins, the class, its join code, posts and the live session go
through app1 and app2 alternately (a failed GET, or a POST the first server refused to
connect for, is asked of the other one: they are stateless; other failed POSTs are not
repeated). Then every client connects to a chat server (spread over chat1/chat2),
joins the room and sends K public messages; the driver reads the room's stored history
through the API and checks that every client received every stored message exactly once, in
seq order, and that every message sent was stored exactly once. `--with-faults` drops
frames on one link for a few seconds and kills and restarts chat1 while messages fly.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netns
from procs import Lab
from topology import METRICS_PORT, Node, Tree

HERE = Path(__file__).resolve().parent
HTTP_TIMEOUT = 30.0  # an API call's limit (the servers answer 503 after their own ~20 s)


class ScenarioError(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=None,
                        help="simulated users, spread over the client hosts (default: one per"
                             " host); each has its own connection")
    parser.add_argument("--check-kick", action="store_true",
                        help="after the run: presence of a student on the other chat server,"
                             " then the instructor kicks them and their next event is refused")
    parser.add_argument("--messages", type=int, default=None,
                        help="public messages per client (default 30; 60 with faults)")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between a client's messages (default 0.05; 0.2 with"
                             " faults)")
    parser.add_argument("--with-faults", action="store_true",
                        help="mid-run: drop frames on --fault-link, kill and restart chat1")
    parser.add_argument("--fault-link", default="s1-s0")
    parser.add_argument("--fault-percent", "--loss", type=int, default=20,
                        help="frames dropped on --fault-link (100: a partition)")
    parser.add_argument("--partition", action="store_true",
                        help="cut --fault-link off completely (same as --loss 100)")
    parser.add_argument("--fault-seconds", type=float, default=4.0)
    parser.add_argument("--kill", default="chat1",
                        choices=("chat1", "chat2", "app1", "app2", "bus", "db"),
                        help="the process killed and restarted: a chat or app server, the"
                             " bus (its redis-server) or db (the database's forwarder: every"
                             " connection to MariaDB drops, as in a database restart)")
    parser.add_argument("--down-seconds", type=float, default=2.0,
                        help="how long the killed server stays down")
    parser.add_argument("--delay", metavar="NAME:MS",
                        help="for the whole run, MS of added delay on connections into NAME"
                             " (chat1, chat2, app1, app2), through a delaying relay")
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="the whole scenario's time limit")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


# -- agents -----------------------------------------------------------------------------


class Agent:
    """One agent.py process in a client namespace, spoken to in JSON lines."""

    def __init__(self, lab: Lab, node: Node, lifetime: float) -> None:
        self.name = node.name
        self.node = node
        self.log = open(lab.run_dir / f"agent-{node.name}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, sys.executable, str(HERE / "agent.py"),
             "serve", "--name", node.name, "--max-seconds", str(lifetime)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            bufsize=1, start_new_session=True)
        self.answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                box = self.answers.pop(answer.get("id"), None)
            if box is not None:
                box.put(answer)

    def call(self, op: str, wait: float, **fields: Any) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            cid = self.next_id
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self.answers[cid] = box
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": cid, "op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        try:
            answer = box.get(timeout=wait)
        except queue.Empty:
            raise ScenarioError(f"{self.name}: no answer to {op} in {wait:.0f} s") from None
        if "error" in answer:
            raise ScenarioError(f"{self.name}: {op} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        with self.lock:
            for box in self.answers.values():
                box.put({"error": "the scenario is ending"})
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class SimUser:
    """One simulated user: its own chat connection inside its host's agent."""

    def __init__(self, agent: Agent, name: str) -> None:
        self.agent = agent
        self.name = name
        self.user_id = 0

    def call(self, op: str, wait: float, **fields: Any) -> dict[str, Any]:
        return self.agent.call(op, wait, user=self.name, **fields)


def simulated_users(agents: list[Agent], count: int) -> list[SimUser]:
    if count <= len(agents):
        return [SimUser(a, a.name) for a in agents[:count]]
    return [SimUser(agents[i % len(agents)], f"{agents[i % len(agents)].name}u{i // len(agents)}")
            for i in range(count)]


class Progress:
    """A line every few seconds while the clients send: how many are done."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done = total, what, 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = time.monotonic()
        threading.Thread(target=self._run, daemon=True).start()

    def one(self) -> None:
        with self.lock:
            self.done += 1

    def _run(self) -> None:
        while not self.stop.wait(3.0):
            print(f"  ... {self.what}: {self.done}/{self.total} clients done, "
                  f"{time.monotonic() - self.started:.0f} s", flush=True)


# -- the API, through the agents ----------------------------------------------------------


class Api:
    def __init__(self, apps: list[Node]) -> None:
        self.apps = apps
        self.turn = 0
        self.lock = threading.Lock()
        self.stats: dict[str, dict[str, Any]] = {
            a.name: {"ok": 0, "failed": 0, "ms": [], "errors": []} for a in apps}

    def summary(self) -> dict[str, Any]:
        return {n: {k: v for k, v in e.items() if k != "ms"} for n, e in self.stats.items()}

    def call(self, agent: Agent, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None) -> dict[str, Any]:
        """The next app server in turn answers. When it fails, the other one is asked (app
        servers are stateless) if that cannot do anything twice: a GET, or a POST that never
        reached the first one (connection refused). A POST that timed out or got a 5xx may
        have been done: it is not repeated."""
        with self.lock:
            first = self.turn % len(self.apps)
            self.turn += 1
        order = self.apps[first:] + self.apps[:first]
        last: dict[str, Any] = {}
        for app in order:
            answer = agent.call("http", HTTP_TIMEOUT + 10, method=method,
                                url=f"{app.http_url}/api/v1{path}", body=body, token=token,
                                timeout=HTTP_TIMEOUT)
            status = answer["status"]
            ok = 200 <= status < 300
            with self.lock:
                entry = self.stats[app.name]
                entry["ok" if ok else "failed"] += 1
                entry["ms"].append(answer["ms"])
                if not ok and len(entry["errors"]) < 5:
                    entry["errors"].append(f"{method} {path}: {status} {answer['body']}")
            if ok:
                body_out: dict[str, Any] = answer["body"]
                return body_out
            last = answer
            refused = status == 0 and "ConnectionRefused" in str(answer["body"])
            if 400 <= status < 500 or (method != "GET" and not refused):
                break  # our request was wrong, or repeating it might do it twice
        raise ScenarioError(f"{agent.name}: {method} {path} failed: {last}")


def each(items: list[Any], work: Callable[[Any], Any]) -> list[Any]:
    """`work` on every item at once; the results in order (the first error is raised)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items)))
    try:
        return list(pool.map(work, items))
    finally:  # on Ctrl-C, do not wait here: closing the agents ends the calls
        pool.shutdown(wait=False, cancel_futures=True)


# -- faults mid-run ------------------------------------------------------------------------


class FaultPlan:
    def __init__(self, lab: Lab, tree: Tree, args: argparse.Namespace) -> None:
        self.lab, self.tree, self.args = lab, tree, args
        self.link = tree.link(args.fault_link)
        self.timeline: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.started = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def note(self, text: str) -> None:
        line = f"+{time.monotonic() - self.started:5.1f} s  {text}"
        self.timeline.append(line)
        print(f"  fault {line}", flush=True)

    def begin(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    @property
    def process(self) -> str:
        return "forwarder" if self.args.kill == "db" else self.args.kill

    def restart(self) -> int:
        if self.args.kill == "db":
            pid = self.lab.start_forwarder()
        else:
            pid = self.lab.start_server(self.tree, self.args.kill)
        self.lab.wait_healthy(self.tree, [self.args.kill], timeout=30)
        return pid

    def _run(self) -> None:
        args, link = self.args, self.link
        if args.partition:
            args.fault_percent = 100
        try:
            if self.stop.wait(1.0):
                return
            netns.drop(self.tree, link, args.fault_percent)
            self.note(f"drop {args.fault_percent}% on {link[0]}-{link[1]}")
            if self.stop.wait(args.fault_seconds):
                return
            report = netns.faults(self.tree)
            netns.drop(self.tree, link, 0)
            self.note(f"drop removed ({'; '.join(report) or 'no counters'})")
            if self.stop.wait(1.0):
                return
            self.lab.kill(self.process, signal.SIGKILL)
            killed = time.monotonic()
            self.note(f"{args.kill} killed (SIGKILL)")
            if self.stop.wait(args.down_seconds):
                return
            pid = self.restart()
            self.note(f"{args.kill} restarted (pid {pid}) and listening, "
                      f"{time.monotonic() - killed:.1f} s after the kill")
        except BaseException as exc:
            self.error = exc
            self.note(f"fault plan failed: {exc!r}")

    def finish(self) -> None:
        """Undo whatever is still in effect (also after an error or Ctrl-C)."""
        self.stop.set()
        self.thread.join(40)
        netns.clear_faults()
        procs = self.lab.processes()
        if procs.get(self.process, {}).get("alive") is False:
            self.restart()
            self.note(f"{self.args.kill} started again while cleaning up")


# -- the scenario --------------------------------------------------------------------------


def run(lab: Lab, args: argparse.Namespace) -> int:
    tree = lab.tree()
    if tree.clients < 2:
        raise SystemExit("netlab: a scenario needs at least 2 clients (up --clients N)")
    messages = args.messages or (60 if args.with_faults else 30)
    interval = args.interval if args.interval is not None else (
        0.2 if args.with_faults else 0.05)
    deadline = time.monotonic() + args.timeout
    procs = lab.processes()
    down = [n.name for n in tree.servers if not procs.get(n.name, {}).get("alive")]
    if down:
        raise SystemExit(f"netlab: {', '.join(down)} not running (`fault clear` starts them)")
    clients = tree.of_kind("client")
    api = Api(tree.of_kind("app"))
    agents = [Agent(lab, node, args.timeout + 60) for node in clients]
    users = simulated_users(agents, args.clients or len(agents))
    plan = FaultPlan(lab, tree, args) if args.with_faults else None
    if args.delay:
        name, _, ms = args.delay.partition(":")
        print(f"delay: {lab.delay(tree, name, float(ms))}")
    try:
        result = _run(lab, tree, args, api, users, plan, messages, interval, deadline)
    except ScenarioError as exc:
        print()
        _http_table(api)
        print(f"FAILED: {exc}")
        result = {"ok": False, "problems": [str(exc)], "http": api.summary()}
    finally:
        # Bounded (about a minute at worst) and not to be cut short by a second Ctrl-C:
        # the faults must be undone and the agents stopped.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if plan is not None:
                plan.finish()
            if args.delay:
                netns.clear_faults()
                lab.undelay()
        finally:
            for agent in agents:
                agent.close()
            signal.signal(signal.SIGINT, previous)
    if plan is not None:
        result["faults"] = plan.timeline
    out = lab.run_dir / f"scenario-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"details: {out}")
    return 0 if result["ok"] else 1


def _run(lab: Lab, tree: Tree, args: argparse.Namespace, api: Api, agents: list[SimUser],
         plan: FaultPlan | None, messages: int, interval: float, deadline: float
         ) -> dict[str, Any]:
    chats = tree.of_kind("chat")
    tag = secrets.token_hex(3)
    password = f"netlab-{secrets.token_hex(6)}"
    teacher, students = agents[0], agents[1:]
    started = time.monotonic()

    # Accounts: sign up on one app server, log in on the other.
    def account(agent: SimUser) -> str:
        username = f"{agent.name}{tag}"
        signed = api.call(agent, "POST", "/signup", {
            "username": username, "password": password,
            "display_name": f"{agent.name} {tag}"})
        agent.user_id = int(signed["user"]["id"])
        token: str = api.call(agent, "POST", "/login",
                              {"username": username, "password": password})["token"]
        return token

    tokens = dict(zip([a.name for a in agents], each(agents, account), strict=True))
    classroom = api.call(teacher, "POST", "/classrooms",
                         {"name": f"netlab {tag}", "description": "the tree, end to end"},
                         tokens[teacher.name])["classroom"]
    class_id, code = classroom["id"], classroom["join_code"]
    for n in range(2):
        api.call(teacher, "POST", f"/classrooms/{class_id}/posts",
                 {"title": f"post {n}", "body": "read me", "tags": ["netlab", f"p{n}"]},
                 tokens[teacher.name])

    def enrol(agent: SimUser) -> int:
        api.call(agent, "POST", "/classrooms/join", {"code": code}, tokens[agent.name])
        posts = api.call(agent, "GET", f"/classrooms/{class_id}/posts", None,
                         tokens[agent.name])["posts"]
        return len(posts)

    seen_posts = each(students, enrol)
    if seen_posts != [2] * len(students):
        raise ScenarioError(f"students saw {seen_posts} posts, expected 2 each")
    room = api.call(teacher, "POST", f"/classrooms/{class_id}/sessions", {"topic": "netlab"},
                    tokens[teacher.name])["room"]
    room_id = room["id"]
    setup_s = time.monotonic() - started
    print(f"class {class_id} (code {code}), live room {room_id}: "
          f"{len(agents)} accounts through {', '.join(api.stats)} in {setup_s:.1f} s")

    # Everyone into the room, spread over the chat servers.
    primary: dict[str, str] = {}

    def connect(item: tuple[int, SimUser]) -> str | None:
        i, agent = item
        order = chats[i % len(chats):] + chats[:i % len(chats)]
        primary[agent.name] = order[0].name
        answer = agent.call("chat", 40, urls=[c.chat_url for c in order],
                            token=tokens[agent.name], room_id=room_id,
                            role="instructor" if agent is teacher else "student", timeout=30)
        joined: str | None = answer["joined"]
        if joined is None:
            raise ScenarioError(f"{agent.name} could not join: {answer.get('errors')}")
        return joined

    joined = dict(zip([a.name for a in agents], each(list(enumerate(agents)), connect),
                      strict=True))
    spread = Counter(primary.values())
    print(f"{len(agents)} clients in room {room_id}: " + ", ".join(
        f"{server} {count}" for server, count in sorted(spread.items())))

    kick: list[str] | None = None
    if args.check_kick:
        # Before the faults move anyone: the student leaves the run once removed.
        kick, removed = _kick(agents, joined, room_id)
        agents = [a for a in agents if a is not removed]

    # Everyone sends; faults (if any) run meanwhile.
    send_started = time.monotonic()
    if plan is not None:
        plan.begin()
    left = max(10.0, deadline - time.monotonic() - 30)
    progress = Progress(len(agents), "sending")

    def send(a: SimUser) -> dict[str, Any]:
        answer = a.call("send", left + 15, count=messages, interval=interval, timeout=left)
        progress.one()
        return answer

    try:
        sends = each(agents, send)
    finally:
        progress.stop.set()
    send_s = time.monotonic() - send_started
    if plan is not None:
        plan.thread.join(max(1.0, deadline - time.monotonic()))

    # The truth: the room's stored public messages, read through the API.
    stored: list[tuple[int, str]] = []
    after = 0
    while True:
        page = api.call(teacher, "GET", f"/rooms/{room_id}/messages?after={after}", None,
                        tokens[teacher.name])
        stored += [(m["seq"], m["data"]["text"]) for m in page["messages"]
                   if m["event"] == "message"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    upto = max((s for s, _ in stored), default=0)
    reports = each(agents, lambda a: a.call("drain", 90, upto=upto, timeout=30))
    result = _check(tree, api, agents, primary, sends, reports, stored, messages, room_id,
                    send_s, plan)
    if kick is not None:
        result["kick"] = kick or "ok"
        if kick:
            result["ok"] = False
            result["problems"] += kick
    result["servers"] = _server_load(tree, agents[0])
    return result


def _kick(users: list[SimUser], now: dict[str, str | None], room_id: int
          ) -> tuple[list[str], SimUser | None]:
    """Across chat servers: the instructor saw a student on the other server online; the
    instructor kicks them; the student gets room/kill and their next event is refused; the
    instructor sees them go offline. Returns the problems and the student removed."""
    teacher = users[0]
    others = [u for u in users[1:] if now[u.name] and now[u.name] != now[teacher.name]]
    if not others:
        return [f"--check-kick: no student on another chat server than "
                f"{now[teacher.name]}"], None
    student = others[-1]
    problems = []
    deadline = time.monotonic() + 10
    while (student.user_id not in teacher.call("presence", 20)["ever"]
           and time.monotonic() < deadline):
        time.sleep(0.05)
    seen = teacher.call("presence", 20)
    if student.user_id not in seen["ever"]:
        problems.append(f"{teacher.name} ({now[teacher.name]}) never saw {student.name} "
                        f"({now[student.name]}) online")
    kicked = time.monotonic()
    answer = teacher.call("request", 20, event="room/kill",
                          data={"room_id": room_id, "user_id": student.user_id})["answer"]
    if not answer or answer.get("event") != "ack":
        return [*problems, f"room/kill refused: {answer}"], student
    while not student.call("presence", 20)["killed"] and time.monotonic() - kicked < 10:
        time.sleep(0.05)
    took = time.monotonic() - kicked
    after = student.call("request", 20, event="message",
                         data={"room_id": room_id, "text": "still here?"})["answer"]
    if not after or after.get("event") != "error":
        problems.append(f"{student.name}'s event after the kick was not refused: {after}")
    while teacher.call("presence", 20)["online"].get(str(student.user_id)) is not False:
        if time.monotonic() - kicked > 10:
            problems.append(f"{teacher.name} still sees {student.name} online")
            break
        time.sleep(0.05)
    print(f"kick across servers: {teacher.name} on {now[teacher.name]} removed "
          f"{student.name} on {now[student.name]}: room/kill after {took * 1000:.0f} ms, "
          f"next event {after and after.get('data', {}).get('code')}"
          + (f"; PROBLEMS: {problems}" if problems else "; presence before and after ok"))
    return problems, student


def _server_load(tree: Tree, via: SimUser) -> dict[str, Any]:
    """Each server's own count of what it did, from its /metrics."""
    wanted = ("classroom_ws_connections", "classroom_events_stored_total",
              "classroom_events_delivered_total", "classroom_bus_fallbacks_total",
              "classroom_relay_gap_fills_total", "classroom_http_requests_total",
              "classroom_db_statement_seconds_count", "classroom_bus_lag_seconds_count",
              "classroom_bus_lag_seconds_sum")
    load: dict[str, Any] = {}
    for node in tree.servers:
        url = (f"{node.http_url}/metrics" if node.kind == "app"
               else f"http://{node.address}:{METRICS_PORT}/metrics")
        page = via.agent.call("text", 20, url=url)
        values: dict[str, float] = {}
        for line in page["text"].splitlines():
            name, _, value = line.rpartition(" ")
            base = name.split("{")[0]
            if base in wanted:
                label = name[len(base):]
                with contextlib.suppress(ValueError):
                    values[base + label] = values.get(base + label, 0.0) + float(value)
        load[node.name] = values
    print("per server (from /metrics):")
    for name, values in load.items():
        shown = ", ".join(f"{k.removeprefix('classroom_')}={v:g}" for k, v in values.items()
                          if not k.endswith("_sum"))
        lag_n = values.get("classroom_bus_lag_seconds_count", 0)
        lag = (values.get("classroom_bus_lag_seconds_sum", 0) / lag_n * 1000) if lag_n else 0
        print(f"  {name:6} {shown}" + (f", mean bus lag {lag:.1f} ms" if lag_n else ""))
    return load


def _check(tree: Tree, api: Api, agents: list[SimUser], primary: dict[str, str],
           sends: list[dict[str, Any]], reports: list[dict[str, Any]],
           stored: list[tuple[int, str]], messages: int, room_id: int, send_s: float,
           plan: FaultPlan | None) -> dict[str, Any]:
    problems: list[str] = []
    text_of = dict(stored)
    expected = [s for s, _ in stored]
    # Every message sent is stored exactly once.
    ids = Counter(text.partition("@")[0] for _, text in stored)
    for agent in agents:
        for k in range(messages):
            count = ids.get(f"{agent.name}#{k}", 0)
            if count != 1:
                problems.append(f"{agent.name}#{k} stored {count} times")
    if len(stored) != len(set(expected)):
        problems.append("the history API listed a seq twice")

    rows = []
    all_latency: list[float] = []
    # Per path: sender and receiver first joined the same chat server, or two different ones.
    by_path: dict[str, list[float]] = {"same server": [], "cross server": []}
    for agent, sent, report in zip(agents, sends, reports, strict=True):
        got = [r[0] for r in report["received"]]
        counts = Counter(got)
        missing = [s for s in expected if s not in counts]
        dups = sorted(s for s, c in counts.items() if c > 1)
        extra = sorted(s for s in counts if s not in text_of)
        in_order = all(a < b for a, b in itertools.pairwise(got))
        wrong_text = [r[0] for r in report["received"]
                      if r[0] in text_of and r[1] != text_of[r[0]]]
        latency = [r[2] for r in report["received"] if r[2] >= 0]
        all_latency += latency
        for r in report["received"]:
            sender = str(r[1]).partition("#")[0]
            if r[2] >= 0 and sender in primary:
                same = primary[sender] == primary[agent.name]
                by_path["same server" if same else "cross server"].append(r[2])
        servers = [j["server"] for j in report["joins"]]
        resumed = len(report["joins"]) - 1
        for what, bad in (("missing", missing), ("duplicate", dups), ("unknown", extra),
                          ("text differs", wrong_text)):
            if bad:
                problems.append(f"{agent.name}: {len(bad)} {what} seq: {bad[:12]}")
        if not in_order:
            back = [(a, b) for a, b in itertools.pairwise(got) if a >= b]
            problems.append(f"{agent.name}: out of seq order at {back[:6]}")
        if sent["failed"]:
            problems.append(f"{agent.name}: {sent['failed']} messages never acknowledged")
        if plan is not None and primary[agent.name] == plan.args.kill and len(servers) < 2:
            problems.append(f"{agent.name}: was on {plan.args.kill} but never resumed")
        rows.append({
            "client": agent.name, "chat": "->".join(_squash(servers)),
            "sent": messages, "acked": sent["acked"], "resent": sent["resent"],
            "received": len(got), "missing": len(missing), "dup": len(dups),
            "order": "ok" if in_order else "BAD", "resumes": max(0, resumed),
            "p50_ms": percentile(latency, 50), "p99_ms": percentile(latency, 99),
            "errors": report["errors"],
        })

    print()
    _http_table(api)
    print()
    seqs = f"seq {expected[0]}..{expected[-1]}" if expected else "nothing stored"
    print(f"room {room_id}: {len(agents)} clients x {messages} messages = "
          f"{len(agents) * messages} sent, {len(stored)} stored ({seqs}), "
          f"sending took {send_s:.1f} s")
    head = (f"{'client':7} {'chat':13} {'sent':>5} {'acked':>6} {'resent':>6} {'recv':>6} "
            f"{'missing':>7} {'dup':>4} {'order':>5} {'resumes':>7} {'p50 ms':>8} {'p99 ms':>8}")
    print(head)
    for r in rows:
        print(f"{r['client']:7} {r['chat']:13} {r['sent']:5} {r['acked']:6} {r['resent']:6} "
              f"{r['received']:6} {r['missing']:7} {r['dup']:4} {r['order']:>5} "
              f"{r['resumes']:7} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}")
    print(f"{'all':7} {'':13} {sum(r['sent'] for r in rows):5} "
          f"{sum(r['acked'] for r in rows):6} {sum(r['resent'] for r in rows):6} "
          f"{sum(r['received'] for r in rows):6} {sum(r['missing'] for r in rows):7} "
          f"{sum(r['dup'] for r in rows):4} {'':>5} {sum(r['resumes'] for r in rows):7} "
          f"{percentile(all_latency, 50):8.1f} {percentile(all_latency, 99):8.1f}")
    for path, values in by_path.items():
        print(f"  {path}: {len(values)} deliveries, p50 {percentile(values, 50):.1f} ms, "
              f"p99 {percentile(values, 99):.1f} ms")
    if plan is not None:
        print("faults:")
        for line in plan.timeline:
            print(f"  {line}")
        if plan.error is not None:
            problems.append(f"fault plan failed: {plan.error!r}")
    for r in rows:
        for error in r["errors"][:2]:
            print(f"  {r['client']}: {error}")
        if len(r["errors"]) > 2:
            print(f"  {r['client']}: ... {len(r['errors']) - 2} more in the details file")
    print()
    if problems:
        print("FAILED:")
        for problem in problems[:40]:
            print(f"  {problem}")
    else:
        print(f"OK: every client received all {len(stored)} messages exactly once, "
              "in seq order")
    return {"ok": not problems, "problems": problems, "room": room_id, "tree": {
        "clients": tree.clients, "chats": tree.chats}, "http": api.summary(),
        "clients": rows, "stored": len(stored), "messages_per_client": messages,
        "latency_ms": {"p50": percentile(all_latency, 50),
                       "p99": percentile(all_latency, 99),
                       **{path: {"p50": percentile(v, 50), "p99": percentile(v, 99)}
                          for path, v in by_path.items()}}}


def _http_table(api: Api) -> None:
    print(f"{'HTTP':8} {'ok':>5} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, entry in api.stats.items():
        print(f"{name:8} {entry['ok']:5} {entry['failed']:7} {percentile(entry['ms'], 50):8.1f}"
              f" {percentile(entry['ms'], 99):8.1f}")
        for error in entry["errors"]:
            print(f"         {error[:150]}")


def _squash(servers: list[Any]) -> list[str]:
    out: list[str] = []
    for server in servers:
        if not out or out[-1] != str(server):
            out.append(str(server))
    return out or ["-"]

