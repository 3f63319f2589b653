"""netlab: the seed's tree deployment of Classroom in network namespaces, as root.

    python3 netlab/tree.py up [--clients 4] [--chats 1|2]
    python3 netlab/tree.py status
    python3 netlab/tree.py scenario [--messages 20] [--with-faults]
    python3 netlab/tree.py fault drop LINK PERCENT | kill NAME | start NAME | clear
    python3 netlab/tree.py down [--keep-db]

`up` builds the tree (see topology.py): switch s0 with the database forwarder, switches s1
and s2 with app1/app2, chat1 (and chat2) and the clients c1..cN; it creates the MariaDB
database `classroom_netlab` and starts `classroom serve` on every server. `down` stops every
process, deletes every namespace and link, and drops the database (`--keep-db` keeps it);
it is idempotent and also cleans up after a failed or interrupted `up`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

import netns
import scenario
from procs import Lab, classroom_command
from topology import BUS_PORT, CHAT_PORT, DB_LINK, DB_NAME, DB_PORT, HTTP_PORT, Tree, db_url

MARIADB = ["mariadb", "--protocol=tcp", "-h", "127.0.0.1", "-P", "3306", "-u", "root"]


def say(text: str) -> None:
    print(text, flush=True)


def _sql(statement: str) -> None:
    netns.run([*MARIADB, "-e", statement], timeout=30)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- up / down --------------------------------------------------------------------------


def up(lab: Lab, clients: int, chats: int) -> int:
    tree = Tree(clients=clients, chats=chats)
    if lab.load() is not None or netns.ours() or netns.root_link_exists():
        say("netlab: something of an earlier tree is still there; run `down` first")
        return 1
    for tool in ("ip", "nft", "mariadb", "redis-server"):
        if not any(Path(d, tool).exists() for d in os.environ.get("PATH", "").split(":")):
            say(f"netlab: `{tool}` is missing (apt-get install -y iproute2 nftables "
                "mariadb-client redis-server)")
            return 1
    started = time.monotonic()
    state: dict[str, Any] = {"clients": clients, "chats": chats, "started": time.time()}
    lab.save(state)
    try:
        say(f"building {len(tree.nodes) - 1} namespaces and {len(tree.links)} links")
        netns.build(tree)
        _sql(f"CREATE DATABASE IF NOT EXISTS {DB_NAME} CHARACTER SET utf8mb4")
        state["keeper_pid"] = lab.start_keeper()
        lab.save(state)
        state["forwarder_pid"] = lab.start_forwarder()
        lab.save(state)
        lab.wait_healthy(tree, ["db"], timeout=10)
        lab.start_server(tree, "bus")
        lab.wait_healthy(tree, ["bus"], timeout=10)
        say(f"forwarder {tree.node('db').address}:{DB_PORT} -> 127.0.0.1:3306 is up; "
            "creating the schema")
        netns.run(["ip", "netns", "exec", tree.node("app1").netns, classroom_command(),
                   "init-db", "--db", db_url()], timeout=60)
        for node in tree.servers:
            lab.start_server(tree, node.name)
        lab.wait_healthy(tree, [n.name for n in tree.servers])
    except BaseException as exc:
        say(f"netlab: up failed: {exc!r}; tearing down")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the teardown is bounded: let it finish
        down(lab, keep_db=False)
        return 1
    say(f"up in {time.monotonic() - started:.1f} s")
    status(lab)
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill_pids(pids: list[int], grace: float) -> list[int]:
    """SIGTERM, then SIGKILL what is left after `grace` s; returns what was signalled."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


