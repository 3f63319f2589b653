"""Every path measured against its ceiling, in one run: `python -m benchmarks`.

Baselines and our paths run one after the other in the same run, so they see the same
machine (other work on it included) and the ratios between them mean something:

- `bare-h11`: trio + h11 with a constant body (benchmarks/bare.py), the HTTP ceiling;
- our `/api/v1/healthz` (one database ping), the posts API (JSON, Bearer token) and the class
  page (HTML, session cookie), a class of 20 posts on a throwaway MariaDB database
  (`--db` for another; SQLite too), one student per client;
- `bare-ws`: a plain trio-websocket `send_message` loop per room, the live ceiling;
- our fan-out (issue 10's first live target): one room of 5,000 members, the instructor
  sending, every member receiving, while the members of two small rooms talk (each sends 4
  messages/s): deliveries/s, and how long those others wait for their own events meanwhile
  (p50/p99/max from the intended send to the other members' read);
- our rooms (the second): 50 rooms of 20 members, every member a paced sender, 20,000
  deliveries/s asked for in all, open loop: delivery latency p50/p99/max counted from each
  message's intended send time, and the deliveries/s achieved;
- `idle-ws`: N idle members in one room (`--idle`, 10,000): memory per connection, and how
  long a message still takes to reach a member (benchmarks/idle_connections.py);
- `join-storm`: `--storm` members (5,000) joining one room over `--storm-over` seconds (60):
  connect + `room/join` answer p50/p99, and the instructor's messages to a member meanwhile.

HTTP load comes from wrk when it is installed (Debian: `apt-get install wrk`), else from
benchmarks/loadgen.py: closed-loop keep-alive clients on raw sockets in their own processes.
Every HTTP figure is also shown as a ratio to bare-h11 at the same concurrency, and every
live figure as a ratio to bare-ws (live clients: benchmarks/live_load.py, raw sockets in load
processes of their own). A table is printed at the end and written, with every
detail, to benchmarks/results/suite.json.

    python -m benchmarks                    # 50 and 200 clients, 10 s each; 5,000 members x 60;
                                            # 50 rooms x 20 at 20,000 deliveries/s for 10 s
    python -m benchmarks --quick            # about a minute: the same paths, smaller
    python -m benchmarks --only fanout      # or rooms, http, idle
    python -m benchmarks --only http --clients 200 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import trio

from benchmarks import http_load, idle_connections, live_load, loadgen
from benchmarks.common import cpu_seconds, percentile, report, server_process

WARMUP: Final = 1.0
# The idle row's clients join at this pace.
IDLE_JOINS_PER_S: Final = 100
HTTP_PATHS: Final = ("healthz", "api", "page")


@contextmanager
def bare_server(kind: str) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare", kind],
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not (m := re.match(r"bare: listening on (\d+)", line)):
        proc.kill()
        raise RuntimeError(f"bare {kind} server did not start: {line!r}")
    try:
        yield {"port": m.group(1), "pid": str(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(10)


def _request(host: str, port: int, path: str, headers: dict[str, str]) -> str:
    return http_load.build_request(host, port, path, headers).decode("latin-1")


def _progress(label: str, seconds: float) -> Callable[[int], None]:
    started = time.monotonic()
    tty = sys.stdout.isatty()

    def show(done: int) -> None:
        elapsed = time.monotonic() - started
        if tty:
            print(f"\r  {label:16} {elapsed:4.0f}/{seconds + WARMUP:.0f} s  {done:9,} requests",
                  end="", flush=True)

    return show


def run_python_load(host: str, port: int, requests: list[str], expect: str, clients: int,
                    seconds: float, processes: int, label: str, rate: float | None = None
                    ) -> dict[str, Any]:
    start = time.time() + 0.5  # the processes' start-up
    job = {"host": host, "port": port, "requests": requests, "expect": expect,
           "connections": clients, "warmup_until": start + WARMUP,
           "until": start + WARMUP + seconds, "offset": 0, "rate": rate}
    result = loadgen.run(job, processes, _progress(label, seconds))
    if sys.stdout.isatty():
        print("\r", end="")
    return {"latencies": result["latencies"], "errors": result["errors"], "seconds": seconds}


_WRK_SCRIPT: Final = """
local heads = {%s}
local i = 0
function setup(thread) thread:set("first", i); i = i + 1 end
function init(args) n = first end
function request()
  n = n + 1
  local name, value = heads[n %% #heads + 1][1], heads[n %% #heads + 1][2]
  return wrk.format("GET", "%s", {[name] = value})
end
"""


def _wrk_ms(text: str) -> float:
    value, unit = float(text[:-2] if text[-2:] in ("us", "ms") else text[:-1]), \
        text[-2:] if text[-2:] in ("us", "ms") else text[-1:]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, path: str, header: tuple[str, list[str]], clients: int,
            seconds: float, label: str) -> dict[str, Any]:
    name, values = header
    heads = ", ".join(f'{{"{name}", "{v}"}}' for v in values)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % (heads, path))
    try:
        base = ["wrk", "-t2", f"-c{clients}", "-s", script.name, "--timeout", "10s", url]
        if sys.stdout.isatty():
            print(f"  {label:16} (wrk, {seconds + WARMUP:.0f} s)", end="\r", flush=True)
        subprocess.run([*base[:1], "-d", f"{WARMUP:.0f}s", *base[1:]], capture_output=True,
                       check=True)
        out = subprocess.run([*base[:1], "-d", f"{seconds:.0f}s", "--latency", *base[1:]],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _wrk_ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)", out, re.M)}
    errors: dict[str, int] = {}
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors["non-2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      out):
        for kind, n in zip(("connect", "read", "write", "timeout"), m.groups(), strict=True):
            if int(n):
                errors[kind] = int(n)
    max_ms = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    return {"wrk": {"requests": requests, "req_per_s": rate, "p50_ms": pct.get("50"),
                    "p90_ms": pct.get("90"), "p99_ms": pct.get("99"),
                    "max_ms": _wrk_ms(max_ms.group(1)) if max_ms else None},
            "errors": errors, "seconds": seconds}


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.wrk = shutil.which("wrk") if args.loadgen in ("auto", "wrk") else None
        if args.loadgen == "wrk" and not self.wrk:
            raise SystemExit("wrk is not installed (apt-get install wrk)")

    def http_row(self, name: str, url: str, path: str, header: tuple[str, list[str]],
                 expect: str, clients: int, pid: str, baseline: dict[Any, float],
                 rate: float | None = None) -> dict[str, Any]:
        """One row: closed loop (wrk or ours), or paced at `rate` requests/s (ours: wrk
        cannot pace, and its latency is measured from when a connection was free)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        label = f"{name} x{clients}" + (f" @{rate:,.0f}/s" if rate else "")
        cpu = cpu_seconds(pid)
        if self.wrk and not rate:
            measured = run_wrk(f"http://{host}:{port}", path, header, clients,
                               self.args.seconds, label)
            stats = measured.pop("wrk")
            cpu = cpu_seconds(pid) - cpu  # includes wrk's warm-up second
        else:
            name_, values = header
            requests = [_request(host, port, path, {name_: v}) for v in values]
            measured = run_python_load(host, port, requests, expect, clients, self.args.seconds,
                                       self.args.load_processes, label, rate)
            cpu = cpu_seconds(pid) - cpu
            lat = measured["latencies"]
            stats = {"requests": len(lat), "req_per_s": len(lat) / self.args.seconds,
                     "p50_ms": 1000 * percentile(lat, 50), "p90_ms": 1000 * percentile(lat, 90),
                     "p99_ms": 1000 * percentile(lat, 99),
                     "max_ms": 1000 * max(lat, default=float("nan"))}
        cpu_requests = stats["requests"] * (self.args.seconds + WARMUP) / self.args.seconds
        achieved = stats["req_per_s"]
        key = (clients, rate)
        if name == "bare-h11":
            baseline[key] = achieved if not rate else stats["p99_ms"]
        # Closed loop: throughput against bare-h11's; paced: bare-h11's p99 against ours
        # (both at the same rate, so 1.0 means our path adds nothing to the tail).
        ours = achieved if not rate else stats["p99_ms"]
        ratio = (ours / baseline[key] if not rate else baseline[key] / max(ours, 1e-9)) \
            if baseline.get(key) else None
        row = {"path": name + (f"@{rate:.0f}" if rate else ""), "clients": clients,
               "req_per_s": achieved, "paced_rate": rate,
               "x_bare": round(ratio, 3) if ratio is not None else None,
               "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"],
               "max_ms": stats["max_ms"], "errors": sum(measured["errors"].values()),
               "server_cpu_ms": 1000 * cpu / max(1.0, cpu_requests),
               "error_kinds": measured["errors"], "requests": stats["requests"],
               "p90_ms": stats["p90_ms"], "loadgen": "wrk" if self.wrk and not rate else
               "python"}
        self.rows.append(row)
        errors = f"  errors {row['errors']} {measured['errors']}" if row["errors"] else ""
        print(f"  {label:24} {achieved:9,.0f} req/s  x{row['x_bare'] or 0:.3f}  "
              f"p50 {row['p50_ms'] or 0:6.1f} ms  p99 {row['p99_ms'] or 0:6.1f} ms  "
              f"{row['server_cpu_ms']:.2f} ms CPU/req{errors}", flush=True)
        return row

    def http(self) -> None:
        baseline: dict[Any, float] = {}
        paced = {name: rate for name, rate in self.args.paced.items()
                 if name in self.args.paths and rate > 0}
        paced_clients = max(self.args.clients)
        print("HTTP: bare h11 over trio (constant body)", flush=True)
        with bare_server("h11") as bare:
            url = f"http://127.0.0.1:{bare['port']}"
            for clients in self.args.clients:
                self.http_row("bare-h11", url, "/", ("Accept", ["*/*"]), '"status"', clients,
                              bare["pid"], baseline)
            for rate in sorted(set(paced.values())):
                self.http_row("bare-h11", url, "/", ("Accept", ["*/*"]), '"status"',
                              paced_clients, bare["pid"], baseline, rate)
        workers = ["--workers", str(self.args.workers)] if self.args.workers > 1 else []
        with self.database() as db_url, server_process(db_url, "--no-chat", *workers) as urls:
            print(f"HTTP: classroom serve on {db_url.split('@')[-1]} (pid {urls['pid']})",
                  flush=True)
            students = max(self.args.clients)
            classroom_id, tokens = trio.run(http_load.setup, urls["http"], db_url, students)
            paths = {
                "healthz": ("/api/v1/healthz", ("Accept", ["application/json"]), '"status"'),
                "api": (f"/api/v1/classrooms/{classroom_id}/posts",
                        ("Authorization", [f"Bearer {t}" for t in tokens]), '"posts"'),
                "page": (f"/classrooms/{classroom_id}",
                         ("Cookie", [http_load.page_cookie(t) for t in tokens]),
                         'class="post-title"'),
            }
            for clients in self.args.clients:
                for name in self.args.paths:
                    path, header, expect = paths[name]
                    self.http_row(name, urls["http"], path, header, expect, clients,
                                  urls["pid"], baseline)
            for name, rate in paced.items():
                path, header, expect = paths[name]
                self.http_row(name, urls["http"], path, header, expect, paced_clients,
                              urls["pid"], baseline, rate)

    def fanout(self) -> None:
        """Target 1: one big room, and the small rooms' members timing their own events
        meanwhile (benchmarks/live_load.py)."""
        a = self.args
        rooms, size = a.small
        print(f"Fan-out: one room of {a.members:,} members, {a.messages} messages; meanwhile "
              f"{rooms} rooms of {size} members send {1 / live_load.BYSTANDER_PERIOD:.0f} "
              "messages/s each", flush=True)
        with self.database() as db_url:
            setup = trio.run(live_load.setup_rooms, db_url, [a.members] + [size] * rooms)
            with bare_server("ws") as bare:
                row = live_load.big_room(f"ws://127.0.0.1:{bare['port']}/ws", bare["pid"],
                                         setup, a.messages, a.load_processes)
                self.fanout_row("bare-ws", row, None)
                baseline = row["deliveries_per_s"]
            with server_process(db_url, "--no-http", "--quiet") as urls:
                row = live_load.big_room(urls["chat"], urls["pid"], setup, a.messages,
                                         a.load_processes)
                self.fanout_row("fanout", row, baseline)

    def fanout_row(self, name: str, measured: dict[str, Any], baseline: float | None) -> None:
        rate = measured["deliveries_per_s"]
        row = {"path": name, "clients": measured["members"], "req_per_s": rate,
               "x_bare": round(rate / baseline, 3) if baseline else None,
               "p50_ms": measured["others_p50_ms"], "p99_ms": measured["others_p99_ms"],
               "max_ms": measured["others_max_ms"], "errors": measured["lost"],
               "server_cpu_ms": measured["server_cpu_us_per_delivery"] / 1000,
               **{f"fanout_{k}": v for k, v in measured.items()}}
        self.rows.append(row)
        print(f"  {name:16} {rate:9,.0f} deliveries/s  x{row['x_bare'] or 1:.3f}  "
              f"others wait p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
              f"max {row['max_ms']:6.1f} ms  lost {row['errors']}  "
              f"{measured['server_cpu_us_per_delivery']:.1f} us CPU/delivery", flush=True)

    def rooms(self) -> None:
        """Target 2: many small rooms at once, paced senders (benchmarks/live_load.py)."""
        a = self.args
        print(f"Rooms: {a.rooms} rooms of {a.size} members, every member sending, "
              f"{a.rate:,.0f} deliveries/s asked for {a.live_seconds:.0f} s", flush=True)
        with self.database() as db_url:
            setup = trio.run(live_load.setup_rooms, db_url, [a.size] * a.rooms)
            baseline = None
            for name in ("bare-ws", "rooms"):
                with (bare_server("ws") if name == "bare-ws"
                      else server_process(db_url, "--no-http", "--quiet")) as server:
                    url = (f"ws://127.0.0.1:{server['port']}/ws" if name == "bare-ws"
                           else server["chat"])
                    measured = live_load.many_rooms(url, server["pid"], setup, a.rate,
                                                    a.live_seconds, a.load_processes)
                rate = measured["deliveries_per_s"]
                baseline = baseline or rate
                row = {"path": name, "clients": measured["members"], "req_per_s": rate,
                       "x_bare": round(rate / baseline, 3) if name != "bare-ws" else None,
                       "p50_ms": measured["p50_ms"], "p99_ms": measured["p99_ms"],
                       "max_ms": measured["max_ms"], "errors": measured["lost"],
                       "server_cpu_ms": measured["server_cpu_us_per_delivery"] / 1000,
                       **{f"rooms_{k}": v for k, v in measured.items()}}
                self.rows.append(row)
                print(f"  {name:16} {rate:9,.0f} deliveries/s of {a.rate:,.0f}  "
                      f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
                      f"max {row['max_ms']:6.1f} ms  lost {row['errors']}  "
                      f"{measured['server_cpu_us_per_delivery']:.1f} us CPU/delivery",
                      flush=True)

    def idle(self) -> None:
        """Issue 10's two targets of the live side's joining, each on a server of its own:
        memory per idle connection (`--idle`, 10,000), and a join storm (`--storm` members
        joining one room over `--storm-over` seconds: join p50/p99, the instructor's
        messages to a member meanwhile)."""
        limit = idle_connections.raise_fd_limit()
        # The idle clients join at a steady IDLE_JOINS_PER_S (the storm is the other row):
        # as fast as they go, 10,000 joins measure the overload, not the memory.
        idle_over = self.args.idle / IDLE_JOINS_PER_S
        for kind, wanted, over in (("idle-ws", self.args.idle, idle_over),
                                   ("join-storm", self.args.storm, self.args.storm_over)):
            if not wanted:
                continue
            [step] = idle_connections.fit_steps([wanted])
            what = (f"{step:,} WebSocket clients joined to one room, idle" if kind == "idle-ws"
                    else f"{step:,} members joining one room over {over:.0f} s")
            print(f"{kind}: {what} (open-file limit {limit})", flush=True)
            with self.database() as db_url, server_process(db_url, "--no-http") as urls:
                measured = trio.run(idle_connections.run_steps, urls["chat"], db_url,
                                    [0, step], urls["pid"], over)[-1]
            self.idle_row(kind, step, measured)

    def idle_row(self, kind: str, wanted: int, measured: dict[str, Any]) -> None:
        storm = kind == "join-storm"
        row = {"path": kind, "clients": measured["connections"], "req_per_s": None,
               "x_bare": None,
               "p50_ms": measured["storm_join_p50_ms"] if storm else measured["message_ms"],
               "p99_ms": measured["storm_join_p99_ms"] if storm else None,
               "max_ms": None, "errors": wanted - measured["connections"],
               "server_cpu_ms": measured["storm_cpu_ms_per_join"] if storm else None,
               **{f"idle_{k}": v for k, v in measured.items()}}
        self.rows.append(row)
        if storm:
            print(f"  join-storm       {measured['connections']:,} joined in "
                  f"{measured['connect_s']} s  join p50 {measured['storm_join_p50_ms']} ms  "
                  f"p99 {measured['storm_join_p99_ms']} ms  a message to a member meanwhile "
                  f"p50 {measured['storm_message_p50_ms']} ms  p99 "
                  f"{measured['storm_message_p99_ms']} ms  {measured['storm_cpu_ms_per_join']} "
                  f"ms server CPU per join  (load average {measured['load_average']})",
                  flush=True)
        else:
            print(f"  idle-ws          {measured['connections']:,} connections  "
                  f"{measured['rss_mib']:.0f} MiB RSS  {measured['kib_per_connection']:.1f} "
                  f"KiB each  a message reaches a member in {measured['message_ms']:.1f} ms  "
                  f"(connecting and joining took {measured['connect_s']} s; load average "
                  f"{measured['load_average']})", flush=True)

    @contextmanager
    def database(self) -> Iterator[str]:
        if self.args.db:
            yield self.args.db
        else:
            with http_load.throwaway_mysql(self.args.mysql_server) as url:
                yield url


