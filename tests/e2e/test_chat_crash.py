"""A chat server killed with SIGKILL mid-session: its connections' attendance ends as of its
last lease renewal once it starts again, so nobody stays online and no minutes keep counting
(before, `open_connections` stayed at 1 and the session page showed them online forever)."""

from __future__ import annotations

import secrets
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from trio_websocket import open_websocket_url

from classroom.accounts import SESSION_LIFETIME, hash_token
from storage import Storage, open_storage
from tests.chat.harness import Peer
from tests.e2e.server_process import running_server


async def signed_in(storage: Storage, name: str, now: datetime) -> tuple[int, str]:
    user = await storage.create_user(name, name.title(), "not a real hash", now)
    token = secrets.token_urlsafe(32)
    await storage.create_auth_session(hash_token(token), user.id, now, now + SESSION_LIFETIME)
    return user.id, token


async def open_connections(storage: Storage, room_id: int) -> dict[int, int]:
    return {a.user.id: a.open_connections for a in await storage.list_attendance(room_id)}


async def test_kill_9_mid_session_then_restart_ends_everyone_attendance(db_url: str) -> None:
    args = ("--no-http", "--chat", "127.0.0.1:0", "--server-name", "chat-a")
    with trio.fail_after(90):
        async with open_storage(db_url) as storage:
            await storage.init_schema()
            now = datetime.now(UTC).replace(tzinfo=None)
            teacher_id, teacher_token = await signed_in(storage, "teacher", now)
            ann_id, ann_token = await signed_in(storage, "ann", now)
            teacher = await storage.get_user(teacher_id)
            assert teacher is not None
            classroom = await storage.create_classroom("Networks", "", "CRASH1", teacher, now)
            await storage.add_member(classroom.id, ann_id, "student", now)
            room = await storage.create_room(classroom.id, "live", "", teacher_id, now)

            async with running_server(db_url, args) as server:
                assert server.chat_url is not None
                async with open_websocket_url(
                        server.chat_url,
                        extra_headers=[(b"Authorization", f"Bearer {teacher_token}".encode())],
                ) as t_ws, open_websocket_url(
                        server.chat_url,
                        extra_headers=[(b"Authorization", f"Bearer {ann_token}".encode())],
                ) as a_ws:
                    await Peer(t_ws, None).join(room.id)
                    await Peer(a_ws, None).join(room.id)
                    assert await open_connections(storage, room.id) == {teacher_id: 1,
                                                                        ann_id: 1}
                    killed_at = datetime.now(UTC).replace(tzinfo=None)
                    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
                    # Nothing ran on the way down: the database still says "online".
                    assert await open_connections(storage, room.id) == {teacher_id: 1,
                                                                        ann_id: 1}
                sockets: list[Any] = [t_ws, a_ws]
                for ws in sockets:
                    # trio-websocket's client keeps a socket the server never closed cleanly.
                    await ws._stream.aclose()

            async with running_server(db_url, args):
                while True:  # cleared when the restarted server takes its lease
                    if set((await open_connections(storage, room.id)).values()) == {0}:
                        break
                    await trio.sleep(0.05)
            records = await storage.list_attendance(room.id)
            for record in records:
                assert record.last_leave is not None
                assert record.last_leave <= killed_at
                # Counted up to the crash (its last renewal), not up to the restart.
                assert timedelta(seconds=record.seconds_connected) <= killed_at - now
            await trio.sleep(1)
            assert await storage.list_attendance(room.id) == records  # minutes stopped
