"""The end of a lecture: half of a big room's members close their sockets at once (one load
process closes them all within a few milliseconds, without close frames), while the other
half stays and, with `--messages`, the instructor's fan-out runs. Measured on the server:
its CPU from the close until the database shows every departure recorded, per closed
connection; how long that took; and how long the members of two small rooms waited for
their own events meanwhile (intended send -> arrival at the other members).

    python -m benchmarks.mass_close --members 5000 --messages 60
    (on a throwaway MariaDB database by default; --db for another)

The longest scheduler batch (task steps between two waits for I/O) is not measured here:
run the server with a trio Instrument (before_io_wait / after_io_wait, counting
before_task_step) for it; `--profile` records the server with py-spy instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Final

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import http_load
from benchmarks.common import cpu_seconds, percentile, py_spy, report, server_process
from benchmarks.live_load import BYSTANDER_PERIOD, WINDOW, LoadGroup, setup_rooms

# The closers close this long after the start; the others run on this long after that.
CLOSE_AFTER: Final = 1.0
STAY: Final = 20.0


async def open_count(db_url: str, room_id: int) -> int:
    from storage import open_storage
    async with open_storage(db_url) as storage:
        return sum(1 for a in await storage.list_attendance(room_id) if a.open_connections)


async def wait_recorded(db_url: str, room_id: int, staying: int, deadline: float) -> float:
    """Poll until the room's open attendance is down to `staying`; the wall time then."""
    from storage import open_storage
    async with open_storage(db_url) as storage:
        while time.time() < deadline:
            records = await storage.list_attendance(room_id)
            if sum(1 for a in records if a.open_connections) <= staying:
                return time.time()
            await trio.sleep(0.02)
    return float("nan")


def mass_close(db_url: str, chat_url: str, pid: str, rooms: list[tuple[int, str, list[str]]],
               messages: int, profile: bool = False) -> dict[str, Any]:
    (room_id, teacher, members), small = rooms[0], rooms[1:]
    half = len(members) // 2
    closers = [{"room": room_id, "token": t} for t in members[:half]]
    stayers = [{"room": room_id, "token": t} for t in members[half:]]
    side: list[dict[str, Any]] = []
    bystanders = [(rid, t) for rid, _, tokens in small for t in tokens]
    for i, (rid, token) in enumerate(bystanders):
        side.append({"room": rid, "token": token, "probe": True,
                     "send": {"mode": "paced", "period": BYSTANDER_PERIOD,
                              "phase": BYSTANDER_PERIOD * i / max(1, len(bystanders))}})
    # The instructor in a process of its own: it ends (closing its socket) once it is done.
    shares = [side, closers, stayers]
    if messages:
        shares.append([{"room": room_id, "token": teacher,
                        "send": {"mode": "window", "window": WINDOW, "count": messages}}])
    group = LoadGroup(chat_url, shares)
    connected = group.connected()
    staying = trio.run(open_count, db_url, room_id) - len(closers)
    start = time.time() + 0.3
    close_at = start + CLOSE_AFTER
    until = close_at + STAY
    results: list[dict[str, Any]] = []
    # Each process runs to its own end: the closers' end is the close.
    runner = threading.Thread(target=lambda: results.extend(
        _run(group, start, close_at, until)))
    runner.start()
    time.sleep(max(0.0, close_at - time.time() - 0.02))
    spy = py_spy(pid, "mass_close", rate=500) if profile else None
    cpu_before = cpu_seconds(pid)
    recorded_at = trio.run(wait_recorded, db_url, room_id, staying, until)
    cpu = cpu_seconds(pid) - cpu_before
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes what it has
        spy.wait(30)
    runner.join()
    side_result = results[0]
    ended = recorded_at if recorded_at == recorded_at else until  # (nan: not all recorded)
    during = [ms for at, ms in side_result["latencies"] if close_at <= at <= ended + 0.2]
    before = [ms for at, ms in side_result["latencies"] if start + 0.2 <= at < close_at]
    return {
        "members": len(members),
        "connected": connected,
        "closed": len(closers),
        "fanout_messages": messages,
        "recorded_s": round(recorded_at - close_at, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_close": 1e6 * cpu / max(1, len(closers)),
        "before_p50_ms": percentile(before, 50),
        "before_max_ms": max(before, default=float("nan")),
        "others_samples": len(during),
        "others_p50_ms": percentile(during, 50),
        "others_p99_ms": percentile(during, 99),
        "others_max_ms": max(during, default=float("nan")),
        "load_average": os.getloadavg()[0],
        "close_at": round(close_at, 3),
    }


def _run(group: LoadGroup, start: float, close_at: float, until: float
         ) -> list[dict[str, Any]]:
    for index, control in enumerate(group.controls):
        end = close_at if index == 1 else until
        control.put({"start": start, "send_until": until, "until": end,
                     "window": (start, until)})
    done: dict[int, dict[str, Any]] = {}
    while len(done) < len(group.procs):
        _, index, value = group.results.get(timeout=until - time.time() + 60)
        done[index] = value
        if index == 1:
            # A process closes its sockets once done and released: the closers now, the
            # others at their own end.
            group.release.set()
    group.release.set()
    for proc in group.procs:
        proc.join(10)
    return [done[i] for i in range(len(group.procs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=0,
                        help="the instructor's messages to the big room meanwhile")
    parser.add_argument("--db", help="database URL (default: a throwaway MariaDB database)")
    parser.add_argument("--mysql-server", default=http_load.MYSQL_SERVER)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record the server from the close until all are recorded"
                             " (benchmarks/results/profile_mass_close.txt)")
    parser.add_argument("--loud", action="store_true",
                        help="keep the access log on (default: serve --quiet)")
    args = parser.parse_args()
    database = (nullcontext(args.db) if args.db
                else http_load.throwaway_mysql(args.mysql_server))
    with database as db_url:
        rooms = trio.run(setup_rooms, db_url, [args.members, 5, 5])
        extra = ["--no-http"] + ([] if args.loud else ["--quiet"])
        with server_process(db_url, *extra) as urls:
            row = mass_close(db_url, urls["chat"], urls["pid"], rooms, args.messages,
                             args.profile)
    report("mass_close", list(row), [row])


if __name__ == "__main__":
    main()
