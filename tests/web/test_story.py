"""The whole page story, as three people in three browsers would live it."""

from __future__ import annotations

import trio

from tests.web.harness import WebWorld, form_csrf, join_code


async def test_instructor_student_and_outsider(web: WebWorld) -> None:
    with trio.fail_after(30):
        async with web.browser() as ada, web.browser() as bob, web.browser() as eve:
            landing = await ada.get("/")
            assert landing.status_code == 200
            assert 'href="/signup"' in landing.text

            signed_up = await ada.sign_up("ada", "Ada Lovelace")
            assert signed_up.headers["location"] == "/classrooms"
            assert (await ada.get("/")).headers["location"] == "/classrooms"
            mine = await ada.get("/classrooms")
            assert "No classes yet" in mine.text

            classroom = await ada.create_class("Networks 101", "Tuesdays, room 4")
            stream = await ada.get(f"/classrooms/{classroom}")
            assert stream.status_code == 200
            assert "Networks 101" in stream.text and "Tuesdays, room 4" in stream.text
            code = join_code(stream.text)
            assert len(code) == 10

            first = await ada.post_update(classroom, "Homework 1",
                                          "Read chapter 1.\nThen chapter 2.", "homework, week1")
            assert first.status_code == 303
            assert first.headers["location"] == f"/classrooms/{classroom}"
            await ada.post_update(classroom, "Welcome", "Glad you are here", "announcements")

            await bob.sign_up("bob", "Bob Stone")
            spaced = f"  {code[:5].lower()} {code[5:].lower()} "
            joined = await bob.join(spaced)
            assert joined.status_code == 303
            assert joined.headers["location"] == f"/classrooms/{classroom}"

            seen = (await bob.get(f"/classrooms/{classroom}")).text
            # Newest first, line breaks kept (the page shows them with white-space: pre-wrap).
            assert seen.index("Welcome") < seen.index("Homework 1")
            assert "Read chapter 1.\nThen chapter 2." in seen
            assert f'href="/classrooms/{classroom}?tag=homework"' in seen
            assert code not in seen, "only the instructor sees the join code"
            assert "New post" not in seen, "only the instructor gets the post form"
            assert f'href="/classrooms/{classroom}/students"' not in seen

            filtered = await bob.get(f"/classrooms/{classroom}?tag=HomeWork")
            assert filtered.status_code == 200
            assert "Showing posts tagged" in filtered.text and "#homework" in filtered.text
            assert "Homework 1" in filtered.text and "Glad you are here" not in filtered.text
            assert f'<a href="/classrooms/{classroom}">Show all</a>' in filtered.text

            refused = await bob.get(f"/classrooms/{classroom}/students")
            assert refused.status_code == 403
            assert "Only the instructor may see the list of people in this class" in refused.text

            roster = await ada.get(f"/classrooms/{classroom}/students")
            assert roster.status_code == 200
            assert "Ada Lovelace" in roster.text and "Bob Stone" in roster.text
            assert "@bob" in roster.text and "joined" in roster.text

            bobs = (await bob.get("/classrooms")).text
            assert "Networks 101" in bobs and "Ada Lovelace" in bobs
            assert "badge-student" in bobs
            assert "badge-instructor" in (await ada.get("/classrooms")).text

            await eve.sign_up("eve")
            for path in (f"/classrooms/{classroom}", f"/classrooms/{classroom}?tag=homework",
                         f"/classrooms/{classroom}/students", "/classrooms/999999"):
                page = await eve.get(path)
                assert page.status_code == 404, path
                assert "Networks 101" not in page.text
            for path in (f"/classrooms/{classroom}", f"/classrooms/{classroom}/posts",
                         f"/classrooms/{classroom}/tags", f"/classrooms/{classroom}/students"):
                answer = await eve.get("/api/v1" + path)
                assert answer.status_code == 404, path
                assert answer.json() == {"error": {"code": "not_found",
                                                   "message": "no such class"}}
            # An outsider posting (with a valid CSRF token of its own) is refused as not found.
            page = await eve.get("/classrooms")
            sneaky = await eve.post(f"/classrooms/{classroom}",
                                    {"csrf": form_csrf(page.text), "title": "mine now"})
            assert sneaky.status_code == 404
            assert "mine now" not in (await ada.get(f"/classrooms/{classroom}")).text
