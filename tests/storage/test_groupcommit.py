"""Group commit (storage/groupcommit.py) on its own: what arrives during a write is written
together next, in arrival order, each caller getting its own result or error; a caller
cancelled while waiting is left out; batches keep to their bounds."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from storage.groupcommit import GroupCommit


class Writer:
    """Records each batch; the first `hold` batches wait for `release`."""

    def __init__(self, hold: int = 1) -> None:
        self.batches: list[list[int]] = []
        self.hold = hold
        self.release = trio.Event()
        self.writing = 0
        self.most_at_once = 0

    async def write(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        if len(self.batches) <= self.hold:
            await self.release.wait()
        await trio.lowlevel.checkpoint()
        self.writing -= 1
        return [ValueError(f"no {i}") if i == 3 else i * 10 for i in items]


def group(writer: Writer, *, max_items: int = 100, parallel: int = 1
          ) -> GroupCommit[int, int]:
    return GroupCommit(writer.write, max_items=max_items, size=lambda _: 1, max_size=1000,
                       parallel=parallel)


async def test_calls_during_a_write_are_written_together_in_order_each_with_its_result(
) -> None:
    writer = Writer()
    commit = group(writer)
    results: dict[int, int | str] = {}

    async def call(i: int) -> None:
        try:
            results[i] = await commit(i)
        except ValueError as exc:
            results[i] = str(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 0)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(1, 6):
                nursery.start_soon(call, i)
                await trio.testing.wait_all_tasks_blocked()
            writer.release.set()
    assert writer.batches == [[0], [1, 2, 3, 4, 5]]
    assert results == {0: 0, 1: 10, 2: 20, 3: "no 3", 4: 40, 5: 50}


async def test_a_caller_cancelled_while_waiting_is_left_out() -> None:
    writer = Writer()
    commit = group(writer)
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await commit(i)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 0)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, 1)
            await trio.testing.wait_all_tasks_blocked()
            leaving = trio.CancelScope()

            async def cancelled_call() -> None:
                with leaving:
                    await commit(2)

            nursery.start_soon(cancelled_call)
            nursery.start_soon(call, 4)
            await trio.testing.wait_all_tasks_blocked()
            leaving.cancel()
            await trio.testing.wait_all_tasks_blocked()
            writer.release.set()
    assert leaving.cancelled_caught
    assert writer.batches == [[0], [1, 4]]
    assert results == {0: 0, 1: 10, 4: 40}


@pytest.mark.parametrize("parallel", [1, 2])
async def test_batches_keep_to_their_size_and_to_the_writes_at_once(parallel: int) -> None:
    writer = Writer(hold=parallel)
    commit = group(writer, max_items=2, parallel=parallel)
    results: list[int] = []

    async def call(i: int) -> None:
        results.append(await commit(i))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i in range(parallel):
                nursery.start_soon(call, 10 + i)
                await trio.testing.wait_all_tasks_blocked()
            for i in (4, 5, 6, 7, 8):
                nursery.start_soon(call, i)
                await trio.testing.wait_all_tasks_blocked()
            assert writer.batches == [[10 + i] for i in range(parallel)]
            writer.release.set()
    assert writer.most_at_once == parallel
    assert sorted(results) == sorted([100 + 10 * i for i in range(parallel)]
                                     + [40, 50, 60, 70, 80])
    waited = [item for batch in writer.batches[parallel:] for item in batch]
    assert sorted(waited) == [4, 5, 6, 7, 8]
    assert all(len(batch) <= 2 for batch in writer.batches)
    if parallel == 1:
        assert writer.batches[1:] == [[4, 5], [6, 7], [8]]
