"""The lab's grid with many students: how soon a student's `signal` reaches the instructor's
grid, and how long the instructor's page takes to get the grid.

Starts a real `classroom serve` process, makes an instructor and N students (straight in the
database), sends a lesson of S steps, connects and joins every student (raw WebSocket
clients, cheap to run), has each share a few files and mark a few steps, then measures:

- signal -> grid: a student sends `signal` (HELP, then NONE), the instructor's connection
  reads the `signal` frame lab.js applies to the grid. Once one student at a time (`serial`),
  then all N at once (`burst`). Wall clock, same machine.
- grid load: the results page's HTML (`GET /rooms/{id}/stats`), then a fresh WebSocket
  connection's `room/join` answer carrying the grid of N students x S steps (what lab.js
  draws it from); the answer's size too. With `--browser`, also the whole thing in headless
  Chromium: from navigation to the grid's N rows drawn (Debian's chromium + chromedriver).

    python benchmarks/lab_grid.py --students 200 --steps 10
    python benchmarks/lab_grid.py --db mysql://root@127.0.0.1:3306/bench --students 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import cpu_seconds, percentile, report, server_process
from benchmarks.fanout import RawClient, join, setup

LOADS = 20
SERIAL_ROUNDS = 2


def _frame(event: str, data: dict[str, Any], ref: int) -> str:
    return json.dumps({"event": event, "data": data, "ref": ref}, separators=(",", ":"))


async def run(chat_url: str, http_url: str, db_url: str, students: int, steps: int,
              server_pid: str) -> dict[str, Any]:
    teacher_token, tokens, room_id = await setup(db_url, students)
    parts = urlsplit(chat_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8001
    teacher = await RawClient.connect(host, port, teacher_token)
    await join(teacher, room_id)
    lesson = [{"name": f"Step {i + 1}", "content": f"Do **thing {i + 1}**\n\n```python\n"
               f"print({i})\n```", "type": "exercise"} for i in range(steps)]
    await teacher.send(_frame("steps/all", {"room_id": room_id, "steps": lesson}, 2))
    await teacher.send(_frame("sharing/start", {"room_id": room_id}, 3))

    by_client: dict[int, RawClient] = {}
    ids: dict[int, int] = {}  # client index -> user id

    async def connect(index: int, token: str) -> None:
        client = await RawClient.connect(host, port, token)
        await client.send(_frame("room/join", {"room_id": room_id}, 1))
        async for payload in client.frames():
            if payload.startswith(b'{"event":"room/join"'):
                ids[index] = json.loads(payload)["data"]["you"]["id"]
                break
        by_client[index] = client

    for start in range(0, students, 50):
        async with trio.open_nursery() as nursery:
            for i, token in enumerate(tokens[start:start + 50], start):
                nursery.start_soon(connect, i, token)
    clients = list(by_client.values())
    # Work in the room: some steps done, a few files shared, by every student.
    for client in clients:
        for step in range(min(3, steps)):
            await client.send(_frame("steps/status/to_mentor", {
                "room_id": room_id, "step": step, "status": "DONE"}, 10 + step))
        await client.send(_frame("sharing/code_send", {"room_id": room_id, "files": [
            {"filename": f"src/file{k}.py", "status": "new", "content": "x = 1\n" * 40}
            for k in range(3)]}, 20))

    arrived: dict[int, float] = {}
    waiting: dict[int, trio.Event] = {}

    async def teacher_reads() -> None:
        async for payload in teacher.frames():
            if payload.startswith(b'{"event":"signal"'):
                sender = json.loads(payload)["data"]["from"]["id"]
                arrived[sender] = time.perf_counter()
                if sender in waiting:
                    waiting.pop(sender).set()

    async def drain(client: RawClient) -> None:
        async for _ in client.frames():
            pass

    serial: list[float] = []
    burst: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(teacher_reads)
        for client in clients:
            nursery.start_soon(drain, client)
        await trio.sleep(2)  # the shares and statuses above are stored by now
        cpu_before = cpu_seconds(server_pid)
        for round_ in range(SERIAL_ROUNDS):
            value = "HELP" if round_ % 2 == 0 else "NONE"
            for index, client in by_client.items():
                uid = ids[index]
                done = waiting[uid] = trio.Event()
                sent = time.perf_counter()
                await client.send(_frame("signal", {"room_id": room_id, "value": value}, 30))
                with trio.fail_after(10):
                    await done.wait()
                serial.append((arrived[uid] - sent) * 1000)
        serial_cpu = cpu_seconds(server_pid) - cpu_before
        events: dict[int, trio.Event] = {ids[i]: trio.Event() for i in by_client}
        waiting.update(events)
        sent_at = time.perf_counter()
        async with trio.open_nursery() as senders:
            for client in clients:
                senders.start_soon(client.send, _frame("signal", {"room_id": room_id,
                                                                  "value": "HELP"}, 31))
        with trio.fail_after(30):
            for event in events.values():
                await event.wait()
        burst = [(arrived[uid] - sent_at) * 1000 for uid in events]
        nursery.cancel_scope.cancel()

    # Loading the grid: the page, then the join answer on a fresh connection.
    page_ms: list[float] = []
    join_ms: list[float] = []
    answer_bytes = 0
    async with httpx.AsyncClient(base_url=http_url, timeout=30,
                                 cookies={"classroom_session": teacher_token}) as http:
        for _ in range(LOADS):
            began = time.perf_counter()
            page = await http.get(f"/rooms/{room_id}/stats")
            assert page.status_code == 200, page.status_code
            page_ms.append((time.perf_counter() - began) * 1000)
    for _ in range(LOADS):
        began = time.perf_counter()
        viewer = await RawClient.connect(host, port, teacher_token)
        await viewer.send(_frame("room/join", {"room_id": room_id, "after": 10**9}, 1))
        async for payload in viewer.frames():
            if payload.startswith(b'{"event":"room/join"'):
                answer_bytes = len(payload)
                grid = json.loads(payload)["data"]["state"]["grid"]
                assert len(grid) == students and len(grid[0]["statuses"]) == steps
                break
        join_ms.append((time.perf_counter() - began) * 1000)
        await viewer.stream.aclose()
    for client in [*clients, teacher]:
        await client.stream.aclose()
    return {
        "room_id": room_id,
        "teacher_token": teacher_token,
        "students": students,
        "steps": steps,
        "signal_p50_ms": percentile(serial, 50),
        "signal_p99_ms": percentile(serial, 99),
        "server_cpu_ms_per_signal": 1000 * serial_cpu / max(1, len(serial)),
        "burst_p50_ms": percentile(burst, 50),
        "burst_p99_ms": percentile(burst, 99),
        "page_p50_ms": percentile(page_ms, 50),
        "grid_join_p50_ms": percentile(join_ms, 50),
        "grid_join_p99_ms": percentile(join_ms, 99),
        "grid_answer_kib": answer_bytes / 1024,
    }


def browser_loads(http_url: str, token: str, room_id: int, students: int
                  ) -> list[tuple[float, float]]:
    """Milliseconds from navigation start to the grid's rows drawn, in headless Chromium,
    and to the page's DOMContentLoaded (the rest is the WebSocket, the join and drawing)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    times = []
    try:
        driver.get(http_url + "/static/favicon.svg")
        driver.add_cookie({"name": "classroom_session", "value": token, "path": "/"})
        for _ in range(LOADS // 4):
            driver.get(f"{http_url}/rooms/{room_id}/stats")
            WebDriverWait(driver, 30, poll_frequency=0.005).until(lambda d: d.execute_script(
                "return document.querySelectorAll('#lab-grid tbody tr[data-user-id]').length")
                == students)
            times.append((float(driver.execute_script("return performance.now()")),
                          float(driver.execute_script(
                              "return performance.getEntriesByType('navigation')[0]"
                              ".domContentLoadedEventEnd"))))
    finally:
        driver.quit()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--browser", action="store_true",
                        help="also load the results page in headless Chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db or f"sqlite:///{tmp}/bench.db"
        with server_process(db_url) as urls:
            http_url = urls["http"].rstrip("/")
            row = trio.run(run, urls["chat"], http_url, db_url, args.students, args.steps,
                           urls["pid"])
            room_id, token = row.pop("room_id"), row.pop("teacher_token")
            if args.browser:
                loads = browser_loads(http_url, token, room_id, args.students)
                row["browser_dom_ready_p50_ms"] = percentile([d for _, d in loads], 50)
                row["browser_grid_p50_ms"] = percentile([g for g, _ in loads], 50)
                row["browser_grid_max_ms"] = max(g for g, _ in loads)
    report("lab_grid", list(row), [row])


if __name__ == "__main__":
    main()
