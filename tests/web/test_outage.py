"""A database outage seen from the web: the real site on a throwaway MariaDB reached through a
TCP proxy; cutting the proxy is the outage. Pages answer 503 with a message and Retry-After,
the API a 503 `unavailable` error, both at once (not after the 10 s query timeout), and
everything answers again when the network is back, without restarting anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from classroom.cache import STALE_AFTER
from storage.mysql import CONNECT_TIMEOUT, MySQLParams
from tests.conftest import throwaway_mysql_url
from tests.tcp_proxy import TcpProxy
from tests.web.harness import WebWorld, running_site

pytestmark = pytest.mark.mysql

# Each request during the outage must be answered before the database's connect timeout: the
# proxy refuses at once, so only a wait for a timeout could take that long (not a tighter
# figure: the machine may be loaded).
QUICK = CONNECT_TIMEOUT


@asynccontextmanager
async def site_behind_proxy() -> AsyncIterator[tuple[WebWorld, TcpProxy]]:
    async with throwaway_mysql_url() as url:
        p = MySQLParams.from_url(url)
        async with TcpProxy(p.host, p.port) as proxy, running_site(proxy.via(url)) as world:
            yield world, proxy


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    began = trio.current_time()
    response = await client.get(path)
    return response, trio.current_time() - began


def assert_outage_page(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert int(response.headers["retry-after"]) > 0
    assert "database is unavailable" in response.text.lower()
    assert took < QUICK, f"the 503 page took {took:.2f} s"


def assert_outage_json(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["message"], error
    assert took < QUICK, f"the 503 answer took {took:.2f} s"


async def test_outage_answers_503_quickly_and_recovers_by_itself() -> None:
    with trio.fail_after(15):
        async with site_behind_proxy() as (world, proxy), world.browser() as ada, \
                world.api() as anonymous:
            await ada.sign_up("ada")
            cid = await ada.create_class("Networks")
            posted = await ada.post_update(cid, "Welcome", "First lab on Monday", "labs")
            assert posted.status_code == 303, posted.text
            page = f"/classrooms/{cid}"
            api = f"/api/v1/classrooms/{cid}/posts"
            before_page = await ada.get(page)
            before_api = await ada.get(api)
            assert before_page.status_code == before_api.status_code == 200
            assert "First lab on Monday" in before_page.text
            health = await anonymous.get("/healthz")  # no session: only the health check
            assert health.status_code == 200
            assert health.json()["database"] == "mysql"

            assert proxy.open_links > 0  # the database is reached through the proxy
            proxy.cut()
            # What the per-process cache holds is served for up to its staleness bound
            # (classroom/cache.py); past it, every read goes to the database again.
            await trio.sleep(STALE_AFTER)
            # Twice each: the first meets the pool's dead connections, the second only
            # the refused new ones.
            for _ in range(2):
                assert_outage_page(*await timed_get(ada.client, page))
                assert_outage_json(*await timed_get(ada.client, api))
                assert_outage_json(*await timed_get(anonymous, "/healthz"))
            # A write during the outage is refused the same way and leaves nothing.
            lost = await ada.client.post(api, json={"title": "Lost", "body": "never"})
            assert_outage_json(lost, 0)

            proxy.restore()
            after_page = await ada.get(page)
            assert after_page.status_code == 200, after_page.text
            assert "First lab on Monday" in after_page.text
            after_api = await ada.get(api)
            assert after_api.status_code == 200
            assert after_api.json() == before_api.json()  # the post, intact; no "Lost"
            health = await anonymous.get("/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            # Writes work again too, on the same site and pool.
            again = await ada.post_update(cid, "Second", "Bring a laptop")
            assert again.status_code == 303, again.text
            titles = [p["title"] for p in (await ada.get(api)).json()["posts"]]
            assert titles == ["Second", "Welcome"]
