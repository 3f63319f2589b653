"""Many clients at once against a real `classroom serve --no-chat` on MariaDB.

Set-up through the JSON API: an instructor, a class with one post, and STUDENTS accounts
joined to it (signed up SIGNUP_BATCH at a time: argon2 makes each one cost ~20 ms of CPU).
Then every student at the same instant, each with its own connection: log in, open the class
page (HTML, session cookie) and read the posts (JSON). Not one error is allowed, and the
server must still answer afterwards and shut down cleanly.
"""

from __future__ import annotations

import ssl
import time
from typing import Final

import httpx
import pytest
import trio

from tests.conftest import throwaway_mysql_url
from tests.e2e.server_process import running_server

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

STUDENTS: Final = 200
# Every account here comes from 127.0.0.1, as a class behind one NAT would, all at once.
SERVE: Final = ("--http", "127.0.0.1:0", "--no-chat", "--signups-per-address", "1000")
SIGNUP_BATCH: Final = 20
PASSWORD: Final = "correct horse battery"
TITLE: Final = "Week 1 <readings> & labs"
ESCAPED_TITLE: Final = "Week 1 &lt;readings&gt; &amp; labs"


async def sign_up(api: httpx.AsyncClient, username: str) -> str:
    response = await api.post("/signup", json={
        "username": username, "display_name": username.title(), "password": PASSWORD})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def test_200_students_at_once() -> None:
    with trio.fail_after(180):
        async with throwaway_mysql_url() as db_url, running_server(db_url, SERVE) as server:
            base = server.http_url
            assert base is not None
            limits = httpx.Limits(max_connections=SIGNUP_BATCH)
            async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=30,
                                         limits=limits) as api:
                teacher = await sign_up(api, "teacher")
                auth = {"Authorization": f"Bearer {teacher}"}
                created = await api.post("/classrooms", json={"name": "Load 101"},
                                         headers=auth)
                assert created.status_code == 201, created.text
                classroom = created.json()["classroom"]
                classroom_id, code = classroom["id"], classroom["join_code"]
                posted = await api.post(f"/classrooms/{classroom_id}/posts", headers=auth,
                                        json={"title": TITLE, "body": "see the page",
                                              "tags": "week1"})
                assert posted.status_code == 201, posted.text

                async def enrol(username: str) -> None:
                    token = await sign_up(api, username)
                    joined = await api.post("/classrooms/join", json={"code": code},
                                            headers={"Authorization": f"Bearer {token}"})
                    assert joined.status_code == 200, joined.text

                names = [f"student{i:03d}" for i in range(STUDENTS)]
                started = time.monotonic()
                for batch in range(0, STUDENTS, SIGNUP_BATCH):
                    async with trio.open_nursery() as nursery:
                        for name in names[batch:batch + SIGNUP_BATCH]:
                            nursery.start_soon(enrol, name)
                print(f"\nset-up: {STUDENTS} students signed up and joined in "
                      f"{time.monotonic() - started:.1f} s")
                roster = await api.get(f"/classrooms/{classroom_id}/students", headers=auth)
                assert len(roster.json()["members"]) == STUDENTS + 1

            # One TLS context for all (httpx would build one per client; never used on http).
            tls = ssl.create_default_context()
            errors: list[str] = []
            timings: list[float] = []
            go, all_ready = trio.Event(), trio.Event()
            ready = [0]

            async def student(username: str) -> None:
                # One client (one connection, its own cookie jar) per student.
                async with httpx.AsyncClient(base_url=base, timeout=60, verify=tls) as client:
                    ready[0] += 1
                    if ready[0] == STUDENTS:
                        all_ready.set()
                    await go.wait()
                    began = time.monotonic()
                    try:
                        login = await client.post("/api/v1/login", json={
                            "username": username, "password": PASSWORD})
                        if login.status_code != 200:
                            errors.append(f"{username} login {login.status_code} {login.text}")
                            return
                        page = await client.get(f"/classrooms/{classroom_id}")
                        if page.status_code != 200 or ESCAPED_TITLE not in page.text \
                                or username.title() not in page.text:
                            errors.append(f"{username} page {page.status_code} "
                                          f"{page.text[:200]!r}")
                            return
                        posts = await client.get(f"/api/v1/classrooms/{classroom_id}/posts")
                        titles = [p["title"] for p in posts.json().get("posts", [])] \
                            if posts.status_code == 200 else []
                        if titles != [TITLE]:
                            errors.append(f"{username} posts {posts.status_code} {posts.text}")
                            return
                    except httpx.HTTPError as exc:
                        errors.append(f"{username} {type(exc).__name__}: {exc}")
                        return
                    timings.append(time.monotonic() - began)

            async with trio.open_nursery() as nursery:
                for name in names:
                    nursery.start_soon(student, name)
                await all_ready.wait()  # every client made, then all start at once
                started = time.monotonic()
                go.set()
            elapsed = time.monotonic() - started
            timings.sort()
            print(f"{STUDENTS} students at once (login + page + posts): {elapsed:.1f} s total, "
                  f"slowest {timings[-1] if timings else float('nan'):.2f} s, "
                  f"median {timings[len(timings) // 2] if timings else float('nan'):.2f} s")
            assert errors == [], f"{len(errors)} of {STUDENTS} failed: {errors[:5]}"
            assert len(timings) == STUDENTS

            async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=10) as api:
                health = await api.get("/healthz")
                assert health.status_code == 200 and health.json()["status"] == "ok"
                mine = await api.get(f"/classrooms/{classroom_id}/posts",
                                     headers={"Authorization": f"Bearer {teacher}"})
                assert [p["title"] for p in mine.json()["posts"]] == [TITLE]
            assert await server.stop() == 0
