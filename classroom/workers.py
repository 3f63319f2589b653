"""`classroom serve --workers N`: N processes serve HTTP on one port, so one host uses all its
cores; this process only starts them, restarts one that dies and passes SIGTERM on.

- The port is shared through SO_REUSEPORT: every worker opens its own listening socket on it
  and the kernel spreads new connections over them (no socket is handed down, so a worker
  can be restarted alone). This process binds the port too, without listening, so port 0
  resolves once and the port stays ours while a worker restarts.
- The chat listener runs in worker 0 only: a room's members meet in one hub, as they do
  with one process; the other workers' pages point at it (`--chat-url`).
- Each worker is `classroom serve` itself (one nursery, its own database pool and cache),
  in a session of its own, so a terminal's Ctrl-C reaches this process alone and each
  worker hears exactly one SIGTERM.
- A worker that exits while no shutdown is under way is started again after RESTART_DELAY
  (doubling up to RESTART_DELAY_MAX while it keeps dying within STABLE_AFTER).
- SIGTERM or SIGINT: SIGTERM to every worker, then wait; exit 0 when all exited 0. A
  worker still running after STOP_TIMEOUT is killed. A worker whose supervisor is gone
  (killed outright) stops by itself within a second (`--parent-pid`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Final

import trio

from .config import Config
from .startup import SHUTDOWN_GRACE, cannot_listen, init_db

log = logging.getLogger("classroom.workers")

RESTART_DELAY: Final = 0.5
RESTART_DELAY_MAX: Final = 10.0
STABLE_AFTER: Final = 10.0
STOP_TIMEOUT: Final = SHUTDOWN_GRACE + 5.0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _reserve(host: str, port: int, *, shared: bool) -> socket.socket:
    """A bound, not listening, socket on host:port (port 0: a free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_commands(config: Config, argv: Sequence[str], workers: int, http_port: int,
                    chat_port: int | None) -> list[list[str]]:
    """Each worker's command line: this one's, with the resolved addresses appended (the
    last of a repeated option wins)."""
    assert config.http is not None
    base = [sys.executable, "-m", "classroom.cli", *argv, "--workers", "1", "--reuse-port",
            "--parent-pid", str(os.getpid()),
            "--http", f"{_url_host(config.http[0])}:{http_port}"]
    chat: list[str] = []
    if config.chat is not None and chat_port is not None:
        chat = ["--chat", f"{_url_host(config.chat[0])}:{chat_port}"]
        if config.chat_url is None:
            base += ["--chat-url", f"ws://{_url_host(config.chat[0])}:{chat_port}/ws"]
    return [base + (chat if index == 0 and chat else ["--no-chat"])
            for index in range(workers)]


async def supervise(config: Config, argv: Sequence[str], workers: int) -> int:
    """Run `workers` worker processes until SIGTERM/SIGINT; the exit code for the shell."""
    if config.http is None:
        print("classroom: --workers needs the HTTP listener", file=sys.stderr)
        return 2
    try:
        await init_db(config)  # once, so a missing database fails here and not N times
    except Exception as exc:  # the message is all an operator needs
        print(f"classroom: cannot open the database: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        http_socket = _reserve(*config.http, shared=True)
    except OSError as exc:
        print(f"classroom: {cannot_listen(exc, 'HTTP', '--http HOST:PORT', *config.http)}",
              file=sys.stderr, flush=True)
        return 2
    chat_port = None
    if config.chat is not None:
        # Worker 0 alone listens there; learn a free port now so a restart keeps it.
        try:
            probe = _reserve(*config.chat, shared=False)
        except OSError as exc:
            http_socket.close()
            failure = cannot_listen(exc, "the chat", "--chat HOST:PORT", *config.chat)
            print(f"classroom: {failure}", file=sys.stderr, flush=True)
            return 2
        chat_port = probe.getsockname()[1]
        probe.close()
    commands = worker_commands(config, argv, workers, http_socket.getsockname()[1], chat_port)
    running: dict[int, trio.Process] = {}
    stopping = trio.Event()
    codes: dict[int, int] = {}

    async def keep_running(index: int) -> None:
        delay = RESTART_DELAY
        while not stopping.is_set():
            started = trio.current_time()
            process = await trio.lowlevel.open_process(
                commands[index], stdin=subprocess.DEVNULL, start_new_session=True)
            running[index] = process
            print(f"classroom: worker {index} pid {process.pid}", flush=True)
            try:
                codes[index] = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: leave nothing behind
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
            if stopping.is_set():
                return
            delay = RESTART_DELAY if trio.current_time() - started > STABLE_AFTER \
                else min(RESTART_DELAY_MAX, delay * 2)
            log.warning("worker %d (pid %d) exited with %s; starting it again in %.1f s",
                        index, process.pid, codes[index], delay)
            with trio.move_on_after(delay):
                await stopping.wait()

    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                for index in range(workers):
                    nursery.start_soon(keep_running, index)
                async for signum in signals:
                    log.info("signal %s: stopping the workers", signal.Signals(signum).name)
                    break
                print("classroom: shutting down", flush=True)
                stopping.set()
                for process in running.values():
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    for process in running.values():
                        await process.wait()
                nursery.cancel_scope.cancel()  # kills any worker still running
    finally:
        http_socket.close()
    return 0 if all(code == 0 for code in codes.values()) else 1
