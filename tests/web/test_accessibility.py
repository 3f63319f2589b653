"""Accessibility: axe-core (vendored from the npm registry for the tests, tests/e2e/vendor)
runs in real Chromium on every page, for the instructor and a student; no serious or
critical violation may be left. The live pages are checked connected, and the keyboard alone
can send a chat message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.web.harness import WebWorld
from tests.web.live_peer import eventually, live_peer
from tests.web.test_classroom_browser import class_with_student, sign_in
from tests.web.test_live_browser import chromium, text_of, wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE: Final = (Path(__file__).parents[1] / "e2e" / "vendor" / "axe-core" / "axe.min.js"
              ).read_text(encoding="utf-8")
_RUN: Final = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ["violations"]}).then(
  (r) => done(r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))),
  (e) => done([{id: "axe-error", help: String(e)}]));
"""


def violations(driver: Any) -> list[dict[str, Any]]:
    driver.execute_script(AXE)
    found: list[dict[str, Any]] = driver.execute_async_script(_RUN)
    return found


async def test_every_page_passes_axe(live_web: WebWorld, tmp_path: Path) -> None:
    with trio.fail_after(240):
        room = await class_with_student(live_web)
        cid = room.id
        async with live_web.api(room.ada) as api, live_web.api(room.bob) as bob_api:
            post = (await api.post(f"/classrooms/{cid}/posts", json={
                "title": "Week 1", "body": "Read https://example.com", "tags": ["reading"]})
                    ).json()["post"]
            await bob_api.post(f"/posts/{post['id']}/comments", json={"body": "Thanks"})
            await bob_api.post(f"/posts/{post['id']}/comments",
                               json={"body": "A question", "private": True})
            ended = (await api.post(f"/classrooms/{cid}/sessions", json={"topic": "Old"})
                     ).json()["room"]
            discussion = (await api.post(f"/classrooms/{cid}/discussions",
                                         json={"topic": "Homework"})).json()["room"]
        async with live_peer(live_web, room.bob) as bob:
            await bob.join(ended["id"])
            await bob.say(ended["id"], "hello")

            async def arrived() -> bool:
                return bool(await live_web.services.storage.list_attendance(ended["id"]))

            await eventually(arrived)
        async with live_web.api(room.ada) as api:
            await api.post(f"/sessions/{ended['id']}/end", json={})
        base = live_web.base_url
        signed_out = ["/", "/signup", "/login", "/nowhere"]
        common = ["/classrooms", "/classrooms/new", "/classrooms/join",
                  f"/classrooms/{cid}", f"/classrooms/{cid}/sessions",
                  f"/classrooms/{cid}/live", f"/classrooms/{cid}/discussions",
                  f"/discussions/{discussion['id']}", f"/sessions/{ended['id']}", "/logout",
                  "/classrooms/999999"]
        instructor = [f"/classrooms/{cid}/students", f"/posts/{post['id']}/edit",
                      f"/rooms/{discussion['id']}/stats"]
        student = [f"/classrooms/{cid}/students"]  # a 403 page
        found: dict[str, Any] = {}
        with chromium(tmp_path, "axe") as driver:
            def check(who: str, token: str | None, paths: list[str]) -> None:
                driver.delete_all_cookies()
                if token:
                    sign_in(driver, base, token)
                for path in paths:
                    driver.get(base + path)
                    if driver.find_elements(By.ID, "status") and path.endswith(
                            ("/live", f"/discussions/{discussion['id']}")):
                        wait(driver, lambda d: text_of(d, "status") in (
                            "connected", "waiting for the session to start"), "connected")
                    for details in driver.find_elements(By.CSS_SELECTOR, "details"):
                        if details.get_attribute("open") is None and details.is_displayed():
                            driver.execute_script("arguments[0].open = true", details)
                    if bad := violations(driver):
                        found[f"{who} {path}"] = bad

            await trio.to_thread.run_sync(check, "visitor", None, signed_out)
            await trio.to_thread.run_sync(check, "instructor", room.ada, common + instructor)
            await trio.to_thread.run_sync(check, "student", room.bob, common + student)
        assert not found, json.dumps(found, indent=1)


async def test_the_keyboard_alone_sends_a_chat_message(live_web: WebWorld,
                                                       tmp_path: Path) -> None:
    with trio.fail_after(90):
        room = await class_with_student(live_web)
        async with live_web.api(room.ada) as api:
            session = (await api.post(f"/classrooms/{room.id}/sessions", json={})
                       ).json()["room"]
        base = live_web.base_url
        async with live_peer(live_web, room.ada) as ada:
            await ada.join(session["id"])
            with chromium(tmp_path, "bob") as driver:
                def tab_and_type() -> None:
                    sign_in(driver, base, room.bob)
                    driver.get(f"{base}/classrooms/{room.id}/live")
                    wait(driver, lambda d: text_of(d, "status") == "connected", "connected")
                    body = driver.find_element(By.TAG_NAME, "body")
                    body.click()
                    for _ in range(60):  # Tab until the message box has the focus
                        active = driver.switch_to.active_element
                        if active.get_attribute("id") == "message-input":
                            break
                        active.send_keys(Keys.TAB)
                    else:
                        raise AssertionError("Tab never reached the message box")
                    driver.switch_to.active_element.send_keys("by keyboard" + Keys.ENTER)

                await trio.to_thread.run_sync(tab_and_type)
                while True:
                    frame = await ada.receive()
                    if frame.get("event") == "message":
                        assert frame["data"]["text"] == "by keyboard"
                        break
