"""Logging out (page or API) and changing the password end the user's open live connections
at once: close 4401 with the reason; the chat refuses the old sign-in afterwards."""

from __future__ import annotations

import trio
from trio_websocket import ConnectionClosed

from chat.sessions import CLOSE_SIGNED_OUT
from classroom.accounts import SESSION_COOKIE
from tests.chat.harness import Peer
from tests.web.harness import PASSWORD, WebWorld
from tests.web.live_peer import api_user, live_peer
from tests.web.test_api import error_of


async def closed_with(peer: Peer) -> tuple[int | None, str | None]:
    try:
        while True:
            await peer.receive()
    except ConnectionClosed as exc:
        assert exc.reason is not None
        return exc.reason.code, exc.reason.reason


async def test_api_logout_closes_an_open_websocket(live_web: WebWorld) -> None:
    with trio.fail_after(15):
        token = await api_user(live_web, "ann")
        async with live_peer(live_web, token) as peer:
            await peer.sync()
            async with live_web.api(token) as api:
                assert (await api.post("/logout", json={})).status_code == 204
            assert await closed_with(peer) == (CLOSE_SIGNED_OUT, "signed out")


async def test_page_logout_closes_an_open_websocket(live_web: WebWorld) -> None:
    with trio.fail_after(15):
        async with live_web.browser() as browser:
            await browser.sign_up("ann")
            token = browser.client.cookies[SESSION_COOKIE]
            async with live_peer(live_web, token) as peer, live_peer(live_web, token) as tab:
                await peer.sync()
                answer = await browser.submit("/classrooms", "/logout", {})
                assert answer.status_code == 303
                assert await closed_with(peer) == (CLOSE_SIGNED_OUT, "signed out")
                assert await closed_with(tab) == (CLOSE_SIGNED_OUT, "signed out")


async def test_password_change_through_the_api(live_web: WebWorld) -> None:
    with trio.fail_after(20):
        old = await api_user(live_web, "ann")
        async with live_web.api() as anonymous:
            login = await anonymous.post("/login", json={"username": "ann",
                                                         "password": PASSWORD})
        current = login.json()["token"]
        async with live_peer(live_web, old) as elsewhere, \
                live_peer(live_web, current) as here, live_web.api(current) as api:
            await elsewhere.sync()
            wrong = await api.post("/password", json={"current_password": "nope nope",
                                                      "new_password": "brand new pw"})
            assert error_of(wrong, 400)["code"] == "invalid"
            short = await api.post("/password", json={"current_password": PASSWORD,
                                                      "new_password": "short"})
            assert error_of(short, 400)["code"] == "invalid"
            changed = await api.post("/password", json={"current_password": PASSWORD,
                                                        "new_password": "brand new pw"})
            assert changed.status_code == 204
            assert await closed_with(elsewhere) == (CLOSE_SIGNED_OUT, "signed out")
            assert await here.sync() == []  # the sign-in that changed it stays
            assert (await api.get("/me")).status_code == 200
        async with live_web.api(old) as stale, live_web.api() as anonymous:
            assert (await stale.get("/me")).status_code == 401
            for password, status in ((PASSWORD, 401), ("brand new pw", 200)):
                answer = await anonymous.post("/login", json={"username": "ann",
                                                              "password": password})
                assert answer.status_code == status


async def test_password_change_page(live_web: WebWorld) -> None:
    with trio.fail_after(20):
        other = await api_user(live_web, "ann")
        async with live_web.browser() as browser:
            await browser.log_in("ann")
            async with live_peer(live_web, other) as elsewhere:
                await elsewhere.sync()
                mismatch = await browser.submit("/password", "/password", {
                    "current_password": PASSWORD, "new_password": "brand new pw",
                    "confirm": "brand new px"})
                assert mismatch.status_code == 400 and "differ" in mismatch.text
                done = await browser.submit("/password", "/password", {
                    "current_password": PASSWORD, "new_password": "brand new pw",
                    "confirm": "brand new pw"})
                assert done.status_code == 200 and "password is changed" in done.text
                assert await closed_with(elsewhere) == (CLOSE_SIGNED_OUT, "signed out")
            assert (await browser.get("/classrooms")).status_code == 200
