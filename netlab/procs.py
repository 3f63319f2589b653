"""The run folder, its state file and the tree's processes (through the keeper).

Run folder (default /tmp/netlab-run, env NETLAB_RUN): state.json (what `up` built and
started), keeper.sock, and one log per process: keeper.log, forwarder.log, app1.log, ...,
agent-c1.log (scenarios), scenario-*.json (results).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keeper
import netns
from topology import (
    BUS_ADDRESS,
    BUS_PORT,
    CHAT_PORT,
    DB_ADDRESS,
    DB_LINK,
    DB_PORT,
    HTTP_PORT,
    METRICS_PORT,
    Tree,
    bus_url,
    db_url,
)

HERE = Path(__file__).resolve().parent
RUN_DIR = Path(os.environ.get("NETLAB_RUN", "/tmp/netlab-run"))
SERVER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "HOME": "/root"}


def classroom_command() -> str:
    """The venv's `classroom` beside this folder, else the one on PATH."""
    local = HERE.parent / ".venv" / "bin" / "classroom"
    if local.exists():
        return str(local)
    found = shutil.which("classroom")
    if found is None:
        raise SystemExit("netlab: no `classroom` command (pip install -e . in .venv)")
    return found


class Lab:
    def __init__(self, run_dir: Path = RUN_DIR) -> None:
        self.run_dir = run_dir
        self.state_path = run_dir / "state.json"
        self.socket = str(run_dir / "keeper.sock")

    # -- state ----------------------------------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        try:
            value: dict[str, Any] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return value

    def save(self, state: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def state(self) -> dict[str, Any]:
        state = self.load()
        if state is None:
            raise SystemExit("netlab: the tree is not up (no state file); run `up` first")
        return state

    def tree(self) -> Tree:
        state = self.state()
        return Tree(clients=int(state["clients"]), chats=int(state["chats"]))

    # -- the keeper -----------------------------------------------------------------------

    def start_keeper(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / "keeper.log", "ab")  # noqa: SIM115 (the child keeps it)
        with log:
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "keeper.py"), "--socket", self.socket],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=str(self.run_dir))
        (self.run_dir / "keeper.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                keeper.ask(self.socket, {"op": "list"}, timeout=2)
                return proc.pid
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("the keeper did not start; see keeper.log")

    def ask(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        return keeper.ask(self.socket, request, timeout)

    def processes(self) -> dict[str, Any]:
        try:
            procs: dict[str, Any] = self.ask({"op": "list"}, timeout=5)["procs"]
        except (OSError, ValueError):
            return {}
        return procs

    # -- processes ------------------------------------------------------------------------

    def start_forwarder(self) -> int:
        argv = [sys.executable, str(HERE / "forwarder.py"), "--listen",
                f"{DB_ADDRESS}:{DB_PORT}", "--to", "127.0.0.1:3306", "--iface", DB_LINK]
        return self._start("forwarder", argv)

    def bus_argv(self, tree: Tree) -> list[str]:
        """The bus host's own redis-server: its port, its data dir, nothing saved."""
        data = self.run_dir / "bus"
        data.mkdir(parents=True, exist_ok=True)
        redis = shutil.which("redis-server") or "redis-server"
        return ["ip", "netns", "exec", tree.node("bus").netns, redis, "--port", str(BUS_PORT),
                "--bind", BUS_ADDRESS, "--dir", str(data), "--save", "", "--appendonly", "no",
                "--protected-mode", "no"]

    def server_argv(self, tree: Tree, name: str) -> list[str]:
        node = tree.node(name)
        if node.kind == "bus":
            return self.bus_argv(tree)
        if name.startswith("delay-"):
            raise ValueError(f"{name} is started by `fault delay`")
        app1, chat1 = tree.node("app1"), tree.node("chat1")
        argv = ["ip", "netns", "exec", node.netns, classroom_command(), "serve",
                "--db", db_url(), "--site-url", app1.http_url, "--bus", bus_url()]
        if node.kind == "app":
            # Each client host stands for many simulated users: no per-address sign-up limit.
            argv += ["--no-chat", "--http", f"{node.address}:{HTTP_PORT}",
                     "--chat-url", chat1.chat_url, "--signups-per-address", "1000000"]
        else:
            argv += ["--no-http", "--chat", f"{node.address}:{CHAT_PORT}",
                     "--chat-url", node.chat_url, "--server-name", name,
                     "--metrics", f"{node.address}:{METRICS_PORT}"]
        return argv

    def delay(self, tree: Tree, name: str, ms: float) -> str:
        """Added delay on the way into a server: a delaying relay in its namespace and a
        redirect of its incoming TCP connections (new ones: established connections keep
        their path) through it."""
        node = tree.node(name)
        port = {"app": HTTP_PORT, "chat": CHAT_PORT, "bus": BUS_PORT}[node.kind]
        relay = port + netns.DELAY_OFFSET
        self._start(f"delay-{name}", [
            "ip", "netns", "exec", node.netns, sys.executable, str(HERE / "delayer.py"),
            "--listen", f"{node.address}:{relay}", "--to", f"{node.address}:{port}",
            "--ms", str(ms)])
        time.sleep(0.5)
        netns.redirect_to_delayer(node.netns, [port])
        return f"{ms:g} ms each way on new connections to {name}:{port}"

    def undelay(self) -> None:
        for name, proc in self.processes().items():
            if name.startswith("delay-") and proc["alive"]:
                self.kill(name, signal.SIGTERM)

    def start_server(self, tree: Tree, name: str) -> int:
        return self._start(name, self.server_argv(tree, name))

    def _start(self, name: str, argv: list[str]) -> int:
        pid: int = self.ask({"op": "start", "name": name, "argv": argv,
                             "log": str(self.run_dir / f"{name}.log"),
                             "cwd": str(self.run_dir), "env": SERVER_ENV})["pid"]
        return pid

    def kill(self, name: str, sig: int = signal.SIGKILL, wait: float = 8.0) -> bool:
        """Signal a server and wait until it is gone."""
        sent: bool = self.ask({"op": "signal", "name": name, "sig": int(sig)})["sent"]
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.processes().get(name, {}).get("alive"):
                return sent
            time.sleep(0.1)
        raise RuntimeError(f"{name} still runs {wait} s after signal {sig}")

    # -- health ---------------------------------------------------------------------------

    def probe(self, tree: Tree, urls: list[str], via: str = "c1") -> dict[str, Any]:
        """Check URLs from inside a client namespace (HTTP GET, or TCP connect)."""
        done = netns.run(["ip", "netns", "exec", tree.node(via).netns, sys.executable,
                          str(HERE / "agent.py"), "probe", *urls], check=False, timeout=20)
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            return {url: {"ok": False, "error": done.stderr.strip()[-200:]} for url in urls}
        return result

    def health_urls(self, tree: Tree, names: list[str]) -> dict[str, str]:
        urls = {}
        for name in names:
            node = tree.node(name)
            if node.kind == "app":
                urls[name] = f"{node.http_url}/api/v1/healthz"
            elif node.kind == "chat":
                urls[name] = f"tcp://{node.address}:{CHAT_PORT}"
            elif node.kind == "db":
                urls[name] = f"tcp://{node.address}:{DB_PORT}"
            elif node.kind == "bus":
                urls[name] = f"tcp://{node.address}:{BUS_PORT}"
        return urls

    def wait_healthy(self, tree: Tree, names: list[str], timeout: float = 40.0) -> None:
        urls = self.health_urls(tree, names)
        deadline = time.monotonic() + timeout
        while True:
            result = self.probe(tree, list(urls.values()))
            bad = [n for n, u in urls.items() if not result.get(u, {}).get("ok")]
            if not bad:
                return
            procs = self.processes()
            dead = [n for n in bad if n in procs and not procs[n]["alive"]]
            if dead or time.monotonic() > deadline:
                detail = "; ".join(f"{n}: {result.get(urls[n])}" for n in bad)
                tails = "".join(self.log_tail(n) for n in bad)
                raise RuntimeError(f"not healthy: {detail}{tails}")
            time.sleep(0.5)

    def log_tail(self, name: str, lines: int = 8) -> str:
        try:
            text = (self.run_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        tail = "\n    ".join(text.rstrip().splitlines()[-lines:])
        return f"\n  {name}.log:\n    {tail}"
