"""The classroom story in real Chromium against a real `classroom serve --no-chat`.

Two profiles (separate cookies): Ada signs up as an instructor, creates a class and posts;
Bob signs up, joins with the code typed in lower case, reads and filters the stream, and is
refused the roster. Then Ada logs out and the class page sends her to the login page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.browser import Profile, artifacts_on_failure, chromium, database, sync_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Markup in a title must show as text; the emoji is outside the BMP (4 bytes in UTF-8).
TITLE = "Lab 1 <b>bold</b> starts 🚀"
BODY = "Bring a laptop.\nSecond line & <i>more</i>."


def type_text(profile: Profile, css: str, text: str) -> None:
    """Put `text` in a field. ChromeDriver's send_keys cannot type characters outside the
    BMP, so the value is set the way a paste would and an input event is fired."""
    field = profile.find(css)
    field.clear()
    profile.driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", field, text)


def post(profile: Profile, classroom_id: int, title: str, body: str, tags: str) -> None:
    form = f"form[action='/classrooms/{classroom_id}']"
    # The post form is folded until asked for, as a person would open it.
    if profile.find("details.composer").get_attribute("open") is None:
        profile.click("details.composer > summary")
    type_text(profile, f"{form} input[name=title]", title)
    profile.fill(form, {"body": body, "tags": tags})
    profile.wait_path(rf"/classrooms/{classroom_id}")
    profile.wait_text(".post-title", title)


def post_titles(profile: Profile) -> list[str]:
    return [element.text for element in profile.find_all(".stream .post-title")]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_classroom_story_in_chromium(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as db_url, sync_server(db_url) as server:
        base = server.http_url
        assert base is not None
        with chromium(tmp_path, "ada", base) as ada, chromium(tmp_path, "bob", base) as bob, \
                artifacts_on_failure(tmp_path, ada, bob):
            # -- Ada: sign up (passwords masked), create a class, post --------------------
            ada.visit("/signup")
            for name in ("password", "confirm"):
                field = ada.find(f"form[action='/signup'] input[name={name}]")
                assert field.get_attribute("type") == "password", name
            ada.sign_up("ada", "Ada Lovelace")
            assert ada.cookie("classroom_session"), "no session cookie after signing up"

            ada.visit("/classrooms/new")
            ada.fill("form[action='/classrooms/new']",
                     {"name": "Networks 101", "description": "TCP, UDP and friends"})
            classroom_id = int(ada.wait_path(r"/classrooms/(\d+)").group(1))
            assert ada.find(".class-banner h1").text == "Networks 101"
            code = ada.find(".join-code").text.strip()
            assert re.fullmatch(r"[A-Z0-9]{8,}", code), code

            post(ada, classroom_id, "Reading list", "Chapter 1", "reading")
            post(ada, classroom_id, TITLE, BODY, "week1, Lab")
            assert post_titles(ada) == [TITLE, "Reading list"]  # newest first
            first = ada.find(".stream .post")
            chips = first.find_elements(By.CSS_SELECTOR, ".chip")
            assert sorted(chip.text for chip in chips) == ["#lab", "#week1"]  # lower-cased

            # -- Bob: sign up, join by the code in lower case -----------------------------
            bob.sign_up("bob", "Bob")
            assert bob.cookie("classroom_session") != ada.cookie("classroom_session")
            bob.visit("/classrooms/join")
            bob.fill("form[action='/classrooms/join']", {"code": code.lower()})
            bob.wait_path(rf"/classrooms/{classroom_id}")

            # The title is shown literally: the <b> is text, not an element.
            title = bob.wait_text(".post-title", "bold")
            assert title.text == TITLE
            assert title.find_elements(By.TAG_NAME, "b") == []
            assert bob.find_all(".stream b") == []
            body = bob.find(".stream .post .post-body")
            assert body.text == BODY
            assert bob.find_all(".join-code") == [], "a student sees the join code"
            assert bob.find_all(f"form[action='/classrooms/{classroom_id}']") == [], \
                "a student sees the post form"

            # -- the tag filter -----------------------------------------------------------
            bob.driver.find_element(By.LINK_TEXT, "#lab").click()
            bob.wait_path(rf"/classrooms/{classroom_id}\?tag=lab")
            bob.wait_text(".filter-bar", "#lab")
            assert post_titles(bob) == [TITLE]
            bob.driver.find_element(By.PARTIAL_LINK_TEXT, "Show all").click()
            bob.wait_path(rf"/classrooms/{classroom_id}")
            assert post_titles(bob) == [TITLE, "Reading list"]

            # -- the roster is the instructor's -------------------------------------------
            bob.visit(f"/classrooms/{classroom_id}/students")
            assert bob.find(".error-status").text == "403"
            assert bob.find_all(".people-list") == []
            ada.visit(f"/classrooms/{classroom_id}/students")
            ada.wait_text(".people-list", "Bob")

            # -- Ada logs out: the class page is behind the login again -------------------
            ada.visit(f"/classrooms/{classroom_id}")
            ada.find(".topbar form[action='/logout'] button[type=submit]").click()
            ada.wait_path(r"/")
            assert ada.cookie("classroom_session") is None
            ada.driver.back()
            ada.wait_path(r"/login\?next=%2Fclassrooms%2F" + str(classroom_id))
            ada.find("form[action='/login']")
            ada.visit(f"/classrooms/{classroom_id}")
            ada.wait_path(r"/login\?next=%2Fclassrooms%2F" + str(classroom_id))
            assert ada.find_all(".stream") == []

            # Logging back in (password masked there too) returns to the class page.
            password = ada.find("form[action='/login'] input[name=password]")
            assert password.get_attribute("type") == "password"
            ada.fill("form[action='/login']", {"username": "ada",
                                               "password": "correct horse battery"})
            ada.wait_path(rf"/classrooms/{classroom_id}")
            assert post_titles(ada) == [TITLE, "Reading list"]
        assert server.stop() == 0
