"""The embedded backend: a file in WAL mode that several processes may share."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import trio

from storage import SCHEMA_VERSION, StorageUnavailable, database_for, open_storage

T0 = datetime(2026, 1, 2, 3, 4, 5, 6)


async def test_file_is_created_on_first_open(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with trio.fail_after(10):
        async with open_storage(f"sqlite:///{path}") as storage:
            assert path.exists()
            assert await storage.schema_version() == 0


async def test_wal_mode_and_foreign_keys_are_on(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_storage(f"sqlite:///{tmp_path / 'wal.db'}") as storage:
            assert await storage.db.fetch_all("PRAGMA journal_mode") == [("wal",)]
            assert await storage.db.fetch_all("PRAGMA foreign_keys") == [(1,)]


async def test_second_open_on_the_same_file_sees_the_first_ones_writes(tmp_path: Path) -> None:
    # Two opens are two connections, as two processes would have.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with trio.fail_after(10):
        async with open_storage(url) as first, open_storage(url) as second:
            assert await first.init_schema() == SCHEMA_VERSION
            assert await second.schema_version() == SCHEMA_VERSION
            user = await first.create_user("ada", "Ada", "hash", T0)
            assert await second.get_user(user.id) == user
            classroom = await second.create_classroom("c", "d", "CODE", user, T0)
            assert await first.get_classroom_by_code("CODE") == classroom


async def test_two_opens_appending_at_once_share_one_seq(tmp_path: Path) -> None:
    # The write lock is the file's: concurrent appends from two connections still get
    # distinct seqs (the other waits on busy_timeout instead of failing).
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    with trio.fail_after(10):
        async with open_storage(url) as first, open_storage(url) as second:
            await first.init_schema()
            user = await first.create_user("ada", "Ada", "hash", T0)
            classroom = await first.create_classroom("c", "d", "CODE", user, T0)
            room = await first.create_room(classroom.id, "live", "t", user.id, T0)
            seqs: list[int] = []

            async def append(storage_index: int) -> None:
                storage = (first, second)[storage_index]
                for _ in range(10):
                    event = await storage.append_event(room.id, "chat", user.id, None, "{}", T0)
                    assert event is not None
                    seqs.append(event.seq)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(append, 0)
                nursery.start_soon(append, 1)
            assert sorted(seqs) == list(range(1, 21))


async def test_relative_path_resolves_against_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with trio.fail_after(10):
        async with open_storage("sqlite:///relative.db") as storage:
            await storage.init_schema()
        assert (tmp_path / "relative.db").exists()
        async with open_storage(f"sqlite:///{tmp_path / 'relative.db'}") as storage:
            assert await storage.schema_version() == SCHEMA_VERSION


async def test_memory_database_works_without_a_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with trio.fail_after(10):
        async with open_storage("sqlite://:memory:") as storage:
            assert await storage.init_schema() == SCHEMA_VERSION
            user = await storage.create_user("ada", "Ada", "hash", T0)
            assert await storage.get_user(user.id) == user
        assert list(await trio.Path(tmp_path).iterdir()) == []


async def test_file_in_a_missing_folder_gives_storage_unavailable(tmp_path: Path) -> None:
    with trio.fail_after(10), pytest.raises(StorageUnavailable):
        async with open_storage(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"):
            pass


async def test_closed_storage_gives_storage_unavailable(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_storage(f"sqlite:///{tmp_path / 'closed.db'}") as storage:
            pass
        with pytest.raises(StorageUnavailable):
            await storage.ping()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "postgres://x/y", "classroom.db"])
def test_bad_database_urls_raise_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        database_for(url)
