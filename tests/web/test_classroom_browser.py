"""Day-to-day expectations of teachers and students (issue 12), in real Chromium against the
in-process site and chat server: local times, a private reply that does not stick, links.

Selenium is synchronous: each browser step runs in a worker thread (`trio.to_thread`) while
the servers keep running in the test's trio loop.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from selenium.webdriver.common.by import By

from tests.web.harness import WebWorld
from tests.web.live_peer import api_user, eventually, live_peer
from tests.web.test_live_browser import (
    attribute,
    chromium,
    open_live,
    text_of,
    type_message,
    wait,
    wait_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@attrs.frozen
class Class:
    id: int
    code: str
    ada: str  # the instructor's session token
    bob: str  # a student's
    bob_id: int


async def class_with_student(web: WebWorld) -> Class:
    ada = await api_user(web, "ada", "Ada L")
    bob = await api_user(web, "bob", "Bob S")
    async with web.api(ada) as ada_api, web.api(bob) as bob_api:
        made = (await ada_api.post("/classrooms", json={"name": "Net"})).json()["classroom"]
        await bob_api.post("/classrooms/join", json={"code": made["join_code"]})
        bob_id = (await bob_api.get("/me")).json()["user"]["id"]
    return Class(made["id"], made["join_code"], ada, bob, bob_id)


def sign_in(driver: object, base_url: str, token: str) -> None:
    driver.get(base_url + "/static/favicon.svg")  # type: ignore[attr-defined]
    driver.add_cookie({"name": "classroom_session", "value": token,  # type: ignore[attr-defined]
                       "path": "/"})


async def test_times_are_local_and_recent_ones_relative(live_web: WebWorld,
                                                        tmp_path: Path) -> None:
    with trio.fail_after(90):
        room = await class_with_student(live_web)
        async with live_web.api(room.ada) as api:
            post = (await api.post(f"/classrooms/{room.id}/posts",
                                   json={"title": "Hello", "body": "Week 1"})).json()["post"]
        created = datetime.fromisoformat(post["created_at"].replace("Z", "+00:00"))
        # India is UTC+5:30: the minutes differ from UTC's, so a UTC time cannot pass.
        local = created + timedelta(hours=5, minutes=30)
        with chromium(tmp_path, "bob") as bob:
            def check() -> None:
                bob.execute_cdp_cmd("Emulation.setTimezoneOverride",
                                    {"timezoneId": "Asia/Kolkata"})
                sign_in(bob, live_web.base_url, room.bob)
                bob.get(f"{live_web.base_url}/classrooms/{room.id}")
                time = bob.find_element(By.CSS_SELECTOR, f"#post-{post['id']} time")
                wait(bob, lambda _: time.text == "just now", "the post's time as 'just now'")
                title = attribute(time, "title")
                assert local.strftime("%-I:%M") in title, (title, local)
                assert attribute(time, "datetime").endswith("Z")
                assert re.search(r"Asia/(Kolkata|Calcutta)", text_of(bob, "zone-note"))

            await trio.to_thread.run_sync(check)
        # Without the script the page says UTC, with the zone named.
        async with live_web.browser() as page:
            page.client.cookies.set("classroom_session", room.bob)
            text = (await page.client.get(f"/classrooms/{room.id}")).text
            assert created.strftime("%Y-%m-%d %H:%M UTC") in text


async def test_private_target_resets_and_links_are_clickable(live_web: WebWorld,
                                                             tmp_path: Path) -> None:
    with trio.fail_after(120):
        room = await class_with_student(live_web)
        async with live_web.api(room.ada) as api:
            await api.post(f"/classrooms/{room.id}/posts", json={
                "title": "Reading", "body": "Read https://example.com/a?b=1. Not "
                "javascript:alert(1) nor <b>this</b>"})
            await api.post(f"/classrooms/{room.id}/sessions", json={})
        base = live_web.base_url
        run = trio.to_thread.run_sync
        with ExitStack() as stack:
            ada = stack.enter_context(chromium(tmp_path, "ada"))
            bob = stack.enter_context(chromium(tmp_path, "bob"))

            def post_links() -> None:
                sign_in(bob, base, room.bob)
                bob.get(f"{base}/classrooms/{room.id}")
                links = bob.find_elements(By.CSS_SELECTOR, ".post-body a")
                assert [(a.get_attribute("href"), a.get_attribute("rel"), a.text)
                        for a in links] == [("https://example.com/a?b=1",
                                             "noopener nofollow ugc",
                                             "https://example.com/a?b=1")]
                body = bob.find_element(By.CSS_SELECTOR, ".post-body").text
                assert "javascript:alert(1) nor <b>this</b>" in body

            await run(post_links)
            page = f"/classrooms/{room.id}/live"
            await run(open_live, ada, base, room.ada, page)
            await run(open_live, bob, base, room.bob, page)

            def private_once() -> None:
                assert text_of(bob, "send-to") == "To everyone in the session"
                bob.find_element(By.ID, "private-toggle").click()
                assert text_of(bob, "send-to") == "Private question to the instructor only"
                type_message(bob, "a private question")
                assert wait_text(ada, "a private question")[2] is True
                assert not bob.find_element(By.ID, "private-toggle").is_selected()
                assert text_of(bob, "send-to") == "To everyone in the session"
                type_message(bob, "see https://example.org/x, javascript:alert(2)")
                wait_text(ada, "see https://example.org/x, javascript:alert(2)")
                links = ada.find_elements(By.CSS_SELECTOR, "#messages .message-text a")
                assert [(a.get_attribute("href"), a.get_attribute("rel")) for a in links] == [
                    ("https://example.org/x", "noopener nofollow ugc")]
                reply = ada.find_element(By.CSS_SELECTOR, "#messages .message.private button")
                reply.click()
                assert text_of(ada, "send-to") == "Private message to Bob S only"
                type_message(ada, "a private answer")
                assert wait_text(bob, "a private answer")[2] is True
                assert ada.find_element(By.ID, "private-target").get_attribute("value") == ""
                assert text_of(ada, "send-to") == "To everyone in the session"
                type_message(ada, "for everyone")
                assert wait_text(bob, "for everyone")[2] is False
                # An empty message gets a word instead of silence.
                ada.find_element(By.ID, "send-button").click()
                wait(ada, lambda d: d.find_element(By.ID, "send-error").is_displayed(),
                     "the empty-message notice")
                assert "empty" in text_of(ada, "send-error")

            await run(private_once)


async def test_waiting_student_is_taken_in_and_live_now_shows(live_web: WebWorld,
                                                              tmp_path: Path) -> None:
    with trio.fail_after(90):
        room = await class_with_student(live_web)
        base = live_web.base_url
        with chromium(tmp_path, "bob") as bob:
            def waiting() -> None:
                sign_in(bob, base, room.bob)
                bob.get(f"{base}/classrooms")
                assert not bob.find_elements(By.CSS_SELECTOR, ".badge-live")
                bob.get(f"{base}/classrooms/{room.id}/live")
                wait(bob, lambda d: text_of(d, "status") == "waiting for the session to start",
                     "the Live tab to be waiting")

            await trio.to_thread.run_sync(waiting)
            async with live_web.api(room.ada) as api:
                await api.post(f"/classrooms/{room.id}/sessions", json={"topic": "Week 2"})
            started = trio.current_time()

            def taken_in() -> None:
                # No reload by hand: the page is told over its WebSocket and goes in.
                wait(bob, lambda d: d.find_elements(By.ID, "composer")
                     and text_of(d, "status") == "connected", "the live chat")
                tab = bob.find_element(By.CSS_SELECTOR, "nav.tabs a[aria-current=page]")
                assert "Live now" in tab.text
                bob.get(f"{base}/classrooms")
                badge = bob.find_element(By.CSS_SELECTOR, ".class-card .badge-live")
                assert badge.text == "Live now"
                assert attribute(badge, "href").endswith(f"/classrooms/{room.id}/live")
                bob.get(f"{base}/classrooms/{room.id}")
                assert "Week 2 is running" in bob.find_element(By.CSS_SELECTOR, ".live-now").text

            await trio.to_thread.run_sync(taken_in)
            # Within a second or two, not a poll's 15 s (the page load included).
            assert trio.current_time() - started < 8


async def test_an_ended_session_is_readable_from_sessions(live_web: WebWorld,
                                                          tmp_path: Path) -> None:
    with trio.fail_after(90):
        room = await class_with_student(live_web)
        carl = await api_user(live_web, "carl", "Carl C")
        async with live_web.api(room.ada) as api, live_web.api(carl) as carl_api:
            await carl_api.post("/classrooms/join", json={"code": room.code})
            carl_id = (await carl_api.get("/me")).json()["user"]["id"]
            session = (await api.post(f"/classrooms/{room.id}/sessions",
                                      json={"topic": "Routing"})).json()["room"]
        rid = session["id"]
        async with live_peer(live_web, room.ada) as ada, live_peer(live_web, room.bob) as bob, \
                live_peer(live_web, carl) as carl_peer:
            for peer in (ada, bob, carl_peer):
                await peer.join(rid)
            await ada.say(rid, "welcome, see https://example.com/notes")
            await bob.say(rid, "bob asks privately", event="message/to_mentor")
            await carl_peer.say(rid, "carl asks privately", event="message/to_mentor")
            await ada.say(rid, "answer for bob", event="message/to_client",
                          user_id=room.bob_id)
            await ada.say(rid, "answer for carl", event="message/to_client", user_id=carl_id)
            await ada.request("room/close", {"room_id": rid})
        base = live_web.base_url
        with chromium(tmp_path, "bob") as driver:
            def reread() -> None:
                sign_in(driver, base, room.bob)
                driver.get(f"{base}/classrooms/{room.id}/sessions")
                driver.find_element(By.CSS_SELECTOR, f"#session-{rid} a[href='/sessions/{rid}']"
                                    ).click()
                wait(driver, lambda d: d.current_url.endswith(f"/sessions/{rid}"),
                     "the transcript page")
                texts = [e.text for e in driver.find_elements(
                    By.CSS_SELECTOR, "#messages .message-text")]
                assert texts == ["welcome, see https://example.com/notes",
                                 "bob asks privately", "answer for bob"]
                link = driver.find_element(By.CSS_SELECTOR, "#messages .message-text a")
                assert link.get_attribute("href") == "https://example.com/notes"
                notes = driver.find_elements(By.CSS_SELECTOR, "#messages .note")
                assert [n.text for n in notes] == ["The instructor ended this session."]

            await trio.to_thread.run_sync(reread)


def submit_in(driver: Any, css: str) -> None:
    """Click the submit button of the form matching `css` (opening its <details> first)."""
    form = driver.find_element(By.CSS_SELECTOR, css)
    details = driver.execute_script("return arguments[0].closest('details')", form)
    if details is not None and details.get_attribute("open") is None:
        details.find_element(By.TAG_NAME, "summary").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


async def test_posts_are_edited_deleted_and_commented(live_web: WebWorld,
                                                      tmp_path: Path) -> None:
    with trio.fail_after(120):
        room = await class_with_student(live_web)
        async with live_web.api(room.ada) as api:
            post = (await api.post(f"/classrooms/{room.id}/posts", json={
                "title": "HW1", "body": "due Friday"})).json()["post"]
        pid, base, stream = post["id"], live_web.base_url, f"/classrooms/{room.id}"
        with ExitStack() as stack:
            ada = stack.enter_context(chromium(tmp_path, "ada"))
            bob = stack.enter_context(chromium(tmp_path, "bob"))

            def story() -> None:
                sign_in(ada, base, room.ada)
                sign_in(bob, base, room.bob)
                # The instructor edits: the post keeps an edited mark.
                ada.get(base + stream)
                ada.find_element(By.CSS_SELECTOR, f"#post-{pid} a[href='/posts/{pid}/edit']"
                                 ).click()
                body = ada.find_element(By.NAME, "body")
                body.clear()
                body.send_keys("due Monday")
                ada.find_element(By.CSS_SELECTOR, "form[action$='/edit'] button").click()
                wait(ada, lambda d: "due Monday" in d.find_element(
                    By.CSS_SELECTOR, f"#post-{pid} .post-body").text, "the edited text")
                assert ada.find_elements(By.CSS_SELECTOR, f"#post-{pid} .edited time")
                # The student sees no edit or delete, comments for the class and privately.
                bob.get(base + stream)
                assert "edited" in bob.find_element(By.CSS_SELECTOR, f"#post-{pid}").text
                assert not bob.find_elements(By.CSS_SELECTOR, ".post-tools")
                bob.find_element(By.ID, f"comment-{pid}").send_keys("Which chapter?")
                submit_in(bob, f"#post-{pid} .comments > form.comment-form")
                wait(bob, lambda d: "Which chapter?" in d.find_element(
                    By.CSS_SELECTOR, f"#post-{pid} .comment-list").text, "bob's comment")
                bob.find_element(By.CSS_SELECTOR, f"#post-{pid} details.private-thread summary"
                                 ).click()
                bob.find_element(By.ID, f"comment-{pid}-p").send_keys("I was ill")
                submit_in(bob, f"#post-{pid} .private-thread form")
                wait(bob, lambda d: "I was ill" in d.find_element(
                    By.CSS_SELECTOR, f"#post-{pid} .private-thread").text, "the private one")
                # The instructor sees the thread with Bob, replies in it, and deletes any
                # comment.
                ada.get(base + stream)
                thread = ada.find_element(By.CSS_SELECTOR, f"#post-{pid} .private-thread")
                assert "Private with Bob S" in thread.text and "I was ill" in thread.text
                ada.find_element(By.ID, f"comment-{pid}-p{room.bob_id}").send_keys("Get well")
                submit_in(ada, f"#post-{pid} .private-thread form.comment-form")
                wait(ada, lambda d: "Get well" in d.find_element(
                    By.CSS_SELECTOR, f"#post-{pid} .private-thread").text, "the reply")
                bob.get(base + stream)
                assert "Get well" in bob.find_element(
                    By.CSS_SELECTOR, f"#post-{pid} .private-thread").text
                # Bob may delete his own comments only: no delete on the instructor's.
                reply = next(li for li in bob.find_elements(By.CSS_SELECTOR, ".comment")
                         if "Get well" in li.text)
                assert not reply.find_elements(By.CSS_SELECTOR, "form")
                ada.get(base + stream)
                public = next(li for li in ada.find_elements(By.CSS_SELECTOR, ".comment")
                          if "Which chapter?" in li.text)
                public.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                wait(ada, lambda d: "Which chapter?" not in d.find_element(
                    By.CSS_SELECTOR, f"#post-{pid}").text, "the comment gone")
                submit_in(ada, f"form[action='/posts/{pid}/delete']")
                wait(ada, lambda d: not d.find_elements(By.ID, f"post-{pid}"), "the post gone")

            await trio.to_thread.run_sync(story)


async def test_class_management_remove_leave_reset_invite(live_web: WebWorld,
                                                         tmp_path: Path) -> None:
    with trio.fail_after(120):
        room = await class_with_student(live_web)
        carl = await api_user(live_web, "carl", "Carl C")
        async with live_web.api(carl) as carl_api:
            await carl_api.post("/classrooms/join", json={"code": room.code})
            carl_id = (await carl_api.get("/me")).json()["user"]["id"]
        dan = await api_user(live_web, "dan", "Dan D")
        base, stream = live_web.base_url, f"/classrooms/{room.id}"
        with ExitStack() as stack:
            ada = stack.enter_context(chromium(tmp_path, "ada"))
            bob = stack.enter_context(chromium(tmp_path, "bob"))

            def story() -> None:
                sign_in(ada, base, room.ada)
                ada.get(f"{base}{stream}/students")
                submit_in(ada, f"form[action='{stream}/students/{carl_id}/remove']")
                wait(ada, lambda d: "Carl C" not in d.find_element(By.CSS_SELECTOR, ".people"
                                                                   ).text, "carl removed")
                ada.get(base + stream)
                submit_in(ada, "form[action$='/join-code']:has(input[value=reset])")
                wait(ada, lambda d: d.find_element(By.CSS_SELECTOR, ".join-code").text
                     != room.code, "a new code")
                code = ada.find_element(By.CSS_SELECTOR, ".join-code").text
                invite = attribute(ada.find_element(By.CSS_SELECTOR, "a.invite-link"), "href")
                # The invite link fills the code in for a newcomer.
                sign_in(bob, base, dan)
                bob.get(invite)
                assert bob.find_element(By.NAME, "code").get_attribute("value") == code
                bob.find_element(By.CSS_SELECTOR, "form[action='/classrooms/join'] button"
                                 ).click()
                wait(bob, lambda d: d.current_url.endswith(stream), "dan in the class")
                # A student leaves.
                sign_in(bob, base, room.bob)
                bob.get(base + stream)
                submit_in(bob, f"form[action='{stream}/leave']")
                wait(bob, lambda d: d.current_url.endswith("/classrooms"), "my classes")
                assert "Net" not in bob.find_element(By.TAG_NAME, "main").text
                bob.get(base + stream)
                assert "404" in bob.find_element(By.CSS_SELECTOR, ".error-status").text
                # Joining turned off: the code no longer works.
                submit_in(ada, "form[action$='/join-code']:has(input[value=off])")
                wait(ada, lambda d: "Joining is turned off" in d.find_element(
                    By.CSS_SELECTOR, ".stream-side").text, "joining off")

            await trio.to_thread.run_sync(story)
        async with live_web.api(room.bob) as bob_api:
            refused = await bob_api.post("/classrooms/join", json={"code": room.code})
            assert refused.status_code == 404


async def test_attendance_lists_absent_students_and_downloads_csv(live_web: WebWorld,
                                                                  tmp_path: Path) -> None:
    with trio.fail_after(90):
        room = await class_with_student(live_web)
        cat = await api_user(live_web, "cat", "=Cat C")  # a name a spreadsheet would run
        async with live_web.api(room.ada) as api, live_web.api(cat) as cat_api:
            await cat_api.post("/classrooms/join", json={"code": room.code})
            session = (await api.post(f"/classrooms/{room.id}/sessions",
                                      json={"topic": "Routing"})).json()["room"]
        async with live_peer(live_web, room.bob) as bob:
            await bob.join(session["id"])

            async def arrived() -> bool:
                return bool(await live_web.services.storage.list_attendance(session["id"]))

            await eventually(arrived)
        async with live_web.api(room.ada) as api:
            await api.post(f"/sessions/{session['id']}/end", json={})
        base = live_web.base_url
        with chromium(tmp_path, "ada") as ada:
            def check() -> None:
                sign_in(ada, base, room.ada)
                ada.get(f"{base}/classrooms/{room.id}/sessions")
                rows = {row.find_element(By.TAG_NAME, "th").text.split("\n")[-1]:
                        [td.text for td in row.find_elements(By.TAG_NAME, "td")]
                        for row in ada.find_elements(
                            By.CSS_SELECTOR, f"#session-{session['id']} tbody tr")}
                assert set(rows) == {"Bob S", "=Cat C"}, rows
                bob_row, cat_row = rows["Bob S"], rows["=Cat C"]
                assert bob_row[0] == "present" and re.fullmatch(r"\d+:\d\d", bob_row[3])
                assert cat_row == ["absent", "—", "—", "0:00"]
                summary = ada.find_element(By.CSS_SELECTOR,
                                           f"#session-{session['id']} summary").text
                assert "1 of 2 present" in summary
                link = ada.find_element(By.CSS_SELECTOR, "a[href$='/attendance.csv']")
                fetch = ("const done = arguments[arguments.length - 1];"
                         "fetch(arguments[0]).then(r => r.text()).then(done);")
                per_session = ada.execute_async_script(fetch, f"/sessions/{session['id']}"
                                                       "/attendance.csv").splitlines()
                assert per_session[0].startswith("name,username,role,status")
                bob_line = next(line for line in per_session if line.startswith("Bob S,"))
                assert bob_line.startswith("Bob S,bob,student,present,"), per_session
                # A name that starts like a formula is quoted so a spreadsheet shows it.
                assert "'=Cat C,cat,student,absent,,,0:00,0" in per_session
                per_class = ada.execute_async_script(fetch, link.get_attribute("href")
                                                     ).splitlines()
                assert per_class[0].startswith("name,username,") and "Routing" in per_class[0]
                assert "'=Cat C,cat,absent" in per_class
                assert any(re.fullmatch(r"Bob S,bob,\d+:\d\d", line) for line in per_class)

            await trio.to_thread.run_sync(check)


async def test_layout_on_a_phone_and_a_laptop(live_web: WebWorld, tmp_path: Path) -> None:
    with trio.fail_after(90):
        room = await class_with_student(live_web)
        async with live_web.api(room.ada) as api:
            for number in range(3):
                await api.post(f"/classrooms/{room.id}/posts", json={
                    "title": f"Week {number}", "body": "Read chapter 3.\n" * 3,
                    "tags": ["reading", f"week{number}"]})
            await api.post(f"/classrooms/{room.id}/sessions", json={})
        base = live_web.base_url
        with chromium(tmp_path, "ada") as ada:
            def check() -> None:
                sign_in(ada, base, room.ada)
                # A phone: the stream comes first, the post form is folded, the tab bar
                # says it scrolls.
                ada.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                    "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
                ada.get(f"{base}/classrooms/{room.id}")
                first = ada.find_element(By.CSS_SELECTOR, ".stream .post")
                top = ada.execute_script("return arguments[0].getBoundingClientRect().top",
                                         first)
                assert top < 600, top
                composer = ada.find_element(By.CSS_SELECTOR, "details.composer")
                assert composer.get_attribute("open") is None
                assert not ada.find_element(By.NAME, "title").is_displayed()
                composer.find_element(By.TAG_NAME, "summary").click()
                assert ada.find_element(By.NAME, "title").is_displayed()
                assert "more-right" in attribute(ada.find_element(By.CSS_SELECTOR, "nav.tabs"),
                                                 "class")
                # A 1280x900 laptop: the chat input is in view without scrolling.
                ada.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                    "width": 1280, "height": 760, "deviceScaleFactor": 1, "mobile": False})
                ada.get(f"{base}/classrooms/{room.id}/live")
                wait(ada, lambda d: text_of(d, "status") == "connected", "the chat")
                bottom = ada.execute_script(
                    "return document.getElementById('message-input')"
                    ".getBoundingClientRect().bottom")
                assert bottom <= 760, bottom

            await trio.to_thread.run_sync(check)
