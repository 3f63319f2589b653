"""A whole lab lesson in real Chromium (lab.js over live.js's WebSocket), three profiles: the
instructor uploads the steps as a .md file and sends them, the student marks progress and asks
for help, the instructor's grid and page title change without a reload, the instructor reads
the student's code and accepts a step, the student sees the alert; a student who comes late
sees the steps at once. Only on SQLite: the browser, not the database, is under test here.

Selenium is synchronous: each browser step runs in a worker thread (`trio.to_thread`) while
the servers keep running in the test's trio loop.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import trio
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from classroom.accounts import SESSION_COOKIE
from tests.e2e.browser import Profile, chromium
from tests.web.harness import WebWorld
from tests.web.live_peer import api_user

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.parametrize("backend", ["sqlite"])]

LESSON = """# Variables
Names for **values**. <script>window.hacked = 1</script> [docs](https://docs.python.org)
[bad](javascript:window.hacked=2)

# Functions
Write a function:

```python
def hello(name):
    return "hi " + name
```

# Loops
for and while.
"""


def open_live(profile: Profile, token: str, path: str) -> None:
    profile.visit("/static/favicon.svg")  # on the site, so its cookie can be set
    profile.driver.add_cookie({"name": SESSION_COOKIE, "value": token, "path": "/"})
    profile.visit(path)
    profile.wait(lambda d: d.find_element(By.ID, "status").text == "connected", "connected")


def press(profile: Profile, css: str) -> None:
    """Click as a person would, after scrolling the element clear of the sticky top bar."""
    profile.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                                  profile.find(css))
    profile.click(css)


def steps_shown(profile: Profile) -> list[str]:
    return [item.find_element(By.CSS_SELECTOR, "h4").text
            for item in profile.find_all("#lab-steps .lab-step")]


async def test_a_lab_lesson_in_three_browsers(live_web: WebWorld, tmp_path: Path) -> None:
    with trio.fail_after(150):
        tokens = {name: await api_user(live_web, name) for name in ("teacher", "ann", "cara")}
        async with live_web.api(tokens["teacher"]) as teacher_api:
            made = (await teacher_api.post("/classrooms", json={"name": "Python"})).json()
            cid, code = made["classroom"]["id"], made["classroom"]["join_code"]
            for student in ("ann", "cara"):
                async with live_web.api(tokens[student]) as api:
                    await api.post("/classrooms/join", json={"code": code})
            room = (await teacher_api.post(f"/classrooms/{cid}/sessions", json={})).json()
        async with live_web.api(tokens["ann"]) as api:
            ann_id = (await api.get("/me")).json()["user"]["id"]
        lesson = tmp_path / "lesson.md"
        lesson.write_text(LESSON)
        page = f"/classrooms/{cid}/live"
        base = live_web.base_url
        run = trio.to_thread.run_sync

        with ExitStack() as stack:
            teacher = stack.enter_context(chromium(tmp_path, "teacher", base))
            ann = stack.enter_context(chromium(tmp_path, "ann", base))
            await run(open_live, teacher, tokens["teacher"], page)
            await run(open_live, ann, tokens["ann"], page)

            def steps_from_an_upload() -> None:
                teacher.find("#lab-upload").send_keys(str(lesson))
                teacher.wait(lambda d: len(teacher.find_all("#lab-draft .lab-draft-step")) == 3,
                             "three steps in the draft")
                names = [e.get_attribute("value") for e in teacher.find_all(".lab-step-name")]
                assert names == ["Variables", "Functions", "Loops"]
                press(teacher, "#lab-send-steps")
                ann.wait(lambda d: steps_shown(ann) == ["1. Variables", "2. Functions",
                                                         "3. Loops"], "ann's steps")
                first = ann.find("#lab-steps .lab-step .markdown")
                assert first.find_element(By.CSS_SELECTOR, "strong").text == "values"
                assert "<script>" in first.text  # shown as text, never run
                assert ann.driver.execute_script("return window.hacked") is None
                links = [a.get_attribute("href") for a in first.find_elements(By.TAG_NAME, "a")]
                assert links == ["https://docs.python.org/"]

            await run(steps_from_an_upload)

            def student_shares_and_asks_for_help() -> None:
                press(teacher, "#lab-share-toggle")
                ann.wait_text("#lab-alerts li", "Code sharing started")
                ann.wait_text("#lab-sharing", "sharing on")
                ann.find("#lab-new-name").send_keys("main.py")
                press(ann, "#lab-add-file button[type=submit]")
                ann.find("#lab-code").send_keys('def hello(name):\n    return "<b>" + name\n')
                ann.find("#lab-new-name").send_keys("src/util.py")
                press(ann, "#lab-add-file button[type=submit]")
                ann.find("#lab-code").send_keys("X = 1\n")
                press(ann, "#lab-my-files li:first-child button")  # back to main.py
                Select(ann.find("#lab-steps .lab-step select")).select_by_value("IN_PROGRESS")
                press(ann, "#lab-help")
                ann.wait_text("#lab-my-signal", "help")

            await run(student_shares_and_asks_for_help)

            def grid_changes_live() -> None:
                row = f'#lab-grid tr[data-user-id="{ann_id}"]'
                teacher.wait(lambda d: "needs-help" in (teacher.find(row).get_attribute("class")
                                                        or ""), "ann's row marked for help")
                assert teacher.find(row + " .signal-cell").text == "help"
                teacher.wait(lambda d: teacher.find(row + ' td[data-step="0"]').text
                             == "in progress", "step 1 in progress")
                assert teacher.driver.title.startswith("(1 need help) ")
                teacher.wait_text("#lab-alerts li", "Ann needs help")
                # The code: tree with main.py marked, highlighted, escaped, numbered lines.
                press(teacher, row + " .lab-open")
                teacher.wait_text("#lab-tree li", "util.py")
                assert [li.text.split("\n")[0] for li in teacher.find_all("#lab-tree li")] == [
                    "main.py", "src/", "util.py"]
                badge = teacher.find("#lab-tree li .badge").text.lower()
                assert badge in ("new", "changed")  # new, unless an edit came after it
                teacher.wait(lambda d: "<b>" in teacher.find("#lab-view code").text,
                             "ann's code shown")
                assert teacher.find_all("#lab-view code .hljs-keyword")
                assert not teacher.find_all("#lab-view code b")
                assert teacher.find("#lab-view .lab-gutter").text.split() == ["1", "2", "3"]
                press(teacher, '#lab-student-steps li[data-step="0"] .lab-accept')
                ann.wait_text("#lab-alerts li", "Step 1 was accepted")
                ann.wait_text('#lab-steps .lab-step[data-step="0"] .pill', "accepted")

            await run(grid_changes_live)

            cara = stack.enter_context(chromium(tmp_path, "cara", base))

            def late_student_sees_the_steps_at_once() -> None:
                open_live(cara, tokens["cara"], page)
                cara.wait(lambda d: len(steps_shown(cara)) == 3, "cara's steps")
                assert cara.find("#lab-sharing").text == "sharing on"
                row = teacher.find('#lab-grid tr[data-user-id]:not([data-user-id="'
                                   f'{ann_id}"])')
                teacher.wait(lambda d: "online" in (row.get_attribute("class") or ""),
                             "cara online in the grid")

            await run(late_student_sees_the_steps_at_once)

            def projector_view() -> None:
                teacher.visit(f"/rooms/{room['room']['id']}/stats")
                row = f'#lab-grid tr[data-user-id="{ann_id}"]'
                teacher.wait(lambda d: teacher.find(row + ' td[data-step="0"]').text
                             == "accepted", "the grid on its own page")
                assert teacher.find(row + " .signal-cell").text == "help"
                press(ann, "#lab-done")
                teacher.wait(lambda d: teacher.find(row + " .signal-cell").text == "done",
                             "ann's signal changes live")
                assert not teacher.driver.title.startswith("(")

            await run(projector_view)

            def student_comes_back_to_her_code() -> None:
                # A reload (or another computer): the editor starts from what the server kept.
                open_live(ann, tokens["ann"], page)
                ann.wait(lambda d: ann.find("#lab-code").get_attribute("value")
                         == 'def hello(name):\n    return "<b>" + name\n', "main.py restored")
                names = [li.text.split("\n")[0] for li in ann.find_all("#lab-my-files li")]
                assert names == ["main.py", "src/", "util.py"]
                assert ann.find("#lab-my-signal").text == "done"
                assert steps_shown(ann)[0] == "1. Variables"

            await run(student_comes_back_to_her_code)
