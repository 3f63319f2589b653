"""A real `classroom serve` process for end-to-end tests, reusable by any of them.

    async with running_server(db_url) as server:      # HTTP only (--no-chat) by default
        ... httpx against server.http_url ...
        assert await server.stop() == 0               # SIGTERM, then the exit code

The process is `sys.executable -m classroom.cli` (what the `classroom` script runs), so the
venv running the tests is the one under test. Ports are 0, so parallel runs never collide:
the addresses are read from the process's own "classroom: HTTP on ..." / "classroom: chat
on ..." lines. stderr is inherited, so pytest shows the server's log when a test fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

STARTUP_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 10.0
_HTTP_LINE: Final = re.compile(r"classroom: HTTP on (http://\S+?)/?$")
_CHAT_LINE: Final = re.compile(r"classroom: chat on (ws://\S+)$")


@attrs.define
class ServerProcess:
    process: trio.Process
    http_url: str | None = None  # "http://127.0.0.1:PORT", no trailing slash
    chat_url: str | None = None  # "ws://127.0.0.1:PORT/ws"
    lines: list[str] = attrs.field(factory=list)  # everything it printed on stdout so far
    stdout_closed: trio.Event = attrs.field(factory=trio.Event)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum` and return the exit code once the process has ended and all it
        printed is in `lines`; trio.TooSlowError after STOP_TIMEOUT seconds (the process is
        then killed on leaving `running_server`)."""
        self.process.send_signal(signum)
        with trio.fail_after(STOP_TIMEOUT):
            code = await self.process.wait()
            await self.stdout_closed.wait()
        return code


def serve_command(db_url: str, args: Sequence[str] = ("--http", "127.0.0.1:0", "--no-chat")
                  ) -> list[str]:
    return [sys.executable, "-m", "classroom.cli", "serve", "--db", db_url, *args]


@asynccontextmanager
async def running_server(db_url: str,
                         args: Sequence[str] = ("--http", "127.0.0.1:0", "--no-chat"),
                         *, startup_timeout: float = STARTUP_TIMEOUT,
                         env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """Start `classroom serve --db db_url *args` and yield once every listener it was asked
    for has announced its address. Kills the process on exit if it is still running."""
    want_http = "--no-http" not in args
    want_chat = "--no-chat" not in args
    process = await trio.lowlevel.open_process(
        serve_command(db_url, args), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})})
    server = ServerProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            ready = trio.Event()

            def note(line: str) -> None:
                server.lines.append(line)
                if found := _HTTP_LINE.search(line):
                    server.http_url = found.group(1)
                if found := _CHAT_LINE.search(line):
                    server.chat_url = found.group(1)
                if (server.http_url or not want_http) and (server.chat_url or not want_chat):
                    ready.set()

            # `ready` is set at EOF too: a server that dies at start-up fails fast.
            nursery.start_soon(_read_lines, process, note, (server.stdout_closed, ready))
            with trio.fail_after(startup_timeout):
                await ready.wait()
            if process.returncode is not None:
                raise RuntimeError(f"classroom serve exited with {process.returncode}: "
                                   f"{server.lines}")
            yield server
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()


async def _read_lines(process: trio.Process, note: Callable[[str], None],
                      at_exit: Sequence[trio.Event]) -> None:
    """Read stdout to the end (a full pipe would block the server's prints), line by line;
    `at_exit` are set once the process has exited and everything it printed was noted."""
    assert process.stdout is not None
    buffer = b""
    while chunk := await process.stdout.receive_some(4096):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            note(raw.decode("utf-8", "replace").rstrip("\r"))
    await process.wait()
    for event in at_exit:
        event.set()
