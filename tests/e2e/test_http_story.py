"""The HTTP story against a real `classroom serve` process, on each database backend."""

from __future__ import annotations

import httpx
import trio

from tests.e2e.server_process import running_server
from tests.web.harness import PASSWORD, Browser, join_code


async def test_http_story_against_a_real_process(db_url: str) -> None:
    with trio.fail_after(60):
        async with running_server(db_url) as server:
            assert server.http_url is not None and server.chat_url is None
            base = server.http_url
            async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=10) as api:
                health = await api.get("/healthz")
                assert health.json()["status"] == "ok"
                assert health.json()["database"] == db_url.split(":", 1)[0]
                signed = await api.post("/signup", json={
                    "username": "ada", "display_name": "Ada", "password": PASSWORD})
                assert signed.status_code == 201
                token = signed.json()["token"]
                auth = {"Authorization": f"Bearer {token}"}
                created = await api.post("/classrooms", json={"name": "Networks 🌐"},
                                         headers=auth)
                classroom = created.json()["classroom"]
                posted = await api.post(f"/classrooms/{classroom['id']}/posts", headers=auth,
                                        json={"title": "Week 1", "body": "TCP\nUDP",
                                              "tags": "week1 reading"})
                assert posted.status_code == 201
                missing = await api.get("/classrooms/987654", headers=auth)
                assert missing.json()["error"]["code"] == "not_found"

            async with Browser(httpx.AsyncClient(base_url=base, timeout=10)) as bob, \
                    Browser(httpx.AsyncClient(base_url=base, timeout=10)) as ada:
                await bob.sign_up("bob", "Bob")
                joined = await bob.join(classroom["join_code"].lower())
                assert joined.headers["location"] == f"/classrooms/{classroom['id']}"
                stream = await bob.get(f"/classrooms/{classroom['id']}?tag=reading")
                assert "Week 1" in stream.text and "TCP\nUDP" in stream.text
                assert (await bob.get(f"/classrooms/{classroom['id']}/students")
                        ).status_code == 403
                assert (await bob.get("/static/style.css")).headers["content-type"] == \
                    "text/css; charset=utf-8"

                login = await ada.log_in("ada")
                assert login.headers["location"] == "/classrooms"
                page = await ada.get(f"/classrooms/{classroom['id']}")
                assert join_code(page.text) == classroom["join_code"]
                roster = await ada.get(f"/classrooms/{classroom['id']}/students")
                assert "Bob" in roster.text

                # Shut down while both browsers still hold idle keep-alive connections.
                started = trio.current_time()
                assert await server.stop() == 0
                assert trio.current_time() - started < 10
            assert "classroom: shutting down" in server.lines
