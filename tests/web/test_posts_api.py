"""Posts edited and deleted, comments (class and private), and class management through the
JSON API: the same rules as the pages (classroom/rules.py), every role tried."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.web.harness import WebWorld
from tests.web.live_peer import api_user


async def people(web: WebWorld) -> tuple[dict[str, httpx.AsyncClient], dict[str, int],
                                         dict[str, Any]]:
    names = ("ada", "bob", "cat", "eve")  # instructor, two students, an outsider
    tokens = {name: await api_user(web, name) for name in names}
    clients = {name: web.api(tokens[name]) for name in names}
    ids = {}
    for name in names:
        ids[name] = (await clients[name].get("/me")).json()["user"]["id"]
    made = (await clients["ada"].post("/classrooms", json={"name": "Net"})).json()["classroom"]
    for student in ("bob", "cat"):
        # Both spellings of the code are taken.
        key = "code" if student == "bob" else "join_code"
        joined = await clients[student].post("/classrooms/join", json={key: made["join_code"]})
        assert joined.status_code == 200, joined.text
    return clients, ids, made


async def test_posts_and_comments_follow_the_rules(web: WebWorld) -> None:
    with trio.fail_after(60):
        clients, ids, made = await people(web)
        ada, bob, cat, eve = (clients[n] for n in ("ada", "bob", "cat", "eve"))
        try:
            cid = made["id"]
            post = (await ada.post(f"/classrooms/{cid}/posts", json={
                "title": "HW1", "body": "due Friday", "tags": ["hw"]})).json()["post"]
            assert post["edited_at"] is None
            pid = post["id"]
            # Edit: the instructor only; a stranger is told nothing exists.
            change = {"title": "HW1 (moved)", "body": "due Monday", "tags": "hw, week2"}
            assert (await bob.patch(f"/posts/{pid}", json=change)).status_code == 403
            assert (await eve.patch(f"/posts/{pid}", json=change)).status_code == 404
            edited = (await ada.patch(f"/posts/{pid}", json=change)).json()["post"]
            assert (edited["title"], edited["tags"]) == ("HW1 (moved)", ["hw", "week2"])
            assert edited["edited_at"] is not None
            assert (await bob.get(f"/posts/{pid}")).json()["post"]["edited_at"] is not None

            # Comments: members comment for the class; a student's private comment is seen
            # by the instructor and that student only.
            async def comment(client: httpx.AsyncClient, **body: object) -> httpx.Response:
                return await client.post(f"/posts/{pid}/comments", json=body)

            public = (await comment(bob, body="Which chapter?")).json()["comment"]
            assert public["private"] is False
            bob_private = (await comment(bob, body="I am ill", private=True)).json()["comment"]
            assert bob_private["student_id"] == ids["bob"]
            cat_private = (await comment(cat, body="cat's secret", private=True)
                           ).json()["comment"]
            reply = await comment(ada, body="Get well", private=True, student_id=ids["bob"])
            assert reply.status_code == 201 and reply.json()["comment"]["student_id"] == ids["bob"]
            assert (await comment(ada, body="whose?", private=True)).status_code == 400
            assert (await comment(ada, body="x", private=True,
                                  student_id=ids["eve"])).status_code == 404
            assert (await comment(eve, body="let me in")).status_code == 404
            assert (await comment(bob, body="   ")).status_code == 400

            async def seen(client: httpx.AsyncClient) -> list[str]:
                answer = (await client.get(f"/posts/{pid}/comments")).json()
                return [c["body"] for c in answer["comments"]]

            assert await seen(ada) == ["Which chapter?", "I am ill", "cat's secret", "Get well"]
            assert await seen(bob) == ["Which chapter?", "I am ill", "Get well"]
            assert await seen(cat) == ["Which chapter?", "cat's secret"]
            assert (await eve.get(f"/posts/{pid}/comments")).status_code == 404

            # Deleting: the instructor any comment, a student their own only; a private one
            # of someone else does not exist for a student.
            assert (await cat.delete(f"/comments/{public['id']}")).status_code == 403
            assert (await cat.delete(f"/comments/{bob_private['id']}")).status_code == 404
            assert (await bob.delete(f"/comments/{bob_private['id']}")).status_code == 204
            assert (await ada.delete(f"/comments/{cat_private['id']}")).status_code == 204
            assert (await ada.delete(f"/comments/{public['id']}")).status_code == 204
            assert await seen(ada) == ["Get well"]

            # Deleting the post: the instructor only, and its comments go with it.
            assert (await bob.delete(f"/posts/{pid}")).status_code == 403
            assert (await ada.delete(f"/posts/{pid}")).status_code == 204
            assert (await bob.get(f"/posts/{pid}")).status_code == 404
            assert (await ada.get(f"/classrooms/{cid}/posts")).json()["posts"] == []
            assert (await ada.get(f"/classrooms/{cid}/tags")).json()["tags"] == []
        finally:
            for client in clients.values():
                await client.aclose()


async def test_class_management(web: WebWorld) -> None:
    with trio.fail_after(60):
        clients, ids, made = await people(web)
        ada, bob, cat, eve = (clients[n] for n in ("ada", "bob", "cat", "eve"))
        try:
            cid, old_code = made["id"], made["join_code"]
            # Remove a student: the instructor only.
            assert (await bob.delete(f"/classrooms/{cid}/students/{ids['cat']}")
                    ).status_code == 403
            assert (await ada.delete(f"/classrooms/{cid}/students/{ids['cat']}")
                    ).status_code == 204
            assert (await cat.get(f"/classrooms/{cid}")).status_code == 404
            assert (await ada.delete(f"/classrooms/{cid}/students/{ids['ada']}")
                    ).status_code == 404
            # Reset the code: the old one stops working.
            reset = (await ada.post(f"/classrooms/{cid}/join-code", json={"reset": True}))
            new_code = reset.json()["classroom"]["join_code"]
            assert new_code != old_code
            assert (await eve.post("/classrooms/join", json={"code": old_code})
                    ).status_code == 404
            # Turn joining off, then on again.
            off = await ada.post(f"/classrooms/{cid}/join-code", json={"open": False})
            assert off.json()["classroom"]["join_open"] is False
            closed = await eve.post("/classrooms/join", json={"code": new_code})
            assert closed.status_code == 409
            assert "not taking new students" in closed.json()["error"]["message"]
            # (a member entering the code again is simply in the class)
            assert (await bob.post("/classrooms/join", json={"code": new_code})
                    ).status_code == 200
            await ada.post(f"/classrooms/{cid}/join-code", json={"open": True})
            assert (await eve.post("/classrooms/join", json={"code": new_code})
                    ).status_code == 200
            assert (await bob.post(f"/classrooms/{cid}/join-code", json={"reset": True})
                    ).status_code == 403
            # Leave: a student can, the instructor cannot.
            assert (await eve.post(f"/classrooms/{cid}/leave", json={})).status_code == 204
            assert (await eve.get(f"/classrooms/{cid}")).status_code == 404
            assert (await ada.post(f"/classrooms/{cid}/leave", json={})).status_code == 403
            # Archive: not while a session runs (its room would go on taking events).
            session = (await ada.post(f"/classrooms/{cid}/sessions", json={})).json()
            busy = await ada.post(f"/classrooms/{cid}/archive", json={"archived": True})
            assert busy.status_code == 409 and "end the live session" in busy.text
            ended = await ada.post(f"/sessions/{session['room']['id']}/end", json={})
            assert ended.status_code == 200, ended.text
            # Archive: read-only until restored.
            archived = await ada.post(f"/classrooms/{cid}/archive", json={"archived": True})
            assert archived.json()["classroom"]["archived"] is True
            refused = await ada.post(f"/classrooms/{cid}/posts", json={"title": "x"})
            assert refused.status_code == 409
            assert (await ada.post(f"/classrooms/{cid}/sessions", json={})).status_code == 409
            assert (await bob.get(f"/classrooms/{cid}/posts")).status_code == 200
            closed = await eve.post("/classrooms/join", json={"code": new_code})
            assert closed.status_code == 409
            assert "archived" in closed.json()["error"]["message"]
            await ada.post(f"/classrooms/{cid}/archive", json={"archived": False})
            assert (await ada.post(f"/classrooms/{cid}/posts", json={"title": "x"})
                    ).status_code == 201
        finally:
            for client in clients.values():
                await client.aclose()


async def test_a_lone_surrogate_in_a_json_body_is_a_400_not_a_500(web: WebWorld) -> None:
    """JSON may spell a lone surrogate that no UTF-8 encoder takes (argon2 and the database
    driver failed on it: a 500 for anyone, signed in or not)."""
    with trio.fail_after(30):
        token = await api_user(web, "ada")
        async with web.api() as anyone, web.api(token) as ada:
            for client, path, body in (
                    (anyone, "/login", b'{"username": "\\udc80", "password": "x"}'),
                    (anyone, "/signup", b'{"username": "zed", "display_name": "Z",'
                                        b' "password": "\\ud800aaaaaaaaaaaa"}'),
                    (ada, "/classrooms/join", b'{"code": "\\udfff"}')):
                answer = await client.post(path, content=body,
                                           headers={"Content-Type": "application/json"})
                assert answer.status_code == 400, (path, answer.status_code, answer.text)
                assert "surrogate" in answer.json()["error"]["message"]
