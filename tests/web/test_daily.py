"""What teachers and students expect day to day (issue 12), over HTTP without a browser:
error pages that keep the menu and a way back, words that say what happens, links."""

from __future__ import annotations

import trio

from tests.web.harness import WebWorld, join_code
from web.attendance import connected
from web.render import linkify


async def test_error_pages_keep_the_menu_and_a_way_back(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob:
            await ada.sign_up("ada", "Ada L")
            await bob.sign_up("bob", "Bob S")
            classroom = await ada.create_class("Networks")
            code = join_code((await ada.get(f"/classrooms/{classroom}")).text)
            await bob.join(code)
            refused = await bob.get(f"/classrooms/{classroom}/students")
            assert refused.status_code == 403
            text = refused.text
            assert "Only the instructor may see the list of people in this class" in text
            assert "Bob S" in text and 'action="/logout"' in text  # the signed-in menu
            assert f'href="/classrooms/{classroom}">Back to the class</a>' in text
            missing = await bob.get("/classrooms/999999")
            assert missing.status_code == 404
            assert 'action="/logout"' in missing.text and "Back to the class" not in missing.text
            # An address no route knows: still a page with the visitor's menu.
            nowhere = await bob.get("/no/such/page")
            assert nowhere.status_code == 404
            assert "Bob S" in nowhere.text and 'action="/logout"' in nowhere.text
            assert "There is nothing here" in nowhere.text
            async with web.api() as api:  # the API's answer stays JSON
                answer = await api.get("/no/such/route")
                assert answer.status_code == 404
                assert answer.json()["error"]["code"] == "not_found"
            cards = (await ada.get("/classrooms")).text
            assert "created <time" in cards and "joined <time" not in cards
            assert "joined <time" in (await bob.get("/classrooms")).text
        async with web.browser() as visitor:
            assert "on their way" not in (await visitor.get("/")).text


def test_linkify_makes_only_http_links() -> None:
    assert linkify("a <b> https://x.test/?a=1&b=2 javascript:alert(1) mailto:a@b.c") == (
        'a &lt;b&gt; <a href="https://x.test/?a=1&amp;b=2" rel="noopener nofollow ugc">'
        "https://x.test/?a=1&amp;b=2</a> javascript:alert(1) mailto:a@b.c")
    # A quote cannot close the attribute: it stays an escaped part of the address.
    tricky = linkify('http://x.test/"onmouseover="x')
    assert tricky.count('"') == 4 and "&#34;onmouseover=&#34;x" in tricky


def test_connected_time_reads_as_minutes_and_seconds() -> None:
    assert [connected(s) for s in (0, 59.9, 60, 4502.4, -3)] == [
        "0:00", "0:59", "1:00", "75:02", "0:00"]
