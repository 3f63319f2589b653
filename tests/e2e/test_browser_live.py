"""A live session in real Chromium: `classroom serve` with chat on, two profiles.

Ada (instructor) starts a session from the Live tab; Bob (student) opens it. Public message
both ways, Bob's private question to the instructor, Ada's private reply picked in
#private-target, Bob's reload replays the same history (same seqs, nothing twice), and when
Ada ends the session Bob's page says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.browser import Profile, artifacts_on_failure, chromium, database, sync_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def wait_connected(profile: Profile) -> None:
    profile.wait(lambda d: d.find_element(By.ID, "status").text == "connected",
                 "#status to say connected")
    profile.wait(lambda d: d.find_element(By.ID, "send-button").is_enabled(),
                 "#send-button to be enabled")


def send(profile: Profile, text: str) -> None:
    field = profile.find("#message-input")
    field.clear()
    if any(ord(char) > 0xFFFF for char in text):
        # ChromeDriver types BMP characters only: put the text in as a paste would.
        profile.driver.execute_script("arguments[0].value = arguments[1];", field, text)
    else:
        field.send_keys(text)
    profile.click("#send-button")
    profile.wait(lambda d: d.find_element(By.ID, "message-input").get_attribute("value") == "",
                 "the message box to empty (the message was sent)")


def messages(profile: Profile) -> list[tuple[int, str, bool]]:
    """(seq, text, private) of each message in #messages, in page order."""
    found = []
    for item in profile.find_all("#messages .message"):
        found.append((int(item.get_attribute("data-seq") or "0"),
                      item.find_element(By.CSS_SELECTOR, ".message-text").text,
                      "private" in (item.get_attribute("class") or "").split()))
    return found


def wait_message(profile: Profile, text: str, *, private: bool) -> tuple[int, str, bool]:
    """Wait for a message with exactly `text`; check it is (not) marked private."""
    def seen(_: object) -> tuple[int, str, bool] | None:
        return next((m for m in messages(profile) if m[1] == text), None)

    message = profile.wait(seen, f"a message {text!r} in #messages")
    assert message[2] is private, f"{profile.name}: {text!r} private={message[2]}"
    return message


def member_id(profile: Profile, name: str) -> int:
    item = profile.wait_text("#members li", name)
    return int(item.get_attribute("data-user-id") or "0")


def wait_online(profile: Profile, user_id: int, online: bool = True) -> None:
    css = f"#members li[data-user-id='{user_id}']"

    def state(driver: object) -> bool:
        items = profile.find_all(css)
        return bool(items) and ("online" in (items[0].get_attribute("class") or "").split()
                                ) is online

    profile.wait(state, f"{css} online={online}")


def test_live_session_in_chromium(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as db_url, sync_server(db_url, chat=True) as server:
        base = server.http_url
        assert base is not None and server.chat_url is not None
        with chromium(tmp_path, "ada", base) as ada, chromium(tmp_path, "bob", base) as bob, \
                artifacts_on_failure(tmp_path, ada, bob):
            ada.sign_up("ada", "Ada Lovelace")
            ada.visit("/classrooms/new")
            ada.fill("form[action='/classrooms/new']", {"name": "Live 101"})
            classroom_id = int(ada.wait_path(r"/classrooms/(\d+)").group(1))
            code = ada.find(".join-code").text.strip()
            bob.sign_up("bob", "Bob")
            bob.visit("/classrooms/join")
            bob.fill("form[action='/classrooms/join']", {"code": code})
            bob.wait_path(rf"/classrooms/{classroom_id}")

            # -- Ada starts the session from the Live tab ----------------------------------
            live = f"/classrooms/{classroom_id}/live"
            ada.visit(live)
            ada.fill(f"form[action='/classrooms/{classroom_id}/sessions']",
                     {"topic": "Sockets Q&A"})
            ada.wait_path(live)
            wait_connected(ada)
            bob.visit(live)
            wait_connected(bob)
            bob_id = member_id(ada, "Bob")
            ada_id = member_id(bob, "Ada Lovelace")
            wait_online(ada, bob_id)
            wait_online(bob, ada_id)
            assert bob.find_all("#private-target") == [] and ada.find_all("#private-toggle") == []
            assert bob.find_all("#end-button") == []

            # -- public, private question, private answer ----------------------------------
            hello = "Welcome! <b>not bold</b> 👋"
            send(ada, hello)
            public = wait_message(bob, hello, private=False)
            assert bob.find_all("#messages b") == []

            question = "Is UDP reliable?"
            bob.click("#private-toggle")
            send(bob, question)
            asked = wait_message(ada, question, private=True)
            wait_message(bob, question, private=True)

            Select(ada.find("#private-target")).select_by_value(str(bob_id))
            answer = "No: you add acks yourself."
            send(ada, answer)
            answered = wait_message(bob, answer, private=True)
            wait_message(ada, answer, private=True)
            assert public[0] < asked[0] < answered[0]
            before = messages(bob)
            assert [m[0] for m in before] == [public[0], asked[0], answered[0]]

            # -- Bob reloads: the same history, once ---------------------------------------
            bob.driver.refresh()
            wait_connected(bob)
            bob.wait(lambda _: len(messages(bob)) >= len(before), "the history after reload")
            bob.wait(lambda _: messages(bob) == before,
                     f"the same messages after reload (was {before}, now {messages(bob)})")
            seqs = [m[0] for m in messages(bob)]
            assert len(seqs) == len(set(seqs)), f"duplicates after reload: {seqs}"

            # A message after the reload arrives once more, live.
            after = "One more thing."
            Select(ada.find("#private-target")).select_by_value("")
            send(ada, after)
            wait_message(bob, after, private=False)
            assert [m[0] for m in messages(bob)][:-1] == seqs

            # -- Ada ends the session; Bob's page says so ----------------------------------
            ada.click("#end-button")
            ada.click("#end-yes")
            banner = bob.visible("#banner")
            bob.wait(lambda _: "ended" in banner.text, "#banner to say the session ended")
            bob.wait(lambda d: not d.find_element(By.ID, "send-button").is_enabled(),
                     "#send-button to be disabled after the end")
            ada.visible("#banner")
        assert server.stop() == 0
