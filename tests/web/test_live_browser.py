"""live.js in real Chromium against the in-process site and chat server: two profiles
chat publicly and privately, the chat server restarts under them (the pages reconnect with
back-off and resume by seq: a message sent meanwhile shows once), a kick and the end of the
session each end in a banner. The full two-profile story over `classroom serve` lives in
tests/e2e/test_browser_live.py; this one looks at live.js's own promises.

Selenium is synchronous: each browser step runs in a worker thread (`trio.to_thread`) while
the servers keep running in the test's trio loop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import IN_CI
from tests.web.harness import WebWorld
from tests.web.live_peer import api_user, live_peer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM: Final = "/usr/bin/chromium"
CHROMEDRIVER: Final = "/usr/bin/chromedriver"
WAIT: Final = 10.0
T = TypeVar("T")
# Records every text #status shows, so a test can ask afterwards what it went through.
_WATCH_STATUS: Final = """
const status = document.getElementById("status");
window.statusLog = [status.textContent];
new MutationObserver(() => window.statusLog.push(status.textContent))
  .observe(status, {childList: true, characterData: true, subtree: true});
"""


@contextmanager
def chromium(tmp_path: Path, name: str) -> Iterator[webdriver.Chrome]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        if IN_CI:
            pytest.fail(f"missing {missing} (CI=true: not skipping)")
        pytest.skip(f"needs {' and '.join(missing)}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1200,900",
                     f"--user-data-dir={tmp_path / ('profile-' + name)}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def wait(driver: webdriver.Chrome, condition: Callable[[Any], T | Literal[False] | None],
         what: str) -> T:
    def settled(d: Any) -> T | Literal[False] | None:
        # An element read while a form's answer replaces the page can also fail as an
        # inspector error rather than as a stale reference: the same race, so look again.
        try:
            return condition(d)
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc):
                raise
            return False

    try:
        result = WebDriverWait(driver, WAIT, ignored_exceptions=(
            StaleElementReferenceException,)).until(settled)
    except Exception as exc:
        raise AssertionError(f"timed out waiting for {what}") from exc
    # until returns the first truthy value, but its types take out only False.
    assert result is not None
    return result


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def attribute(element: WebElement, name: str) -> str:
    """The element's attribute `name`, which the test counts on it having."""
    value = element.get_attribute(name)
    assert value is not None, f"no {name!r} attribute"
    return value


def feed(driver: webdriver.Chrome) -> list[tuple[int, str, bool]]:
    """(seq, text, private) for each message shown."""
    return [(int(attribute(item, "data-seq")),
             item.find_element(By.CSS_SELECTOR, ".message-text").text,
             "private" in attribute(item, "class").split())
            for item in driver.find_elements(By.CSS_SELECTOR, "#messages .message")]


def wait_text(driver: webdriver.Chrome, text: str) -> tuple[int, str, bool]:
    return wait(driver, lambda d: next((m for m in feed(d) if m[1] == text), None),
                f"message {text!r}")


def open_live(driver: webdriver.Chrome, base_url: str, token: str, path: str) -> None:
    driver.get(base_url + "/static/favicon.svg")  # on the site, so its cookie can be set
    driver.add_cookie({"name": "classroom_session", "value": token, "path": "/"})
    driver.get(base_url + path)
    wait_connected(driver)
    driver.execute_script(_WATCH_STATUS)


def wait_connected(driver: webdriver.Chrome) -> None:
    wait(driver, lambda d: text_of(d, "status") == "connected"
         and d.find_element(By.ID, "send-button").is_enabled(), "#status connected")


def type_message(driver: webdriver.Chrome, text: str) -> None:
    driver.find_element(By.ID, "message-input").send_keys(text + Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "message-input").get_attribute("value") == "",
         "the message box to empty")


