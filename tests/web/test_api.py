"""The JSON API: its story, its shapes and its errors."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import trio

from tests.web.harness import PASSWORD, WebWorld

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def error_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The `error` object of an error answer, after checking its status and exact shape."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def sign_up(web: WebWorld, username: str) -> str:
    async with web.api() as api:
        answer = await api.post("/signup", json={
            "username": username, "display_name": username.title(), "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token


async def test_api_story(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.api() as anonymous:
            signed = await anonymous.post("/signup", json={
                "username": "Ada", "display_name": "Ada L", "password": PASSWORD})
            assert signed.status_code == 201
            body = signed.json()
            assert set(body) == {"user", "token"}
            user = body["user"]
            assert isinstance(user["id"], int) and user["username"] == "ada"
            assert ISO_Z.fullmatch(user["created_at"])
            login = await anonymous.post("/login", json={"username": "ada",
                                                         "password": PASSWORD})
            assert login.status_code == 200 and login.json()["user"] == user
            assert "classroom_session=" in login.headers["set-cookie"]
            ada_token = login.json()["token"]
        bob_token = await sign_up(web, "bob")

        async with web.api(ada_token) as ada, web.api(bob_token) as bob:
            created = await ada.post("/classrooms", json={"name": "Networks",
                                                          "description": "TCP/IP"})
            assert created.status_code == 201
            classroom = created.json()["classroom"]
            assert classroom["role"] == "instructor" and classroom["name"] == "Networks"
            assert classroom["instructor"] == {"id": user["id"], "display_name": "Ada L"}
            code = classroom["join_code"]
            cid = classroom["id"]

            post = await ada.post(f"/classrooms/{cid}/posts", json={
                "title": "HW1", "body": "Read.", "tags": ["HW", "week1"]})
            assert post.status_code == 201
            first = post.json()["post"]
            assert first["tags"] == ["hw", "week1"] and isinstance(first["id"], int)
            assert ISO_Z.fullmatch(first["created_at"])
            second = (await ada.post(f"/classrooms/{cid}/posts", json={
                "title": "Hello", "tags": "news hw"})).json()["post"]

            joined = await bob.post("/classrooms/join", json={"code": code.lower()})
            assert joined.status_code == 200
            assert joined.json()["classroom"]["role"] == "student"
            assert "join_code" not in joined.json()["classroom"]
            mine = (await bob.get("/classrooms")).json()["classrooms"]
            assert [(c["id"], c["role"]) for c in mine] == [(cid, "student")]
            assert ISO_Z.fullmatch(mine[0]["joined_at"])
            assert (await bob.get(f"/classrooms/{cid}")).json()["classroom"]["id"] == cid

            stream = (await bob.get(f"/classrooms/{cid}/posts")).json()
            assert [p["id"] for p in stream["posts"]] == [second["id"], first["id"]]
            assert stream["posts"][1] == first
            assert stream["next_before"] is None
            week1 = (await bob.get(f"/classrooms/{cid}/posts", params={"tag": "WEEK1"})).json()
            assert [p["id"] for p in week1["posts"]] == [first["id"]]
            older = await bob.get(f"/classrooms/{cid}/posts",
                                  params={"before": str(second["id"])})
            assert [p["id"] for p in older.json()["posts"]] == [first["id"]]
            tags = (await bob.get(f"/classrooms/{cid}/tags")).json()["tags"]
            assert tags == [{"name": "hw", "posts": 2}, {"name": "news", "posts": 1},
                            {"name": "week1", "posts": 1}]

            roster = (await ada.get(f"/classrooms/{cid}/students")).json()["members"]
            assert [(m["user"]["username"], m["role"]) for m in roster] == [
                ("ada", "instructor"), ("bob", "student")]
            assert error_of(await bob.get(f"/classrooms/{cid}/students"), 403)["code"] == \
                "forbidden"
            refused = await bob.post(f"/classrooms/{cid}/posts", json={"title": "mine"})
            assert error_of(refused, 403)["code"] == "forbidden"

            out = await bob.post("/logout", json={})
            assert out.status_code == 204
            assert error_of(await bob.get("/classrooms"), 401)["code"] == "unauthenticated"
            assert (await ada.get("/me")).status_code == 200


async def test_cookie_sessions_work_on_the_api_too(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.api() as api:
            await api.post("/signup", json={"username": "ada", "display_name": "Ada",
                                            "password": PASSWORD})
            assert (await api.get("/me")).json()["user"]["username"] == "ada"
            # The logout of a cookie session needs a JSON Content-Type, like every API POST,
            # so a cross-site form cannot sign anyone out.
            forged = await api.post("/logout", data={"x": "1"})
            assert error_of(forged, 415)["code"] == "unsupported_media_type"
            plain = await api.post("/logout")
            assert plain.status_code == 415
            assert (await api.get("/me")).status_code == 200
            out = await api.post("/logout", headers={"content-type": "application/json"})
            assert out.status_code == 204
            assert (await api.get("/me")).status_code == 401


async def test_api_errors(web: WebWorld) -> None:
    with trio.fail_after(30):
        token = await sign_up(web, "ada")
        async with web.api() as anonymous, web.api(token) as ada:
            assert error_of(await anonymous.get("/classrooms"), 401)["code"] == \
                "unauthenticated"
            assert (await anonymous.get("/classrooms")).headers["www-authenticate"].startswith(
                "Bearer")
            async with web.api("not-a-real-token") as forged:
                assert error_of(await forged.get("/me"), 401)["code"] == "unauthenticated"
            assert error_of(await ada.get("/classrooms/424242"), 404)["code"] == "not_found"
            assert error_of(await ada.get("/nowhere"), 404)["code"] == "not_found"
            assert error_of(await ada.post("/nowhere", json={}), 404)["code"] == "not_found"
            wrong = await ada.put("/classrooms", json={})
            assert error_of(wrong, 405)["code"] == "method_not_allowed"
            assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
            form = await ada.post("/classrooms", data={"name": "x"})
            assert error_of(form, 415)["code"] == "unsupported_media_type"
            broken = await ada.post("/classrooms", content=b"{nope",
                                    headers={"content-type": "application/json"})
            assert error_of(broken, 400)["code"] == "bad_request"
            assert error_of(await ada.post("/classrooms", json=[1]), 400)["code"] == \
                "bad_request"
            typed = await ada.post("/classrooms", json={"name": 5})
            assert error_of(typed, 400) == {"code": "invalid",
                                            "message": "name must be a string"}
            blank = await ada.post("/classrooms", json={"name": " "})
            assert error_of(blank, 400) == {"code": "invalid",
                                            "message": "class name is required"}
            taken = await anonymous.post("/signup", json={
                "username": "ADA", "display_name": "x", "password": PASSWORD})
            assert error_of(taken, 409)["code"] == "conflict"
            short = await anonymous.post("/signup", json={
                "username": "zed", "display_name": "x", "password": "short"})
            assert error_of(short, 400)["code"] == "invalid"
            code = await ada.post("/classrooms/join", json={"code": "ZZZZZZZZZZ"})
            assert error_of(code, 404)["code"] == "not_found"
            cid = (await ada.post("/classrooms", json={"name": "x"})).json()["classroom"]["id"]
            bad_tags = await ada.post(f"/classrooms/{cid}/posts", json={"title": "t",
                                                                        "tags": [1, 2]})
            assert error_of(bad_tags, 400)["code"] == "invalid"
            long_body = await ada.post(f"/classrooms/{cid}/posts", json={"body": "x" * 20001})
            assert "too long" in error_of(long_body, 400)["message"]
            before = await ada.get(f"/classrooms/{cid}/posts", params={"before": "-1"})
            assert error_of(before, 400)["code"] == "invalid"


async def test_an_oversized_body_is_refused_before_it_is_read(web: WebWorld) -> None:
    with trio.fail_after(30):
        # A raw socket: the 413 comes before the body is sent, which httpx would report as
        # an abandoned upload rather than show us the answer.
        port = int(web.base_url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                b"POST /api/v1/classrooms HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
            received = b""
            while chunk := await stream.receive_some(65536):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        assert json.loads(body)["error"]["code"] == "too_large"


@pytest.mark.parametrize("path", ["/healthz", "/classrooms"])
async def test_api_answers_head(web: WebWorld, path: str) -> None:
    with trio.fail_after(30):
        token = await sign_up(web, "ada")
        async with web.api(token) as api:
            head = await api.head(path)
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-type"] == "application/json"
