"""The JSON API's Idempotency-Key: a retried POST gets the first answer and changes nothing."""

from __future__ import annotations

import trio

from tests.web.harness import WebWorld
from tests.web.test_api import error_of, sign_up


async def test_a_retried_post_gets_the_first_answer_and_stores_nothing(web: WebWorld) -> None:
    with trio.fail_after(30):
        token = await sign_up(web, "ada")
        async with web.api(token) as ada:
            key = {"Idempotency-Key": "create-class-1"}
            first = await ada.post("/classrooms", json={"name": "Networks"}, headers=key)
            again = await ada.post("/classrooms", json={"name": "Networks"}, headers=key)
            assert first.status_code == again.status_code == 201
            assert again.json() == first.json()
            assert again.headers["idempotent-replayed"] == "true"
            assert "idempotent-replayed" not in first.headers
            listed = (await ada.get("/classrooms")).json()["classrooms"]
            assert len(listed) == 1
            cid = first.json()["classroom"]["id"]
            # The same key on another path is another request.
            post = {"title": "Hello", "body": "first post"}
            p1 = await ada.post(f"/classrooms/{cid}/posts", json=post, headers=key)
            p2 = await ada.post(f"/classrooms/{cid}/posts", json=post, headers=key)
            assert p1.status_code == p2.status_code == 201 and p1.json() == p2.json()
            assert len((await ada.get(f"/classrooms/{cid}/posts")).json()["posts"]) == 1
            # Without a key, a repeat is a new request.
            await ada.post(f"/classrooms/{cid}/posts", json=post)
            assert len((await ada.get(f"/classrooms/{cid}/posts")).json()["posts"]) == 2


async def test_a_failed_first_try_leaves_the_key_free(web: WebWorld) -> None:
    with trio.fail_after(30):
        token = await sign_up(web, "ada")
        async with web.api(token) as ada:
            key = {"Idempotency-Key": "k-1"}
            error_of(await ada.post("/classrooms", json={"name": ""}, headers=key), 400)
            ok = await ada.post("/classrooms", json={"name": "Networks"}, headers=key)
            assert ok.status_code == 201


async def test_keys_are_per_user_and_checked(web: WebWorld) -> None:
    with trio.fail_after(30):
        ada_token, bob_token = await sign_up(web, "ada"), await sign_up(web, "bob")
        async with web.api(ada_token) as ada, web.api(bob_token) as bob:
            key = {"Idempotency-Key": "same"}
            a = await ada.post("/classrooms", json={"name": "A"}, headers=key)
            b = await bob.post("/classrooms", json={"name": "B"}, headers=key)
            assert a.json()["classroom"]["id"] != b.json()["classroom"]["id"]
            bad = await ada.post("/classrooms", json={"name": "C"},
                                 headers={"Idempotency-Key": "x" * 101})
            error_of(bad, 400)
