"""The per-process cache's own rules, on each backend: it serves only while following the
change log, a fill that raced an invalidation is not kept, and a change whose id is below
one already read (committed late) still invalidates."""

from __future__ import annotations

from datetime import datetime

import trio

from classroom.cache import MISSING, POLL_INTERVAL, Cache
from storage import CHANGE_CLASSROOM, Storage

T0 = datetime(2026, 1, 2, 3, 4, 5)


async def polled(cache: Cache) -> None:
    """Until at least one whole poll ran after this call."""
    await trio.sleep(3 * POLL_INTERVAL)
    assert cache.fresh()


async def test_serves_only_while_following(storage: Storage) -> None:
    with trio.fail_after(10):
        cache = Cache(storage)
        cache.keep_class_value(cache.stamp(), 1, "k", "v")
        assert cache.class_value(1, "k") is MISSING  # not following: nothing is kept
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.follow)
            await polled(cache)
            cache.keep_class_value(cache.stamp(), 1, "k", "v")
            assert cache.class_value(1, "k") == "v"
            nursery.cancel_scope.cancel()


async def test_a_fill_that_raced_a_change_is_not_kept(storage: Storage) -> None:
    with trio.fail_after(10):
        cache = Cache(storage)
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.follow)
            await polled(cache)
            stamp = cache.stamp()  # a request starts reading class 7 ...
            await storage.changed(CHANGE_CLASSROOM, 7)  # ... meanwhile class 7 changes
            cache.keep_class_value(stamp, 7, "k", "old")
            assert cache.class_value(7, "k") is MISSING
            nursery.cancel_scope.cancel()


async def test_a_change_committed_late_with_a_lower_id_still_invalidates(storage: Storage
                                                                        ) -> None:
    with trio.fail_after(10):
        cache = Cache(storage)  # this process never hears of the writes below directly
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.follow)
            await storage.db.execute("INSERT INTO cache_changes (id, scope, key_id, created_at)"
                                     " VALUES (100, 'classroom', 1, %s)", (T0,))
            await polled(cache)
            cache.keep_class_value(cache.stamp(), 3, "k", "v")
            assert cache.class_value(3, "k") == "v"
            await storage.db.execute("INSERT INTO cache_changes (id, scope, key_id, created_at)"
                                     " VALUES (50, 'classroom', 3, %s)", (T0,))
            await polled(cache)
            assert cache.class_value(3, "k") is MISSING
            nursery.cancel_scope.cancel()


async def test_readers_of_one_missing_value_share_one_load(storage: Storage) -> None:
    with trio.fail_after(10):
        cache = Cache(storage)
        loads = []

        async def load() -> str:
            loads.append(1)
            await trio.sleep(0.1)
            return "posts"

        answers: list[str] = []

        async def reader() -> None:
            answers.append(await cache.class_memo(5, "k", load))

        async with trio.open_nursery() as nursery:
            await nursery.start(cache.follow)
            await polled(cache)
            async with trio.open_nursery() as readers:
                for _ in range(10):
                    readers.start_soon(reader)
            assert answers == ["posts"] * 10 and len(loads) == 1
            nursery.cancel_scope.cancel()
