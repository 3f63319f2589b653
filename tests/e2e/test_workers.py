"""`classroom serve --workers 2`: two real worker processes share the HTTP port; a worker
that dies is started again; SIGTERM stops everything, exit 0, no process left behind."""

from __future__ import annotations

import os
import re
import signal

import httpx
import trio

from tests.e2e.server_process import running_server

_WORKER = re.compile(r"classroom: worker (\d+) pid (\d+)$")


def workers(lines: list[str]) -> list[tuple[int, int]]:
    return [(int(m.group(1)), int(m.group(2))) for line in lines if (m := _WORKER.search(line))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def served(base: str, times: int) -> None:
    """`times` requests, each on a new connection (so the kernel spreads them)."""
    for _ in range(times):
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            answer = await client.get("/api/v1/healthz")
            assert answer.status_code == 200, answer.text


async def test_two_workers_share_the_port_restart_and_stop(db_url: str) -> None:
    with trio.fail_after(90):
        async with running_server(db_url, ("--http", "127.0.0.1:0", "--chat", "127.0.0.1:0",
                                           "--workers", "2")) as server:
            assert server.http_url is not None and server.chat_url is not None
            first = workers(server.lines)
            assert sorted(index for index, _ in first) == [0, 1]
            await served(server.http_url, 20)
            # Both workers listen on the one port.
            while True:
                if sum("classroom: HTTP on" in line for line in server.lines) == 2:
                    break
                await trio.sleep(0.1)
            assert len({line for line in server.lines if "classroom: HTTP on" in line}) == 1

            # A worker killed outright is started again, and serving never stops.
            victim = dict(first)[1]
            os.kill(victim, signal.SIGKILL)
            while len(workers(server.lines)) < 3:
                await served(server.http_url, 1)
                await trio.sleep(0.1)
            replacement = workers(server.lines)[-1]
            assert replacement[0] == 1 and replacement[1] != victim
            await served(server.http_url, 20)

            assert await server.stop(signal.SIGTERM) == 0
            for _, pid in workers(server.lines):
                assert not alive(pid), f"worker {pid} outlived the server"


async def test_workers_stop_when_the_supervisor_is_killed(db_url: str) -> None:
    with trio.fail_after(60):
        async with running_server(db_url, ("--http", "127.0.0.1:0", "--no-chat",
                                           "--workers", "2")) as server:
            assert server.http_url is not None
            await served(server.http_url, 2)
            pids = [pid for _, pid in workers(server.lines)]
            assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
            while True:  # each notices within a second, then shuts down as on SIGTERM
                if not any(alive(pid) for pid in pids):
                    break
                await trio.sleep(0.2)
