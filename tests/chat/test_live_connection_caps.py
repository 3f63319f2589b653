"""Connection caps: one client address, and one user, hold a bounded share of the chat
listener, so neither can lock everyone else out."""

from __future__ import annotations

import trio
from trio_websocket import wrap_client_stream

from tests.chat.harness import chat_world, tcp_from


async def test_one_address_at_its_cap_does_not_lock_out_others(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url, max_per_address=3) as world:
            ann = await world.person("ann")
            # Two silent TCP connections and one open WebSocket from one address: its share.
            held = [await tcp_from("127.0.0.2", world.port) for _ in range(2)]
            async with trio.open_nursery() as nursery:
                stream = await tcp_from("127.0.0.2", world.port)
                ws = await wrap_client_stream(
                    nursery, stream, "127.0.0.1", "/ws",
                    extra_headers=[(b"Authorization", f"Bearer {ann.token}".encode())])
                await trio.sleep(0.1)
                assert await world.handshake_status(ann, source="127.0.0.2") == 503
                for source in ("127.0.0.1", "127.0.0.3"):
                    assert await world.handshake_status(ann, source=source) == 101
                async with world.connect(ann) as peer:
                    assert await peer.sync() == []
                await ws.aclose()
                await stream.aclose()
            for _ in range(100):  # the freed slot is reused once the server saw the close
                if await world.handshake_status(ann, source="127.0.0.2") == 101:
                    break
                await trio.sleep(0.02)
            else:
                raise AssertionError("the address never got its slot back")
            for silent in held:
                await silent.aclose()


async def test_one_user_holds_a_bounded_number_of_connections(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url, max_per_user=2) as world:
            ann, bob = await world.person("ann"), await world.person("bob")
            async with world.connect(ann) as first, world.connect(ann) as second:
                assert await world.handshake_status(ann) == 429
                assert await world.handshake_status(ann, auth="cookie",
                                                    source="127.0.0.5") == 429
                assert await world.handshake_status(bob) == 101
                assert await first.sync() == [] and await second.sync() == []
            for _ in range(100):
                if await world.handshake_status(ann) == 101:
                    break
                await trio.sleep(0.02)
            else:
                raise AssertionError("closing connections did not free the user's slots")
