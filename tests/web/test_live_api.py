"""The live-session JSON API: sessions, attendance, discussions, rooms and their messages,
with real WebSocket traffic through a real chat server."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
import trio

from tests.web.harness import WebWorld
from tests.web.live_peer import api_user, eventually, live_peer
from tests.web.test_api import error_of

ISO_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ROOM_KEYS = {"id", "classroom_id", "kind", "topic", "open", "created_at", "ended_at",
             "last_seq"}


async def a_class(world: WebWorld, *students: str) -> tuple[int, str, list[str], str]:
    """A class taught by ada with `students` in it: (class id, ada's token, the students'
    tokens, an outsider's token)."""
    ada = await api_user(world, "ada", "Ada L")
    async with world.api(ada) as api:
        created = (await api.post("/classrooms", json={"name": "Networks"})).json()
    classroom = created["classroom"]
    tokens = []
    for name in students:
        token = await api_user(world, name)
        async with world.api(token) as api:
            joined = await api.post("/classrooms/join", json={"code": classroom["join_code"]})
            assert joined.status_code == 200
        tokens.append(token)
    return classroom["id"], ada, tokens, await api_user(world, "eve")


def room_of(answer: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    room: dict[str, Any] = answer.json()["room"]
    assert set(room) == ROOM_KEYS
    assert ISO_MS_Z.fullmatch(room["created_at"])
    return room


async def test_starting_and_ending_live_sessions(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        cid, ada_token, [bob_token], eve_token = await a_class(live_web, "bob")
        async with live_web.api(ada_token) as ada, live_web.api(bob_token) as bob, \
                live_web.api(eve_token) as eve, live_web.api() as anonymous:
            path = f"/classrooms/{cid}/sessions"
            assert error_of(await bob.post(path, json={}), 403)["code"] == "forbidden"
            assert error_of(await eve.post(path, json={}), 404)["code"] == "not_found"
            assert error_of(await anonymous.post(path, json={}), 401)["code"] == \
                "unauthenticated"
            assert error_of(await ada.post(path, data={"topic": "x"}), 415)["code"] == \
                "unsupported_media_type"
            assert error_of(await ada.post(path, json={"topic": "x" * 201}), 400)
            assert error_of(await ada.post(path, json={"topic": 7}), 400)["code"] == "invalid"

            first = room_of(await ada.post(path, json={"topic": "Routing"}), 201)
            assert first["kind"] == "live" and first["open"] is True
            assert first["classroom_id"] == cid and first["topic"] == "Routing"
            assert first["ended_at"] is None and first["last_seq"] == 0
            again = await ada.post(path)  # an empty body counts as {} but must say JSON
            assert again.status_code == 415
            conflict = error_of(await ada.post(path, json={}), 409)
            assert conflict["code"] == "conflict" and str(first["id"]) in conflict["message"]

            # One id, two addresses; members only, outsiders cannot tell it exists.
            for who in (ada, bob):
                assert room_of(await who.get(f"/sessions/{first['id']}")) == first
                assert room_of(await who.get(f"/rooms/{first['id']}")) == first
            for missing in (f"/sessions/{first['id']}", f"/rooms/{first['id']}",
                            "/rooms/9999", f"/sessions/{first['id']}/attendance"):
                assert error_of(await eve.get(missing), 404)["code"] == "not_found"

            end = f"/sessions/{first['id']}/end"
            assert error_of(await bob.post(end, json={}), 403)["code"] == "forbidden"
            assert error_of(await eve.post(end, json={}), 404)["code"] == "not_found"
            assert error_of(await ada.post(end, data={"x": "1"}), 415)
            assert (await bob.get(f"/sessions/{first['id']}")).json()["room"]["open"] is True
            ended = room_of(await ada.post(end, json={}))
            assert ended["open"] is False and ISO_MS_Z.fullmatch(ended["ended_at"])
            # Ending twice changes nothing.
            assert room_of(await ada.post(end, json={})) == ended

            second = room_of(await ada.post(path, json={}), 201)
            assert second["topic"] == "" and second["id"] != first["id"]
            for who in (ada, bob):
                listed = (await who.get(path)).json()["sessions"]
                assert [s["id"] for s in listed] == [second["id"], first["id"]]
                assert listed[1] == ended
            assert error_of(await eve.get(path), 404)["code"] == "not_found"
            assert error_of(await ada.get("/classrooms/999/sessions"), 404)


async def test_attendance_after_a_real_websocket_visit(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        cid, ada_token, [bob_token, cyd_token], eve_token = await a_class(
            live_web, "bob", "cyd")
        async with live_web.api(ada_token) as ada, live_web.api(bob_token) as bob, \
                live_web.api(eve_token) as eve:
            room = room_of(await ada.post(f"/classrooms/{cid}/sessions", json={}), 201)
            attendance = f"/sessions/{room['id']}/attendance"
            empty = (await ada.get(attendance)).json()
            assert empty == {"room": room, "attendance": []}

            async with live_peer(live_web, bob_token) as peer:
                answer = await peer.join(room["id"])
                assert answer["data"]["you"]["username"] == "bob"
                during = (await ada.get(attendance)).json()["attendance"]
                assert [(a["user"]["username"], a["online"]) for a in during] == [
                    ("bob", True)]
                assert during[0]["last_leave"] is None

            # The server records the leave once it has seen the connection close.
            async def left() -> bool:
                records = (await ada.get(attendance)).json()["attendance"]
                return not records[0]["online"]

            await eventually(left)
            [record] = (await ada.get(attendance)).json()["attendance"]
            assert set(record) == {"user", "first_join", "last_join", "last_leave",
                                   "seconds_connected", "minutes_connected", "online"}
            assert record["user"]["username"] == "bob"
            first_join = datetime.fromisoformat(record["first_join"].rstrip("Z"))
            last_leave = datetime.fromisoformat(record["last_leave"].rstrip("Z"))
            assert first_join <= last_leave
            assert 0 <= record["seconds_connected"] < 30
            assert isinstance(record["minutes_connected"], float)

            assert error_of(await bob.get(attendance), 403)["code"] == "forbidden"
            assert error_of(await eve.get(attendance), 404)["code"] == "not_found"
            async with live_web.api(cyd_token) as cyd:
                assert error_of(await cyd.get(attendance), 403)


async def test_discussions(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        cid, ada_token, [bob_token], eve_token = await a_class(live_web, "bob")
        async with live_web.api(ada_token) as ada, live_web.api(bob_token) as bob, \
                live_web.api(eve_token) as eve:
            path = f"/classrooms/{cid}/discussions"
            assert error_of(await ada.post(path, json={}), 400)["message"] == \
                "a discussion needs a topic"
            assert error_of(await bob.post(path, json={"topic": "mine"}), 403)
            assert error_of(await eve.post(path, json={"topic": "x"}), 404)
            hw = room_of(await ada.post(path, json={"topic": "Homework 2"}), 201)
            assert hw["kind"] == "discussion" and hw["open"] is True
            # Several discussions may be open at once, and beside a live session.
            lab = room_of(await ada.post(path, json={"topic": "Lab <b>"}), 201)
            live = room_of(await ada.post(f"/classrooms/{cid}/sessions", json={}), 201)
            for who in (ada, bob):
                listed = (await who.get(path)).json()["discussions"]
                assert [d["id"] for d in listed] == [lab["id"], hw["id"]]
                assert listed[0]["topic"] == "Lab <b>"
                sessions = (await who.get(f"/classrooms/{cid}/sessions")).json()["sessions"]
                assert [s["id"] for s in sessions] == [live["id"]]
                assert room_of(await who.get(f"/rooms/{hw['id']}")) == hw
            assert error_of(await eve.get(path), 404)


async def test_messages_show_what_the_caller_may_see(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        cid, ada_token, [bob_token, cyd_token], eve_token = await a_class(
            live_web, "bob", "cyd")
        async with live_web.api(ada_token) as api:
            room = room_of(await api.post(f"/classrooms/{cid}/sessions", json={}), 201)
        rid = room["id"]
        async with live_peer(live_web, ada_token) as ada, \
                live_peer(live_web, bob_token) as bob, live_peer(live_web, cyd_token) as cyd:
            for peer in (ada, bob):
                await peer.join(rid)
            cyd_id = (await cyd.join(rid))["data"]["you"]["id"]
            await bob.say(rid, "hello all")
            await bob.say(rid, "bob asks", "message/to_mentor")
            await cyd.say(rid, "cyd asks", "message/to_mentor")
            await ada.say(rid, "for cyd", "message/to_client", user_id=cyd_id)
            last = await ada.say(rid, "public from ada")

        async def texts(token: str, **params: Any) -> tuple[list[str], Any]:
            async with live_web.api(token) as api:
                answer = await api.get(f"/rooms/{rid}/messages", params=params)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert set(body) == {"messages", "next_after"}
                for event in body["messages"]:
                    assert set(event) == {"event", "seq", "data"}
                    assert event["data"]["room_id"] == rid
                return [m["data"]["text"] for m in body["messages"]], body["next_after"]

        everything = ["hello all", "bob asks", "cyd asks", "for cyd", "public from ada"]
        assert await texts(ada_token) == (everything, None)
        assert await texts(bob_token) == (["hello all", "bob asks", "public from ada"], None)
        assert await texts(cyd_token) == (
            ["hello all", "cyd asks", "for cyd", "public from ada"], None)

        async with live_web.api(bob_token) as api:
            body = (await api.get(f"/rooms/{rid}/messages")).json()
            hello = body["messages"][0]
            assert hello["event"] == "message" and hello["data"]["from"]["name"] == "Bob"
            assert ISO_MS_Z.fullmatch(hello["data"]["at"])
            assert body["messages"][1]["event"] == "message/to_mentor"
            # Paging: after a seq, at most `limit`, and where to go on from.
            page, next_after = await texts(ada_token, limit="2")
            assert page == everything[:2] and isinstance(next_after, int)
            page, next_after = await texts(ada_token, after=str(next_after), limit="2")
            assert page == everything[2:4]
            assert await texts(ada_token, after=str(next_after), limit="2") == (
                everything[4:], None)
            assert await texts(ada_token, after=str(last)) == ([], None)
            assert await texts(bob_token, after=str(hello["seq"])) == (
                ["bob asks", "public from ada"], None)
            for bad in ({"after": "-1"}, {"after": "x"}, {"limit": "1e3"}):
                refused = await api.get(f"/rooms/{rid}/messages", params=bad)
                assert error_of(refused, 400)["code"] == "invalid"
        async with live_web.api(eve_token) as eve:
            assert error_of(await eve.get(f"/rooms/{rid}/messages"), 404)
            assert error_of(await eve.get("/rooms/999/messages"), 404)


async def test_healthz_names_the_chat_server(live_web: WebWorld, web: WebWorld) -> None:
    with trio.fail_after(30):
        async with live_web.api() as api:
            health = (await api.get("/healthz")).json()
            assert health == {"status": "ok", "database": live_web.storage.backend,
                              "chat_url": live_web.chat_url, "bus": "off"}
            assert health["chat_url"].startswith("ws://127.0.0.1:")
        async with web.api() as api:
            assert (await api.get("/healthz")).json()["chat_url"] is None