def _paced(text: str) -> dict[str, float]:
    if text.strip().lower() == "none":
        return {}
    rates = {}
    for item in text.split(","):
        name, _, rate = item.partition("=")
        if name.strip() not in HTTP_PATHS or not rate.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: want PATH=RATE, PATH one of "
                                             f"{', '.join(HTTP_PATHS)}")
        rates[name.strip()] = float(rate)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: 2 s per HTTP row at 200 clients, 1,000 members "
                        "x 30 messages, 10 rooms at 4,000 deliveries/s for 2 s, 500 idle, a "
                        "storm of 300 joins over 3 s")
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP row")
    parser.add_argument("--paths", nargs="+", choices=HTTP_PATHS, default=list(HTTP_PATHS))
    parser.add_argument("--workers", type=int, default=1,
                        help="`classroom serve --workers N` for the HTTP paths (default 1)")
    parser.add_argument("--members", type=int, default=5000,
                        help="members of the big room (default 5000)")
    # The instructor's live events are rate-limited (classroom/ratelimit.py: a burst of 60);
    # more messages than that would measure the limiter, not the fan-out.
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--small", type=int, nargs=2, default=[2, 5],
                        metavar=("ROOMS", "SIZE"),
                        help="small rooms talking beside the big one (default 2 of 5)")
    parser.add_argument("--rooms", type=int, default=50, help="rooms at once (default 50)")
    parser.add_argument("--size", type=int, default=20, help="members a room (default 20)")
    parser.add_argument("--rate", type=float, default=20000.0,
                        help="deliveries/s the rooms' paced senders ask for (default 20000)")
    parser.add_argument("--live-seconds", type=float, default=10.0,
                        help="how long the rooms' senders send (default 10)")
    parser.add_argument("--idle", type=int, default=10_000,
                        help="idle WebSocket clients held in one room (default 10,000; 0: "
                             "skip)")
    parser.add_argument("--storm", type=int, default=5000,
                        help="members joining one room in the join storm (default 5,000; "
                             "0: skip)")
    parser.add_argument("--storm-over", type=float, default=60.0, metavar="SECONDS",
                        help="seconds the storm's joins are spread over (default 60)")
    parser.add_argument("--only", choices=["http", "fanout", "rooms", "idle"])
    parser.add_argument("--loadgen", choices=["python", "wrk", "auto"], default="python",
                        help="closed-loop rows: benchmarks/loadgen.py (default), wrk, or "
                             "auto (wrk when installed). wrk's p99 is inflated on 2 cores: "
                             "it showed 470 ms against bare h11 where ours showed 30 ms at "
                             "the same throughput")
    parser.add_argument("--paced", type=_paced, default=_paced("api=4000,page=2000"),
                        metavar="PATH=RATE,...",
                        help="paced (open-loop) rows at the largest --clients, latency from "
                             "the scheduled send time (default api=4000,page=2000; "
                             "'none' for none); bare-h11 runs at each rate too")
    parser.add_argument("--load-processes", type=int, default=2,
                        help="processes of the Python load generator (default 2)")
    parser.add_argument("--db", help="database URL (default: a throwaway MariaDB database)")
    parser.add_argument("--mysql-server", default=http_load.MYSQL_SERVER)
    args = parser.parse_args()
    if args.quick:  # about a minute: every path once, at the targets' 200 clients
        args.seconds, args.clients = 2.0, [200]
        args.members, args.messages, args.idle = 1000, 30, 500
        args.storm, args.storm_over = 300, 3.0
        args.rooms, args.rate, args.live_seconds = 10, 4000.0, 2.0
    suite = Suite(args)
    started = time.monotonic()
    print(f"load generator: {'wrk' if suite.wrk else 'benchmarks/loadgen.py'}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.only in (None, "http"):
        suite.http()
    if args.only in (None, "fanout"):
        suite.fanout()
    if args.only in (None, "rooms"):
        suite.rooms()
    if args.only in (None, "idle"):
        suite.idle()
    print(f"\n({time.monotonic() - started:.0f} s; x_bare: HTTP rows against bare-h11 at the "
          "same clients, fan-out rows against bare-ws)")
    report("suite", ["path", "clients", "req_per_s", "x_bare", "p50_ms", "p99_ms", "max_ms",
                     "errors", "server_cpu_ms"], suite.rows)


if __name__ == "__main__":
    main()