def down(lab: Lab, keep_db: bool) -> int:
    state = lab.load() or {}
    done: list[str] = []
    try:
        procs = lab.ask({"op": "quit", "grace": 6}, timeout=30)["procs"]
        done.append("stopped " + ", ".join(
            f"{n} (pid {p['pid']})" for n, p in sorted(procs.items())))
    except (OSError, RuntimeError, ValueError):
        pass
    pid_file = lab.run_dir / "keeper.pid"
    if "keeper_pid" not in state and pid_file.exists():
        state["keeper_pid"] = int(pid_file.read_text())
    keeper_pid = state.get("keeper_pid")
    deadline = time.monotonic() + 5
    while keeper_pid and _alive(keeper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Whatever the keeper did not stop: recorded pids, checked to still be ours.
    for key, marker in (("keeper_pid", "netlab/keeper.py"),
                        ("forwarder_pid", "netlab/forwarder.py")):
        pid = state.get(key)
        if pid and _alive(pid) and marker in _cmdline(pid):
            _kill_pids([pid], 5)
            done.append(f"killed {key[:-4]} {pid}")
    for name in netns.ours():
        pids = netns.pids_in(name)
        if pids:
            _kill_pids(pids, 6)
            done.append(f"killed {len(pids)} process(es) left in {name}")
    gone = netns.destroy()
    if gone:
        done.append(f"deleted {len(gone)} namespaces/links")
    if not keep_db:
        try:
            _sql(f"DROP DATABASE IF EXISTS {DB_NAME}")
            done.append(f"dropped database {DB_NAME}")
        except netns.CommandError as exc:
            done.append(f"could not drop {DB_NAME}: {exc}")
    for path in (lab.state_path, Path(lab.socket), pid_file):
        if path.exists():
            path.unlink()
    say("down: " + ("; ".join(done) if done else "nothing to do"))
    leftovers = netns.ours() + ([DB_LINK] if netns.root_link_exists() else [])
    if leftovers:
        say(f"down: still there: {leftovers}")
        return 1
    say(f"logs stay in {lab.run_dir}")
    return 0


# -- status ----------------------------------------------------------------------------


def status(lab: Lab) -> int:
    state = lab.load()
    if state is None:
        left = netns.ours()
        say("netlab: not up" + (f" (but these namespaces exist: {left})" if left else ""))
        return 1
    tree = lab.tree()
    procs = lab.processes()
    names = [n.name for n in tree.nodes if n.kind in ("app", "chat", "db", "bus")]
    urls = lab.health_urls(tree, names)
    health = lab.probe(tree, list(urls.values()))
    say(f"netlab tree: {tree.clients} clients, {tree.chats} chat server(s); "
        f"run folder {lab.run_dir}; keeper pid {state.get('keeper_pid')}"
        f" ({'up' if procs else 'NOT ANSWERING'})")

    def line(node_name: str) -> str:
        node = tree.node(node_name)
        if node.kind == "switch":
            return f"{node.name} (bridge, depth {node.depth}) [{node.netns}]"
        port = {"app": HTTP_PORT, "chat": CHAT_PORT, "db": DB_PORT,
                "bus": BUS_PORT}.get(node.kind)
        text = f"{node.name:6} {node.address}" + (f":{port}" if port else "")
        proc = procs.get("forwarder" if node.kind == "db" else node.name)
        if proc:
            text += (f"  pid {proc['pid']} {'running' if proc['alive'] else 'STOPPED'}"
                     f" (started {proc['starts']}x)")
        if node.name in urls:
            probe = health.get(urls[node.name], {})
            ok = "ok" if probe.get("ok") else f"FAIL {probe.get('error') or probe}"
            what = "healthz" if node.kind == "app" else "tcp"
            db = probe.get("body", {}).get("database") if node.kind == "app" else None
            text += f"  {what} {ok} {probe.get('ms', '?')} ms"
            if db is not None:
                text += f" (database {db})"
        if node.kind == "db":
            text += "  -> 127.0.0.1:3306 (root namespace)"
        return text

    def show(name: str, indent: str) -> None:
        children = [n.name for n in tree.nodes if n.parent == name]
        for i, child in enumerate(children):
            last = i == len(children) - 1
            say(f"{indent}{'└── ' if last else '├── '}{line(child)}")
            show(child, indent + ("    " if last else "│   "))

    say(line("s0"))
    show("s0", "")
    active = netns.faults(tree)
    say("faults: " + ("; ".join(active) if active else "none"))
    stopped = [n for n, p in procs.items() if not p["alive"]]
    if stopped:
        say(f"stopped: {', '.join(stopped)} (`fault start NAME`)")
    return 0


# -- faults ----------------------------------------------------------------------------


def fault(lab: Lab, args: argparse.Namespace) -> int:
    tree = lab.tree()
    servers = [n.name for n in tree.servers] + ["bus"]
    if getattr(args, "name", None) is not None and args.name not in servers:
        raise SystemExit(f"netlab: no server {args.name} in this tree ({', '.join(servers)})")
    if args.action == "drop":
        link = tree.link(args.link)
        if not 0 <= args.percent <= 100:
            raise SystemExit("PERCENT must be 0..100")
        where = netns.drop(tree, link, args.percent)
        say(f"drop {args.percent}% on {link[0]}-{link[1]} ({where})")
    elif args.action == "kill":
        sig = signal.Signals[f"SIG{args.signal}"]
        sent = lab.kill(args.name, sig)
        say(f"{args.name}: {'sent ' + sig.name if sent else 'was not running'}")
    elif args.action == "delay":
        say(f"delay: {lab.delay(tree, args.name, args.ms)}")
    elif args.action == "start":
        pid = lab.start_server(tree, args.name)
        lab.wait_healthy(tree, [args.name])
        say(f"{args.name}: started, pid {pid}, healthy")
    elif args.action == "clear":
        netns.clear_faults()
        procs = lab.processes()
        lab.undelay()
        restarted = [n for n, p in procs.items() if not p["alive"] and n != "forwarder"
                     and not n.startswith("delay-")]
        for name in restarted:
            lab.start_server(tree, name)
        if restarted:
            lab.wait_healthy(tree, restarted)
        say("faults cleared" + (f"; restarted {', '.join(restarted)}" if restarted else ""))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("up", help="build the tree and start the servers")
    build.add_argument("--clients", type=int, default=4)
    build.add_argument("--chats", type=int, default=1, choices=(1, 2))
    teardown = commands.add_parser("down", help="stop and delete everything (idempotent)")
    teardown.add_argument("--keep-db", action="store_true",
                          help=f"keep the {DB_NAME} database")
    commands.add_parser("status", help="the tree, its processes, health and faults")
    scenario.add_arguments(commands.add_parser("scenario", help=scenario.__doc__))
    faults = commands.add_parser("fault", help="inject or clear faults")
    actions = faults.add_subparsers(dest="action", required=True)
    drop = actions.add_parser("drop", help="drop PERCENT %% of frames on LINK, both ways")
    drop.add_argument("link", help="e.g. s1-s0, app1-s1 or just app1 (its uplink)")
    drop.add_argument("percent", type=int)
    kill = actions.add_parser("kill", help="kill a server process")
    kill.add_argument("name", choices=("app1", "app2", "chat1", "chat2", "bus"))
    kill.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "INT"))
    delay = actions.add_parser("delay", help="add MS of delay on new connections into a server"
                                             " (a delaying relay: no netem here)")
    delay.add_argument("name", choices=("app1", "app2", "chat1", "chat2", "bus"))
    delay.add_argument("ms", type=float)
    start = actions.add_parser("start", help="start a stopped server process")
    start.add_argument("name", choices=("app1", "app2", "chat1", "chat2", "bus"))
    actions.add_parser("clear", help="remove all drops, start stopped servers")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("netlab: run as root (namespaces, veths, nftables)")
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    lab = Lab()
    if args.command == "up":
        return up(lab, args.clients, args.chats)
    if args.command == "down":
        return down(lab, args.keep_db)
    if args.command == "status":
        return status(lab)
    if args.command == "scenario":
        try:
            return scenario.run(lab, args)
        except KeyboardInterrupt:
            say("netlab: scenario interrupted; its agents are stopped and its faults undone")
            return 130
    return fault(lab, args)


if __name__ == "__main__":
    sys.exit(main())
