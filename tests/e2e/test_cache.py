"""The per-process cache across app servers: two real `classroom serve` processes on one
database, each caching sessions, roles and posts. A change made through one of them, or
written by a third process, is seen by both within the staleness bound (STALE_AFTER), and
never later: a new post, a logout, a password change, a student removed from the class."""

from __future__ import annotations

import httpx
import trio

from classroom.cache import POLL_INTERVAL, STALE_AFTER
from storage import CHANGE_CLASSROOM, open_storage
from tests.e2e.server_process import running_server
from tests.web.harness import PASSWORD


async def test_changes_reach_every_app_server_within_the_bound(db_url: str) -> None:
    with trio.fail_after(90):
        async with running_server(db_url) as one, running_server(db_url) as two:
            assert one.http_url is not None and two.http_url is not None
            # Both caches serve once their first poll has finished.
            await trio.sleep(2 * POLL_INTERVAL)
            async with httpx.AsyncClient(base_url=one.http_url + "/api/v1", timeout=10) as a, \
                    httpx.AsyncClient(base_url=two.http_url + "/api/v1", timeout=10) as b:

                async def sign_up(name: str) -> dict[str, str]:
                    answer = await a.post("/signup", json={
                        "username": name, "display_name": name.title(), "password": PASSWORD})
                    assert answer.status_code == 201, answer.text
                    return {"Authorization": f"Bearer {answer.json()['token']}"}

                teacher, ada, bob = [await sign_up(n) for n in ("turing", "ada", "bob")]
                created = await a.post("/classrooms", json={"name": "Logic"}, headers=teacher)
                classroom = created.json()["classroom"]
                posts = f"/classrooms/{classroom['id']}/posts"
                for student in (ada, bob):
                    joined = await b.post("/classrooms/join", headers=student,
                                          json={"code": classroom["join_code"]})
                    assert joined.status_code == 200, joined.text
                assert (await a.post(posts, json={"title": "First"}, headers=teacher)
                        ).status_code == 201

                async def titles(client: httpx.AsyncClient, who: dict[str, str]) -> list[str]:
                    answer = await client.get(posts, headers=who)
                    assert answer.status_code == 200, answer.text
                    return [p["title"] for p in answer.json()["posts"]]

                # Read twice through both servers: sessions, roles and posts are cached now.
                for client in (a, b, a, b):
                    for who in (ada, bob):
                        assert await titles(client, who) == ["First"]

                # A new post through one server: there at once, on the other within the bound.
                assert (await a.post(posts, json={"title": "Second"}, headers=teacher)
                        ).status_code == 201
                assert await titles(a, ada) == ["Second", "First"]
                await trio.sleep(STALE_AFTER)
                assert await titles(b, ada) == ["Second", "First"]

                # Ada logs out through one server: her token is dead on both.
                assert (await a.post("/logout", json={}, headers=ada)).status_code == 204
                assert (await a.get(posts, headers=ada)).status_code == 401
                await trio.sleep(STALE_AFTER)
                assert (await b.get(posts, headers=ada)).status_code == 401
                assert (await b.get("/me", headers=ada)).status_code == 401

                # The teacher changes the password through one server with a second sign-in
                # open: that other sign-in is dead on both, the one used stays.
                other = await a.post("/login", json={"username": "turing", "password": PASSWORD})
                second = {"Authorization": f"Bearer {other.json()['token']}"}
                assert await titles(b, second) == ["Second", "First"]
                changed = await a.post("/password", headers=teacher, json={
                    "current_password": PASSWORD, "new_password": PASSWORD + "!"})
                assert changed.status_code == 204, changed.text
                await trio.sleep(STALE_AFTER)
                assert (await b.get(posts, headers=second)).status_code == 401
                assert await titles(b, teacher) == ["Second", "First"]

                # Bob is removed by a third process writing the database: gone on both.
                async with open_storage(db_url) as storage:
                    await storage.db.execute(
                        "DELETE FROM memberships WHERE classroom_id = %s AND user_id = %s",
                        (classroom["id"], (await b.get("/me", headers=bob)).json()["user"]["id"]))
                    await storage.changed(CHANGE_CLASSROOM, classroom["id"])
                await trio.sleep(STALE_AFTER)
                for client in (a, b):
                    assert (await client.get(posts, headers=bob)).status_code == 404
                    assert await titles(client, teacher) == ["Second", "First"]
            assert await one.stop() == 0
            assert await two.stop() == 0
