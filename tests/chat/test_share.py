"""`classroom share` against a real `classroom serve` process: the real command under a
pseudo-terminal (it logs in like `classroom chat`), the instructor on a WebSocket. Files
arrive when sharing starts, an edit arrives as an update of that file alone, ignored and
oversized files never arrive, nothing is sent while sharing is off, and the room's end ends
the command; it comes back by itself when the connection drops. The sans-IO parts (scan,
changes) are tested on their own first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from chat.terminal.share import MAX_BYTES, MAX_FILES, IgnoreRules, changes, scan
from tests.chat.test_terminal import (
    E2E_TIMEOUT,
    PASSWORD,
    Api,
    ChatProxy,
    Peer,
    port_of,
    pty_client,
    start_class,
    ws_peer,
)
from tests.e2e.server_process import running_server


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def test_scan_applies_the_room_rules_and_the_share_limits(tmp_path: Path) -> None:
    write(tmp_path, {"main.py": "print(1)", "build/out.py": "x", "cache.pyc": b"\0",
                     ".env": "SECRET=1", "big.txt": "x" * (MAX_BYTES + 1),
                     "photo.png": b"\x89PNG\xff\xfe", ".git/config": "[core]",
                     "src/util.py": "def f(): pass"})
    rules = IgnoreRules(names=(".env",), dirs=("build",), extensions=(".pyc",))
    found = scan(tmp_path, rules)
    assert found.files == {"main.py": "print(1)", "src/util.py": "def f(): pass"}
    why = dict(found.skipped)
    assert why["build/"] == why[".env"] == why["cache.pyc"] == "ignored by the room's settings"
    assert why["big.txt"].startswith("larger than the share limit")
    assert why["photo.png"] == "not UTF-8 text"
    assert ".git/config" not in why and ".git/" not in why


def test_scan_skips_names_the_server_would_refuse(tmp_path: Path) -> None:
    """A control or bidi character in one file's name must not cost the whole share."""
    write(tmp_path, {"ok.py": "x", "evil\u202eyp.exe": "y", "tab\tname.py": "z"})
    found = scan(tmp_path, IgnoreRules())
    assert found.files == {"ok.py": "x"}
    assert sorted(why for _, why in found.skipped) == [
        "control or invisible characters in its name"] * 2


def test_scan_keeps_to_the_file_count_and_total_size(tmp_path: Path) -> None:
    write(tmp_path, {f"f{i:03}.txt": "x" for i in range(MAX_FILES + 3)})
    found = scan(tmp_path, IgnoreRules())
    assert len(found.files) == MAX_FILES
    assert [name for name, _ in found.skipped] == [f"f{i:03}.txt" for i in
                                                  range(MAX_FILES, MAX_FILES + 3)]
    half = "y" * (MAX_BYTES // 2 + 1)
    other = tmp_path / "other"
    write(other, {"a.txt": half, "b.txt": half})
    found = scan(other, IgnoreRules())
    assert list(found.files) == ["a.txt"]
    assert "share limit" in dict(found.skipped)["b.txt"]


def test_changes_are_new_changed_and_deleted_files_only() -> None:
    assert changes({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "two", "d": "4"}) == [
        {"filename": "b", "status": "changed", "content": "two"},
        {"filename": "c", "status": "deleted", "content": ""},
        {"filename": "d", "status": "new", "content": "4"}]


async def code_events(teacher: Peer) -> dict[str, Any]:
    while True:
        got = await teacher.receive()
        if got["event"] in ("sharing/code_send", "sharing/code_update"):
            return got


def shared(frame: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {f["filename"]: (f["status"], f["content"]) for f in frame["data"]["files"]}


async def test_classroom_share_against_a_real_server(tmp_path: Path) -> None:
    work = tmp_path / "work"
    write(work, {"main.py": "print('hi')\n", "notes.md": "# notes\n",
                 "build/out.py": "generated", "cache.pyc": b"\0\1",
                 "huge.txt": "z" * (MAX_BYTES + 10)})
    with trio.fail_after(E2E_TIMEOUT):
        async with running_server(f"sqlite:///{tmp_path / 'c.db'}",
                                  ("--http", "127.0.0.1:0", "--chat", "127.0.0.1:0")) as server, \
                trio.open_nursery() as nursery:
            assert server.http_url and server.chat_url
            proxy = ChatProxy(port_of(server.chat_url))
            proxy_port = await nursery.start(proxy.serve)
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
                grace, _, _, room_id = await start_class(Api(http), server)
            async with ws_peer(server.chat_url, grace) as teacher:
                await teacher.join(room_id)
                await teacher.request("settings", {"room_id": room_id,
                                                   "files_to_ignore": "build/\n*.pyc\n"})
                async with pty_client(str(work), "--server", server.http_url, "--user", "ann",
                                      "--chat", f"ws://127.0.0.1:{proxy_port}/ws",
                                      program="share") as client:
                    at = await client.expect("Password: ")
                    await client.type(PASSWORD + "\n")
                    at = await client.expect("Signed in as Ann Lee", start=at)
                    at = await client.expect("sharing is off: waiting", start=at)
                    # An edit while sharing is off goes nowhere (the first code event the
                    # teacher gets is the full send after sharing starts).
                    write(work, {"main.py": "print('edited while off')\n"})
                    await trio.sleep(1)
                    await teacher.request("sharing/start", {"room_id": room_id})
                    first = await code_events(teacher)
                    assert first["event"] == "sharing/code_send"
                    assert shared(first) == {"main.py": ("new", "print('edited while off')\n"),
                                             "notes.md": ("new", "# notes\n")}
                    at = await client.expect(r"skipped build/: ignored by the room's settings",
                                             start=at)
                    await client.expect(r"skipped cache.pyc: ignored", start=at)
                    await client.expect(r"skipped huge.txt: larger than the share limit",
                                        start=at)

                    write(work, {"main.py": "print('v2')\n"})
                    update = await code_events(teacher)
                    assert update["event"] == "sharing/code_update"
                    assert shared(update) == {"main.py": ("changed", "print('v2')\n")}
                    (work / "notes.md").unlink()
                    update = await code_events(teacher)
                    assert shared(update) == {"notes.md": ("deleted", "")}

                    # The connection drops; an edit made meanwhile arrives once it is back.
                    proxy.blocked = True
                    proxy.cut()
                    at = await client.expect("reconnecting in", start=at)
                    write(work, {"main.py": "print('edited while away')\n"})
                    proxy.blocked = False
                    resent = await code_events(teacher)
                    assert resent["event"] == "sharing/code_send"
                    assert shared(resent) == {"main.py": ("new", "print('edited while away')\n")}

                    await teacher.request("sharing/end", {"room_id": room_id})
                    at = await client.expect("sharing is off", start=at)
                    write(work, {"main.py": "print('v3 while off')\n", "new.py": "x = 1\n"})
                    await trio.sleep(1.5)
                    # Back on: the first code event carries the edits made while off.
                    await teacher.request("sharing/start", {"room_id": room_id})
                    again = await code_events(teacher)
                    assert again["event"] == "sharing/code_send"
                    assert set(shared(again)) == {"main.py", "new.py"}
                    assert shared(again)["main.py"][1] == "print('v3 while off')\n"

                    await teacher.request("room/close", {"room_id": room_id})
                    await client.expect("ended this live session", start=at)
                    with trio.move_on_after(10):
                        await client.process.wait()
                    assert client.process.returncode == 0
            nursery.cancel_scope.cancel()
