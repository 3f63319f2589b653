"""The live pages: sessions with attendance, the live room, discussions and the results
table, for each role; their forms' CSRF; the data-* settings live.js reads; no inline script."""

from __future__ import annotations

import html
import re

import markupsafe
import pytest
import trio

from tests.web.harness import Browser, WebWorld, form_csrf, join_code
from tests.web.live_peer import eventually, live_peer
from tests.web.test_security import CSP

SCRIPT = "<script>alert(1)</script>"
SITE_JS = '<script src="/static/site.js" defer></script>'
LIVE_JS = '<script src="/static/live.js" defer></script>'
LAB_JS = ('<script src="/static/highlight.min.js" defer></script>',
          '<script src="/static/lab.js" defer></script>')
# Every id live.js and the browser tests rely on.
ROOM_IDS = ("live", "status", "banner", "messages", "message-input", "send-button", "members",
            "composer", "send-error", "online-count")


def data_attributes(page: str) -> dict[str, str]:
    """The data-* attributes of the page's #live element."""
    found = re.search(r'<(?:section|div) id="live"([^>]*)>', page)
    assert found, "the page has no #live element"
    return {name: html.unescape(value)
            for name, value in re.findall(r'data-([a-z-]+)="([^"]*)"', found.group(1))}


def assert_no_inline_script(page: str) -> None:
    """CSP allows scripts from /static only: every <script> is site.js or live.js by src,
    and no element carries an inline handler or a javascript: URL."""
    for tag in re.findall(r"<script\b[^>]*>.*?</script>", page, flags=re.S | re.I):
        assert tag in (SITE_JS, LIVE_JS, *LAB_JS), tag
    assert page.lower().count("<script") == sum(page.count(tag) for tag in (
        SITE_JS, LIVE_JS, *LAB_JS))
    assert not re.search(r"\son[a-z]+\s*=", page, flags=re.I)
    assert "javascript:" not in page.lower()


def token_of(browser: Browser) -> str:
    token = browser.client.cookies.get("classroom_session")
    assert token
    return token


async def people(world: WebWorld, ada: Browser, bob: Browser, eve: Browser) -> int:
    """ada teaches a class bob is in; eve is signed in but not in it."""
    await ada.sign_up("ada", "Ada L")
    await bob.sign_up("bob", "Bob S")
    await eve.sign_up("eve", "Eve")
    classroom = await ada.create_class("Networks")
    await bob.join(join_code((await ada.get(f"/classrooms/{classroom}")).text))
    return classroom


