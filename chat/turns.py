"""Long loops over a room's members that let other tasks run meanwhile: a fan-out or a
presence flush over thousands of members is tens of milliseconds of CPU, which no other
client may wait for in one piece (another client's event takes about ten scheduler turns,
each of which waits for the loop's current turn)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Final, TypeVar

import trio

T = TypeVar("T")

# Scheduler turns given up between two pieces of a long loop. Another client's event is a
# chain of steps (its frame read, the store's pool slot and answers, the delivery), each
# run in the turn after the one that readied it; with one turn between pieces every step
# waited for a piece of the loop, with two the chain takes two steps per piece. (A lecture
# of 5,000 with two small rooms talking: their wait p50 6.1 -> 4.6 ms, the lecture's pace
# the same; a turn with nothing else to run costs one epoll look, a few microseconds.)
YIELDS_PER_TURN: Final = 2


async def in_turns(items: Sequence[T], *, seconds: float, most: int, every: int = 1
                   ) -> AsyncIterator[Sequence[T]]:
    """`items` in chunks of `every`, letting other tasks run before a chunk once `seconds`
    of the caller's work, or `most` items, have gone by since the last time. The yield is
    shielded: what the loop sends reaches everyone even when its caller is being cancelled.
    `every` > 1 saves looking at the clock for each item when items are cheap."""
    turn_ends = perf_counter() + seconds
    served = 0
    for start in range(0, len(items), every):
        if start and (served >= most or perf_counter() >= turn_ends):
            for _ in range(YIELDS_PER_TURN):
                await trio.lowlevel.cancel_shielded_checkpoint()
            turn_ends = perf_counter() + seconds
            served = 0
        yield items[start:start + every]
        served += every


@asynccontextmanager
async def holding(lock: trio.Lock) -> AsyncIterator[None]:
    """Hold `lock`, taken at once when it is free: trio's `acquire` gives up a turn even
    then, and on a busy server a turn is a round of every other task's steps, in the path
    of every event a room sends. (The caller's own waits are its checkpoints.)"""
    if lock.locked():
        await lock.acquire()
    else:
        lock.acquire_nowait()
    try:
        yield
    finally:
        lock.release()
