"""Opening a WebSocket: path, Origin, credentials; and closing them all at shutdown."""

from __future__ import annotations

import attrs
import trio

from chat.server import SHUTDOWN_GRACE
from tests.chat.harness import ORIGIN, chat_world


async def test_handshake_statuses(db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            ann = await world.signed_up("ann")  # a real sign-up's session token
            status = world.handshake_status
            # Who you are.
            assert await status(None) == 401
            assert await status(None, origin=ORIGIN) == 401
            assert await status(ann, auth="cookie") == 101
            assert await status(ann) == 101  # Bearer token (terminal client)
            # Where you come from: a browser page of another site may not use the cookie.
            assert await status(ann, auth="cookie", origin=ORIGIN) == 101
            assert await status(ann, auth="cookie", origin="http://evil.example") == 403
            assert await status(ann, auth="cookie", origin="null") == 403
            assert await status(ann, auth="cookie", origin=ORIGIN + ".evil.example") == 403
            assert await status(ann, origin="https://site.example") == 403  # scheme matters
            # Where you knock.
            assert await status(ann, path="/") == 404
            assert await status(ann, path="/wss") == 404
            assert await status(ann, path="/ws/../ws") == 404
            assert await status(ann, path="/ws?token=x") == 101  # a query string is ignored

            async with world.connect(ann, auth="cookie", origin=ORIGIN) as peer:
                assert await peer.sync() == []  # the connection works


async def test_bad_or_stale_credentials_are_refused(db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            ann = await world.person("ann")
            bob = await world.person("bob")
            status = world.handshake_status
            forged = attrs.evolve(ann, token="x" * 43)
            assert await status(forged) == 401
            assert await status(forged, auth="cookie") == 401
            assert await status(attrs.evolve(ann, token="y" * 500)) == 401
            # A signed-out session no longer opens the chat.
            await world.services.accounts.log_out(bob.token)
            assert await status(bob) == 401
            assert await status(bob, auth="cookie") == 401
            assert await status(ann) == 101


async def test_shutdown_closes_every_client_with_1001(db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with (world.connect(teacher) as t, world.connect(ann) as a,
                        world.connect(ann) as idle):
                await t.join(room.id)
                await a.join(room.id)
                await idle.sync()
                assert world.server.clients == 3
                began = trio.current_time()
                world.server.begin_shutdown()
                codes = [await peer.closed() for peer in (t, a, idle)]
                assert codes == [1001, 1001, 1001]
                assert trio.current_time() - began < SHUTDOWN_GRACE
                # The server is done soon (it does not sit out its grace period), and
                # nobody new gets in.
                with trio.fail_after(2):
                    await world.stopped.wait()
                assert world.server.clients == 0
                assert await world.handshake_status(ann) == 0
            _, records = await world.services.rooms.attendance(teacher.user, room.id)
            assert all(r.open_connections == 0 for r in records)
