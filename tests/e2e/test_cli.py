"""The `classroom` command as an operator runs it: init-db (twice), bad arguments."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import trio

from storage import SCHEMA_VERSION, open_storage
from tests.conftest import database_url


async def classroom(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process([sys.executable, "-m", "classroom.cli", *args],
                                      capture_stdout=True, capture_stderr=True, check=False)


async def test_init_db_creates_the_schema_and_is_safe_to_run_twice(backend: str,
                                                                   tmp_path: Path) -> None:
    async with database_url(backend, tmp_path) as url:
        for _ in range(2):
            done = await classroom("init-db", "--db", url)
            assert done.returncode == 0, done.stderr.decode()
            assert f"schema version {SCHEMA_VERSION} ready" in done.stdout.decode()
        async with open_storage(url) as storage:
            assert await storage.schema_version() == SCHEMA_VERSION
            assert await storage.list_memberships(1) == []


async def test_init_db_on_an_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    done = await classroom("init-db", "--db", "mysql://root@127.0.0.1:1/nothing")
    assert done.returncode != 0
    assert b"Traceback" not in done.stderr
    assert b"cannot" in done.stderr.lower()


async def test_version_names_the_package_and_the_schema() -> None:
    done = await classroom("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("classroom ")
    assert f"database schema {SCHEMA_VERSION}" in done.stdout.decode()


async def test_bad_arguments_are_refused_with_a_message(tmp_path: Path) -> None:
    for args, words in ((["serve", "--no-http", "--no-chat"], b"nothing to run"),
                        (["serve", "--http", "nowhere"], b"HOST:PORT"),
                        (["init-db", "--db", "postgres://x/y"], b"unsupported database URL")):
        done = await classroom(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert b"Traceback" not in done.stderr


async def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    """A second `classroom serve` on the same ports (an easy mistake) is told which address
    and which option, not shown a nested traceback; so is `--workers`."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'c.db'}"
    try:
        for args, option in (
                (["--http", f"127.0.0.1:{port}", "--chat", "127.0.0.1:0"], b"--http"),
                (["--http", "127.0.0.1:0", "--chat", f"127.0.0.1:{port}"], b"--chat"),
                (["--no-http", "--chat", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}"],
                 b"--metrics"),
                (["--workers", "2", "--http", f"127.0.0.1:{port}", "--chat", "127.0.0.1:0"],
                 b"--http")):
            done = await classroom("serve", "--db", db, *args)
            assert done.returncode == 2, (args, done.stderr)
            assert f"cannot listen on 127.0.0.1:{port}".encode() in done.stderr, done.stderr
            assert b"another program listens there" in done.stderr
            assert option + b" HOST:PORT" in done.stderr
            assert b"Traceback" not in done.stderr, done.stderr
    finally:
        taken.close()
