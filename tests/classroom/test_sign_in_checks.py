"""The sign-in check live connections make every few seconds (`Accounts.ended_sessions`), on
each backend: the cache answers for the sign-ins it holds, so a check of unchanged sign-ins
runs no statement; a logout in another process reaches the cache through the change log,
which asks for a check at once; expiry and a cache that does not serve go to the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from classroom.accounts import SESSION_LIFETIME, Accounts
from classroom.cache import Cache
from storage import Storage, open_storage
from storage.stats import observe_statements
from tests.chat.harness import ManualClock
from tests.classroom.test_cache import polled

PEOPLE = ("ann", "bob", "cyd")


@asynccontextmanager
async def counted() -> AsyncIterator[list[float]]:
    """The statements this process runs meanwhile (one entry each)."""
    ran: list[float] = []
    stop = observe_statements(ran.append)
    try:
        yield ran
    finally:
        stop()


async def signed_in(accounts: Accounts) -> dict[str, str]:
    """Each of PEOPLE signed up: name -> their sign-in's token."""
    return {name: (await accounts.sign_up(name, name.title(), "password123")).token
            for name in PEOPLE}


async def test_a_check_of_held_sign_ins_runs_no_statement_until_one_ends_elsewhere(
        storage: Storage, db_url: str) -> None:
    with trio.fail_after(20):
        clock = ManualClock()
        cache = Cache(storage)
        accounts = Accounts(storage, cache, clock=clock)
        told: list[int] = []
        accounts.on_sessions_ended(lambda: told.append(1))
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.follow)
            await polled(cache)
            tokens = await signed_in(accounts)
            keys = {name: accounts.session_key(token) for name, token in tokens.items()}
            async with counted() as ran:
                assert await accounts.ended_sessions(keys.values()) == {}
            assert ran, "the first check asks the database (nothing held yet)"
            async with counted() as ran:
                assert await accounts.ended_sessions(keys.values()) == {}
            assert ran == []
            # Another process (its own storage and cache, no bus) signs bob out.
            async with open_storage(db_url) as elsewhere:
                await Accounts(elsewhere, Cache(elsewhere), clock=clock).log_out(tokens["bob"])
            await polled(cache)
            assert told, "reading the logout from the log asks for a check at once"
            async with counted() as ran:
                assert await accounts.ended_sessions(keys.values()) == {
                    keys["bob"]: "signed out"}
            assert ran
            async with counted() as ran:
                assert await accounts.ended_sessions([keys["ann"], keys["cyd"]]) == {}
            assert ran == []
            clock.advance(SESSION_LIFETIME.total_seconds())
            assert await accounts.ended_sessions([keys["ann"], keys["cyd"]]) == {
                keys["ann"]: "session expired", keys["cyd"]: "session expired"}
            nursery.cancel_scope.cancel()


async def test_without_a_serving_cache_every_check_asks_the_database(storage: Storage
                                                                    ) -> None:
    with trio.fail_after(20):
        clock = ManualClock()
        accounts = Accounts(storage, Cache(storage), clock=clock)  # the cache never follows
        tokens = await signed_in(accounts)
        keys = {name: accounts.session_key(token) for name, token in tokens.items()}
        for _ in range(2):
            async with counted() as ran:
                assert await accounts.ended_sessions(keys.values()) == {}
            assert ran
        await accounts.log_out(tokens["bob"])
        assert await accounts.ended_sessions(keys.values()) == {keys["bob"]: "signed out"}
        clock.advance(SESSION_LIFETIME.total_seconds())
        assert await accounts.ended_sessions(keys.values()) == {
            keys["ann"]: "session expired", keys["bob"]: "signed out",
            keys["cyd"]: "session expired"}
