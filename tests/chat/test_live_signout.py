"""A sign-in that ends (logout, expiry, password change) ends its live connections too, on
every chat server: closed with 4401 and the reason, and nothing more is stored for them."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed

from chat import sessions
from chat.sessions import CLOSE_SIGNED_OUT
from classroom.accounts import SESSION_LIFETIME
from tests.chat.harness import ManualClock, Peer, Person, chat_servers, chat_world

CHECK = 0.05  # seconds between the servers' sign-in checks, short for tests


async def closed_with(peer: Peer) -> tuple[int | None, str | None]:
    try:
        while True:
            await peer.receive()
    except ConnectionClosed as exc:
        assert exc.reason is not None
        return exc.reason.code, exc.reason.reason


async def test_expired_session_ends_its_live_connections(db_url: str) -> None:
    clock = ManualClock()
    with trio.fail_after(15):
        async with chat_world(db_url, clock=clock, session_interval=CHECK) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            async with world.joined(lesson.room.id, teacher, ann) as (t, a):
                await a.say(lesson.room.id, "before")
                clock.advance(SESSION_LIFETIME.total_seconds() + 1)
                assert await closed_with(a) == (CLOSE_SIGNED_OUT, "session expired")
                assert await closed_with(t) == (CLOSE_SIGNED_OUT, "session expired")
            assert await world.last_seq(lesson.room.id) == 1
            assert await world.handshake_status(ann) == 401


async def test_logout_on_one_server_ends_connections_on_another(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_servers(db_url, 2, session_interval=CHECK) as (one, two):
            lesson = await one.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room_id = lesson.room.id
            async with two.joined(room_id, teacher, ann) as (t, a), \
                    one.joined(room_id, ann) as (a_here,):
                # Signed out through the first server's process (as an app server would).
                await one.services.accounts.log_out(ann.token)
                assert await closed_with(a_here) == (CLOSE_SIGNED_OUT, "signed out")
                assert await closed_with(a) == (CLOSE_SIGNED_OUT, "signed out")
                # The instructor, signed in on their own, carries on.
                await t.say(room_id, "still here")
            assert await two.handshake_status(ann) == 401


async def test_password_change_ends_the_other_sign_ins_only(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_servers(db_url, 2, session_interval=CHECK) as (one, two):
            ann = await one.signed_up("ann")
            again = await one.services.accounts.log_in("ann", "password123", address="x")
            async with two.connect(ann) as old, one.connect(ann) as old_here:
                await old.sync()
                async with two.connect(Person(again.user, again.token)) as kept:
                    await one.services.accounts.change_password(
                        ann.user, again.token, "password123", "a new password")
                    assert await closed_with(old_here) == (CLOSE_SIGNED_OUT, "signed out")
                    assert await closed_with(old) == (CLOSE_SIGNED_OUT, "signed out")
                    assert await kept.sync() == []


async def test_a_sign_in_open_in_two_tabs_is_still_watched_after_one_closes(db_url: str
                                                                          ) -> None:
    # The check keeps one entry per sign-in for all its connections: the first to close
    # must not take the others out of it.
    with trio.fail_after(15):
        async with chat_world(db_url, session_interval=CHECK) as world:
            ann = await world.signed_up("ann")
            async with world.connect(ann) as kept:
                await kept.sync()
                async with world.connect(ann) as tab:
                    await tab.sync()
                await trio.sleep(3 * CHECK)  # checks run with the tab gone
                await kept.sync()
                await world.services.accounts.log_out(ann.token)
                assert await closed_with(kept) == (CLOSE_SIGNED_OUT, "signed out")


async def test_a_check_in_slices_reaches_every_sign_in(db_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "CHECK_SLICE", 1)  # one sign-in per turn of the check
    with trio.fail_after(15):
        async with chat_world(db_url, session_interval=CHECK) as world:
            people = [await world.signed_up(name) for name in ("ann", "bob", "cyd")]
            async with world.connect(people[0]) as ann, world.connect(people[1]) as bob, \
                    world.connect(people[2]) as cyd:
                for peer in (ann, bob, cyd):
                    await peer.sync()
                for person in (people[2], people[0]):
                    await world.services.storage.delete_auth_session(
                        world.services.accounts.session_key(person.token))
                # Deleted behind the check's back (no notice): found by the next check.
                assert await closed_with(cyd) == (CLOSE_SIGNED_OUT, "signed out")
                assert await closed_with(ann) == (CLOSE_SIGNED_OUT, "signed out")
                assert await bob.sync() == []
