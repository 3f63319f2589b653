"""Every form: CSRF, post/redirect/get, and refusals that change nothing."""

from __future__ import annotations

import pytest
import trio

from classroom import limits
from storage import User
from tests.web.harness import PASSWORD, Browser, WebWorld, form_csrf, join_code


async def _user(web: WebWorld, username: str) -> User:
    user = await web.storage.get_user_by_username(username)
    assert user is not None
    return user


async def _teaching(web: WebWorld, browser: Browser, username: str = "ada") -> int:
    await browser.sign_up(username)
    return await browser.create_class("Networks")


@pytest.mark.parametrize("forgery", ["missing", "wrong", "no cookie", "planted cookie"])
async def test_every_form_refuses_a_bad_csrf_token(web: WebWorld, forgery: str) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob:
            classroom = await _teaching(web, ada)
            code = join_code((await ada.get(f"/classrooms/{classroom}")).text)
            await bob.sign_up("bob")

            def forged(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
                if forgery == "wrong":
                    return {"csrf": "A" * 43, **fields}
                if forgery == "no cookie":
                    token = browser.client.cookies["classroom_csrf"]
                    browser.client.cookies.delete("classroom_csrf")
                    return {"csrf": token, **fields}
                if forgery == "planted cookie":
                    # A site that can set cookies for ours (a sibling subdomain, plain http)
                    # knows the CSRF cookie it planted, not the HttpOnly session token.
                    browser.client.cookies.delete("classroom_csrf")
                    browser.client.cookies.set("classroom_csrf", "A" * 43)
                    return {"csrf": "A" * 43, **fields}
                return fields

            async def refused(browser: Browser, action: str, fields: dict[str, str]) -> None:
                await browser.get("/classrooms")  # a page view (re)sets the CSRF cookie
                answer = await browser.post(action, forged(browser, fields))
                assert answer.status_code == 403, (action, answer.status_code)
                assert "This form has expired" in answer.text
                assert "instructor" not in answer.text  # (a role has nothing to do with it)
                assert "set-cookie" not in answer.headers or \
                    "classroom_session" not in answer.headers["set-cookie"]

            await refused(bob, "/classrooms/new", {"name": "Forged"})
            await refused(bob, "/classrooms/join", {"code": code})
            await refused(ada, f"/classrooms/{classroom}", {"title": "Forged post"})
            await refused(bob, "/logout", {})
            # Signed out there is no session to bind the token to: a planted cookie is the
            # one case the sign-up and login forms do not stop (web/auth.py says so).
            if forgery != "planted cookie":
                async with web.browser() as stranger:
                    await refused(stranger, "/signup", {
                        "username": "mallory", "display_name": "M", "password": PASSWORD,
                        "confirm": PASSWORD})
                    await refused(stranger, "/login", {"username": "bob",
                                                       "password": PASSWORD})
                    assert "classroom_session" not in stranger.client.cookies

            bob_user = await _user(web, "bob")
            assert await web.services.classes.mine(bob_user) == []
            assert await web.storage.get_user_by_username("mallory") is None
            assert await web.storage.list_posts(classroom) == []
            # Still signed in: the forged logout did nothing.
            assert (await bob.get("/classrooms")).status_code == 200


async def test_every_successful_post_redirects_with_303(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob:
            signup = await ada.submit("/signup?next=/classrooms/join", "/signup", {
                "username": "ada", "display_name": "Ada", "password": PASSWORD,
                "confirm": PASSWORD, "next": "/classrooms/join"})
            assert (signup.status_code, signup.headers["location"]) == (303,
                                                                       "/classrooms/join")
            assert "classroom_session=" in signup.headers["set-cookie"]
            created = await ada.submit("/classrooms/new", "/classrooms/new", {"name": "Art"})
            assert created.status_code == 303
            classroom = int(created.headers["location"].rsplit("/", 1)[1])
            posted = await ada.post_update(classroom, "Hi")
            assert (posted.status_code, posted.headers["location"]) == (
                303, f"/classrooms/{classroom}")
            code = join_code((await ada.get(f"/classrooms/{classroom}")).text)

            await bob.sign_up("bob")
            logout = await bob.submit("/logout", "/logout", {})
            assert (logout.status_code, logout.headers["location"]) == (303, "/")
            assert (await bob.get("/classrooms")).status_code == 303
            login = await bob.log_in("bob")
            assert (login.status_code, login.headers["location"]) == (303, "/classrooms")
            joined = await bob.join(code)
            assert (joined.status_code, joined.headers["location"]) == (
                303, f"/classrooms/{classroom}")
            again = await bob.join(code)  # joining twice is harmless
            assert again.status_code == 303


async def test_signup_errors_keep_fields_but_never_the_password(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            secret = "hunter2"

            async def attempt(username: str, display: str, password: str,
                              confirm: str) -> tuple[int, str]:
                answer = await browser.submit("/signup", "/signup", {
                    "username": username, "display_name": display, "password": password,
                    "confirm": confirm})
                return answer.status_code, answer.text

            status, text = await attempt("carol", "Carol King", secret, secret)
            assert status == 400
            assert f"Password must be at least {limits.PASSWORD_MIN} characters" in text
            assert 'value="carol"' in text and 'value="Carol King"' in text
            assert secret not in text

            status, text = await attempt("carol", "Carol", "a long password", "another one!")
            assert status == 400 and "The two passwords differ" in text
            assert "a long password" not in text and "another one!" not in text

            status, text = await attempt("c", "Carol", PASSWORD, PASSWORD)
            assert status == 400 and "Username must be" in text
            status, text = await attempt("carol", "", PASSWORD, PASSWORD)
            assert status == 400 and "Display name is required" in text
            long_name = "x" * (limits.DISPLAY_NAME_MAX + 1)
            status, text = await attempt("carol", long_name, PASSWORD, PASSWORD)
            assert status == 400 and "Display name is too long" in text
            assert await web.storage.get_user_by_username("carol") is None

            await browser.sign_up("carol")
        async with web.browser() as other:
            answer = await other.submit("/signup", "/signup", {
                "username": "Carol", "display_name": "Another", "password": PASSWORD,
                "confirm": PASSWORD})
            assert answer.status_code == 409
            assert "is taken" in answer.text and 'value="Another"' in answer.text


async def test_class_join_and_post_errors_store_nothing(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob:
            await ada.sign_up("ada")
            empty = await ada.submit("/classrooms/new", "/classrooms/new",
                                     {"name": "   ", "description": "kept text"})
            assert empty.status_code == 400
            assert "Class name is required" in empty.text and "kept text" in empty.text
            too_long = await ada.submit("/classrooms/new", "/classrooms/new",
                                        {"name": "n" * (limits.CLASS_NAME_MAX + 1)})
            assert too_long.status_code == 400 and "Class name is too long" in too_long.text
            ada_user = await _user(web, "ada")
            assert await web.services.classes.mine(ada_user) == []

            classroom = await ada.create_class("Networks")
            for fields, message in [
                ({"title": "", "body": "  "}, "A post needs a title or some text"),
                ({"title": "t" * (limits.POST_TITLE_MAX + 1)}, "Title is too long"),
                ({"body": "b" * (limits.POST_BODY_MAX + 1)}, "Text is too long"),
                ({"title": "x", "tags": " ".join(f"t{i}" for i in range(11))},
                 f"At most {limits.TAGS_PER_POST} tags"),
                ({"title": "x", "tags": "ok, not!ok"}, "may only use letters"),
            ]:
                page = f"/classrooms/{classroom}"
                answer = await ada.submit(page, page, {"title": "", "body": "", "tags": "",
                                                       **fields})
                assert answer.status_code == 400, fields
                assert message in answer.text, (message, answer.text[-2000:])
                assert 'role="alert"' in answer.text
            refilled = await ada.post_update(classroom, "Keep me", "x" * 5, "not!ok")
            assert 'value="Keep me"' in refilled.text and 'value="not!ok"' in refilled.text
            assert await web.storage.list_posts(classroom) == []

            await bob.sign_up("bob")
            wrong = await bob.join("nope nope")
            assert wrong.status_code == 404
            assert "No class has that code" in wrong.text and 'value="nope nope"' in wrong.text
            blank = await bob.join("   ")
            assert blank.status_code == 400 and "Enter the class code" in blank.text
            assert await web.services.classes.mine(await _user(web, "bob")) == []

            # A student may not post, even by forging the form.
            code = join_code((await ada.get(f"/classrooms/{classroom}")).text)
            await bob.join(code)
            stream = await bob.get(f"/classrooms/{classroom}")
            forged = await bob.post(f"/classrooms/{classroom}",
                                    {"csrf": form_csrf(stream.text), "title": "student post"})
            assert forged.status_code == 403
            assert await web.storage.list_posts(classroom) == []


async def test_an_archived_class_shows_no_code_and_says_why_a_post_or_a_join_fails(
        web: WebWorld) -> None:
    """Archived: the class page shows no join code nor its buttons; the code's holder is
    told the class takes no new students (not that the code is wrong); a post sent from a
    page opened before says it was not posted and gives the text back."""
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob, web.browser() as cat:
            classroom = await _teaching(web, ada)
            page = f"/classrooms/{classroom}"
            stale = await ada.get(page)
            code = join_code(stale.text)
            await bob.sign_up("bob")
            await bob.join(code)
            archived = await ada.submit(page, f"{page}/archive", {"archived": "1"})
            assert archived.status_code == 303
            now = (await ada.get(page)).text
            assert code not in now and "New code" not in now and "Turn joining" not in now
            assert "nobody can join" in now

            await cat.sign_up("cat")
            refused = await cat.join(code)
            assert refused.status_code == 409
            assert "archived and takes no new students" in refused.text
            assert "No class has that code" not in refused.text
            assert (await bob.join(code)).status_code == 303  # a member: simply in

            lost = await ada.post(page, {"csrf": form_csrf(stale.text), "title": "Quiz",
                                         "body": "Friday, room 4", "tags": ""})
            assert lost.status_code == 409
            assert 'role="alert"' in lost.text and "archived" in lost.text
            assert "Not posted" in lost.text and "Friday, room 4" in lost.text
            assert await web.storage.list_posts(classroom) == []


async def test_signed_out_visitors_go_to_login_and_come_back(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            for path in ("/classrooms", "/classrooms/new", "/classrooms/join",
                         "/classrooms/1", "/classrooms/1/students"):
                answer = await browser.get(path)
                assert answer.status_code == 303, path
                assert answer.headers["location"] == "/login?next=" + path.replace("/", "%2F")
            tagged = await browser.get("/classrooms/1?tag=hw")
            assert tagged.headers["location"] == "/login?next=%2Fclassrooms%2F1%3Ftag%3Dhw"

            # A form posted after the session ended goes to login too, and stores nothing.
            page = await browser.get("/login")
            post = await browser.post("/classrooms/new",
                                      {"csrf": form_csrf(page.text), "name": "Late"})
            assert post.headers["location"] == "/login?next=%2Fclassrooms%2Fnew"

            await browser.sign_up("ada")
            await browser.submit("/logout", "/logout", {})
            form = await browser.get("/login?next=/classrooms/join")
            assert 'name="next" value="/classrooms/join"' in form.text
            back = await browser.post("/login", {
                "csrf": form_csrf(form.text), "username": "ada", "password": PASSWORD,
                "next": "/classrooms/join"})
            assert back.headers["location"] == "/classrooms/join"


@pytest.mark.parametrize("target", [
    "//evil.example/x", "https://evil.example/", "/\\evil.example", "evil.example",
    "javascript:alert(1)", "/\r\nSet-Cookie: x=1", "\\\\evil.example", "",
])
async def test_next_never_leaves_the_site(web: WebWorld, target: str) -> None:
    with trio.fail_after(30):
        async with web.browser() as browser:
            await browser.sign_up("ada")
            await browser.submit("/logout", "/logout", {})
            page = await browser.get("/login", params={"next": target})
            answer = await browser.post("/login", {
                "csrf": form_csrf(page.text), "username": "ada", "password": PASSWORD,
                "next": target})
            assert answer.status_code == 303
            assert answer.headers["location"] == "/classrooms"
            signed_in = await browser.get("/login", params={"next": target})
            assert signed_in.headers["location"] == "/classrooms"
