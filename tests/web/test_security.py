"""Hostile input, sign-in abuse, cookies, headers, static files and error pages."""

from __future__ import annotations

import markupsafe
import pytest
import trio

from classroom.accounts import (
    LOGIN_FAILED,
    MAX_FAILURES_PER_ACCOUNT,
    MAX_FAILURES_PER_ACCOUNT_ANYWHERE,
)
from classroom.errors import Throttled, Unauthenticated
from tests.web.harness import PASSWORD, WebWorld, form_csrf, join_code, running_site
from web.auth import form_token
from web.render import sentence

SCRIPT = "<script>alert(1)</script>"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'")


# The one script every page loads, by src (the CSP allows no other kind).
SITE_JS = '<script src="/static/site.js" defer></script>'


def assert_escaped(text: str) -> None:
    assert SCRIPT not in text
    assert "<script" not in text.replace(SITE_JS, "").lower()


async def test_script_in_every_field_comes_back_escaped(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob:
            # Refused fields are echoed back in the form: escaped.
            refused = await ada.submit("/signup", "/signup", {
                "username": SCRIPT, "display_name": SCRIPT, "password": SCRIPT,
                "confirm": SCRIPT})
            assert refused.status_code == 400
            assert_escaped(refused.text)
            assert str(markupsafe.escape(SCRIPT)) in refused.text

            await ada.sign_up("ada", SCRIPT)
            classroom = await ada.create_class(SCRIPT, SCRIPT)
            posted = await ada.post_update(classroom, SCRIPT, SCRIPT, "")
            assert posted.status_code == 303
            bad_tag = await ada.post_update(classroom, "t", "b", SCRIPT)
            assert bad_tag.status_code == 400
            assert_escaped(bad_tag.text)
            login = await bob.submit("/login", "/login", {"username": SCRIPT, "password": "x"})
            assert_escaped(login.text)
            await bob.sign_up("bob", SCRIPT)
            join = await bob.join(SCRIPT)
            assert join.status_code in (400, 404)
            assert_escaped(join.text)
            code = join_code((await ada.get(f"/classrooms/{classroom}")).text)
            await bob.join(code)

            pages = [f"/classrooms/{classroom}", f"/classrooms/{classroom}/students",
                     "/classrooms", "/logout", f"/classrooms/{classroom}?tag=" + SCRIPT,
                     f"/{SCRIPT}", "/login?next=/" + SCRIPT]
            for path in pages:
                for browser in (ada, bob):
                    page = await browser.get(path)
                    assert page.status_code in (200, 303, 400, 403, 404), path
                    assert_escaped(page.text)
            stream = (await bob.get(f"/classrooms/{classroom}")).text
            assert stream.count(str(markupsafe.escape(SCRIPT))) >= 4  # name, text, title...
            async with web.browser() as stranger:
                page = await stranger.get("/login?next=/" + SCRIPT)
                assert_escaped(page.text)


async def test_quotes_and_emoji_round_trip_exactly(web: WebWorld) -> None:
    with trio.fail_after(30):
        name = "Robert'); DROP TABLE classrooms;-- 🎓"
        body = 'He said "hi" \\ \'quoted\' ; -- 😀 👩🏽‍🏫 𝄞\nsecond line\ttab'
        title = "%s %% _ ' \" 🧪"
        async with web.browser() as ada:
            await ada.sign_up("ada", "Zoë 🦊 O'Hara")
            classroom = await ada.create_class(name, body)
            await ada.post_update(classroom, title, body, "naïve, 日本語, emoji_ok")
            page = (await ada.get(f"/classrooms/{classroom}")).text
            for text in (name, body, title, "Zoë 🦊 O'Hara"):
                assert str(markupsafe.escape(text)) in page, text
            token = (await web.services.accounts.log_in("ada", PASSWORD,
                                                        address="test")).token
        async with web.api(token) as api:
            got = (await api.get(f"/classrooms/{classroom}")).json()["classroom"]
            assert got["name"] == name and got["description"] == body
            post = (await api.get(f"/classrooms/{classroom}/posts")).json()["posts"][0]
            assert (post["title"], post["body"]) == (title, body)
            assert sorted(post["tags"]) == sorted(["naïve", "日本語", "emoji_ok"])
            assert post["author"]["display_name"] == "Zoë 🦊 O'Hara"
            tagged = await api.get(f"/classrooms/{classroom}/posts", params={"tag": "日本語"})
            assert [p["id"] for p in tagged.json()["posts"]] == [post["id"]]


async def test_login_failures_look_alike_then_throttle(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as owner:
            await owner.sign_up("ada")

        def message(html: str) -> str:
            start = html.index('role="alert">') + len('role="alert">')
            return html[start:html.index("</p>", start)]

        async with web.browser() as attacker:
            unknown = await attacker.log_in("nobody", "whatever1")
            wrong = await attacker.log_in("ada", "whatever1")
            assert unknown.status_code == wrong.status_code == 401
            assert message(unknown.text) == message(wrong.text) == sentence(LOGIN_FAILED)
            assert 'value="ada"' in wrong.text and "whatever1" not in wrong.text
            for _ in range(MAX_FAILURES_PER_ACCOUNT - 1):
                await attacker.log_in("ada", "whatever1")
            throttled = await attacker.log_in("ada", PASSWORD)
            assert throttled.status_code == 429
            assert "Too many failed logins" in throttled.text
            assert int(throttled.headers["retry-after"]) > 0
            assert "classroom_session" not in attacker.client.cookies

        async with web.api() as api:
            refused = await api.post("/login", json={"username": "ada", "password": PASSWORD})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "throttled"
            assert "retry-after" in refused.headers
            unknown_api = await api.post("/login", json={"username": "zed", "password": "x"})
            assert unknown_api.status_code == 401
            assert unknown_api.json()["error"] == {"code": "unauthenticated",
                                                   "message": LOGIN_FAILED}


async def test_a_stranger_guessing_locks_out_only_their_own_address(web: WebWorld) -> None:
    """Failed logins lock the account for the address they come from; the owner, elsewhere,
    signs in. Only very many failures from many addresses lock it for everyone."""
    with trio.fail_after(30):
        async with web.browser() as owner:
            await owner.sign_up("ada")
        accounts = web.services.accounts
        for _ in range(MAX_FAILURES_PER_ACCOUNT):
            with pytest.raises(Unauthenticated):
                await accounts.log_in("ada", "guess-guess", address="203.0.113.9")
        with pytest.raises(Throttled):
            await accounts.log_in("ada", PASSWORD, address="203.0.113.9")
        signed_in = await accounts.log_in("ada", PASSWORD, address="198.51.100.7")
        assert signed_in.user.username == "ada"
        # The owner's password change is not the stranger's to block either.
        await accounts.change_password(signed_in.user, signed_in.token, PASSWORD,
                                       "another-password-1")
        # Many machines: the account's own bound, whatever each address did.
        for n in range(MAX_FAILURES_PER_ACCOUNT_ANYWHERE):
            with pytest.raises((Unauthenticated, Throttled)):
                await accounts.log_in("ada", "guess-guess", address=f"10.0.{n // 4}.{n % 4}")
        with pytest.raises(Throttled):
            await accounts.log_in("ada", "another-password-1", address="192.0.2.1")


async def test_logout_kills_the_session_everywhere(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            await browser.sign_up("ada")
            token = browser.client.cookies["classroom_session"]
            async with web.api(token) as api:
                assert (await api.get("/me")).json()["user"]["username"] == "ada"
                confirm = await browser.get("/logout")
                assert confirm.status_code == 200 and 'action="/logout"' in confirm.text
                out = await browser.submit("/logout", "/logout", {})
                assert "classroom_session=;" in out.headers["set-cookie"]
                assert "Max-Age=0" in out.headers["set-cookie"]
                assert (await api.get("/me")).status_code == 401
            async with web.browser() as thief:
                thief.client.cookies.set("classroom_session", token)
                assert (await thief.get("/classrooms")).status_code == 303
            assert (await browser.get("/logout")).headers["location"] == "/"


async def test_cookies_carry_their_flags(web: WebWorld, db_url: str) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            first = await browser.get("/signup")
            csrf = first.headers["set-cookie"]
            assert csrf.startswith("classroom_csrf=")
            for flag in ("HttpOnly", "SameSite=Lax", "Path=/"):
                assert flag in csrf
            assert "Secure" not in csrf
            assert "set-cookie" not in (await browser.get("/signup")).headers
            signed = await browser.sign_up("ada")
            session = signed.headers["set-cookie"]
            for flag in ("HttpOnly", "SameSite=Lax", "Path=/", f"Max-Age={14 * 24 * 3600}"):
                assert flag in session
    async with running_site(db_url, secure_cookies=True) as secure:
        with trio.fail_after(30):
            async with secure.api() as api:
                answer = await api.post("/signup", json={
                    "username": "bob", "display_name": "Bob", "password": PASSWORD})
                assert "; Secure" in answer.headers["set-cookie"]


async def test_security_headers_on_every_html_response(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            paths = ["/", "/signup", "/login", "/nowhere", "/classrooms/abc"]
            answers = [await browser.get(path) for path in paths]
            answers.append(await browser.post("/login", {"username": "x"}))  # 403
            await browser.sign_up("ada")
            classroom = await browser.create_class("Art")
            for path in ("/classrooms", f"/classrooms/{classroom}",
                         f"/classrooms/{classroom}/students", "/classrooms/999"):
                answers.append(await browser.get(path))
            for answer in answers:
                assert answer.headers["content-type"] == "text/html; charset=utf-8"
                assert answer.headers["content-security-policy"] == CSP
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["referrer-policy"] == "same-origin"
                assert '<link rel="stylesheet" href="/static/style.css">' in answer.text


async def test_error_pages(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            missing = await browser.get("/no/such/page")
            assert missing.status_code == 404
            assert "<h1>There is no page at this address</h1>" in missing.text
            not_an_id = await browser.get("/classrooms/007")
            assert not_an_id.status_code == 404
            wrong_method = await browser.client.delete("/login")
            assert wrong_method.status_code == 405
            assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
            await browser.sign_up("ada")
            bad_before = await browser.get("/classrooms/1", params={"before": "x"})
            assert bad_before.status_code in (400, 404)
            classroom = await browser.create_class("Art")
            bad = await browser.get(f"/classrooms/{classroom}", params={"before": "x"})
            assert bad.status_code == 400 and "Before must be a whole number" in bad.text
            bad_tag = await browser.get(f"/classrooms/{classroom}", params={"tag": "a b"})
            assert bad_tag.status_code == 400


async def test_database_outage_answers_503_with_a_retry_hint(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser, web.api() as api:
            await browser.sign_up("ada")
            healthy = await api.get("/healthz")
            assert healthy.status_code == 200
            assert healthy.json() == {"status": "ok", "database": web.storage.backend,
                                      "chat_url": None, "bus": "off"}
            await web.storage.aclose()
            down = await api.get("/healthz")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "unavailable"
            assert int(down.headers["retry-after"]) > 0
            page = await browser.get("/classrooms")
            assert page.status_code == 503 and "retry-after" in page.headers
            assert "try again" in page.text


async def test_static_files(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            css = await browser.get("/static/style.css")
            assert css.status_code == 200
            assert css.headers["content-type"] == "text/css; charset=utf-8"
            assert ".topbar" in css.text
            icon = await browser.get("/static/favicon.svg")
            assert icon.headers["content-type"] == "image/svg+xml"
            for escape in ("/static/%2e%2e/site.py", "/static/..%2fsite.py",
                           "/static/%2e%2e%2f%2e%2e%2fpyproject.toml", "/static/",
                           "/static/.hidden", "/static//etc/passwd", "/static/nope.css"):
                answer = await browser.get(escape)  # httpx keeps %2e%2e as written
                assert answer.status_code == 404, escape
                assert "class Site" not in answer.text
            head = await browser.client.head("/static/style.css")
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == len(css.content)


@pytest.mark.parametrize("path", ["/", "/signup", "/login", "/static/style.css"])
async def test_head_answers_like_get_without_a_body(web: WebWorld, path: str) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            head = await browser.client.head(path)
            get = await browser.get(path)
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-type"] == get.headers["content-type"]


async def test_head_on_signed_in_pages(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            assert (await browser.client.head("/classrooms")).status_code == 303
            await browser.sign_up("ada")
            classroom = await browser.create_class("Art")
            for path in ("/classrooms", f"/classrooms/{classroom}",
                         f"/classrooms/{classroom}/students"):
                head = await browser.client.head(path)
                assert head.status_code == 200 and head.content == b"", path
            page = await browser.get("/classrooms")
            # Signed in, a form's token is bound to the session (web/auth.py), not the cookie.
            cookies = dict(browser.client.cookies.items())
            assert form_csrf(page.text) == form_token(cookies["classroom_csrf"], cookies)
            assert form_csrf(page.text) != cookies["classroom_csrf"]


async def test_sign_ups_are_throttled_per_address(web: WebWorld) -> None:
    with trio.fail_after(60):
        web.services.accounts.max_signups_per_address = 5
        async with web.api() as api:
            statuses = []
            for i in range(7):
                answer = await api.post("/signup", json={
                    "username": f"bulk{i}", "display_name": "Bulk", "password": PASSWORD})
                statuses.append(answer.status_code)
            assert statuses == [201] * 5 + [429] * 2
            assert int(answer.headers["retry-after"]) > 0
            assert answer.json()["error"]["code"] == "throttled"
            assert await web.storage.get_user_by_username("bulk5") is None
        async with web.browser() as browser:  # the page form counts from the same address
            page = await browser.submit("/signup", "/signup", {
                "username": "formbulk", "display_name": "F", "password": PASSWORD,
                "confirm": PASSWORD})
            assert page.status_code == 429
            assert "too many new accounts" in page.text.lower()
