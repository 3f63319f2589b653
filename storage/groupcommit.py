"""Group commit: calls that arrive while a batch is being written wait, and are then written
together, in one transaction, by one of them.

Many rooms talking at once means many small writes, each its own transaction of several
round trips and a log flush; one batch of them costs about what one did. Nothing waits for
a batch to fill: the first call is written at once, alone, and whatever arrives meanwhile
goes into the next batch, so a batch grows only as the writes pile up.

Invariants:
- at most `parallel` batches are being written at a time, each by its leader: one of the
  callers whose item is in it (no task of its own, so nothing to start or stop);
- calls are taken in arrival order, at most `max_items` (and `max_size`) at a time;
- once taken into a batch an item is written whatever happens to its caller (the write is
  shielded; the database has its own time-outs); a caller cancelled before that takes its
  item out, and one that was about to lead passes the lead on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import attrs
import trio

T = TypeVar("T")
R = TypeVar("R")


@attrs.define(eq=False)
class _Call(Generic[T, R]):
    item: T
    woken: trio.Event = attrs.field(factory=trio.Event)
    taken: bool = False
    done: bool = False
    lead: bool = False
    result: R | None = None
    error: BaseException | None = None

    def unwrap(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """`await group(item)`: the item's result from `write(batch)`, which gets a batch of
    items in arrival order and returns one result or exception per item, in that order."""

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]], *,
                 max_items: int, size: Callable[[T], int], max_size: int,
                 parallel: int = 1) -> None:
        self._write = write
        self._max_items = max_items
        self._size = size
        self._max_size = max_size
        self._parallel = parallel
        self._waiting: list[_Call[T, R]] = []
        self._leaders = 0
        self.batches = 0  # written so far (for tests and metrics)

    async def __call__(self, item: T) -> R:
        call: _Call[T, R] = _Call(item)
        self._waiting.append(call)
        if self._leaders >= self._parallel:
            try:
                await call.woken.wait()
            except BaseException:
                if not call.taken:
                    self._waiting.remove(call)
                    if call.lead:
                        self._pass_lead()
                raise
            if call.done:
                return call.unwrap()
            # Woken to lead: nobody else takes this call, so it is in our first batch.
        else:
            self._leaders += 1
        try:
            while not call.done:
                batch = self._take(call)
                with trio.CancelScope(shield=True):
                    await self._write_batch(batch)
        finally:
            self._pass_lead()
        return call.unwrap()

    def _take(self, leader: _Call[T, R]) -> list[_Call[T, R]]:
        """The next batch, in arrival order, the leader's own call first if waiting; calls
        told to lead (but not yet leading) stay for themselves."""
        batch: list[_Call[T, R]] = [leader] if not leader.taken else []
        size = sum(self._size(call.item) for call in batch)
        for call in self._waiting:
            if call.lead or call is leader:
                continue
            size += self._size(call.item)
            if batch and (len(batch) >= self._max_items or size > self._max_size):
                break
            batch.append(call)
        for call in batch:
            call.taken = True
        taken = set(map(id, batch))
        self._waiting = [call for call in self._waiting if id(call) not in taken]
        return batch

    async def _write_batch(self, batch: list[_Call[T, R]]) -> None:
        try:
            results = await self._write([call.item for call in batch])
            assert len(results) == len(batch)
        except BaseException as exc:  # a bug in `write`: every caller of the batch hears
            results = [exc] * len(batch)
        self.batches += 1
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                call.error = result
            else:
                call.result = result
            call.done = True
            call.woken.set()

    def _pass_lead(self) -> None:
        """A leader is done: the first caller waiting (not already told) leads next."""
        for call in self._waiting:
            if not call.lead:
                call.lead = True
                call.woken.set()
                return
        self._leaders -= 1
