"""A redis-server of the test's own, on a free port with its own data directory, that a
test may stop and start again (a bus restart): the system Redis at 6379 is never touched.

    async with own_redis(tmp_path) as redis:
        url = redis.url("classroom-test")        # redis://127.0.0.1:PORT/0?channel=...
        await redis.stop(); await redis.start()  # same port, same data dir
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class OwnRedis:
    port: int
    data_dir: Path
    process: trio.Process | None = None

    def url(self, channel: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?channel={channel}"

    async def start(self) -> None:
        assert REDIS_SERVER is not None and self.process is None
        self.process = await trio.lowlevel.open_process(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.data_dir), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await stream.aclose()
                return

    async def stop(self) -> None:
        """SIGKILL: what a crashed bus looks like to its clients."""
        if self.process is not None:
            self.process.kill()
            with trio.fail_after(10):
                await self.process.wait()
            self.process = None


@asynccontextmanager
async def own_redis(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    data = tmp_path / "redis"
    data.mkdir()
    redis = OwnRedis(free_port(), data)
    await redis.start()
    try:
        yield redis
    finally:
        with trio.CancelScope(shield=True):
            await redis.stop()