async def test_live_pages_for_each_role(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        async with live_web.browser() as ada, live_web.browser() as bob, \
                live_web.browser() as eve, live_web.browser() as anonymous:
            cid = await people(live_web, ada, bob, eve)
            base = f"/classrooms/{cid}"
            for page in (base, f"{base}/students", f"{base}/sessions", f"{base}/live",
                         f"{base}/discussions"):
                shown = (await ada.get(page)).text
                for tab in ("sessions", "live", "discussions"):
                    assert f'<a href="{base}/{tab}"' in shown, (page, tab)
            assert f'href="{base}/live" aria-current="page"' in (await bob.get(f"{base}/live")).text

            for page in (f"{base}/sessions", f"{base}/live", f"{base}/discussions"):
                shown_page = await ada.get(page)
                assert shown_page.status_code == 200
                assert shown_page.headers["content-security-policy"] == CSP
                assert shown_page.headers["x-content-type-options"] == "nosniff"
                assert (await bob.get(page)).status_code == 200
                assert (await eve.get(page)).status_code == 404
                away = await anonymous.get(page)
                assert away.status_code == 303 and away.headers["location"].startswith("/login")

            # No session yet: a notice; the instructor gets the start form, students wait.
            waiting = (await bob.get(f"{base}/live")).text
            assert "No live session right now" in waiting
            assert f'action="{base}/sessions"' not in waiting
            assert data_attributes(waiting)["mode"] == "wait"
            assert_no_inline_script(waiting)
            ada_waiting = (await ada.get(f"{base}/live")).text
            assert f'action="{base}/sessions"' in ada_waiting
            assert f'action="{base}/sessions"' in (await ada.get(f"{base}/sessions")).text
            assert f'action="{base}/sessions"' not in (await bob.get(f"{base}/sessions")).text

            started = await ada.submit(f"{base}/live", f"{base}/sessions", {"topic": "Routing"})
            assert started.status_code == 303 and started.headers["location"] == f"{base}/live"
            [room] = await live_web.services.storage.list_rooms(cid, "live")
            for who, role in ((ada, "instructor"), (bob, "student")):
                page = (await who.get(f"{base}/live")).text
                assert "Routing" in page
                settings = data_attributes(page)
                me = await live_web.services.accounts.user_for_token(token_of(who))
                assert me is not None
                assert settings == {
                    "mode": "chat", "chat-url": live_web.chat_url, "classroom-id": str(cid),
                    "user-id": str(me.id), "user-name": me.display_name, "role": role,
                    "instructor-id": str(room.created_by), "room-id": str(room.id),
                    "kind": "live", "after": "0"}
                for element in ROOM_IDS:
                    assert f'id="{element}"' in page, element
                assert_no_inline_script(page)
                assert page.count(LIVE_JS) == 1
            ada_live = (await ada.get(f"{base}/live")).text
            bob_live = (await bob.get(f"{base}/live")).text
            for instructor_only in ('id="private-target"', 'id="end-button"',
                                    f'href="/rooms/{room.id}/stats"'):
                assert instructor_only in ada_live and instructor_only not in bob_live
            assert 'id="private-toggle"' in bob_live and 'id="private-toggle"' not in ada_live
            assert "Ask the instructor privately" in bob_live

            # The results table: the instructor's alone.
            for stats in (f"/rooms/{room.id}/stats", f"/roomstats/{room.id}"):
                table = await ada.get(stats)
                assert table.status_code == 200
                assert data_attributes(table.text)["mode"] == "stats"
                assert 'id="lab-grid"' in table.text and 'id="status"' in table.text
                assert_no_inline_script(table.text)
                assert (await bob.get(stats)).status_code == 403
                assert (await eve.get(stats)).status_code == 404
                assert (await anonymous.get(stats)).status_code == 303
            assert (await ada.get("/rooms/999/stats")).status_code == 404

            # Discussions: the instructor opens one; members read and join it.
            refused = await bob.submit(f"{base}/discussions", f"{base}/discussions",
                                       {"topic": "mine"})
            assert refused.status_code == 403
            opened = await ada.submit(f"{base}/discussions", f"{base}/discussions",
                                      {"topic": "Homework 2"})
            assert opened.status_code == 303
            discussion = opened.headers["location"]
            assert re.fullmatch(r"/discussions/\d+", discussion)
            listed = (await bob.get(f"{base}/discussions")).text
            assert f'href="{discussion}"' in listed and "Homework 2" in listed
            assert f'action="{base}/discussions"' not in listed
            for who in (ada, bob):
                page = (await who.get(discussion)).text
                assert data_attributes(page)["kind"] == "discussion"
                assert 'id="message-input"' in page
                assert_no_inline_script(page)
            assert (await eve.get(discussion)).status_code == 404
            assert (await ada.get("/discussions/999")).status_code == 404
            # A live session is not a discussion.
            assert (await ada.get(f"/discussions/{room.id}")).status_code == 404


async def test_sessions_list_shows_attendance_to_the_instructor_only(
        live_web: WebWorld) -> None:
    with trio.fail_after(30):
        async with live_web.browser() as ada, live_web.browser() as bob, \
                live_web.browser() as eve:
            cid = await people(live_web, ada, bob, eve)
            base = f"/classrooms/{cid}"
            await ada.submit(f"{base}/sessions", f"{base}/sessions", {"topic": "Week 1"})
            [room] = await live_web.services.storage.list_rooms(cid, "live")
            async with live_peer(live_web, token_of(bob)) as peer:
                await peer.join(room.id)
                during = (await ada.get(f"{base}/sessions")).text
                assert "connected now" in during and "Bob S" in during

            async def left() -> bool:
                records = await live_web.services.storage.list_attendance(room.id)
                return records[0].last_leave is not None

            await eventually(left)
            ended = await ada.submit(f"{base}/sessions", f"/sessions/{room.id}/end", {})
            assert ended.status_code == 303 and ended.headers["location"] == f"{base}/sessions"
            page = (await ada.get(f"{base}/sessions")).text
            assert "Attendance" in page and "Connected (m:ss)" in page and "Bob S" in page
            assert "connected now" not in page
            assert f'action="/sessions/{room.id}/end"' not in page  # ended: no End button
            student = (await bob.get(f"{base}/sessions")).text
            assert "Week 1" in student
            assert "Attendance" not in student and "Connected (m:ss)" not in student
            assert f'action="{base}/sessions"' not in student
            # Ending is the instructor's; others get 403/404 and nothing changes.
            await ada.submit(f"{base}/sessions", f"{base}/sessions", {"topic": "Week 2"})
            [second, _] = await live_web.services.storage.list_rooms(cid, "live")
            assert (await bob.submit(f"{base}/sessions", f"/sessions/{second.id}/end",
                                     {})).status_code == 403
            assert (await eve.submit("/classrooms", f"/sessions/{second.id}/end",
                                     {})).status_code == 404
            assert (await live_web.services.storage.get_room(second.id)) is not None
            still = await live_web.services.rooms.current_session(cid)
            assert still is not None and still.id == second.id


@pytest.mark.parametrize("forgery", ["missing", "wrong"])
async def test_live_forms_refuse_a_bad_csrf_token(live_web: WebWorld, forgery: str) -> None:
    with trio.fail_after(30):
        async with live_web.browser() as ada, live_web.browser() as bob, \
                live_web.browser() as eve:
            cid = await people(live_web, ada, bob, eve)
            base = f"/classrooms/{cid}"
            instructor = await live_web.services.accounts.user_for_token(token_of(ada))
            assert instructor is not None
            live = await live_web.services.rooms.open(instructor, cid, "live")
            forms = [(f"{base}/sessions", {"topic": "x"}),
                     (f"/sessions/{live.id}/end", {}),
                     (f"{base}/discussions", {"topic": "x"})]
            for action, fields in forms:
                token = {"missing": {}, "wrong": {"csrf": "A" * 43}}[forgery]
                answer = await ada.post(action, {**fields, **token})
                assert answer.status_code == 403, action
                assert "This form has expired" in answer.text
                # A token from another browser does not work either.
                other = form_csrf((await bob.get(f"{base}/sessions")).text)
                assert (await ada.post(action, {**fields, "csrf": other})).status_code == 403
            rooms = await live_web.services.storage.list_rooms(cid)
            assert [(r.id, r.is_open) for r in rooms] == [(live.id, True)]


async def test_live_form_errors_show_the_form_again(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        async with live_web.browser() as ada, live_web.browser() as bob, \
                live_web.browser() as eve:
            cid = await people(live_web, ada, bob, eve)
            base = f"/classrooms/{cid}"
            assert (await ada.submit(f"{base}/sessions", f"{base}/sessions",
                                     {})).status_code == 303
            # The form is gone while a session runs; a stale tab's second start is a 409.
            page = await ada.submit(f"{base}/discussions", f"{base}/sessions", {"topic": "2"})
            assert page.status_code == 409 and "already running" in page.text
            blank = await ada.submit(f"{base}/discussions", f"{base}/discussions",
                                     {"topic": "  "})
            assert blank.status_code == 400
            assert "A discussion needs a topic" in blank.text
            assert f'action="{base}/discussions"' in blank.text
            long = await ada.submit(f"{base}/discussions", f"{base}/discussions",
                                    {"topic": "t" * 300})
            assert long.status_code in (400, 413) and 'value="' + "t" * 300 in long.text
            assert await live_web.services.storage.list_rooms(cid, "discussion") == []


async def test_an_ended_discussion_is_a_read_only_transcript(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        async with live_web.browser() as ada, live_web.browser() as bob, \
                live_web.browser() as eve, live_web.browser() as cyd:
            cid = await people(live_web, ada, bob, eve)
            await cyd.sign_up("cyd", "Cyd")
            await cyd.join(join_code((await ada.get(f"/classrooms/{cid}")).text))
            opened = await ada.submit(f"/classrooms/{cid}/discussions",
                                      f"/classrooms/{cid}/discussions", {"topic": SCRIPT})
            rid = int(opened.headers["location"].rsplit("/", 1)[1])
            async with live_peer(live_web, token_of(ada)) as a, \
                    live_peer(live_web, token_of(bob)) as b, \
                    live_peer(live_web, token_of(cyd)) as c:
                await a.join(rid)
                await b.join(rid)
                cyd_id = (await c.join(rid))["data"]["you"]["id"]
                await b.say(rid, "public " + SCRIPT)
                await b.say(rid, "bob's question", "message/to_mentor")
                await a.say(rid, "answer for cyd", "message/to_client", user_id=cyd_id)
                await a.request("room/close", {"room_id": rid})
            for who, sees, hidden in (
                    (bob, ["public " + SCRIPT, "bob's question"], ["answer for cyd"]),
                    (cyd, ["public " + SCRIPT, "answer for cyd"], ["bob's question"]),
                    (ada, ["public " + SCRIPT, "bob's question", "answer for cyd"], [])):
                page = (await who.get(f"/discussions/{rid}")).text
                assert "Ended" in page and "read-only" in page
                assert 'id="message-input"' not in page and "live.js" not in page
                for text in sees:
                    assert str(markupsafe.escape(text)) in page, text
                for text in hidden:
                    assert str(markupsafe.escape(text)) not in page, text
                assert SCRIPT not in page
                assert len(re.findall(r'<li class="message[ "]', page)) == len(sees)
                assert len(re.findall(r'<li class="message private[ "]', page)) == \
                    len(sees) - 1
                assert "The instructor ended this discussion" in page
            listed = (await bob.get(f"/classrooms/{cid}/discussions")).text
            assert "Ended" in listed and SCRIPT not in listed
            assert (await eve.get(f"/discussions/{rid}")).status_code == 404


async def test_user_data_in_live_pages_is_escaped(live_web: WebWorld) -> None:
    with trio.fail_after(30):
        async with live_web.browser() as ada:
            await ada.sign_up("ada", 'Ada "the" <b>first</b>')
            cid = await ada.create_class(SCRIPT)
            await ada.submit(f"/classrooms/{cid}/sessions", f"/classrooms/{cid}/sessions",
                             {"topic": SCRIPT})
            for page in (f"/classrooms/{cid}/live", f"/classrooms/{cid}/sessions"):
                text = (await ada.get(page)).text
                assert SCRIPT not in text and "<b>first</b>" not in text
                assert_no_inline_script(text)
            live = (await ada.get(f"/classrooms/{cid}/live")).text
            assert data_attributes(live)["user-name"] == 'Ada "the" <b>first</b>'
            assert 'data-user-name="Ada &#34;the&#34; &lt;b&gt;first&lt;/b&gt;"' in live


async def test_live_pages_without_a_chat_server(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada:
            await ada.sign_up("ada")
            cid = await ada.create_class("Art")
            waiting = (await ada.get(f"/classrooms/{cid}/live")).text
            assert "No live session right now" in waiting and "live.js" not in waiting
            await ada.submit(f"/classrooms/{cid}/sessions", f"/classrooms/{cid}/sessions", {})
            page = (await ada.get(f"/classrooms/{cid}/live")).text
            assert "Live chat is turned off" in page and "live.js" not in page


async def test_live_js_is_served_and_never_writes_html(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            script = await browser.get("/static/live.js")
            assert script.status_code == 200
            assert script.headers["content-type"].split(";")[0] in (
                "text/javascript", "application/javascript")
            for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write",
                         "eval(", "new Function"):
                assert sink not in script.text, sink