async def test_live_js_chats_resumes_and_stops(live_web: WebWorld, tmp_path: Path) -> None:
    with trio.fail_after(120):
        ada_token = await api_user(live_web, "ada", "Ada L")
        bob_token = await api_user(live_web, "bob", "Bob <S>")
        async with live_web.api(ada_token) as ada_api, live_web.api(bob_token) as bob_api:
            classroom = (await ada_api.post("/classrooms", json={"name": "Net"})).json()
            cid = classroom["classroom"]["id"]
            await bob_api.post("/classrooms/join",
                               json={"code": classroom["classroom"]["join_code"]})
            room = (await ada_api.post(f"/classrooms/{cid}/sessions", json={})).json()["room"]
            bob_id = (await bob_api.get("/me")).json()["user"]["id"]
        page = f"/classrooms/{cid}/live"
        base = live_web.base_url
        run = trio.to_thread.run_sync

        with ExitStack() as stack:
            ada = stack.enter_context(chromium(tmp_path, "ada"))
            bob = stack.enter_context(chromium(tmp_path, "bob"))
            await run(open_live, ada, base, ada_token, page)
            await run(open_live, bob, base, bob_token, page)

            def chat() -> None:
                member = f'#members li[data-user-id="{bob_id}"]'
                wait(ada, lambda d: "online" in d.find_element(By.CSS_SELECTOR, member)
                     .get_attribute("class").split(), "bob online in ada's member list")
                assert "Bob <S>" in ada.find_element(By.CSS_SELECTOR, member).text
                type_message(bob, "hello <b>all</b>")
                assert wait_text(ada, "hello <b>all</b>")[2] is False
                bob.find_element(By.ID, "private-toggle").click()
                type_message(bob, "a private question")
                assert wait_text(ada, "a private question")[2] is True
                ada.find_element(By.CSS_SELECTOR, member + " button").click()
                assert ada.find_element(By.ID, "private-target").get_attribute("value") == \
                    str(bob_id)
                type_message(ada, "a private answer")
                assert wait_text(bob, "a private answer")[2] is True
                assert not bob.find_elements(By.CSS_SELECTOR, "#messages b")  # text, not HTML

            await run(chat)
            # The chat server goes away and comes back; meanwhile ada says something.
            assert live_web.chat is not None
            await live_web.chat.restart()
            async with live_peer(live_web, ada_token) as peer:
                await peer.join(room["id"])
                await peer.say(room["id"], "said while bob was away")

            def resumed() -> None:
                for driver in (ada, bob):
                    wait_connected(driver)
                    wait_text(driver, "said while bob was away")
                    log = driver.execute_script("return window.statusLog")
                    assert any(re.fullmatch(r"reconnecting in \d+ s", t) for t in log), log
                    seqs = [seq for seq, _, _ in feed(driver)]
                    assert seqs == sorted(set(seqs)), seqs  # nothing twice, in order
                assert [text for _, text, _ in feed(bob)] == [
                    "hello <b>all</b>", "a private question", "a private answer",
                    "said while bob was away"]

            await run(resumed)
            async with live_peer(live_web, ada_token) as peer:
                await peer.join(room["id"])
                await peer.request("room/kill", {"room_id": room["id"], "user_id": bob_id})

            def kicked_then_ended() -> None:
                wait(bob, lambda d: d.find_element(By.ID, "banner").is_displayed(), "banner")
                assert "removed you" in text_of(bob, "banner")
                assert text_of(bob, "status") == "removed"
                assert not bob.find_element(By.ID, "send-button").is_enabled()
                end = ada.find_element(By.ID, "end-button")
                # The lab panel below the chat makes the page scroll: keep the button clear
                # of the sticky top bar.
                ada.execute_script("arguments[0].scrollIntoView({block: 'center'})", end)
                end.click()
                ada.find_element(By.ID, "end-yes").click()
                wait(ada, lambda d: d.find_element(By.ID, "banner").is_displayed(), "banner")
                assert "ended this session" in text_of(ada, "banner")
                assert text_of(ada, "status") == "ended"
                assert not ada.find_element(By.ID, "message-input").is_enabled()

            await run(kicked_then_ended)
        async with live_web.api(ada_token) as ada_api:
            ended = (await ada_api.get(f"/sessions/{room['id']}")).json()["room"]
            assert ended["open"] is False


async def test_live_js_stops_when_signed_out(live_web: WebWorld, tmp_path: Path) -> None:
    """Logging out elsewhere closes the page's connection (4401): the page says so and does
    not keep reconnecting with a dead sign-in."""
    with trio.fail_after(60):
        ada_token = await api_user(live_web, "ada", "Ada L")
        async with live_web.api(ada_token) as ada_api:
            classroom = (await ada_api.post("/classrooms", json={"name": "Net"})).json()
            cid = classroom["classroom"]["id"]
            await ada_api.post(f"/classrooms/{cid}/sessions", json={})
        run = trio.to_thread.run_sync
        with chromium(tmp_path, "ada") as ada:
            await run(open_live, ada, live_web.base_url, ada_token, f"/classrooms/{cid}/live")
            async with live_web.api(ada_token) as ada_api:
                assert (await ada_api.post("/logout", json={})).status_code == 204

            def signed_out() -> None:
                wait(ada, lambda d: "signed out" in text_of(d, "status"), "#status signed out")
                assert "sign in again" in text_of(ada, "status")

            await run(signed_out)
            await trio.sleep(2)  # past the first reconnect delay: none happens
            log = await run(ada.execute_script, "return window.statusLog")
            assert not any("reconnecting" in text for text in log), log


# The next chat message the page sends is sent, then the connection is dropped at once: its
# ack is lost, as when a link fails right after a send.
_LOSE_NEXT_ACK: Final = """
const send = WebSocket.prototype.send;
window.sentIds = [];
WebSocket.prototype.send = function (data) {
  send.call(this, data);
  const frame = JSON.parse(String(data));
  if (frame.event !== "message") return;
  window.sentIds.push(frame.id || null);
  if (!window.ackLost) {
    window.ackLost = true;
    this.close();
  }
};
"""


async def test_live_js_sends_an_unconfirmed_message_again_and_it_is_stored_once(
        live_web: WebWorld, tmp_path: Path) -> None:
    with trio.fail_after(120):
        ada_token = await api_user(live_web, "ada", "Ada L")
        async with live_web.api(ada_token) as ada_api:
            classroom = (await ada_api.post("/classrooms", json={"name": "Net"})).json()
            cid = classroom["classroom"]["id"]
            room = (await ada_api.post(f"/classrooms/{cid}/sessions", json={})).json()["room"]
        run = trio.to_thread.run_sync
        with chromium(tmp_path, "ada") as ada:
            await run(open_live, ada, live_web.base_url, ada_token, f"/classrooms/{cid}/live")

            def send_and_lose_the_ack() -> None:
                ada.execute_script(_LOSE_NEXT_ACK)
                type_message(ada, "only once please")
                wait(ada, lambda d: d.execute_script("return window.ackLost") is True,
                     "the connection dropped after the send")
                wait_connected(ada)
                wait_text(ada, "only once please")
                # Sent again once back, under the same id.
                wait(ada, lambda d: len(d.execute_script("return window.sentIds")) == 2,
                     "the message sent again")
                first, again = ada.execute_script("return window.sentIds")
                assert first and first == again

            await run(send_and_lose_the_ack)
            async with live_peer(live_web, ada_token) as peer:
                await peer.join(room["id"])
                await peer.sync()
                texts = [f["data"]["text"] for f in peer.log if f["event"] == "message"]
            assert texts == ["only once please"]  # stored once, however often it was sent
            assert [text for _, text, _ in await run(feed, ada)] == ["only once please"]
