"""Real Chromium for the browser tests: profiles, a `classroom serve` process, waits.

Selenium is synchronous, so the browser tests are plain sync functions and run the server
with `subprocess.Popen` (`sync_server`), not the trio-based `server_process.running_server`.

    with sync_server(db_url, chat=True) as server, \
            chromium(tmp_path, "ada") as ada, chromium(tmp_path, "bob") as bob, \
            artifacts_on_failure(tmp_path, ada, bob):
        ada.visit(server.http_url + "/signup")
        ...

Every profile has its own `--user-data-dir`, hence its own cookies. Every wait is an
explicit `WebDriverWait` of at most `WAIT` seconds; nothing sleeps.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import attrs
import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import (
    IN_CI,
    MYSQL_SERVER_URL,
    mysql_admin,
    mysql_available,
    require_mysql_or_skip,
)

CHROMIUM: Final = "/usr/bin/chromium"
CHROMEDRIVER: Final = "/usr/bin/chromedriver"
WAIT: Final = 10.0
STARTUP_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 10.0
PASSWORD: Final = "correct horse battery"
_HTTP_LINE: Final = re.compile(r"classroom: HTTP on (http://\S+?)/?$")
_CHAT_LINE: Final = re.compile(r"classroom: chat on (ws://\S+)$")
_ARGUMENTS: Final = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
)
T = TypeVar("T")


def require_chromium() -> None:
    """Skip (fail under CI=true) when Debian's chromium or chromium-driver is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER)
               if not (os.path.isfile(path) and os.access(path, os.X_OK))]
    if not missing:
        return
    message = f"browser tests need {' and '.join(missing)} (apt-get install chromium " \
              f"chromium-driver)"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: not skipping)")
    pytest.skip(message)


# -- the database ------------------------------------------------------------------------


@contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL of `backend` ("sqlite" or "mysql"), from sync code: the
    sync twin of tests.conftest.database_url (a MariaDB database is dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'classroom.db'}"
        return
    require_mysql_or_skip(trio.run(mysql_available))
    name = f"classroom_t_{secrets.token_hex(6)}"
    trio.run(mysql_admin, f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield f"{MYSQL_SERVER_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        trio.run(mysql_admin, f"DROP DATABASE IF EXISTS {name}")


# -- the server --------------------------------------------------------------------------


@attrs.define
class SyncServer:
    process: subprocess.Popen[str]
    http_url: str | None = None  # "http://127.0.0.1:PORT", no trailing slash
    chat_url: str | None = None  # "ws://127.0.0.1:PORT/ws"
    lines: list[str] = attrs.field(factory=list)

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after STOP_TIMEOUT seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise


@contextmanager
def sync_server(db_url: str, *, chat: bool = False, extra: Sequence[str] = ()
                ) -> Iterator[SyncServer]:
    """`classroom serve --db db_url` on free ports of 127.0.0.1 (chat off unless `chat`),
    yielded once it has announced its listeners; stopped with SIGTERM on exit."""
    args = ["--http", "127.0.0.1:0", *(("--chat", "127.0.0.1:0") if chat else ("--no-chat",)),
            *extra]
    process = subprocess.Popen(
        [sys.executable, "-m", "classroom.cli", "serve", "--db", db_url, *args],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
        errors="replace", env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = SyncServer(process)
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # read to EOF, so a full pipe never blocks the server's prints
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    reader = threading.Thread(target=drain, daemon=True, name="classroom-serve-stdout")
    reader.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while server.http_url is None or (chat and server.chat_url is None):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"classroom serve did not start in {STARTUP_TIMEOUT} s: "
                                   f"{server.lines}") from None
            if line is None:
                raise RuntimeError(f"classroom serve exited with {process.wait(5)}: "
                                   f"{server.lines}")
            server.lines.append(line)
            if found := _HTTP_LINE.search(line):
                server.http_url = found.group(1)
            if found := _CHAT_LINE.search(line):
                server.chat_url = found.group(1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()
        while (line := _get_nowait(lines)) is not None:
            server.lines.append(line)


def _get_nowait(lines: queue.Queue[str | None]) -> str | None:
    try:
        return lines.get_nowait()
    except queue.Empty:
        return None


# -- the browser -------------------------------------------------------------------------


@attrs.define
class Profile:
    """One Chromium profile (its own cookies) and the waits the tests use."""

    name: str
    driver: webdriver.Chrome
    base_url: str = ""

    def visit(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        """The current URL's path and query."""
        url: str = self.driver.current_url
        return url[len(self.base_url):] if url.startswith(self.base_url) else url

    def wait(self, condition: Callable[[Any], T | Literal[False] | None], message: str,
             timeout: float = WAIT) -> T:
        try:
            result = WebDriverWait(
                self.driver, timeout,
                ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            raise AssertionError(f"{self.name}: timed out after {timeout} s waiting for "
                                 f"{message} (at {self.driver.current_url})") from None
        # until returns the first truthy value, but its types take out only False.
        assert result is not None
        return result

    def find(self, css: str) -> WebElement:
        """The first element matching `css`, waiting until it is in the page."""
        return self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, css)), repr(css))

    def find_all(self, css: str) -> list[WebElement]:
        elements: list[WebElement] = self.driver.find_elements(By.CSS_SELECTOR, css)
        return elements

    def visible(self, css: str) -> WebElement:
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)),
                         f"{css!r} to be visible")

    def click(self, css: str) -> None:
        self.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, css)),
                  f"{css!r} to be clickable").click()

    def wait_path(self, pattern: str) -> re.Match[str]:
        """Wait until the current path (and query) fully matches the regex `pattern`."""
        return self.wait(lambda _: re.fullmatch(pattern, self.path), f"path ~ {pattern!r}")

    def wait_text(self, css: str, text: str) -> WebElement:
        """Wait until an element matching `css` contains `text`; return that element."""
        def found(driver: Any) -> WebElement | Literal[False]:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if text in element.text:
                    return element  # type: ignore[no-any-return]
            return False

        return self.wait(found, f"{css!r} containing {text!r}")

    def fill(self, form_css: str, fields: dict[str, str], submit: bool = True) -> None:
        """Type `fields` (by input name) into the form and submit it by its submit button,
        as a person would."""
        form = self.find(form_css)
        for name, value in fields.items():
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        if submit:
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def sign_up(self, username: str, display_name: str) -> None:
        self.visit("/signup")
        self.fill("form[action='/signup']", {
            "username": username, "display_name": display_name,
            "password": PASSWORD, "confirm": PASSWORD})
        self.wait_path(r"/classrooms")

    def log_in(self, username: str) -> None:
        self.visit("/login")
        self.fill("form[action='/login']", {"username": username, "password": PASSWORD})
        self.wait_path(r"/classrooms")

    def cookie(self, name: str) -> str | None:
        cookie = self.driver.get_cookie(name)
        return None if cookie is None else str(cookie["value"])

    def save_artifacts(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        shot = directory / f"{self.name}.png"
        source = directory / f"{self.name}.html"
        saved = []
        try:
            if self.driver.save_screenshot(str(shot)):
                saved.append(shot)
            source.write_text(f"<!-- {self.driver.current_url} -->\n{self.driver.page_source}")
            saved.append(source)
        except Exception as exc:  # a dead browser must not hide the original failure
            (directory / f"{self.name}.error.txt").write_text(repr(exc))
        return saved


@contextmanager
def chromium(tmp_path: Path, name: str, base_url: str = "") -> Iterator[Profile]:
    """A fresh headless Chromium profile, quit on exit."""
    require_chromium()
    profile_dir = tmp_path / f"profile-{name}"
    profile_dir.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in _ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile_dir}")
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / f"chromedriver-{name}.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield Profile(name, driver, base_url)
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


@contextmanager
def artifacts_on_failure(tmp_path: Path, *profiles: Profile) -> Iterator[None]:
    """Any exception inside: save every profile's screenshot and page source under
    tmp_path/failure and fail with that path in the message."""
    try:
        yield
    except Exception as exc:
        directory = tmp_path / "failure"
        saved = [path for profile in profiles for path in profile.save_artifacts(directory)]
        raise AssertionError(f"{exc}\n(screenshots and page sources: {directory}: "
                             f"{', '.join(p.name for p in saved)})") from exc
