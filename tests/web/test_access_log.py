"""One INFO line per HTTP request and per WebSocket connection (method, path, status, time,
user id; never a token or a password), and `classroom serve --quiet` without them."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from classroom.cli import LOG_FORMAT, LogFormatter
from tests.web.harness import PASSWORD, WebWorld
from tests.web.live_peer import api_user, eventually, live_peer


async def test_requests_and_connections_are_logged_without_secrets(
        live_web: WebWorld, caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(30):
        caplog.set_level(logging.INFO)
        token = await api_user(live_web, "ada")
        async with live_web.api(token) as api:
            me = (await api.get("/me?x=secret-in-query")).json()["user"]["id"]
            assert (await api.get("/classrooms/999")).status_code == 404
        async with live_peer(live_web, token):
            pass

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if r.name in ("web.access", "chat.access")]

        async def connection_logged() -> bool:  # written as the server closes its end
            return any(line.startswith("WS ") for line in logged())

        await eventually(connection_logged)
        lines = logged()
        assert any(re.fullmatch(r"POST /api/v1/signup 201 [\d.]+ms user=-", x) for x in lines)
        assert any(re.fullmatch(rf"GET /api/v1/me 200 [\d.]+ms user={me}", x) for x in lines)
        assert any(re.fullmatch(rf"GET /api/v1/classrooms/999 404 [\d.]+ms user={me}", x)
                   for x in lines)
        assert any(re.fullmatch(rf"WS /ws 101 [\d.]+s user={me} close=\d+", x) for x in lines)
        everything = "\n".join(r.getMessage() for r in caplog.records
                               if not r.name.startswith("httpx"))  # the test's own client
        assert token not in everything and PASSWORD not in everything
        assert "secret-in-query" not in everything


def serve_and_log(tmp_path: Path, *flags: str) -> str:
    """Run `classroom serve`, make one request, stop it; what it wrote on stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "classroom.cli", "serve", "--db",
         f"sqlite:///{tmp_path / 'log.db'}", "--http", "127.0.0.1:0", "--no-chat", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if found := re.search(r"HTTP on (http://\S+?)/?$", line):
                httpx.get(found.group(1) + "/api/v1/healthz", timeout=10)
                break
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
    return errors


def test_quiet_turns_the_access_log_off(tmp_path: Path) -> None:
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO web\.access: "
                     r"GET /api/v1/healthz 200 ", serve_and_log(tmp_path), re.MULTILINE)
    assert "web.access" not in serve_and_log(tmp_path, "--quiet")


def test_log_lines_carry_the_time_as_logging_formats_it() -> None:
    # The serve command's formatter makes the date and time once per second.
    standard, ours = logging.Formatter(LOG_FORMAT), LogFormatter(LOG_FORMAT)
    for created in (1700000000.0, 1700000000.9995, 1700000001.25, 1700000060.5, 1700003600.0):
        record = logging.LogRecord("web.access", logging.INFO, __file__, 1, "GET / 200", (),
                                   None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
