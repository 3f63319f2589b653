"""The tree's process keeper: parent of the forwarder and of every server process.

`up` starts it in the background; it starts, signals and reaps its children on request over
a Unix socket in the run folder (one JSON line in, one out), so processes that die or are
killed never linger as zombies, and it records every exit. `down` asks it to stop everything
(SIGTERM, then SIGKILL after a grace period) and to exit. It also exits by itself, after
stopping its children, after --max-seconds, when its socket file is removed, or on SIGTERM.

    python3 netlab/keeper.py --socket /tmp/netlab-run/keeper.sock --max-seconds 43200
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

MAX_REQUEST = 1 << 20


class Keeper:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.done = threading.Event()

    def log(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} keeper: {text}", flush=True)

    def start(self, name: str, argv: list[str], log: str, cwd: str,
              env: dict[str, str]) -> int:
        with self.lock:
            old = self.procs.get(name)
            if old is not None and old.poll() is None:
                raise RuntimeError(f"{name} is running already (pid {old.pid})")
            with open(log, "ab") as out:
                out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} netlab starts: "
                          f"{' '.join(argv)}\n".encode())
                out.flush()
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                        start_new_session=True)
            self.procs[name] = proc
            entry = self.info.setdefault(name, {"starts": 0, "exits": []})
            entry.update(pid=proc.pid, argv=argv, log=log, started=time.time())
            entry["starts"] += 1
        self.log(f"started {name} pid {proc.pid}")
        return proc.pid

    def signal(self, name: str, sig: int) -> bool:
        with self.lock:
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                return False
            proc.send_signal(sig)
        self.log(f"sent signal {sig} to {name} pid {proc.pid}")
        return True

    def reap(self) -> None:
        with self.lock:
            for name, proc in self.procs.items():
                entry = self.info[name]
                if proc.poll() is not None and entry.get("reaped") != proc.pid:
                    entry["reaped"] = proc.pid
                    entry["exits"].append({"pid": proc.pid, "rc": proc.returncode,
                                           "at": time.time()})
                    self.log(f"{name} pid {proc.pid} exited with {proc.returncode}")

    def listing(self) -> dict[str, Any]:
        self.reap()
        with self.lock:
            return {name: {**self.info[name], "alive": proc.poll() is None}
                    for name, proc in self.procs.items()}

    def stop_all(self, grace: float) -> dict[str, Any]:
        """SIGTERM to all, SIGKILL to what is left after `grace` s; the forwarder last, so
        servers can finish with the database."""
        order = sorted(self.procs, key=lambda n: n == "forwarder")
        for group in ([n for n in order if n != "forwarder"], ["forwarder"]):
            for name in group:
                self.signal(name, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for name in group:
                proc = self.procs.get(name)
                if proc is None:
                    continue
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.signal(name, signal.SIGKILL)
                    proc.wait(5)
        return self.listing()


def serve(path: str, max_seconds: float) -> None:
    keeper = Keeper()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(MAX_REQUEST)
            try:
                request = json.loads(line)
                answer = run(request)
            except Exception as exc:
                answer = {"error": repr(exc)}
            self.wfile.write((json.dumps(answer) + "\n").encode())

    def run(request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "start":
            return {"pid": keeper.start(request["name"], request["argv"], request["log"],
                                        request["cwd"], request["env"])}
        if op == "signal":
            return {"sent": keeper.signal(request["name"], int(request["sig"]))}
        if op == "list":
            return {"procs": keeper.listing(), "pid": os.getpid()}
        if op == "stop":
            return {"procs": keeper.stop_all(float(request.get("grace", 6)))}
        if op == "quit":
            procs = keeper.stop_all(float(request.get("grace", 6)))
            keeper.done.set()
            return {"procs": procs}
        raise ValueError(f"unknown op {op!r}")

    if os.path.exists(path):
        os.unlink(path)
    server = socketserver.ThreadingUnixStreamServer(path, Handler)
    server.daemon_threads = True
    os.chmod(path, 0o600)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: keeper.done.set())
    signal.signal(signal.SIGINT, lambda *_: keeper.done.set())
    keeper.log(f"listening on {path}, pid {os.getpid()}")
    deadline = time.monotonic() + max_seconds
    while not keeper.done.wait(1.0):
        keeper.reap()
        if time.monotonic() > deadline:
            keeper.log(f"{max_seconds:.0f} s are up: stopping everything")
            break
        if not os.path.exists(path):
            keeper.log(f"{path} was removed: stopping everything")
            break
    keeper.stop_all(6)
    server.shutdown()
    server.server_close()
    if os.path.exists(path):
        os.unlink(path)
    keeper.log("bye")


def ask(path: str, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """One request to the keeper at `path`. Raises OSError when it is not there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise OSError("the keeper closed the connection")
    answer: dict[str, Any] = json.loads(data)
    if "error" in answer:
        raise RuntimeError(f"keeper: {answer['error']}")
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--max-seconds", type=float, default=12 * 3600)
    args = parser.parse_args()
    serve(args.socket, args.max_seconds)
    sys.exit(0)


if __name__ == "__main__":
    main()
