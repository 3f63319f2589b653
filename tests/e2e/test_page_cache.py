"""The class page is rendered once and shared (web/pages.py): across two real `classroom
serve` processes on one database, a change made through one shows on the other's page
within the cache's bound (STALE_AFTER): an edited post, a new comment, a removed student."""

from __future__ import annotations

import secrets

import httpx
import trio

from classroom.cache import POLL_INTERVAL, STALE_AFTER
from tests.e2e.server_process import running_server
from tests.web.harness import PASSWORD


async def test_page_changes_reach_the_other_app_server_within_the_bound(db_url: str) -> None:
    with trio.fail_after(90):
        async with running_server(db_url) as one, running_server(db_url) as two:
            assert one.http_url is not None and two.http_url is not None
            await trio.sleep(2 * POLL_INTERVAL)  # both caches serve once they have polled
            async with httpx.AsyncClient(base_url=one.http_url + "/api/v1", timeout=10) as api:

                async def sign_up(name: str) -> tuple[int, str]:
                    answer = await api.post("/signup", json={
                        "username": name, "display_name": name.title(), "password": PASSWORD})
                    assert answer.status_code == 201, answer.text
                    return answer.json()["user"]["id"], answer.json()["token"]

                def bearer(token: str) -> dict[str, str]:
                    return {"Authorization": f"Bearer {token}"}

                (_, teacher), (ada_id, ada), (_, bob) = [
                    await sign_up(name) for name in ("turing", "ada", "bob")]
                created = await api.post("/classrooms", json={"name": "Logic"},
                                         headers=bearer(teacher))
                classroom = created.json()["classroom"]
                for student in (ada, bob):
                    joined = await api.post("/classrooms/join", headers=bearer(student),
                                            json={"code": classroom["join_code"]})
                    assert joined.status_code == 200, joined.text
                posted = await api.post(f"/classrooms/{classroom['id']}/posts",
                                        json={"title": "First"}, headers=bearer(teacher))
                post_id = posted.json()["post"]["id"]

                async def page(server: str | None, token: str) -> httpx.Response:
                    assert server is not None
                    cookies = {"classroom_session": token,
                               "classroom_csrf": secrets.token_urlsafe(32)}
                    async with httpx.AsyncClient(base_url=server, cookies=cookies,
                                                 timeout=10) as browser:
                        return await browser.get(f"/classrooms/{classroom['id']}")

                # Both students on both servers, twice: the shared page is cached on both.
                for server in (one.http_url, two.http_url) * 2:
                    for student in (ada, bob):
                        seen = await page(server, student)
                        assert seen.status_code == 200 and "First" in seen.text

                edited = await api.patch(f"/posts/{post_id}", headers=bearer(teacher),
                                         json={"title": "Second thoughts"})
                assert edited.status_code == 200, edited.text
                commented = await api.post(f"/posts/{post_id}/comments", headers=bearer(bob),
                                           json={"body": "Bob was here"})
                assert commented.status_code == 201, commented.text
                assert "Second thoughts" in (await page(one.http_url, ada)).text
                await trio.sleep(STALE_AFTER)
                seen = await page(two.http_url, ada)
                assert "Second thoughts" in seen.text and "First" not in seen.text
                assert "Bob was here" in seen.text

                removed = await api.delete(f"/classrooms/{classroom['id']}/students/{ada_id}",
                                           headers=bearer(teacher))
                assert removed.status_code == 204, removed.text
                await trio.sleep(STALE_AFTER)
                for server in (one.http_url, two.http_url):
                    assert (await page(server, ada)).status_code == 404
                    assert "Second thoughts" in (await page(server, bob)).text
            assert await one.stop() == 0
            assert await two.stop() == 0
