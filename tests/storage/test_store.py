"""Every Storage method, one behaviour per test, on both backends (fixture `storage`).

Times are explicit naive-UTC datetimes so results (seconds connected, expiry) are exact.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import trio

from storage import (
    Classroom,
    DuplicateKey,
    Room,
    RoomEvent,
    Storage,
    TagCount,
    User,
)
from storage.stats import observe_statements

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456)

SCRIPT = "<script>alert(1)</script>"
INJECTION = "'; DROP TABLE users; --"
EMOJI = "🧮👩🏽‍🏫"  # 4-byte characters and a zero-width joiner
QUOTES = "back\\slash \"double\" 'single' `tick` %s %(x)s ? \\' \\\\"
HOSTILE = (SCRIPT, INJECTION, EMOJI, QUOTES)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def hostile(limit: int) -> list[str]:
    """Five values for a column of `limit` characters: each hostile sample (cut to fit), and
    one of exactly `limit` 4-byte characters (the worst case for a utf8mb4 VARCHAR)."""
    return [*(text[:limit] for text in HOSTILE), "🧮" * limit]


def long_text(chars: int) -> str:
    """Exactly `chars` characters: every hostile sample, then ASCII filler (so a 60k TEXT
    value stays under MySQL's 65,535-byte TEXT limit)."""
    head = "".join(HOSTILE)
    return head + "x" * (chars - len(head))


async def count_rows(storage: Storage, table: str) -> int:
    row = await storage.db.fetch_one(f"SELECT COUNT(*) FROM {table}")
    assert row is not None
    return int(row[0])


async def new_user(storage: Storage, username: str = "ada", display_name: str = "") -> User:
    return await storage.create_user(username, display_name or username.title(), "hash", T0)


async def new_class(storage: Storage, instructor: User, code: str = "CODE1",
                    now: datetime = T0) -> Classroom:
    return await storage.create_classroom(f"Class {code}", "about", code, instructor, now)


async def new_room(storage: Storage, kind: str = "live") -> tuple[User, Classroom, Room]:
    teacher = await new_user(storage, "teacher")
    classroom = await new_class(storage, teacher)
    room = await storage.create_room(classroom.id, kind, "topic", teacher.id, T0)
    return teacher, classroom, room


# -- users ---------------------------------------------------------------------------------


async def test_created_user_is_found_by_id_and_username(storage: Storage) -> None:
    with trio.fail_after(10):
        user = await new_user(storage, "ada", "Ada Lovelace")
        assert await storage.get_user(user.id) == user
        assert await storage.get_user_by_username("ada") == user
        assert await storage.get_password_hash("ada") == (user, "hash")


async def test_unknown_user_is_none(storage: Storage) -> None:
    with trio.fail_after(10):
        assert await storage.get_user(12345) is None
        assert await storage.get_user_by_username("nobody") is None
        assert await storage.get_password_hash("nobody") is None


async def test_taken_username_raises_duplicate_key(storage: Storage) -> None:
    with trio.fail_after(10):
        await new_user(storage, "ada")
        with pytest.raises(DuplicateKey):
            await storage.create_user("ada", "Another Ada", "other", at(1))
        assert await count_rows(storage, "users") == 1


async def test_usernames_are_case_sensitive(storage: Storage) -> None:
    # utf8mb4_bin on MariaDB, BINARY collation on SQLite: "Ada" and "ada" are two users.
    with trio.fail_after(10):
        lower = await new_user(storage, "ada")
        upper = await new_user(storage, "Ada")
        assert lower.id != upper.id
        assert await storage.get_user_by_username("Ada") == upper
        assert await storage.get_user_by_username("ADA") is None


async def test_trailing_space_in_username_differs_by_backend(storage: Storage) -> None:
    # Observed, not designed: MariaDB's utf8mb4_bin is a PAD SPACE collation, so "ada " equals
    # "ada" there (duplicate, and a lookup of "ada " finds "ada"); SQLite compares bytes.
    # Callers must strip usernames (and join codes, tags) before they reach storage.
    with trio.fail_after(10):
        ada = await new_user(storage, "ada")
        if storage.backend == "mysql":
            with pytest.raises(DuplicateKey):
                await new_user(storage, "ada ")
            assert await storage.get_user_by_username("ada ") == ada
        else:
            spaced = await new_user(storage, "ada ")
            assert spaced.id != ada.id
            assert await storage.get_user_by_username("ada ") == spaced


async def test_user_text_round_trips_exactly(storage: Storage) -> None:
    with trio.fail_after(10):
        secret = long_text(255)
        for name, display in zip(hostile(32), hostile(64), strict=True):
            user = await storage.create_user(name, display, secret, T0)
            assert await storage.get_user(user.id) == user
            found = await storage.get_password_hash(name)
            assert found == (user, secret)
            assert (found[0].username, found[0].display_name) == (name, display)
        assert await count_rows(storage, "users") == len(hostile(32))


async def test_datetimes_keep_microseconds(storage: Storage) -> None:
    with trio.fail_after(10):
        times = [datetime(2026, 1, 2, 3, 4, 5, 678901), datetime(2026, 1, 2, 3, 4, 5),
                 datetime(2026, 12, 31, 23, 59, 59, 999999), datetime(2026, 1, 1, 0, 0, 0, 1)]
        for i, when in enumerate(times):
            user = await storage.create_user(f"user{i}", "U", "hash", when)
            fetched = await storage.get_user(user.id)
            assert fetched is not None
            assert fetched.created_at == when
            assert fetched.created_at.tzinfo is None


async def test_ping_answers_true(storage: Storage) -> None:
    with trio.fail_after(10):
        assert await storage.ping() is True


# -- sign-in sessions and throttling --------------------------------------------------------


async def test_session_signs_in_until_just_before_expiry(storage: Storage) -> None:
    with trio.fail_after(10):
        user = await new_user(storage)
        expires = at(3600)
        await storage.create_auth_session("a" * 64, user.id, T0, expires)
        assert await storage.get_session_user("a" * 64, T0) == user
        assert await storage.get_session_user("a" * 64, expires - timedelta(microseconds=1)) \
            == user
        assert await storage.get_session_user("a" * 64, expires) is None
        assert await storage.get_session_user("a" * 64, at(7200)) is None


async def test_session_expiry_on_a_whole_second(storage: Storage) -> None:
    # SQLite stores datetimes as text, and one without microseconds is shorter: the
    # comparison must still order "...:05" before "...:05.000001".
    with trio.fail_after(10):
        user = await new_user(storage)
        expires = datetime(2026, 3, 4, 6, 0, 5)
        await storage.create_auth_session("b" * 64, user.id, T0, expires)
        assert await storage.get_session_user("b" * 64, expires - timedelta(microseconds=1)) \
            == user
        assert await storage.get_session_user("b" * 64, expires + timedelta(microseconds=1)) \
            is None


async def test_unknown_session_token_signs_in_nobody(storage: Storage) -> None:
    with trio.fail_after(10):
        user = await new_user(storage)
        await storage.create_auth_session("a" * 64, user.id, T0, at(60))
        assert await storage.get_session_user("b" * 64, T0) is None
        assert await storage.get_session_user(INJECTION, T0) is None


async def test_deleted_session_no_longer_signs_in(storage: Storage) -> None:
    with trio.fail_after(10):
        user = await new_user(storage)
        await storage.create_auth_session("a" * 64, user.id, T0, at(60))
        await storage.create_auth_session("c" * 64, user.id, T0, at(60))
        await storage.delete_auth_session("a" * 64)
        assert await storage.get_session_user("a" * 64, T0) is None
        assert await storage.get_session_user("c" * 64, T0) == user


async def test_delete_expired_removes_only_expired_sessions(storage: Storage) -> None:
    with trio.fail_after(10):
        user = await new_user(storage)
        await storage.create_auth_session("old".ljust(64, "0"), user.id, T0, at(10))
        await storage.create_auth_session("new".ljust(64, "0"), user.id, T0, at(11))
        await storage.delete_expired(at(10), failures_before=T0)
        # Asked about an earlier moment, the deleted session is gone all the same.
        assert await storage.get_session_user("old".ljust(64, "0"), T0) is None
        assert await storage.get_session_user("new".ljust(64, "0"), T0) == user


async def test_login_failures_counted_per_key_after_since(storage: Storage) -> None:
    with trio.fail_after(10):
        await storage.record_login_failure(["user:ada", "ip:10.0.0.1"], at(1))
        await storage.record_login_failure(["user:ada"], at(2))
        await storage.record_login_failure(["user:bob", "ip:10.0.0.1"], at(3))
        assert await storage.count_login_failures("user:ada", T0) == 2
        assert await storage.count_login_failures("ip:10.0.0.1", T0) == 2
        assert await storage.count_login_failures("user:ada", at(1)) == 1  # strictly after
        assert await storage.count_login_failures("user:ada", at(2)) == 0
        assert await storage.count_login_failures("user:nobody", T0) == 0


async def test_login_failure_keys_round_trip(storage: Storage) -> None:
    with trio.fail_after(10):
        keys = hostile(190)
        await storage.record_login_failure(keys, at(1))
        for key in keys:
            assert await storage.count_login_failures(key, T0) == 1


async def test_clear_login_failures_forgets_those_keys_only(storage: Storage) -> None:
    with trio.fail_after(10):
        keys = ["user:ada@10.0.0.1", "user:ada", "ip:10.0.0.1"]
        await storage.record_login_failure(keys, at(1))
        await storage.clear_login_failures(keys[:2])
        assert await storage.count_login_failures("user:ada@10.0.0.1", T0) == 0
        assert await storage.count_login_failures("user:ada", T0) == 0
        assert await storage.count_login_failures("ip:10.0.0.1", T0) == 1


async def test_delete_expired_forgets_failures_before_the_window(storage: Storage) -> None:
    with trio.fail_after(10):
        await storage.record_login_failure(["user:ada"], at(1))
        await storage.record_login_failure(["user:ada"], at(2))
        await storage.delete_expired(T0, failures_before=at(2))
        assert await storage.count_login_failures("user:ada", T0) == 1


# -- classes and membership -----------------------------------------------------------------


async def test_create_classroom_makes_its_creator_the_instructor(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher", "Ms T")
        classroom = await new_class(storage, teacher)
        assert classroom.instructor_name == "Ms T"
        assert await storage.get_classroom(classroom.id) == classroom
        assert await storage.get_role(classroom.id, teacher.id) == "instructor"
        [member] = await storage.list_members(classroom.id)
        assert (member.user, member.role, member.joined_at) == (teacher, "instructor", T0)


async def test_duplicate_join_code_raises_and_leaves_no_classroom(storage: Storage) -> None:
    with trio.fail_after(10):
        first = await new_user(storage, "first")
        second = await new_user(storage, "second")
        await new_class(storage, first, "SAMECODE")
        with pytest.raises(DuplicateKey):
            await new_class(storage, second, "SAMECODE")
        assert await count_rows(storage, "classrooms") == 1
        assert await count_rows(storage, "memberships") == 1
        assert await storage.list_memberships(second.id) == []


async def test_classroom_found_by_join_code(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher, "K7PXQ2MZ")
        assert await storage.get_classroom_by_code("K7PXQ2MZ") == classroom
        assert await storage.get_classroom_by_code("k7pxq2mz") is None  # case-sensitive
        assert await storage.get_classroom_by_code("NOPE") is None
        assert await storage.get_classroom(classroom.id + 1) is None


async def test_classroom_text_round_trips_exactly(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher", EMOJI)
        descriptions = [*HOSTILE, long_text(10_000), long_text(60_000)]
        for i, (name, code) in enumerate(zip(hostile(100), hostile(16), strict=True)):
            description = descriptions[i % len(descriptions)]
            classroom = await storage.create_classroom(name, description, code, teacher, T0)
            assert await storage.get_classroom(classroom.id) == classroom
            assert await storage.get_classroom_by_code(code) == classroom
        for description in descriptions:
            classroom = await storage.create_classroom("n", description, f"L{len(description)}",
                                                       teacher, T0)
            fetched = await storage.get_classroom(classroom.id)
            assert fetched is not None
            assert fetched.description == description


async def test_list_memberships_newest_class_first_with_role(storage: Storage) -> None:
    with trio.fail_after(10):
        ada = await new_user(storage, "ada")
        bob = await new_user(storage, "bob")
        own = await new_class(storage, ada, "OWN", at(1))
        joined = await new_class(storage, bob, "JOINED", at(2))
        assert await storage.add_member(joined.id, ada.id, "student", at(3))
        memberships = await storage.list_memberships(ada.id)
        assert [(m.classroom, m.role, m.joined_at) for m in memberships] == [
            (joined, "student", at(3)), (own, "instructor", at(1))]


async def test_list_members_instructor_first_then_join_order(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        late, early, middle = [await new_user(storage, n) for n in ("late", "early", "middle")]
        classroom = await new_class(storage, teacher)
        await storage.add_member(classroom.id, late.id, "student", at(30))
        await storage.add_member(classroom.id, early.id, "student", at(10))
        await storage.add_member(classroom.id, middle.id, "student", at(20))
        members = await storage.list_members(classroom.id)
        assert [(m.user.username, m.role) for m in members] == [
            ("teacher", "instructor"), ("early", "student"), ("middle", "student"),
            ("late", "student")]
        assert [m.joined_at for m in members] == [T0, at(10), at(20), at(30)]


async def test_add_member_twice_returns_false_and_keeps_first_role(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        student = await new_user(storage, "student")
        classroom = await new_class(storage, teacher)
        assert await storage.add_member(classroom.id, student.id, "student", at(1)) is True
        assert await storage.add_member(classroom.id, student.id, "instructor", at(2)) is False
        assert await storage.get_role(classroom.id, student.id) == "student"
        assert await storage.add_member(classroom.id, teacher.id, "student", at(3)) is False
        assert await storage.get_role(classroom.id, teacher.id) == "instructor"


async def test_concurrent_duplicate_joins_all_return_false(storage: Storage) -> None:
    # INSERT IGNORE of a duplicate is a server warning on MariaDB: concurrent ones must not
    # escape as driver warnings (pytest runs with filterwarnings=error).
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher)
        results: list[bool] = []

        async def join_again() -> None:
            for _ in range(3):
                results.append(await storage.add_member(classroom.id, teacher.id, "student", T0))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(join_again)
        assert results == [False] * 30


async def test_role_of_non_member_is_none(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        stranger = await new_user(storage, "stranger")
        classroom = await new_class(storage, teacher)
        assert await storage.get_role(classroom.id, stranger.id) is None
        assert await storage.list_memberships(stranger.id) == []


# -- posts and tags ---------------------------------------------------------------------------


async def test_list_posts_newest_first_with_author(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher", "Ms T")
        classroom = await new_class(storage, teacher)
        first = await storage.create_post(classroom.id, teacher, "one", "1", [], at(1))
        second = await storage.create_post(classroom.id, teacher, "two", "2", [], at(2))
        assert await storage.list_posts(classroom.id) == [second, first]
        assert first.author_name == "Ms T"


async def test_list_posts_of_a_class_without_posts_is_empty(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher)
        assert await storage.list_posts(classroom.id) == []
        assert await storage.list_posts(classroom.id, tag="x") == []


async def test_list_posts_filters_by_tag(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher)
        loops = await storage.create_post(classroom.id, teacher, "a", "", ["loops"], at(1))
        both = await storage.create_post(classroom.id, teacher, "b", "", ["week1", "loops"],
                                         at(2))
        await storage.create_post(classroom.id, teacher, "c", "", ["week1"], at(3))
        listed = await storage.list_posts(classroom.id, tag="loops")
        assert [p.id for p in listed] == [both.id, loops.id]
        assert listed[0].tags == ("loops", "week1")  # every tag of the post, sorted by name
        assert await storage.list_posts(classroom.id, tag="missing") == []


async def test_list_posts_pages_back_with_before_id(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher)
        posts = [await storage.create_post(classroom.id, teacher, f"p{i}", "", ["t"], at(i))
                 for i in range(5)]
        ids = [p.id for p in reversed(posts)]
        page1 = await storage.list_posts(classroom.id, limit=2)
        page2 = await storage.list_posts(classroom.id, limit=2, before_id=page1[-1].id)
        page3 = await storage.list_posts(classroom.id, limit=2, before_id=page2[-1].id)
        assert [p.id for p in page1 + page2 + page3] == ids
        tagged = await storage.list_posts(classroom.id, tag="t", before_id=ids[1], limit=10)
        assert [p.id for p in tagged] == ids[2:]


async def test_tags_are_created_once_per_class_and_shared(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher)
        await storage.create_post(classroom.id, teacher, "a", "", ["week1"], at(1))
        await storage.create_post(classroom.id, teacher, "b", "", ["week1"], at(2))
        assert await count_rows(storage, "tags") == 1
        assert await storage.list_tags(classroom.id) == [TagCount("week1", 2)]


async def test_same_tag_name_in_two_classes_is_independent(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        one = await new_class(storage, teacher, "ONE")
        two = await new_class(storage, teacher, "TWO")
        in_one = await storage.create_post(one.id, teacher, "a", "", ["week1"], at(1))
        in_two = await storage.create_post(two.id, teacher, "b", "", ["week1"], at(2))
        assert await count_rows(storage, "tags") == 2
        assert [p.id for p in await storage.list_posts(one.id, tag="week1")] == [in_one.id]
        assert [p.id for p in await storage.list_posts(two.id, tag="week1")] == [in_two.id]
        assert await storage.list_tags(one.id) == [TagCount("week1", 1)]


async def test_list_tags_counts_posts_by_name(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher")
        classroom = await new_class(storage, teacher)
        other = await new_class(storage, teacher, "OTHER")
        await storage.create_post(classroom.id, teacher, "a", "", ["week1", "loops"], at(1))
        await storage.create_post(classroom.id, teacher, "b", "", ["loops"], at(2))
        await storage.create_post(other.id, teacher, "c", "", ["loops", "zzz"], at(3))
        assert await storage.list_tags(classroom.id) == [TagCount("loops", 2),
                                                         TagCount("week1", 1)]
        assert await storage.list_tags(other.id + 1) == []


async def test_post_text_round_trips_exactly(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await new_user(storage, "teacher", INJECTION)
        classroom = await new_class(storage, teacher)
        bodies = [*HOSTILE, long_text(10_000), long_text(60_000)]
        titles = hostile(200)
        tags = hostile(40)
        for i, body in enumerate(bodies):
            title = titles[i % len(titles)]
            await storage.create_post(classroom.id, teacher, title, body, tags, at(i))
        listed = await storage.list_posts(classroom.id)
        assert [p.body for p in listed] == bodies[::-1]
        assert [p.title for p in listed] == [titles[i % len(titles)] for i in
                                             range(len(bodies))][::-1]
        assert all(set(p.tags) == set(tags) for p in listed)
        assert listed[0].author_name == INJECTION
        for tag in tags:
            assert len(await storage.list_posts(classroom.id, tag=tag)) == len(bodies)


# -- rooms --------------------------------------------------------------------------------


async def test_created_room_is_open_and_found_by_id(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        assert room.is_open
        assert (room.last_seq, room.chat_server, room.created_by) == (0, None, teacher.id)
        assert await storage.get_room(room.id) == room
        assert await storage.get_room(room.id + 1) is None


async def test_list_rooms_newest_first_and_by_kind(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, live1 = await new_room(storage, "live")
        talk = await storage.create_room(classroom.id, "discussion", "t", teacher.id, at(1))
        live2 = await storage.create_room(classroom.id, "live", "t", teacher.id, at(2))
        assert await storage.list_rooms(classroom.id) == [live2, talk, live1]
        assert await storage.list_rooms(classroom.id, "live") == [live2, live1]
        assert await storage.list_rooms(classroom.id, "discussion") == [talk]
        assert await storage.list_rooms(classroom.id, "other") == []


async def test_room_text_round_trips_exactly(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, _ = await new_room(storage)
        for kind, topic, server in zip(hostile(16), hostile(200), hostile(255), strict=True):
            room = await storage.create_room(classroom.id, kind, topic, teacher.id, T0)
            assert await storage.claim_room(room.id, server, replacing=None)
            fetched = await storage.get_room(room.id)
            assert fetched is not None
            assert (fetched.kind, fetched.topic, fetched.chat_server) == (kind, topic, server)


async def test_end_room_is_idempotent(storage: Storage) -> None:
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        assert await storage.end_room(room.id, at(5)) is True
        assert await storage.end_room(room.id, at(9)) is False
        ended = await storage.get_room(room.id)
        assert ended is not None
        assert ended.ended_at == at(5)
        assert not ended.is_open


async def test_claim_room_is_compare_and_set(storage: Storage) -> None:
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        assert await storage.claim_room(room.id, "chat-a", replacing=None) is True
        assert await storage.claim_room(room.id, "chat-b", replacing=None) is False
        assert await storage.claim_room(room.id, "chat-b", replacing="chat-x") is False
        assert await storage.claim_room(room.id, "chat-b", replacing="chat-a") is True
        claimed = await storage.get_room(room.id)
        assert claimed is not None
        assert claimed.chat_server == "chat-b"


async def test_reclaiming_a_room_the_server_holds_succeeds(storage: Storage) -> None:
    # A chat server that restarts under the same name takes its rooms back. MySQL counts
    # only changed rows unless the client asks for matched ones (CLIENT.FOUND_ROWS).
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        assert await storage.claim_room(room.id, "chat-a", replacing=None) is True
        assert await storage.claim_room(room.id, "chat-a", replacing="chat-a") is True


async def test_two_concurrent_claims_only_one_wins(storage: Storage) -> None:
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        wins: dict[str, bool] = {}

        async def claim(server: str) -> None:
            wins[server] = await storage.claim_room(room.id, server, replacing=None)

        async with trio.open_nursery() as nursery:
            for server in ("chat-a", "chat-b"):
                nursery.start_soon(claim, server)
        assert sorted(wins.values()) == [False, True]
        claimed = await storage.get_room(room.id)
        assert claimed is not None
        assert wins[str(claimed.chat_server)] is True


# -- live events ----------------------------------------------------------------------------


async def test_append_event_seqs_count_up_per_room_independently(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, one = await new_room(storage)
        two = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        seqs = []
        for room in (one, two, one, one, two):
            event = await storage.append_event(room.id, "chat", teacher.id, None, "{}", T0)
            assert event is not None
            seqs.append((room.id, event.seq))
        assert seqs == [(one.id, 1), (two.id, 1), (one.id, 2), (one.id, 3), (two.id, 2)]
        fetched = await storage.get_room(one.id)
        assert fetched is not None
        assert fetched.last_seq == 3


async def test_fifty_concurrent_appends_get_seqs_1_to_50(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        seqs: list[int] = []

        async def append(i: int) -> None:
            event = await storage.append_event(room.id, "chat", teacher.id, None, str(i), T0)
            assert event is not None
            seqs.append(event.seq)

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(append, i)
        assert sorted(seqs) == list(range(1, 51))
        stored = await storage.list_events(room.id, teacher.id)
        assert [e.seq for e in stored] == list(range(1, 51))
        assert sorted(int(e.data) for e in stored) == list(range(50))


async def test_append_event_to_missing_room_stores_nothing(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        assert await storage.append_event(room.id + 100, "chat", teacher.id, None, "{}",
                                          T0) is None
        assert await count_rows(storage, "room_events") == 0


async def test_append_event_to_ended_room_stores_nothing(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        assert await storage.append_event(room.id, "chat", teacher.id, None, "{}", T0)
        assert await storage.end_room(room.id, T0)
        assert await storage.append_event(room.id, "chat", teacher.id, None, "{}", T0) is None
        assert await count_rows(storage, "room_events") == 1
        fetched = await storage.get_room(room.id)
        assert fetched is not None and fetched.last_seq == 1


async def test_an_append_to_an_ended_room_takes_no_seq_another_room_left_behind(
        storage: Storage) -> None:
    """On MySQL the event's INSERT takes the seq through LAST_INSERT_ID(), which keeps the
    value of the connection's last store (another room's) when the room has ended: the
    INSERT must then store nothing, not an event under that seq."""
    with trio.fail_after(10):
        teacher, classroom, busy = await new_room(storage)
        ended = await storage.create_room(classroom.id, "group", "other", teacher.id, T0)
        assert await storage.append_event(ended.id, "chat", teacher.id, None, "{}", T0)
        assert await storage.end_room(ended.id, T0)
        for n in range(3):
            assert await storage.append_event(busy.id, "chat", teacher.id, None, str(n), T0)
        assert await storage.append_event(ended.id, "chat", teacher.id, None, "{}", T0) is None
        assert [e.seq for e in await storage.list_events(ended.id, teacher.id)] == [1]
        assert [e.seq for e in await storage.list_events(busy.id, teacher.id)] == [1, 2, 3]


async def test_event_round_trips_exactly(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        mebibyte = ("🧮" + "x" * 1023) * 1024  # 1 MiB of characters, 1,051,648 bytes
        datas = [*HOSTILE, long_text(10_000), mebibyte]
        names = hostile(40)
        sent = [await storage.append_event(room.id, names[i % len(names)], teacher.id, None,
                                           data, at(i)) for i, data in enumerate(datas)]
        assert await storage.list_events(room.id, teacher.id) == sent
        assert sent[-1] is not None
        assert sent[-1].data == mebibyte


async def test_third_user_never_sees_private_events(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        ann, bob, cat = [await new_user(storage, n) for n in ("ann", "bob", "cat")]
        await storage.append_event(room.id, "chat", teacher.id, None, "public", T0)
        await storage.append_event(room.id, "private", teacher.id, ann.id, "to ann", T0)
        await storage.append_event(room.id, "private", ann.id, teacher.id, "from ann", T0)
        await storage.append_event(room.id, "private", teacher.id, bob.id, "to bob", T0)

        async def seen_by(user: User) -> list[str]:
            return [e.data for e in await storage.list_events(room.id, user.id)]

        assert await seen_by(cat) == ["public"]
        assert await seen_by(ann) == ["public", "to ann", "from ann"]
        assert await seen_by(bob) == ["public", "to bob"]
        assert await seen_by(teacher) == ["public", "to ann", "from ann", "to bob"]


async def test_list_events_between_keeps_one_conversation(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        ann, bob = [await new_user(storage, n) for n in ("ann", "bob")]
        await storage.append_event(room.id, "chat", teacher.id, None, "public", T0)
        await storage.append_event(room.id, "private", teacher.id, ann.id, "to ann", T0)
        await storage.append_event(room.id, "private", bob.id, teacher.id, "from bob", T0)
        await storage.append_event(room.id, "private", ann.id, teacher.id, "from ann", T0)
        events = await storage.list_events(room.id, teacher.id, between=(ann.id, teacher.id))
        assert [(e.seq, e.data) for e in events] == [(2, "to ann"), (4, "from ann")]


async def test_list_events_after_and_limit(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        for i in range(6):
            await storage.append_event(room.id, "chat", teacher.id, None, str(i), at(i))
        events = await storage.list_events(room.id, teacher.id, after=2, limit=3)
        assert [e.seq for e in events] == [3, 4, 5]
        assert events[0].created_at == at(2)
        assert await storage.list_events(room.id, teacher.id, after=6) == []


async def test_list_events_only_of_the_given_room(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, one = await new_room(storage)
        two = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        await storage.append_event(one.id, "chat", teacher.id, None, "in one", T0)
        await storage.append_event(two.id, "chat", teacher.id, None, "in two", T0)
        assert [e.data for e in await storage.list_events(two.id, teacher.id)] == ["in two"]


# -- bans ------------------------------------------------------------------------------------


async def test_ban_is_per_room_and_user_and_repeatable(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, room = await new_room(storage)
        other_room = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        bob = await new_user(storage, "bob")
        assert await storage.is_banned(room.id, bob.id) is False
        await storage.ban_from_room(room.id, bob.id, at(1))
        await storage.ban_from_room(room.id, bob.id, at(2))  # no error the second time
        assert await storage.is_banned(room.id, bob.id) is True
        assert await storage.is_banned(other_room.id, bob.id) is False
        assert await storage.is_banned(room.id, teacher.id) is False


async def test_role_and_ban_in_one_read(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, room = await new_room(storage)
        other_room = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        bob, eve = await new_user(storage, "bob"), await new_user(storage, "eve")
        await storage.add_member(classroom.id, bob.id, "student", T0)
        assert await storage.role_and_ban(classroom.id, room.id, bob.id) == ("student", False)
        await storage.ban_from_room(room.id, bob.id, at(1))
        assert await storage.role_and_ban(classroom.id, room.id, bob.id) == ("student", True)
        assert await storage.role_and_ban(classroom.id, other_room.id, bob.id) == (
            "student", False)
        assert await storage.role_and_ban(classroom.id, room.id, teacher.id) == (
            "instructor", False)
        await storage.ban_from_room(room.id, eve.id, at(1))  # not a member: no role
        assert await storage.role_and_ban(classroom.id, room.id, eve.id) == (None, False)


# -- attendance ------------------------------------------------------------------------------


async def test_first_join_opens_one_connection(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.attendance_join(room.id, teacher.id, at(1))
        [record] = await storage.list_attendance(room.id)
        assert (record.user, record.first_join, record.last_join, record.last_leave) == (
            teacher, at(1), at(1), None)
        assert (record.open_connections, record.seconds_connected) == (1, 0.0)


async def test_second_join_is_a_second_connection(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.attendance_join(room.id, teacher.id, at(1))
        await storage.attendance_join(room.id, teacher.id, at(2))
        [record] = await storage.list_attendance(room.id)
        assert record.open_connections == 2
        assert (record.first_join, record.last_join) == (at(1), at(1))


async def test_leaving_one_of_two_connections_keeps_attendance_open(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.attendance_join(room.id, teacher.id, at(1))
        await storage.attendance_join(room.id, teacher.id, at(2))
        await storage.attendance_leave(room.id, teacher.id, at(3))
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.seconds_connected, record.last_leave) == (
            1, 0.0, None)


async def test_leaving_last_connection_adds_seconds(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.attendance_join(room.id, teacher.id, at(10))
        await storage.attendance_join(room.id, teacher.id, at(20))
        await storage.attendance_leave(room.id, teacher.id, at(30))
        await storage.attendance_leave(room.id, teacher.id, at(100.25))
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.seconds_connected, record.last_leave) == (
            0, 90.25, at(100.25))


async def test_rejoining_later_accumulates_seconds(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.attendance_join(room.id, teacher.id, at(0))
        await storage.attendance_leave(room.id, teacher.id, at(60))
        await storage.attendance_join(room.id, teacher.id, at(600))
        await storage.attendance_leave(room.id, teacher.id, at(630.5))
        [record] = await storage.list_attendance(room.id)
        assert (record.first_join, record.last_join, record.last_leave) == (
            at(0), at(600), at(630.5))
        assert (record.open_connections, record.seconds_connected) == (0, 90.5)


async def test_leave_without_join_changes_nothing(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.attendance_leave(room.id, teacher.id, at(1))
        assert await storage.list_attendance(room.id) == []
        await storage.attendance_join(room.id, teacher.id, at(2))
        await storage.attendance_leave(room.id, teacher.id, at(3))
        await storage.attendance_leave(room.id, teacher.id, at(9))  # one leave too many
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.seconds_connected, record.last_leave) == (
            0, 1.0, at(3))


async def test_end_room_closes_open_attendance(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        ann, bob = [await new_user(storage, n) for n in ("ann", "bob")]
        await storage.attendance_join(room.id, teacher.id, at(0))
        await storage.attendance_join(room.id, teacher.id, at(1))
        await storage.attendance_join(room.id, ann.id, at(10))
        await storage.attendance_join(room.id, bob.id, at(20))
        await storage.attendance_leave(room.id, bob.id, at(25))
        assert await storage.end_room(room.id, at(100))
        records = await storage.list_attendance(room.id)
        assert [(r.user.username, r.open_connections, r.seconds_connected, r.last_leave)
                for r in records] == [("teacher", 0, 100.0, at(100)), ("ann", 0, 90.0, at(100)),
                                      ("bob", 0, 5.0, at(25))]


async def test_concurrent_joins_of_one_user_all_count(storage: Storage) -> None:
    # Several tabs opening at once. (On MariaDB this used to deadlock, error 1213.)
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(storage.attendance_join, room.id, teacher.id, at(1))
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.last_join) == (10, at(1))


async def test_reconnects_racing_leave_and_join_keep_counts_right(storage: Storage) -> None:
    # A reconnect: the old connection's leave and the new one's join arrive together, for
    # many users of two rooms at once.
    with trio.fail_after(10):
        teacher, classroom, one = await new_room(storage)
        two = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        users = [await new_user(storage, f"user{i}") for i in range(8)]
        for room in (one, two):
            for user in users:
                await storage.attendance_join(room.id, user.id, T0)
        # One reconnect after another: a connection cannot leave before it has joined, so
        # only the pairs of one round race each other.
        for second in range(1, 4):
            async with trio.open_nursery() as nursery:
                for room in (one, two):
                    for user in users:
                        nursery.start_soon(storage.attendance_leave, room.id, user.id, at(second))
                        nursery.start_soon(storage.attendance_join, room.id, user.id, at(second))
        for room in (one, two):
            assert [r.open_connections for r in await storage.list_attendance(room.id)] == \
                [1] * len(users)


async def test_list_attendance_in_first_join_order(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        ann, bob = [await new_user(storage, n) for n in ("ann", "bob")]
        await storage.attendance_join(room.id, bob.id, at(5))
        await storage.attendance_join(room.id, ann.id, at(1))
        await storage.attendance_join(room.id, teacher.id, at(3))
        assert [r.user.username for r in await storage.list_attendance(room.id)] == [
            "ann", "teacher", "bob"]


# -- room state ------------------------------------------------------------------------------


async def test_set_state_then_list(storage: Storage) -> None:
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        await storage.set_state(room.id, 0, "step", "1", at(1))
        [value] = await storage.list_state(room.id, "step")
        assert (value.room_id, value.user_id, value.name, value.value, value.updated_at) == (
            room.id, 0, "step", "1", at(1))


async def test_set_state_replaces_the_previous_value(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        await storage.set_state(room.id, teacher.id, "status", "working", at(1))
        await storage.set_state(room.id, teacher.id, "status", "done", at(2))
        [value] = await storage.list_state(room.id, "status")
        assert (value.value, value.updated_at) == ("done", at(2))


async def test_list_state_by_name_ordered_by_user(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, room = await new_room(storage)
        other_room = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        await storage.set_state(room.id, 7, "status", "seven", at(1))
        await storage.set_state(room.id, 0, "status", "room", at(2))
        await storage.set_state(room.id, 3, "status", "three", at(3))
        await storage.set_state(room.id, 3, "step", "other name", at(4))
        await storage.set_state(other_room.id, 3, "status", "other room", at(5))
        values = await storage.list_state(room.id, "status")
        assert [(v.user_id, v.value) for v in values] == [(0, "room"), (3, "three"),
                                                          (7, "seven")]


async def test_list_room_state_in_one_query_by_owner_without_skipped_names(
        storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, room = await new_room(storage)
        other_room = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        await storage.set_state(room.id, 0, "steps", "s", at(1))
        await storage.set_state(room.id, 3, "code", "big", at(2))
        await storage.set_state(room.id, 3, "signal", "h", at(3))
        await storage.set_state(room.id, 5, "signal", "d", at(4))
        await storage.set_state(other_room.id, 3, "signal", "other room", at(5))
        every = await storage.list_room_state(room.id)
        assert [(v.user_id, v.name) for v in every] == [(0, "steps"), (3, "code"),
                                                        (3, "signal"), (5, "signal")]
        mine = await storage.list_room_state(room.id, owners=(0, 3), skip=("code",))
        assert [(v.user_id, v.value) for v in mine] == [(0, "s"), (3, "h")]
        assert await storage.get_state(room.id, 3, "code") == "big"
        assert await storage.get_state(room.id, 5, "code") is None


async def test_clear_state_forgets_one_name_for_every_user(storage: Storage) -> None:
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        await storage.set_state(room.id, 0, "status", "a", at(1))
        await storage.set_state(room.id, 5, "status", "b", at(1))
        await storage.set_state(room.id, 5, "step", "c", at(1))
        await storage.clear_state(room.id, "status")
        assert await storage.list_state(room.id, "status") == []
        assert [v.value for v in await storage.list_state(room.id, "step")] == ["c"]


async def test_many_users_setting_state_at_once_all_stored(storage: Storage) -> None:
    # A whole class answering a step at once, in two rooms. (On MariaDB the former
    # DELETE-then-INSERT transaction deadlocked here, error 1213.)
    with trio.fail_after(10):
        teacher, classroom, one = await new_room(storage)
        two = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        for answer in ("first", "second"):
            async with trio.open_nursery() as nursery:
                for user_id in range(1, 21):
                    for room in (one, two):
                        nursery.start_soon(storage.set_state, room.id, user_id, "status",
                                           f"{answer} {user_id}", T0)
            for room in (one, two):
                values = await storage.list_state(room.id, "status")
                assert [(v.user_id, v.value) for v in values] == [
                    (user_id, f"{answer} {user_id}") for user_id in range(1, 21)]


async def test_state_text_round_trips_exactly(storage: Storage) -> None:
    with trio.fail_after(10):
        _, _, room = await new_room(storage)
        mebibyte = ("👩🏽‍🏫" + "y" * 1020) * 1024  # 1 MiB of characters
        values = [*HOSTILE, long_text(10_000), mebibyte]
        names = [*hostile(40), "big"]
        for user_id, (name, value) in enumerate(zip(names, values, strict=True)):
            await storage.set_state(room.id, user_id, name, value, T0)
            [stored] = [v for v in await storage.list_state(room.id, name)
                        if v.user_id == user_id]
            assert stored.value == value


# -- transactions ----------------------------------------------------------------------------


async def test_transaction_whose_body_raises_writes_nothing(storage: Storage) -> None:
    with trio.fail_after(10):
        with pytest.raises(RuntimeError, match="boom"):
            async with storage.db.transaction() as tx:
                await tx.execute("INSERT INTO users (username, display_name, password_hash,"
                                 " created_at) VALUES (%s, %s, %s, %s)", ("ada", "A", "h", T0))
                raise RuntimeError("boom")
        assert await count_rows(storage, "users") == 0
        await new_user(storage, "ada")  # the database still takes writes
        assert await count_rows(storage, "users") == 1


async def test_cancelled_transaction_writes_nothing(storage: Storage) -> None:
    with trio.fail_after(10):
        with trio.move_on_after(0.2) as scope:
            async with storage.db.transaction() as tx:
                await tx.execute("INSERT INTO users (username, display_name, password_hash,"
                                 " created_at) VALUES (%s, %s, %s, %s)", ("ada", "A", "h", T0))
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert await count_rows(storage, "users") == 0
        await new_user(storage, "ada")
        assert await count_rows(storage, "users") == 1


async def test_ended_sessions_and_password_change(storage: Storage) -> None:
    with trio.fail_after(10):
        now = datetime(2026, 3, 2, 9, 0, 0)
        tomorrow = now + timedelta(days=1)
        user = await storage.create_user("ann", "Ann", "hash-1", now)
        other = await storage.create_user("bob", "Bob", "hash-b", now)
        for token_hash, owner in (("a1", user), ("a2", user), ("a3", user), ("b1", other)):
            await storage.create_auth_session(token_hash, owner.id, now, tomorrow)
        assert await storage.ended_sessions(["a1", "a2", "a3", "b1"], now) == {}
        # Past one IN list's page; a page where all are alive next to one where some are not.
        alive = [f"y{i}" for i in range(600)]
        for token_hash in alive:
            await storage.create_auth_session(token_hash, other.id, now, tomorrow)
        gone = [f"x{i}" for i in range(700)]
        assert (await storage.ended_sessions([*alive, "a1", "b1", *gone], now)
                == dict.fromkeys(gone))
        # Expired exactly now: ended, with when.
        assert await storage.ended_sessions(["a1", "b1"], tomorrow) == {"a1": tomorrow,
                                                                        "b1": tomorrow}
        await storage.change_password(user.id, "hash-2", "a2")
        assert await storage.ended_sessions(["a1", "a2", "a3", "b1"], now) == {"a1": None,
                                                                              "a3": None}
        found = await storage.get_password_hash("ann")
        assert found is not None and found[1] == "hash-2"


async def test_stored_bytes_counts_utf8_bytes_per_sender(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        assert await storage.stored_bytes_by_sender(room.id, ()) == {}
        await storage.append_event(room.id, "chat", teacher.id, None, '{"t":"é"}', T0)
        await storage.append_event(room.id, "chat", teacher.id, None, "{}", T0)
        totals = await storage.stored_bytes_by_sender(room.id, ())
        assert totals[(teacher.id, False)] == 10 + 2
        assert (teacher.id + 1, False) not in totals
        await storage.append_event(room.id, "code", teacher.id, None, '{"c":1}', T0)
        totals = await storage.stored_bytes_by_sender(room.id, ("code",))
        assert totals[(teacher.id, True)] == 7
        assert totals[(teacher.id, False)] == 12
        assert (await storage.stored_bytes_by_sender(room.id, ()))[(teacher.id, False)] == 19


async def test_stored_bytes_of_every_sender_of_a_room_in_one_query(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, classroom, room = await new_room(storage)
        other = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        ada = await new_user(storage, "ada")
        assert await storage.stored_bytes_by_sender(room.id, ("code",)) == {}
        await storage.append_event(room.id, "chat", teacher.id, None, '{"t":"é"}', T0)
        await storage.append_event(room.id, "code", teacher.id, None, '{"c":1}', T0)
        await storage.append_event(room.id, "chat", ada.id, None, "{}", T0)
        await storage.append_event(room.id, "chat", ada.id, None, "{}", T0)
        await storage.append_event(other.id, "chat", ada.id, None, "{}", T0)
        assert await storage.stored_bytes_by_sender(room.id, ("code",)) == {
            (teacher.id, False): 10, (teacher.id, True): 7, (ada.id, False): 4}
        assert await storage.stored_bytes_by_sender(room.id, ()) == {
            (teacher.id, False): 17, (ada.id, False): 4}


async def test_appends_arriving_together_are_stored_together_each_as_if_alone(
        storage: Storage) -> None:
    """Events stored at once share transactions (storage/groupcommit.py), and each gets what
    it would alone: its room's next seq, nothing in an ended room, the first event again for
    a resend (of an earlier event, or of one arriving beside it)."""
    with trio.fail_after(10):
        teacher, classroom, one = await new_room(storage)
        two = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        ended = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        assert await storage.end_room(ended.id, T0)
        first = await storage.append_event(one.id, "chat", teacher.id, None, "first", T0,
                                           client_id="k0")
        batches_before = storage._appends.batches
        results: dict[str, RoomEvent | None] = {}

        async def append(name: str, room: Room, key: str | None) -> None:
            results[name] = await storage.append_event(room.id, "chat", teacher.id, None,
                                                       name, T0, client_id=key)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(append, f"one{i}", one, f"a{i}")
                nursery.start_soon(append, f"two{i}", two, None)
            nursery.start_soon(append, "ended", ended, "e")
            nursery.start_soon(append, "resend", one, "k0")
            nursery.start_soon(append, "twice", two, "same")
            nursery.start_soon(append, "twice again", two, "same")
        calls = len(results)
        assert storage._appends.batches - batches_before < calls
        assert results["ended"] is None
        assert results["resend"] == first
        assert results["twice"] == results["twice again"] is not None
        for room, names, count in ((one, [f"one{i}" for i in range(8)], 9),
                                   (two, [f"two{i}" for i in range(8)] + ["twice"], 9)):
            stored = await storage.list_events(room.id, teacher.id)
            assert [e.seq for e in stored] == list(range(1, count + 1))
            assert sorted(e.data for e in stored if e.data != "first") in (
                sorted(names), sorted([*names[:-1], "twice again"]))
            assert {e.seq: e for e in stored} == {
                r.seq: r for name, r in results.items()
                if r is not None and r.room_id == room.id}
            fetched = await storage.get_room(room.id)
            assert fetched is not None and fetched.last_seq == count
        assert await count_rows(storage, "room_events") == 18


async def test_a_resend_after_the_room_ended_still_gets_its_first_event(
        storage: Storage) -> None:
    """Stores do not look for a resend first (its key collides instead); a resend into a
    room that has ended since must still be answered with the event it stored."""
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        first = await storage.append_event(room.id, "chat", teacher.id, None, "one", T0,
                                           client_id="k1")
        assert first is not None
        assert await storage.end_room(room.id, T0)
        again = await storage.append_event(room.id, "chat", teacher.id, None, "one", T0,
                                           client_id="k1")
        assert again == first
        assert await storage.append_event(room.id, "chat", teacher.id, None, "new", T0,
                                          client_id="k2") is None
        assert [e.seq for e in await storage.list_events(room.id, teacher.id)] == [1]


async def test_a_resend_rolls_back_the_seq_it_took(storage: Storage) -> None:
    """A resend's collision undoes its whole transaction: the next event gets the next
    seq, with no gap."""
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        first = await storage.append_event(room.id, "chat", teacher.id, None, "a", T0,
                                           client_id="k1")
        assert await storage.append_event(room.id, "chat", teacher.id, None, "a", T0,
                                          client_id="k1") == first
        second = await storage.append_event(room.id, "chat", teacher.id, None, "b", T0,
                                            client_id="k2")
        assert second is not None and second.seq == 2
        assert (await storage.get_room(room.id)).last_seq == 2  # type: ignore[union-attr]


async def test_an_event_is_stored_in_one_round_trip_on_mysql_with_or_without_a_client_id(
        storage: Storage) -> None:
    """Each round trip of a store is one the sender's answer waits for (and, on a busy
    server, a turn of the scheduler each). MySQL: begin, take the seq, the event with its
    client id and commit in one query. SQLite (in process, no round trips): the same four
    statements one by one."""
    with trio.fail_after(10):
        teacher, _, room = await new_room(storage)
        counted: list[float] = []
        stop = observe_statements(counted.append)
        try:
            await storage.append_event(room.id, "chat", teacher.id, None, "a", T0)
            plain = len(counted)
            counted.clear()
            await storage.append_event(room.id, "chat", teacher.id, None, "b", T0,
                                       client_id="k1")
            keyed = len(counted)
        finally:
            stop()
        expected = 1 if storage.backend == "mysql" else 4
        assert (plain, keyed) == (expected, expected)


async def test_statements_sent_together_are_one_transaction(storage: Storage) -> None:
    """`execute_together` (one query on MySQL): every statement's outcome; when one fails,
    none of them is stored, and the connection is not left inside the transaction."""
    insert = ("INSERT INTO users (username, display_name, password_hash, created_at)"
              " VALUES (%s, 'U', 'h', %s)")
    with trio.fail_after(10):
        first, second = await storage.db.execute_together([(insert, ("ann", T0)),
                                                           (insert, ("bob", T0))])
        assert (first.rowcount, second.rowcount) == (1, 1)
        with pytest.raises(DuplicateKey):
            await storage.db.execute_together([(insert, ("cat", T0)), (insert, ("ann", T0))])
        assert await storage.get_user_by_username("cat") is None
        # Were the failed transaction still open on the connection, this one's BEGIN would
        # commit "cat" with it.
        await storage.db.execute_together([(insert, ("dan", T0))])
        assert await storage.get_user_by_username("cat") is None
        assert await count_rows(storage, "users") == 3
