"""The lab's server side: the state a `room/join` answer carries, read in a constant number
of queries, each student's shared code kept whole and private, alerts, and steps previewed
from an upload."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest
import trio

from chat.handlers import HEAVY_WORK
from tests.chat.harness import chat_world

STEPS = [{"name": f"Step {i}", "content": f"Do **{i}**", "type": "theory"} for i in range(3)]


def files(*pairs: tuple[str, str], status: str = "new") -> list[dict[str, str]]:
    return [{"filename": name, "status": status, "content": text} for name, text in pairs]


async def test_join_answer_carries_the_lesson_state(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann) as (t, a):
                await t.request("steps/all", {"room_id": rid, "steps": STEPS})
                await t.request("settings", {"room_id": rid, "files_to_ignore": "*.pyc\n"})
                await t.request("sharing/start", {"room_id": rid})
                await t.request("exercise", {"room_id": rid, "content": "Write *fizzbuzz*"})
                await a.request("steps/status/to_mentor", {"room_id": rid, "step": 1,
                                                           "status": "DONE"})
                await a.request("signal", {"room_id": rid, "value": "HELP"})
                await a.request("sharing/code_send", {"room_id": rid, "files": files(
                    ("a.py", "print(1)"), ("b.py", "x = 2"))})
                await t.request("exercise/feedback", {"room_id": rid, "user_id": ann.id,
                                                      "accepted": True})
                # Late joiners: the whole lesson at once, no replay needed.
                async with world.joined(rid, bob, ann, teacher) as (b, a2, t2):
                    late: dict[str, Any] = b.seen("room/join")[0]["data"]["state"]
                    assert [s["name"] for s in late["steps"]] == ["Step 0", "Step 1", "Step 2"]
                    assert late["steps"][0]["html"] == "<p>Do <strong>0</strong></p>\n"
                    assert late["settings"]["extensions"] == [".pyc"]
                    assert late["sharing"] is True
                    assert late["exercise"]["html"] == "<p>Write <em>fizzbuzz</em></p>\n"
                    assert late["me"] == {"statuses": ["NONE"] * 3, "signal": "NONE",
                                          "feedback": None, "files": []}
                    assert "grid" not in late
                    mine = a2.seen("room/join")[0]["data"]["state"]["me"]
                    assert mine["statuses"] == ["NONE", "DONE", "NONE"]
                    assert mine["signal"] == "HELP" and mine["feedback"] is True
                    assert [f["filename"] for f in mine["files"]] == ["a.py", "b.py"]
                    grid = t2.seen("room/join")[0]["data"]["state"]["grid"]
                    rows = {row["user_id"]: row for row in grid}
                    assert set(rows) == {ann.id, bob.id}
                    assert rows[ann.id]["statuses"] == ["NONE", "DONE", "NONE"]
                    assert rows[ann.id]["signal"] == "HELP" and rows[ann.id]["online"]
                    assert rows[ann.id]["files"] == [
                        {"filename": "a.py", "status": "new", "size": 8},
                        {"filename": "b.py", "status": "new", "size": 5}]
                    assert rows[bob.id]["signal"] == "NONE" and rows[bob.id]["files"] == []
                    assert "content" not in str(grid)


async def test_join_state_and_table_cost_a_constant_number_of_queries(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(30):
        async with chat_world(db_url) as world:
            db = world.services.storage.db
            calls: list[str] = []
            for name in ("fetch_all", "fetch_one"):
                original = getattr(db, name)

                def counted(sql: str, params: Any = (), _original: Any = original) -> Any:
                    calls.append(sql)
                    return _original(sql, params)

                monkeypatch.setattr(db, name, counted)

            async def cost(steps: int, students: int) -> tuple[int, int]:
                lesson = await world.live_class(f"t{steps}", *[f"s{steps}x{i}"
                                                              for i in range(students)])
                rid = lesson.room.id
                async with world.joined(rid, *lesson.people) as peers:
                    await peers[0].request("steps/all", {"room_id": rid, "steps": [
                        {"name": f"S{i}", "content": "x"} for i in range(steps)]})
                    for i, peer in enumerate(peers[1:]):
                        await peer.request("steps/status/to_mentor",
                                           {"room_id": rid, "step": i % steps, "status": "DONE"})
                    async with world.connect(lesson.teacher) as again:
                        calls.clear()
                        await again.join(rid, after=await world.last_seq(rid))
                        joining = len(calls)
                        calls.clear()
                        await again.request("steps/table", {"room_id": rid},
                                            answer="steps/table")
                        return joining, len(calls)

            small, large = await cost(1, 1), await cost(20, 6)
            assert small == large and min(small) > 0


async def test_shared_code_is_merged_and_only_the_instructor_reads_it(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann, bob) as (t, a, b):
                await a.request("sharing/code_send", {"room_id": rid, "files": files(
                    ("a.py", "one"), ("b.py", "two"), ("c.py", "three"))})
                await a.request("sharing/code_update", {"room_id": rid, "files": [
                    {"filename": "a.py", "status": "changed", "content": "ONE"},
                    {"filename": "b.py", "status": "deleted", "content": ""},
                    {"filename": "d.py", "status": "new", "content": "four"}]})
                code = await t.request("sharing/code", {"room_id": rid, "user_id": ann.id},
                                       answer="sharing/code")
                assert code["data"]["files"] == [
                    {"filename": "a.py", "status": "changed", "content": "ONE"},
                    {"filename": "c.py", "status": "unchanged", "content": "three"},
                    {"filename": "d.py", "status": "new", "content": "four"}]
                assert await b.refused("sharing/code", {"room_id": rid,
                                                        "user_id": ann.id}) == "forbidden"
                assert await t.refused("sharing/code", {"room_id": rid,
                                                        "user_id": teacher.id}) == "invalid"
                # An update that would pass the share limit as a whole is refused, unstored.
                big = "x" * (300 * 1024)
                await a.request("sharing/code_update", {"room_id": rid,
                                                        "files": files(("big1.txt", big))})
                before = await world.last_seq(rid)
                assert await a.refused("sharing/code_update", {
                    "room_id": rid, "files": files(("big2.txt", big))}) == "too_large"
                assert await world.last_seq(rid) == before


async def test_alerts_reach_the_person_who_should_notice(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann, bob) as (t, a, b):
                await t.request("sharing/start", {"room_id": rid})
                started = await a.next("alerts")
                assert started["data"]["status"] == "INFORMATION"
                assert "sharing started" in started["data"]["message"].lower()
                await a.request("signal", {"room_id": rid, "value": "HELP"})
                help_alert = await t.next("alerts")
                assert help_alert["data"]["status"] == "WARNING"
                assert help_alert["data"]["user_id"] == ann.id
                assert help_alert["data"]["message"] == "Ann needs help"
                await t.request("steps/status/to_client", {"room_id": rid, "user_id": ann.id,
                                                           "step": 0, "status": "ACCEPTED"})
                accepted = await a.next("alerts")
                assert accepted["data"]["status"] == "SUCCESS"
                assert accepted["data"]["message"] == "Step 1 was accepted"
                await t.request("exercise/feedback", {"room_id": rid, "user_id": ann.id,
                                                      "accepted": False})
                rejected = await a.next("alerts")
                assert rejected["data"]["status"] == "WARNING"
                await t.request("message", {"room_id": rid, "text": "barrier"})
                for peer in (t, a, b):
                    await peer.have(lambda f: f["data"].get("text") == "barrier")
                    await peer.sync()
                assert [f["data"]["message"] for f in b.seen("alerts")] == [
                    "Code sharing started: the instructor sees your files"]
                assert [f["data"]["message"] for f in t.seen("alerts")] == ["Ann needs help"]


async def test_previews_wait_for_their_own_threads_not_the_storage(db_url: str) -> None:
    """Markdown work queues on a limiter of its own: with every one of its threads taken
    (slow previews), a preview waits, and the room's stores (SQLite's statements run in
    threads too) go on meanwhile."""
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            rid = lesson.room.id
            async with world.joined(rid, *lesson.people) as (t, a):
                held = [object() for _ in range(int(HEAVY_WORK.total_tokens))]
                for borrower in held:
                    await HEAVY_WORK.acquire_on_behalf_of(borrower)
                try:
                    ref = await t.send("steps/preview", {"room_id": rid, "markdown": "# A\nx"})
                    await a.say(rid, "stored meanwhile")
                    with trio.move_on_after(0.5) as waited:
                        await t.answer(ref)
                    assert waited.cancelled_caught, "answered without a thread of its own"
                finally:
                    for borrower in held:
                        HEAVY_WORK.release_on_behalf_of(borrower)
                preview = await t.answer(ref)
                assert preview["event"] == "steps/preview", preview


async def test_steps_preview_splits_an_upload_and_stores_nothing(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann) as (t, a):
                before = await world.last_seq(rid)
                doc = base64.b64encode(b"# One\nfirst\n# Two\n```js\nx()\n```\n").decode()
                preview = await t.request("steps/preview", {
                    "room_id": rid, "filename": "lesson.md", "content_base64": doc},
                    answer="steps/preview")
                steps = preview["data"]["steps"]
                assert [(s["name"], s["type"], s["language"]) for s in steps] == [
                    ("One", "theory", ""), ("Two", "exercise", "js")]
                assert await world.last_seq(rid) == before
                assert await a.refused("steps/preview", {"room_id": rid,
                                                         "markdown": "# x"}) == "forbidden"
                import_ack = await t.request("steps/import", {
                    "room_id": rid, "filename": "lesson.md", "content_base64": doc})
                assert import_ack["data"]["seq"] == before + 1
                got = await a.next("steps/all")
                assert [s["name"] for s in got["data"]["steps"]] == ["One", "Two"]


async def test_a_hostile_notion_zip_is_refused_and_nothing_is_stored(db_url: str) -> None:
    def zipped(entries: dict[str, bytes]) -> str:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        return base64.b64encode(buffer.getvalue()).decode()

    with trio.fail_after(30):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann) as (t, a):
                good = zipped({"Lesson 0123456789abcdef0123456789abcdef.md":
                               b"# Lesson\n## One\nfirst\n## Two\nsecond\n"})
                await t.request("steps/import", {"room_id": rid, "filename": "export.zip",
                                                 "content_base64": good})
                assert [s["name"] for s in (await a.next("steps/all"))["data"]["steps"]] == [
                    "One", "Two"]
                before = await world.last_seq(rid)
                hostile = {
                    "bomb": zipped({"bomb.md": b"# " + b"a" * 30_000_000}),
                    "dotdot": zipped({"ok.md": b"# Fine\n", "../../evil.md": b"# Evil\n"}),
                    "absolute": zipped({"/etc/evil.md": b"# Evil\n"}),
                    "not a zip": base64.b64encode(b"PK\x03\x04garbage").decode(),
                }
                for what, content in hostile.items():
                    for event in ("steps/import", "steps/preview"):
                        frame = await t.call(event, {"room_id": rid, "filename": "x.zip",
                                                     "content_base64": content})
                        assert frame["event"] == "error", (what, frame)
                        assert frame["data"]["code"] in ("invalid", "too_large"), what
                assert await world.last_seq(rid) == before
                await t.request("message", {"room_id": rid, "text": "barrier"})
                await a.have(lambda f: f["data"].get("text") == "barrier")
                assert len(a.seen("steps/all")) == 1
                # The room's steps are still the good ones.
                async with world.joined(rid, ann) as (again,):
                    state = again.seen("room/join")[0]["data"]["state"]
                    assert [s["name"] for s in state["steps"]] == ["One", "Two"]


async def test_state_and_alerts_cross_chat_servers(two_chat_servers: list[Any]) -> None:
    """The instructor on one chat server, the student on another: the HELP alert reaches the
    instructor through the relay, and a join on either server answers the same state."""
    one, two = two_chat_servers
    with trio.fail_after(30):
        lesson = await one.live_class("teacher", "ann")
        teacher, ann = lesson.people
        rid = lesson.room.id
        async with one.joined(rid, teacher) as (t,), two.joined(rid, ann) as (a,):
            await t.request("steps/all", {"room_id": rid, "steps": STEPS})
            await a.next("steps/all")
            await a.request("signal", {"room_id": rid, "value": "HELP"})
            alert = await t.next("alerts")
            assert alert["data"]["message"] == "Ann needs help"
            await t.request("exercise/feedback", {"room_id": rid, "user_id": ann.id,
                                                  "accepted": True})
            assert (await a.next("alerts"))["data"]["status"] == "SUCCESS"
            async with two.joined(rid, teacher) as (t2,):
                grid = t2.seen("room/join")[0]["data"]["state"]["grid"]
                assert [(r["name"], r["signal"], r["feedback"]) for r in grid] == [
                    ("Ann", "HELP", True)]
